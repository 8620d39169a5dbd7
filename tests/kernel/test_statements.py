"""Core statements on hot paths are tenant-bound by the kernel too (core/statements.py): a statement
that forgets the tenant is refused when it is built, and the tenant is never the caller's to give."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import bindparam, func, select, union_all, update
from test_tenancy import BOTH, two_banks  # noqa: F401 - the fixture

from core.errors import TenantIsolationError
from core.statements import _update_text as update_text
from core.statements import among, insert_rows, run, tenant_bound, tenant_filter, update_rows
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


def _events(app, numbers: range) -> list[dict]:
    return [{"kind": "purchase", "customer_no": f"cus_{n}", "device_id": None if n % 2 else f"dev_{n}",
             "merchant_id": None, "amount_minor": 10**12 + n, "outcome": "approve", "decision_no": f"dec_{n}",
             "occurred_at": app.clock.now() + timedelta(microseconds=n)} for n in numbers]


@BOTH
def test_batch_writes_round_trip_every_value_and_stamp_the_tenant(two_banks) -> None:  # noqa: F811
    app, _ = two_banks
    rows = _events(app, range(250))
    with app.tenant("bank_a").unit_of_work() as uow:
        assert insert_rows(uow, V, rows) == 250
        assert insert_rows(uow, V, []) == 0
    with app.tenant("bank_b").unit_of_work() as uow:
        insert_rows(uow, V, rows[:3])
    with app.tenant("bank_a").unit_of_work() as uow:
        stored = uow.session.scalars(select(RiskVelocityEvent).order_by(RiskVelocityEvent.decision_no)).all()
        assert sorted(({c: getattr(e, c) for c in rows[0]} for e in stored), key=lambda r: r["decision_no"]) == \
            sorted(rows, key=lambda r: r["decision_no"])
        assert stored[0].occurred_at.tzinfo is not None  # read back aware, as written through the ORM
        in_id_order = uow.session.scalars(select(RiskVelocityEvent.decision_no).order_by(RiskVelocityEvent.id))
        assert list(in_id_order) == [row["decision_no"] for row in rows]  # ids follow the rows' order
    with pytest.raises(TenantIsolationError, match="tenant 'bank_b' in a unit of work of tenant 'bank_a'"):
        with app.tenant("bank_a").unit_of_work() as uow:
            insert_rows(uow, V, [rows[0], {**rows[1], "tenant_id": "bank_b"}])
    with app.system_unit_of_work() as session:
        assert dict(session.execute(select(V.c.tenant_id, func.count()).group_by(V.c.tenant_id)).all()) == {
            "bank_a": 250, "bank_b": 3}


@BOTH
def test_batch_updates_change_the_units_tenants_rows_only(two_banks) -> None:  # noqa: F811
    app, _ = two_banks
    for bank in ("bank_a", "bank_b"):
        with app.tenant(bank).unit_of_work() as uow:
            insert_rows(uow, V, _events(app, range(5)))
    later = app.clock.now() + timedelta(days=1)
    changes = [{"decision_no": f"dec_{n}", "outcome": "decline", "device_id": None, "occurred_at": later}
               for n in (0, 2, 4, 9)]
    with app.tenant("bank_a").unit_of_work() as uow:
        assert update_rows(uow, V, changes, key="decision_no") == 3  # dec_9 is nobody's
        with pytest.raises(ValueError, match="must all have the same columns"):
            update_rows(uow, V, [changes[0], {"decision_no": "dec_1", "outcome": "x"}], key="decision_no")
        with pytest.raises(ValueError, match="has no column nonsense"):
            update_rows(uow, V, [{"decision_no": "dec_1", "nonsense": 1}], key="decision_no")
        with pytest.raises(TenantIsolationError, match="tenant_id is not a column to set"):
            update_rows(uow, V, [{"decision_no": "dec_1", "tenant_id": "bank_b"}], key="decision_no")
    with app.system_unit_of_work() as session:
        rows = session.execute(select(V.c.tenant_id, V.c.decision_no, V.c.outcome, V.c.device_id)
                               .order_by(V.c.tenant_id, V.c.decision_no)).all()
    assert [(t, d, o, dev) for t, d, o, dev in rows if t == "bank_a"] == [
        ("bank_a", "dec_0", "decline", None), ("bank_a", "dec_1", "approve", None),
        ("bank_a", "dec_2", "decline", None), ("bank_a", "dec_3", "approve", None),
        ("bank_a", "dec_4", "decline", None)]
    assert {o for t, _, o, _ in rows if t == "bank_b"} == {"approve"}


def test_a_batch_update_on_sqlite_reads_its_document_once_and_finds_each_row_by_key(two_banks) -> None:  # noqa: F811
    # With the tenant's index usable, SQLite scanned the tenant's rows and the whole document for
    # each of them: a thousand-row update of end of day took seconds instead of milliseconds.
    app, _ = two_banks
    statement = update_text(V, ("id", "outcome"), "id", "sqlite")
    with app.tenant("bank_a").unit_of_work() as uow:
        plan = [row[-1] for row in uow.session.connection().exec_driver_sql(
            "EXPLAIN QUERY PLAN " + str(statement).replace(":rows", "?").replace(":tenant", "?"), ("[]", "bank_a"))]
    assert plan[0].startswith("SCAN json_each"), plan
    assert any("PRIMARY KEY" in step for step in plan[1:]), plan


@BOTH
def test_among_selects_by_a_list_of_keys_bound_as_one_parameter(two_banks) -> None:  # noqa: F811
    app, _ = two_banks
    with app.tenant("bank_a").unit_of_work() as uow:
        insert_rows(uow, V, _events(app, range(3000)))
        dialect = uow.session.get_bind().dialect.name
        wanted = [f"dec_{n}" for n in range(0, 3000, 2)] + ["dec_nobody"]
        found = uow.session.scalars(select(RiskVelocityEvent.decision_no)
                                    .where(among(RiskVelocityEvent.decision_no, wanted, dialect))).all()
        assert sorted(found) == sorted(wanted[:-1])
        one = select(RiskVelocityEvent.amount_minor).where(among(RiskVelocityEvent.decision_no, ["dec_7"], dialect))
        assert uow.session.scalars(one).all() == [10**12 + 7]
        assert "dec_7" not in str(one.compile(uow.session.get_bind()))  # a parameter, not rendered values
        assert uow.session.scalars(select(RiskVelocityEvent.id)
                                   .where(among(RiskVelocityEvent.decision_no, [], dialect))).all() == []
        # Values PostgreSQL's array syntax would misread if they were not quoted and escaped alike,
        # and one (a newline) that only JSON escapes, which takes the list-adapting path.
        awkward = ['q"uote', "back\\slash", "{brace}", "com,ma", " spaced ", "NULL", "", "账户", "new\nline"]
        insert_rows(uow, V, [{**_events(app, range(1))[0], "decision_no": f"odd_{n}", "customer_no": value}
                             for n, value in enumerate(awkward)])
        for chosen in (awkward, awkward[:-1], [awkward[-1]], ["NULL", None]):
            found = uow.session.scalars(select(RiskVelocityEvent.customer_no)
                                        .where(among(RiskVelocityEvent.customer_no, chosen, dialect))).all()
            assert sorted(found) == sorted(value for value in chosen if value is not None), chosen


@BOTH
def test_batch_writes_carry_json_dates_and_booleans_through_their_column_types(two_banks) -> None:  # noqa: F811
    from datetime import date

    from products.credit_pay.models import CreditPayCycle, CreditPayPurchase

    app, _ = two_banks
    P, Y = CreditPayPurchase.__table__, CreditPayCycle.__table__
    now = app.clock.now()
    purchase = {"purchase_id": "p1", "account_no": "a1", "merchant_id": "m", "partner_id": None, "amount_minor": 5,
                "currency": "CNY", "status": "declined", "reasons": ["risk", {"rule": "r1"}], "decision_no": None,
                "refunded_minor": 0, "business_date": date(2026, 2, 28), "created_at": now, "expires_at": None,
                "resolved_at": None}
    cycle = {"account_no": "a1", "partner_id": None, "processed_through": date(2026, 2, 27), "revolving": True,
             "interest_carry_micros": 10**15, "penalty_carry_micros": 0, "past_due_minor": 0, "overdue_since": None,
             "days_past_due": 0, "bucket": "M0", "last_statement_date": None, "charged_off_on": None,
             "interest_since_statement_minor": 0}
    with app.tenant("bank_a").unit_of_work() as uow:
        insert_rows(uow, P, [purchase, {**purchase, "purchase_id": "p2", "reasons": []}])
        insert_rows(uow, Y, [cycle])
    with app.tenant("bank_a").unit_of_work() as uow:
        ids = dict(uow.session.execute(select(CreditPayPurchase.purchase_id, CreditPayPurchase.id)).all())
        update_rows(uow, P, [{"id": ids["p2"], "reasons": {"why": [1, None]}, "business_date": date(2026, 3, 1)}])
        (cycle_id,) = uow.session.scalars(select(CreditPayCycle.id)).all()
        update_rows(uow, Y, [{"id": cycle_id, "revolving": False, "overdue_since": date(2026, 3, 2)}])
    with app.tenant("bank_a").unit_of_work() as uow:
        rows = {p.purchase_id: p for p in uow.session.scalars(select(CreditPayPurchase))}
        assert rows["p1"].reasons == ["risk", {"rule": "r1"}] and rows["p1"].business_date == date(2026, 2, 28)
        assert rows["p2"].reasons == {"why": [1, None]} and rows["p2"].business_date == date(2026, 3, 1)
        assert rows["p1"].created_at == now
        stored = uow.session.scalars(select(CreditPayCycle)).one()
        assert (stored.revolving, stored.overdue_since, stored.interest_carry_micros) == (
            False, date(2026, 3, 2), 10**15)
