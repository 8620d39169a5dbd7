"""pytest fixtures for SceneOS applications and plugins (loaded through the ``pytest11`` entry point).

Fixtures:

``sim_clock``
    A :class:`~core.clock.SimulatedClock` at 2026-01-01T00:00Z; move it with ``advance(days=30)``.
``make_sceneos``
    Factory: ``make_sceneos(config_dict, plugins={"mine": module})`` builds, migrates and starts an
    app on the test's database with ``sim_clock``; closed after the test.
``sceneos_app``
    ``make_sceneos()`` with one tenant ``bank`` enabling the party module.
``database_url``
    The test's database: a temp-file SQLite by default; parametrize tests over both backends with
    ``@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)``.
``postgres_url``
    A fresh PostgreSQL database for the session (emptied after each test). Skips with the reason
    when no server answers, fails instead under ``CI=true``.
``http_client``
    Factory: ``http_client(app)`` is an ``httpx``-compatible test client of the app's HTTP API.
``live_server``
    Factory: ``live_server(app)`` serves the app with uvicorn on a free loopback port (in a thread,
    with its lifespan, so background tasks such as webhook sending run) and returns its base URL.
``partner_client``
    Factory: ``partner_client(app, key_id, secret)`` is a :class:`core.sdk.PartnerClient` signing
    with that key against ``live_server(app)``, timestamps taken from the app's (simulated) clock;
    ``asynchronous=True`` gives an :class:`core.sdk.AsyncPartnerClient`; other keywords go to the
    client (``max_retries=0``, ``clock=...``). Partners come from configuration: see
    :func:`core.testing.harness.partner_config`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from core.app import SceneOS
from core.clock import SimulatedClock
from core.testing import postgres
from core.testing.harness import make_app


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs PostgreSQL; skipped without one, required when CI=true")


@pytest.fixture
def sim_clock() -> SimulatedClock:
    return SimulatedClock(datetime.fromisoformat("2026-01-01T00:00:00+00:00"))


@pytest.fixture(scope="session")
def _postgres_server_database() -> Iterator[str]:
    reason = postgres.probe(postgres.server_url())
    if reason is not None:
        shown = make_url(postgres.server_url()).render_as_string(hide_password=True)
        message = f"PostgreSQL not reachable at {shown} ({reason}); set {postgres.ENV_URL}"
        if postgres.required():
            pytest.fail(message + " — required under CI=true", pytrace=False)
        pytest.skip(message)
    with postgres.temporary_database() as url:
        yield url


@pytest.fixture
def postgres_url(_postgres_server_database: str) -> Iterator[str]:
    yield _postgres_server_database
    postgres.truncate_all(_postgres_server_database)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    backend = getattr(request, "param", "sqlite")
    if backend == "postgres":
        return request.getfixturevalue("postgres_url")
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'sceneos-test.db'}"
    if backend == "sqlite-memory":
        return "sqlite://"
    raise ValueError(f"unknown database backend {backend!r}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests parametrized onto PostgreSQL carry the marker, so `-m "not postgres"` deselects them.
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("database_url") == "postgres":
            item.add_marker(pytest.mark.postgres)


@pytest.fixture
def make_sceneos(database_url: str, sim_clock: SimulatedClock) -> Iterator[Callable[..., SceneOS]]:
    built: list[SceneOS] = []

    def factory(config: dict[str, Any] | None = None, **kwargs: Any) -> SceneOS:
        kwargs.setdefault("database_url", database_url)
        kwargs.setdefault("clock", sim_clock)
        app = make_app(config, **kwargs)
        built.append(app)
        return app

    yield factory
    for app in built:
        app.close()


@pytest.fixture
def sceneos_app(make_sceneos: Callable[..., SceneOS]) -> SceneOS:
    return make_sceneos()


@pytest.fixture
def http_client() -> Iterator[Callable[[SceneOS], Any]]:
    from fastapi.testclient import TestClient

    clients: list[TestClient] = []

    def factory(app: SceneOS) -> TestClient:
        client = TestClient(app.http(), raise_server_exceptions=False)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


@pytest.fixture
def live_server() -> Iterator[Callable[[SceneOS], str]]:
    from core.testing.live import LiveServer

    servers: dict[int, LiveServer] = {}

    def factory(app: SceneOS) -> str:
        if id(app) not in servers:
            servers[id(app)] = LiveServer(app.http())
        return servers[id(app)].url

    yield factory
    for server in servers.values():
        server.stop()


@pytest.fixture
def partner_client(live_server: Callable[[SceneOS], str]) -> Iterator[Callable[..., Any]]:
    from core.sdk import AsyncPartnerClient, PartnerClient

    clients: list[Any] = []

    def factory(app: SceneOS, key_id: str, secret: str, *, asynchronous: bool = False, **kwargs: Any) -> Any:
        kwargs.setdefault("clock", lambda: app.clock.now().timestamp())
        cls = AsyncPartnerClient if asynchronous else PartnerClient
        client = cls(live_server(app), key_id, secret, **kwargs)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        if isinstance(client, PartnerClient):
            client.close()
