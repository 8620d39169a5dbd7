"""The kernel's hook specifications: the extension points every SceneOS plugin may implement.

One ``HookspecMarker("sceneos")`` and one ``HookimplMarker("sceneos")`` serve the whole project;
modules add their own domain hookspecs (``ModuleSpec.hookspecs``) beside these. Implementations
may accept fewer arguments than a spec names, so specs can grow without breaking plugins.

Hooks run per tenant: each bank has its own plugin manager, holding the plugins enabled globally,
the plugins that bank enables, and the plugins providing the modules that bank enables. A bank's
plugin is therefore never called for another bank.

Versioning: :data:`HOOKSPEC_VERSION` rises when a spec changes incompatibly; deprecated specs
keep working for one minor version with ``warn_on_impl``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from fastapi import FastAPI
    from pydantic import BaseModel

    from core.app import SceneOS
    from core.events import Event
    from core.modules import ModuleSpec
    from core.tenancy import Tenant

PROJECT_NAME = "sceneos"
HOOKSPEC_VERSION = 1

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# -------------------------------------------------------------------------------------------------
# Declaration: read once per plugin when the application is built
# -------------------------------------------------------------------------------------------------


@hookspec
def sceneos_register_modules() -> list[ModuleSpec]:  # type: ignore[empty-body]
    """Declare the modules (products, middle-tier services) this plugin provides.

    Called once per available plugin while the application is built, before configuration is
    validated against module settings. Whether a tenant *uses* a module is configuration
    (``[tenants.<id>.modules.<name>]``), never this hook.

    :return: a list of :class:`core.modules.ModuleSpec` (collected from every plugin; a module
        name declared twice is a startup error).
    """


# -------------------------------------------------------------------------------------------------
# Configuration: per tenant, after the file and environment are validated
# -------------------------------------------------------------------------------------------------


@hookspec
def sceneos_adjust_module_settings(
    tenant: Tenant, module: str, settings: BaseModel
) -> dict[str, Any] | None:  # type: ignore[empty-body]
    """Adjust a module's validated settings for one tenant (e.g. a stricter limit for one bank).

    Called once per tenant and enabled module while the application is built, after the tenant's
    configuration is validated. ``tenant.modules`` is not complete yet.

    :param tenant: the tenant being built.
    :param module: the module's name.
    :param settings: the module's settings as validated from configuration (immutable).
    :return: a dict of field overrides, or None to leave them. Every result is applied, in hook
        call order (``tryfirst``/``trylast`` order them); the merged settings are validated again,
        so an override of the wrong type fails startup with a line naming the plugin and key.
    """


@hookspec(firstresult=True)
def sceneos_make_event_bus(app: SceneOS) -> Any:
    """Provide the application's event bus (see :class:`core.events.EventBus`).

    Called once while the application is built, on the application-level plugins: those enabled
    globally and those providing infrastructure modules every tenant has. The infrastructure
    layer's outbox answers it; without an answer the kernel delivers in process after commit.
    Stops at first non-None result.

    :param app: the application being built (tenants not built yet).
    :return: an object with ``stage(session, event)`` and ``after_commit(session)``, or None.
    """


@hookspec
def sceneos_http_app(app: SceneOS, http: FastAPI) -> None:
    """The HTTP application is being assembled: add routes, middleware and OpenAPI details.

    Called once per :meth:`SceneOS.http` on the application-level plugins (global ones and those
    providing default-enabled infrastructure), after the kernel's routes are mounted and before
    the request-id middleware is wrapped around everything. Middleware added here sees
    ``request.state.request_id``. The super entry mounts the partner surface this way.

    :param app: the built application.
    :param http: the FastAPI application (not started yet).
    :return: nothing (ignored).
    """


# -------------------------------------------------------------------------------------------------
# Lifecycle
# -------------------------------------------------------------------------------------------------


@hookspec
def sceneos_startup(app: SceneOS, tenant: Tenant) -> None:
    """The application has started for ``tenant``: database migrated, modules configured.

    Called once per tenant, after every tenant is built and before any request is served. Use it
    to seed reference data (chart of accounts, blacklists). An exception aborts startup.

    :return: nothing (ignored).
    """


@hookspec
def sceneos_shutdown(app: SceneOS, tenant: Tenant) -> None:
    """The application is closing for ``tenant``. Release what ``sceneos_startup`` acquired.

    Called once per tenant on orderly shutdown; exceptions are logged and do not stop other
    plugins' shutdown.

    :return: nothing (ignored).
    """


# -------------------------------------------------------------------------------------------------
# Events
# -------------------------------------------------------------------------------------------------


@hookspec
def sceneos_on_event(event: Event, tenant: Tenant) -> None:
    """A domain event of ``tenant`` was committed (e.g. ``party.customer.registered``).

    Called after the unit of work that raised the event commits, once per subscriber plugin;
    delivery is at-least-once, so use ``event.id`` to deduplicate. An exception in one subscriber
    is logged and does not stop the others or undo the change.

    :return: nothing (ignored).
    """


# -------------------------------------------------------------------------------------------------
# Contracts between modules: funding sources and webhook endpoints
# -------------------------------------------------------------------------------------------------


@hookspec
def sceneos_funding_sources(tenant: Tenant) -> list[Any]:  # type: ignore[empty-body]
    """Offer the ways a customer of ``tenant`` can fund a payment besides their own account.

    Called (through :func:`core.funding.funding_sources`) whenever a payment module needs a
    funding source by name, e.g. when a wallet pays a QR code or a cashier scans a payment code
    funded by credit pay. Called often: build nothing expensive, do no I/O. Only the plugins of
    the tenant's enabled modules answer, so a source of a module the bank has not enabled is
    never offered.

    :param tenant: the bank the payment is for.
    :return: a list of :class:`core.funding.FundingSource` (collected from every plugin; a name
        offered twice is an error), or None.
    """


@hookspec
def sceneos_webhook_endpoints(
    tenant: Tenant, uow: Any, event: Event | None, recipient: str | None
) -> list[Any]:  # type: ignore[empty-body]
    """Offer webhook receivers other than partners (e.g. a merchant's own system).

    Called by the super entry's webhook sender in the unit of work ``uow``: once per committed
    event of ``tenant`` with ``event`` set (which endpoints should get it), and once per delivery
    attempt with ``recipient`` set (the URL and secrets to send with now). Deliveries go through
    the same outbox, signing, retries and delivery log as partners' webhooks.

    :param tenant: the bank.
    :param uow: the unit of work to read the endpoints' configuration in (never commit).
    :param event: the committed event to route, or None when looking up ``recipient``.
    :param recipient: the recipient id of a delivery being sent, or None when routing ``event``.
    :return: a list of :class:`infra.entry.webhooks.WebhookEndpoint` whose ``recipient`` ids
        contain a ``:`` (``"<module>:<id>"``, never a partner id), or None. For ``event``, the
        endpoints that want it; for ``recipient``, at most that one.
    """


# -------------------------------------------------------------------------------------------------
# Demo
# -------------------------------------------------------------------------------------------------


@hookspec
def sceneos_demo_journeys() -> list[Any]:  # type: ignore[empty-body]
    """Declare journeys for ``sceneos demo`` (see :class:`core.demo.DemoJourney`).

    Called once per available plugin when ``sceneos demo`` runs, like ``sceneos_register_modules``.
    Each journey brings a configuration fragment (merged into the demo's configuration) and a
    function that plays it on the built application.

    :return: a list of ``DemoJourney`` (collected from every plugin, played in ``order``).
    """
