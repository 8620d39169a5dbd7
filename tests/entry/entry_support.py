"""What the super entry's tests share: two banks, partners with known keys, and a small product
module (``orders``) declared by a test plugin, so the entry is tested the way products use it."""

from __future__ import annotations

import threading
import time
from collections import Counter
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from core.hookspecs import hookimpl
from core.http import module_runtime
from core.modules import ModuleSpec
from core.tenancy import ModuleRuntime
from core.testing.harness import partner_config, tenant_config
from infra.entry.consent import EndUser, require_consent
from infra.entry.gateway import partner_context
from infra.entry.runtime import PartnerContext

TRAVEL = ("pk_travel_1", "travel-secret-0123456789abcdef")
TRAVEL_NEW = ("pk_travel_2", "travel-secret-rotated-0123456789")
READER = ("pk_reader_1", "reader-secret-0123456789abcdef")
SHOP = ("pk_shop_1", "shop-secret-0123456789abcdef-xyz")
WALLET = ("pk_wallet_1", "wallet-secret-0123456789abcdef")
SLEEPY = ("pk_sleepy_1", "sleepy-secret-0123456789abcdef")
WEBHOOK_SECRET = "whsec_travel_0123456789abcdef"


class OrderDraft(BaseModel):
    reference: str = Field(min_length=1, max_length=40)
    amount: Decimal = Field(gt=0, max_digits=12, decimal_places=2, description="major units, e.g. 126.50")
    slow_ms: int = Field(default=0, ge=0, le=5000)


class OrderView(BaseModel):
    order_no: str
    reference: str
    amount_minor: int
    execution: int


class OrdersModule:
    """A product module for tests: counts how often each operation really runs."""

    def __init__(self) -> None:
        self.executions: Counter[str] = Counter()
        self.orders: dict[tuple[str, str], OrderView] = {}
        self._lock = threading.Lock()

    @hookimpl
    def sceneos_register_modules(self) -> list[ModuleSpec]:
        return [ModuleSpec(name="orders", layer="product", description="test orders", router=self.router)]

    def router(self) -> APIRouter:
        api = APIRouter()
        orders = module_runtime("orders")

        @api.post("/orders", status_code=201)
        def create_order(draft: OrderDraft, runtime: ModuleRuntime = Depends(orders),
                         caller: PartnerContext = Depends(partner_context)) -> OrderView:
            with self._lock:
                self.executions[draft.reference] += 1
                execution = self.executions[draft.reference]
            if draft.slow_ms:
                time.sleep(draft.slow_ms / 1000)
            order_no = f"ord_{draft.reference}_{execution}"
            view = OrderView(order_no=order_no, reference=draft.reference,
                             amount_minor=int(draft.amount * 100), execution=execution)
            with runtime.tenant.unit_of_work() as uow:
                uow.publish("orders.order.created", {"partner_id": caller.partner.partner_id, "order_no": order_no,
                                                     "amount_minor": view.amount_minor}, subject=f"order:{order_no}")
            self.orders[(runtime.tenant.id, order_no)] = view
            return view

        @api.get("/orders/{order_no}")
        def get_order(order_no: str, runtime: ModuleRuntime = Depends(orders)) -> OrderView:
            from core.errors import NotFound

            found = self.orders.get((runtime.tenant.id, order_no))
            if found is None:
                raise NotFound(f"no order {order_no!r}")
            return found

        @api.post("/orders/{order_no}/credit-check")
        def credit_check(order_no: str, runtime: ModuleRuntime = Depends(orders),
                         user: EndUser | None = Depends(require_consent("credit_decision"))) -> dict[str, Any]:
            assert user is not None
            return {"order_no": order_no, "user_id": user.user_id, "customer_no": user.customer_no,
                    "consent_id": user.consent_id}

        @api.post("/orders/{order_no}/one-time-code")
        def one_time_code(order_no: str, response: Response, runtime: ModuleRuntime = Depends(orders)) -> dict[str, str]:
            with self._lock:
                self.executions["code"] += 1
            response.headers["Cache-Control"] = "no-store"  # a secret: stored encrypted, never in clear
            return {"order_no": order_no, "code": f"SECRET{self.executions['code']:06d}"}

        @api.post("/orders/explode")
        def explode(runtime: ModuleRuntime = Depends(orders)) -> dict[str, str]:
            with self._lock:
                self.executions["explode"] += 1
            raise RuntimeError("boom with card 6222021234567890123")

        return api


def two_banks(*, rate_limit: str | None = None, webhook_url: str | None = None,
              entry_settings: dict[str, Any] | None = None, **global_settings: Any) -> dict[str, Any]:
    travel_extra: dict[str, Any] = {"display_name": "Fly Now Pay Later"}
    if webhook_url:
        travel_extra |= {"webhook_url": webhook_url, "webhook_secret": WEBHOOK_SECRET}
    if rate_limit:
        travel_extra["rate_limit"] = rate_limit
    travel = partner_config("Travel app", key_id=TRAVEL[0], secret=TRAVEL[1], scopes=["orders", "party"],
                            **travel_extra)
    travel["credentials"].append({"key_id": TRAVEL_NEW[0], "secret": TRAVEL_NEW[1]})
    return {
        "entry": {"webhook_poll_seconds": 0, **global_settings},
        "tenants": {
            "bank_a": tenant_config("Bank A", modules={"party": {}, "orders": {}, "entry": entry_settings or {}}, partners={
                "travel": travel,
                "reader": partner_config("Reader", key_id=READER[0], secret=READER[1], scopes=["orders:read"]),
                "shop": partner_config("Shop", key_id=SHOP[0], secret=SHOP[1], scopes=["orders:create_order"]),
                "sleepy": partner_config("Sleepy", key_id=SLEEPY[0], secret=SLEEPY[1], scopes=["orders"],
                                         enabled=False),
            }),
            "bank_b": tenant_config("Bank B", modules={"party": {}, "entry": {}}, partners={
                "wallet": partner_config("Wallet", key_id=WALLET[0], secret=WALLET[1], scopes=["orders", "party"]),
            }),
        },
    }
