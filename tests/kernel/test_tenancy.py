"""Tenant isolation is enforced by the session itself: a query cannot forget it."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import delete, func, select, update

from core.errors import TenantIsolationError
from core.testing.factories import mobile, resident_id
from core.testing.harness import tenant_config
from middle.party.models import Customer
from middle.party.service import CustomerDraft

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def two_banks(make_sceneos):
    app = make_sceneos({"tenants": {"bank_a": tenant_config("A"), "bank_b": tenant_config("B")}})
    numbers = {}
    for index, tenant_id in enumerate(("bank_a", "bank_b")):
        runtime = app.tenant(tenant_id).module("party")
        with runtime.tenant.unit_of_work() as uow:
            reg = runtime.container.service(uow=uow).register(
                CustomerDraft(name=f"Customer {tenant_id}", id_number=resident_id(date(1990, 1, 1 + index)),
                              phone=mobile(index))
            )
        numbers[tenant_id] = reg.customer.customer_no
    return app, numbers


@BOTH
def test_queries_see_only_their_tenant(two_banks) -> None:
    app, numbers = two_banks
    with app.tenant("bank_a").unit_of_work() as uow:
        rows = uow.session.scalars(select(Customer)).all()
        assert [row.customer_no for row in rows] == [numbers["bank_a"]]
        # Even a query that asks for the other bank's row by its number finds nothing.
        assert uow.session.scalars(select(Customer).where(Customer.customer_no == numbers["bank_b"])).first() is None
        assert uow.session.scalar(select(func.count()).select_from(Customer)) == 1
        other_id = None
    with app.system_unit_of_work() as session:
        other_id = session.scalar(select(Customer.id).where(Customer.tenant_id == "bank_b"))
        assert session.scalar(select(func.count()).select_from(Customer)) == 2
    with app.tenant("bank_a").unit_of_work() as uow:
        assert uow.session.get(Customer, other_id) is None
        # The filter's tenant is a parameter of each execution; a caller's value for it is ignored.
        assert uow.session.scalars(select(Customer), {"sceneos_session_tenant": "bank_b"}).all() == [
            uow.session.scalars(select(Customer)).one()]
        assert uow.session.scalars(select(Customer).where(Customer.customer_no == numbers["bank_b"]),
                                   {"sceneos_session_tenant": "bank_b"}).first() is None


@BOTH
def test_bulk_updates_and_deletes_touch_only_their_tenant(two_banks) -> None:
    app, numbers = two_banks
    with app.tenant("bank_a").unit_of_work() as uow:
        uow.session.execute(update(Customer).values(name="renamed"))
        uow.session.execute(delete(Customer).where(Customer.customer_no == numbers["bank_b"]))
    with app.system_unit_of_work() as session:
        names = dict(session.execute(select(Customer.tenant_id, Customer.name)).all())
    assert names == {"bank_a": "renamed", "bank_b": "Customer bank_b"}


@BOTH
def test_writing_another_tenants_row_is_refused_and_changes_nothing(two_banks) -> None:
    app, _ = two_banks
    with pytest.raises(TenantIsolationError, match="tenant 'bank_b' in a session of tenant 'bank_a'"):
        with app.tenant("bank_a").unit_of_work() as uow:
            uow.session.add(Customer(tenant_id="bank_b", customer_no="cus_forged", name="Forged",
                                     id_number=resident_id(date(1991, 1, 1)), birth_date=date(1991, 1, 1),
                                     gender="male", region_code="110105", phone_e164="+8613800000009",
                                     created_at=app.clock.now()))
    # Moving one's own row to another tenant is refused too.
    with pytest.raises(TenantIsolationError), app.tenant("bank_a").unit_of_work() as uow:
        row = uow.session.scalars(select(Customer)).one()
        row.tenant_id = "bank_b"
    with app.system_unit_of_work() as session:
        assert sorted(session.scalars(select(Customer.tenant_id))) == ["bank_a", "bank_b"]


def test_new_rows_are_stamped_with_the_sessions_tenant(make_sceneos) -> None:
    app = make_sceneos()
    with app.tenant("bank").unit_of_work() as uow:
        uow.session.add(Customer(customer_no="cus_x", name="X", id_number=resident_id(date(1992, 2, 2)),
                                 birth_date=date(1992, 2, 2), gender="male", region_code="110105",
                                 phone_e164="+8613800000001", created_at=app.clock.now()))
    with app.system_unit_of_work() as session:
        assert session.scalar(select(Customer.tenant_id)) == "bank"
