"""The activation decision's hot path (see "Benchmark" in docs/risk.md): the party row is read
once, the decision's rows go out in one flush, and the Core statements the path uses instead of
the ORM session keep every tenant's rows apart themselves. A regression shows up here, not only
in the benchmark."""

from __future__ import annotations

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from core.db import tenant_session
from core.errors import NotFound
from core.tenancy import UnitOfWork
from middle.credit.models import CreditProfileRecord
from middle.risk.models import RiskDecision, RiskReviewAction, RiskReviewCase, RiskVelocityEvent
from middle.risk.service import ActivationRequest
from tests.risk.support import BOTH, GOOD_CONSENT, activate, register, risk_tenant, rule, with_risk


class StatementLog:
    """The SQL statements the app's engine sends while active, and the sessions' flushes."""

    def __init__(self, app) -> None:
        self.engine = app.engine
        self.statements: list[str] = []
        self.flushes = 0

    def _record(self, _conn, _cursor, statement, _params, _context, _many) -> None:
        self.statements.append(" ".join(statement.split()))

    def _flushed(self, _session, _context) -> None:
        self.flushes += 1

    def __enter__(self) -> StatementLog:
        event.listen(self.engine, "before_cursor_execute", self._record)
        event.listen(Session, "after_flush", self._flushed)
        return self

    def __exit__(self, *_exc) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)
        event.remove(Session, "after_flush", self._flushed)

    def reading(self, table: str) -> int:
        return sum(1 for s in self.statements if s.startswith("SELECT") and f"FROM {table}" in s)

    def writing(self, table: str) -> int:
        return sum(1 for s in self.statements if s.startswith(("INSERT INTO " + table, "UPDATE " + table)))


def two_banks(make_sceneos):
    review_low_income = {"rules": [rule("low_income", 'consented.income_band == "lt_3k"', "review")]}
    return make_sceneos(
        {
            "tenants": {
                "bank_a": risk_tenant(risk=review_low_income),
                "bank_b": risk_tenant(risk=review_low_income),
            }
        }
    )


@BOTH
def test_an_activation_reads_the_party_row_once_and_writes_in_one_flush(make_sceneos) -> None:
    app = two_banks(make_sceneos)
    customer = register(app, "bank_a", sequence=1)
    activate(app, customer, "bank_a")  # the first decision of a process prepares its statements
    tenant = app.tenant("bank_a")
    request = ActivationRequest(
        customer_no=customer, device_id="d1", consented={**GOOD_CONSENT, "income_band": "lt_3k"}
    )
    # The decision's own unit of work, committed; the outbox's delivery afterwards is its own.
    with StatementLog(app) as log, tenant_session(tenant.session_factory, tenant.id) as session:
        risk = tenant.module("risk").container.service(uow=UnitOfWork(session, tenant, tenant.bus))
        decision = risk.decide_activation(request)
    assert decision.outcome == "review" and decision.review_case_no is not None
    # The applicant step reads the customer, and the credit module's profile reuses that row.
    assert log.reading("party_customers") == 1
    # The latest consented data is one upsert, not a read and then an insert or an update.
    assert log.reading("credit_profiles") == 0 and log.writing("credit_profiles") == 1
    assert log.writing("risk_decisions") == 1 and log.writing("risk_velocity_events") == 1
    assert log.writing("risk_review_cases") == 1 and log.writing("risk_review_actions") == 1
    # One flush (the commit's) writes the review case, its first action and the outbox's events.
    assert log.flushes == 1
    assert not any(s.startswith("SAVEPOINT") for s in log.statements)
    # BEGIN (SQLite), three reads, the upsert, the record, the attempt; the flush: case, action, events.
    assert len(log.statements) <= 10, log.statements
    case = with_risk(app, lambda risk: risk.reviews.get(decision.review_case_no), "bank_a")
    assert [action.action for action in case.actions] == ["opened"]


@BOTH
def test_the_decisions_core_statements_keep_tenants_apart(make_sceneos) -> None:
    app = two_banks(make_sceneos)
    alice = register(app, "bank_a", sequence=1)
    bob = register(app, "bank_b", sequence=1)  # the same person at the other bank
    blacklist = with_risk(
        app,
        lambda risk: risk.blacklist.add("device", "shared", reason="fraud ring", source="operator:e1"),
        "bank_a",
    )
    assert blacklist[1]
    for _ in range(3):
        assert activate(app, alice, "bank_a", device_id="shared").reasons == ["blacklisted_device"]
    # Bank B reads neither Bank A's blacklist nor its velocity events.
    at_b = activate(app, bob, "bank_b", device_id="shared")
    assert at_b.outcome == "approve"
    at_b_record = with_risk(app, lambda risk: risk.get_decision(at_b.decision_no), "bank_b")
    assert at_b_record.facts["velocity"]["device"]["h24"]["count"] == 0
    assert at_b_record.facts["blacklist"]["any"] is False
    # A customer number of Bank A is no customer of Bank B.
    with pytest.raises(NotFound):
        activate(app, alice, "bank_b")
    # Every row the Core statements wrote carries the deciding bank.
    with app.system_unit_of_work() as session:
        for model, owners in (
            (RiskDecision, {alice: "bank_a", bob: "bank_b"}),
            (RiskVelocityEvent, {alice: "bank_a", bob: "bank_b"}),
            (CreditProfileRecord, {bob: "bank_b"}),
        ):
            rows = session.execute(select(model.customer_no, model.tenant_id)).all()
            assert rows and all(owners[customer] == tenant for customer, tenant in rows), model.__tablename__
        assert session.scalars(select(RiskReviewCase.tenant_id)).all() == []
        assert session.scalars(select(RiskReviewAction.tenant_id)).all() == []
    assert with_risk(app, lambda risk: risk.decisions_for_customer(alice), "bank_b") == []
