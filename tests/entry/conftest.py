"""Fixtures of the super entry's tests (shared definitions: ``entry_support``)."""

from __future__ import annotations

from typing import Any

import pytest
from entry_support import OrdersModule, two_banks


@pytest.fixture
def orders_module() -> OrdersModule:
    return OrdersModule()


@pytest.fixture
def entry_app(make_sceneos, orders_module):
    """Builder: ``entry_app(**two_banks_options)`` -> a started app with both banks."""

    def build(**options: Any):
        return make_sceneos(two_banks(**options), plugins={"orders": orders_module})

    return build


@pytest.fixture
def client(entry_app, partner_client):
    """Builder: ``client(KEY, app=None, **sdk_options)`` -> a signed SDK client on a live server."""

    default: dict[str, Any] = {}

    def build(key: tuple[str, str], app: Any = None, **options: Any):
        if app is None:
            app = default.setdefault("app", entry_app())
        return partner_client(app, key[0], key[1], **options)

    return build
