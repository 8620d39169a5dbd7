"""Core statements on hot paths are tenant-bound by the kernel too (core/statements.py): a statement
that forgets the tenant is refused when it is built, and the tenant is never the caller's to give."""

from __future__ import annotations

import pytest
from sqlalchemy import bindparam, func, select, union_all, update
from test_tenancy import BOTH, two_banks  # noqa: F401 - the fixture

from core.errors import TenantIsolationError
from core.statements import run, tenant_bound, tenant_filter
from middle.party.models import Customer
from middle.risk.models import RiskVelocityEvent

C = Customer.__table__
V = RiskVelocityEvent.__table__


def test_a_statement_without_the_tenant_filter_is_refused_when_built() -> None:
    with pytest.raises(TenantIsolationError, match="party_customers without tenant_id = :tenant"):
        tenant_bound(select(C.c.customer_no).where(C.c.customer_no == bindparam("no")))
    with pytest.raises(TenantIsolationError, match="without tenant_id"):  # a tenant compared with a literal
        tenant_bound(select(C.c.customer_no).where(C.c.tenant_id == "bank_a"))
    with pytest.raises(TenantIsolationError, match="without tenant_id"):  # an update's target
        tenant_bound(update(C).values(name="x").where(C.c.customer_no == bindparam("no")))
    joined = select(C.c.customer_no, V.c.kind).join_from(C, V, V.c.customer_no == C.c.customer_no)
    with pytest.raises(TenantIsolationError, match=V.name):  # each tenant table of a join is filtered
        tenant_bound(joined.where(tenant_filter(C)))
    with pytest.raises(TenantIsolationError, match="without tenant_id"):  # every part of a UNION
        tenant_bound(union_all(select(C.c.customer_no).where(tenant_filter(C)), select(C.c.customer_no)))
    tenant_bound(joined.where(tenant_filter(C), tenant_filter(V)))
    other = C.alias("other")
    tenant_bound(select(other.c.customer_no).where(tenant_filter(other)))


@BOTH
def test_run_binds_the_units_tenant_and_never_the_callers(two_banks) -> None:  # noqa: F811
    app, numbers = two_banks
    by_number = tenant_bound(select(C.c.name).where(tenant_filter(C), C.c.customer_no == bindparam("no")))
    count = tenant_bound(select(func.count()).select_from(C).where(tenant_filter(C)))
    with app.tenant("bank_a").unit_of_work() as uow:
        assert run(uow, count).scalar() == 1
        assert run(uow, by_number, {"no": numbers["bank_a"]}).scalar() == "Customer bank_a"
        assert run(uow, by_number, {"no": numbers["bank_b"]}).first() is None
        with pytest.raises(TenantIsolationError, match="comes from the unit of work"):
            run(uow, by_number, {"no": numbers["bank_b"], "tenant": "bank_b"})
        with pytest.raises(TenantIsolationError, match=r"must be built with core\.statements\.tenant_bound"):
            run(uow, select(C.c.name))
        rename = tenant_bound(update(C).values(name="renamed").where(tenant_filter(C)))
        assert run(uow, rename).rowcount == 1
    with app.system_unit_of_work() as session:
        assert dict(session.execute(select(C.c.tenant_id, C.c.name)).all()) == {
            "bank_a": "renamed", "bank_b": "Customer bank_b"}


@BOTH
def test_inserts_are_stamped_with_the_units_tenant(two_banks) -> None:  # noqa: F811
    app, _ = two_banks
    insert = tenant_bound(V.insert())
    row = {"kind": "purchase", "customer_no": "cus_x", "device_id": None, "merchant_id": None, "amount_minor": 100,
           "outcome": "approve", "decision_no": "dec_1", "occurred_at": app.clock.now()}
    with app.tenant("bank_a").unit_of_work() as uow:
        run(uow, insert, row)
        run(uow, insert, [{**row, "decision_no": "dec_2"}, {**row, "decision_no": "dec_3", "tenant_id": "bank_a"}])
    with pytest.raises(TenantIsolationError, match="tenant 'bank_b' in a unit of work of tenant 'bank_a'"):
        with app.tenant("bank_a").unit_of_work() as uow:
            run(uow, insert, {**row, "decision_no": "dec_4", "tenant_id": "bank_b"})
    with app.system_unit_of_work() as session:
        assert sorted(session.execute(select(V.c.tenant_id, V.c.decision_no)).all()) == [
            ("bank_a", "dec_1"), ("bank_a", "dec_2"), ("bank_a", "dec_3")]
