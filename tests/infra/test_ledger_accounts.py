"""Accounts: opening (idempotent on code), validation, balance rows, and tenant isolation."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.db import make_session_factory, system_session
from infra.ledger import (
    AccountExistsWithDifferentAttributes,
    AccountType,
    BalanceConstraint,
    EntryDraft,
    InvalidAccount,
    Ledger,
    LedgerBalance,
    LedgerNeedsTenant,
    OwnerType,
    Posting,
    UnknownAccount,
    UnknownEntry,
)


def test_open_account_returns_the_account(ledger_db):
    with ledger_db.ledger() as ledger:
        account = ledger.open_account(
            "cust:42", "cny", "liability", "customer", "42", "debits_must_not_exceed_credits"
        )
    assert account.code == "cust:42"
    assert account.currency == "CNY"
    assert account.type is AccountType.LIABILITY
    assert account.owner_type is OwnerType.CUSTOMER
    assert account.owner_id == "42"
    assert account.constraint is BalanceConstraint.DEBITS_MUST_NOT_EXCEED_CREDITS
    assert account.created_at == ledger_db.clock.now()
    with ledger_db.ledger() as ledger:
        assert ledger.get_account("cust:42") == account
        assert [a.code for a in ledger.accounts()] == ["cust:42"]


def test_open_account_is_idempotent_on_code(ledger_db):
    with ledger_db.ledger() as ledger:
        first = ledger.open_account("bank:settlement", "CNY", "asset")
    ledger_db.clock.advance(seconds=5)
    with ledger_db.ledger() as ledger:
        again = ledger.open_account("bank:settlement", "CNY", AccountType.ASSET, OwnerType.BANK, "")
    assert again == first  # same created_at: the existing account, not a new one
    assert ledger_db.count("ledger_accounts") == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"currency": "USD"}, "currency"),
        ({"type": "liability"}, "type"),
        ({"owner_type": "customer"}, "owner_type"),
        ({"owner_id": "99"}, "owner_id"),
        ({"constraint": "debits_must_not_exceed_credits"}, "constraint"),
    ],
)
def test_open_account_with_other_attributes_names_the_field(ledger_db, change, field):
    attrs = {"currency": "CNY", "type": "asset", "owner_type": "bank", "owner_id": "", "constraint": "none"}
    with ledger_db.ledger() as ledger:
        ledger.open_account("bank:settlement", **attrs)
        with pytest.raises(AccountExistsWithDifferentAttributes) as info:
            ledger.open_account("bank:settlement", **{**attrs, **change})
    assert info.value.field == field
    assert info.value.code == "account_exists_with_different_attributes"
    assert f"bank:settlement exists with different {field}" in str(info.value)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("x", "ZZZ", "asset"), "unknown ISO 4217 currency"),
        (("x", "XAU", "asset"), "no minor unit"),
        (("x", "CNY", "revenue"), "type must be one of asset, liability, equity, income, expense"),
        (("x", "CNY", "asset", "alien"), "owner_type must be one of"),
        (("x", "CNY", "asset", "bank", "", "no_overdraft"), "constraint must be one of"),
        (("", "CNY", "asset"), "account code"),
    ],
)
def test_open_account_rejects_malformed_attributes(ledger_db, args, needle):
    with ledger_db.ledger() as ledger, pytest.raises(InvalidAccount, match=needle):
        ledger.open_account(*args)


def test_only_constrained_accounts_have_a_balance_row(chart):
    with chart.session() as session:
        rows = session.scalars(select(LedgerBalance)).all()
        ledger = Ledger(session, chart.clock)
        constrained = {a.code for a in ledger.accounts() if a.constraint is not BalanceConstraint.NONE}
        assert {ledger._account_by_id(r.account_id).code for r in rows} == constrained
        assert constrained == {"cust:42", "cust:43", "loan:42", "cust:42:usd"}


def test_unknown_account(chart):
    with chart.ledger() as ledger:
        with pytest.raises(UnknownAccount, match="unknown account 'cust:999'") as info:
            ledger.get_account("cust:999")
        assert info.value.code == "unknown_account"
        with pytest.raises(UnknownAccount, match="cust:999"):
            ledger.balance("cust:999")
        with pytest.raises(UnknownAccount, match="cust:999"):
            ledger.post(
                EntryDraft("e1", [Posting("bank:settlement", 5, "debit"), Posting("cust:999", 5, "credit")])
            )
    assert chart.count("ledger_entries") == 0


def test_ledger_needs_a_tenant_session(ledger_db):
    with system_session(make_session_factory(ledger_db.engine)) as session:
        with pytest.raises(LedgerNeedsTenant) as info:
            Ledger(session, ledger_db.clock)
    assert info.value.code == "ledger_needs_tenant_session"


def test_tenants_cannot_see_or_post_to_each_others_accounts(chart):
    with chart.ledger("bank_a") as a:
        a.post(EntryDraft("topup-1", [Posting.debit("bank:settlement", 500), Posting.credit("cust:42", 500)]))
        a.post(
            EntryDraft(
                "hold-1", [Posting.debit("cust:42", 100), Posting.credit("merchant:7", 100)], pending=True
            )
        )

    with chart.ledger("bank_b") as b:
        assert b.accounts() == []
        with pytest.raises(UnknownAccount):
            b.get_account("cust:42")
        with pytest.raises(UnknownAccount):
            b.post(
                EntryDraft("steal", [Posting.debit("cust:42", 500), Posting.credit("bank:settlement", 500)])
            )
        with pytest.raises(UnknownEntry):
            b.get_entry("topup-1")
        with pytest.raises(UnknownEntry):
            b.post_pending("hold-1", "cap-1")
        with pytest.raises(UnknownEntry):
            b.reverse("topup-1", "rev-1", "not mine")
        assert b.expire_pending() == []
        tb = b.trial_balance("CNY")
        assert (tb.debits_minor, tb.credits_minor) == (0, 0)

        # Bank B has its own namespace: the same codes and entry ids are independent.
        b.open_account("bank:settlement", "CNY", "asset")
        b.open_account("cust:42", "CNY", "liability", "customer", "42", "debits_must_not_exceed_credits")
        result = b.post(
            EntryDraft("topup-1", [Posting.debit("bank:settlement", 7), Posting.credit("cust:42", 7)])
        )
        assert result.created
        assert b.balance("cust:42").credits_posted_minor == 7
        assert b.verify() == []

    with chart.ledger("bank_a") as a:
        assert a.balance("cust:42").credits_posted_minor == 500
        assert a.balance("cust:42").debits_pending_minor == 100
        assert a.get_entry("topup-1").postings[0].amount_minor == 500
        assert a.trial_balance("CNY").debits_minor == 500
