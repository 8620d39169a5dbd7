"""What a module is: a product or middle-tier service declared by a plugin.

A module brings its name, the modules it depends on, its settings model, its tables and Alembic
migrations, its HTTP routes, its batch jobs, its CLI commands, its own hookspecs, and its
dependency-injection container. Enabling it for a tenant is configuration only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from core.settings import ModuleSettings

if TYPE_CHECKING:
    import typer
    from dependency_injector.containers import DeclarativeContainer
    from fastapi import APIRouter


ModuleLayer = Literal["infra", "middle", "product"]


@dataclass(frozen=True)
class JobSpec:
    """A batch job a module runs for a business date; the compute layer (``infra.compute``) runs it.

    ``partitions(ctx)`` lists the partition keys of one run (e.g. ranges of account ids), computed
    once when the run is created; ``run_partition(ctx)`` does one partition's work inside the unit
    of work that also records the partition as done, so a killed run resumes without redoing it.
    The contexts are ``infra.compute`` types; a partition may run in another process (Dask).
    """

    name: str
    partitions: Callable[[Any], Sequence[str]]
    run_partition: Callable[[Any], Mapping[str, Any] | None]
    description: str = ""


@dataclass(frozen=True)
class ModuleSpec:
    """Declaration of one module. Built-in and third-party modules are declared the same way."""

    name: str
    layer: ModuleLayer
    description: str
    depends_on: tuple[str, ...] = ()
    settings_model: type[ModuleSettings] = ModuleSettings
    # Directory of the module's Alembic revisions (a version location with its own branch label).
    migrations: Path | None = None
    # Builds the module's routes for one tenant; mounted at /v1/tenants/{tenant}/{name}.
    router: Callable[[], APIRouter] | None = None
    # Builds the module's browser pages (e.g. a console); mounted at /web/{tenant}/{name}, outside
    # /v1 and without the admin key: the pages authenticate their own users (sessions, CSRF).
    web: Callable[[], APIRouter] | None = None
    jobs: Sequence[JobSpec] = ()
    cli: typer.Typer | None = None
    # Top-level aliases of the module's CLI: {"jobs": ""} exposes the whole CLI as `sceneos jobs`,
    # {"partners": "partners"} its `partners` group as `sceneos partners`.
    cli_aliases: Mapping[str, str] = field(default_factory=dict)
    hookspecs: ModuleType | None = None
    # A DeclarativeContainer class whose ``providers.Dependency`` slots the kernel fills in:
    # ``runtime`` (ModuleRuntime), ``settings``, ``clock``, ``hooks``, ``tenant``.
    container: type[DeclarativeContainer] | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)
    # Infrastructure every tenant has (the ledger): enabled unless a tenant sets enabled = false.
    default_enabled: bool = False

    def __post_init__(self) -> None:
        import re

        if not re.match(r"^[a-z][a-z0-9_]{0,40}$", self.name):
            raise ValueError(f"module name {self.name!r} must be lower-case letters, digits and _")
        if self.name in self.depends_on:
            raise ValueError(f"module {self.name!r} cannot depend on itself")


def order_by_dependencies(specs: dict[str, ModuleSpec], names: Sequence[str]) -> list[str]:
    """Names sorted so every module comes after the modules it depends on (stable otherwise)."""
    from graphlib import TopologicalSorter

    graph = {name: [dep for dep in specs[name].depends_on if dep in names] for name in names}
    return list(TopologicalSorter(graph).static_order())
