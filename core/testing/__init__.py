"""SceneOS's test harness, shipped in the package so plugin authors test the way the project does.

* :func:`make_app` builds an application from a config dict on SQLite (memory or a temp file) or
  PostgreSQL, with a :class:`~core.clock.SimulatedClock` and any plugins registered in code;
* the pytest plugin (:mod:`core.testing.pytest_plugin`, loaded automatically through the
  ``pytest11`` entry point) turns these into fixtures;
* :mod:`core.testing.factories` makes valid identifiers for test customers.
"""

from core.testing.harness import make_app, make_catalog

__all__ = ["make_app", "make_catalog"]
