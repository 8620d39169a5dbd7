"""Ledger: accounts, balance rows of constrained accounts, entries, postings, pending status.

No table has an index of its own on ``tenant_id``: the keys lead with it (see infra/ledger/models.py).

Revision ID: ledger_0001
Revises:
Create Date: 2026-01-01 00:00:00+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ledger_0001"
down_revision = None
branch_labels = ("ledger",)
depends_on = None

# Surrogate keys: BIGINT, except on SQLite where only INTEGER PRIMARY KEY auto-increments.
_big_key = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column("id", _big_key, nullable=False),
        sa.Column("code", sa.String(length=128), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("owner_type", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.String(length=128), nullable=False),
        sa.Column("balance_constraint", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_accounts")),
        sa.UniqueConstraint("tenant_id", "code", name=op.f("uq_ledger_accounts_tenant_id_code")),
        sa.CheckConstraint(
            "type IN ('asset', 'liability', 'equity', 'income', 'expense')",
            name=op.f("ck_ledger_accounts_type"),
        ),
        sa.CheckConstraint(
            "owner_type IN ('customer', 'merchant', 'partner', 'bank', 'other')",
            name=op.f("ck_ledger_accounts_owner_type"),
        ),
        sa.CheckConstraint(
            "balance_constraint IN ('none', 'debits_must_not_exceed_credits', "
            "'credits_must_not_exceed_debits')",
            name=op.f("ck_ledger_accounts_balance_constraint"),
        ),
    )

    op.create_table(
        "ledger_balances",
        sa.Column("account_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("debits_posted_minor", sa.BigInteger(), nullable=False),
        sa.Column("credits_posted_minor", sa.BigInteger(), nullable=False),
        sa.Column("debits_pending_minor", sa.BigInteger(), nullable=False),
        sa.Column("credits_pending_minor", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_ledger_balances")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_ledger_balances_account_id_ledger_accounts"),
        ),
        sa.CheckConstraint("debits_posted_minor >= 0", name=op.f("ck_ledger_balances_debits_posted_minor")),
        sa.CheckConstraint("credits_posted_minor >= 0", name=op.f("ck_ledger_balances_credits_posted_minor")),
        sa.CheckConstraint("debits_pending_minor >= 0", name=op.f("ck_ledger_balances_debits_pending_minor")),
        sa.CheckConstraint(
            "credits_pending_minor >= 0", name=op.f("ck_ledger_balances_credits_pending_minor")
        ),
    )

    op.create_table(
        "ledger_entries",
        sa.Column("id", _big_key, nullable=False),
        sa.Column("entry_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=False),
        sa.Column("entry_metadata", sa.JSON(), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("pending_entry_pk", sa.BigInteger(), nullable=True),
        sa.Column("reverses_entry_pk", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
        sa.UniqueConstraint("tenant_id", "entry_id", name=op.f("uq_ledger_entries_tenant_id_entry_id")),
        sa.ForeignKeyConstraint(
            ["pending_entry_pk"],
            ["ledger_entries.id"],
            name=op.f("fk_ledger_entries_pending_entry_pk_ledger_entries"),
        ),
        sa.ForeignKeyConstraint(
            ["reverses_entry_pk"],
            ["ledger_entries.id"],
            name=op.f("fk_ledger_entries_reverses_entry_pk_ledger_entries"),
        ),
        sa.CheckConstraint(
            "kind IN ('standard', 'pending', 'post_pending', 'void_pending', 'reversal')",
            name=op.f("ck_ledger_entries_kind"),
        ),
    )

    # Partial: ordinary entries (NULL here) need no index entry; NULLs never conflict anyway.
    for column in ("pending_entry_pk", "reverses_entry_pk"):
        op.create_index(
            f"uq_ledger_entries_{column}",
            "ledger_entries",
            [column],
            unique=True,
            sqlite_where=sa.text(f"{column} IS NOT NULL"),
            postgresql_where=sa.text(f"{column} IS NOT NULL"),
        )

    op.create_table(
        "ledger_postings",
        sa.Column("id", _big_key, nullable=False),
        sa.Column("entry_pk", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("side", sa.String(length=6), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_postings")),
        sa.ForeignKeyConstraint(
            ["entry_pk"],
            ["ledger_entries.id"],
            name=op.f("fk_ledger_postings_entry_pk_ledger_entries"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_ledger_postings_account_id_ledger_accounts"),
        ),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_ledger_postings_amount_minor_positive")),
        sa.CheckConstraint("side IN ('debit', 'credit')", name=op.f("ck_ledger_postings_side")),
    )
    op.create_index(
        op.f("ix_ledger_postings_account_id"), "ledger_postings", ["account_id", "created_at"], unique=False
    )
    op.create_index(op.f("ix_ledger_postings_entry_pk"), "ledger_postings", ["entry_pk"], unique=False)

    op.create_table(
        "ledger_pendings",
        sa.Column("entry_pk", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution_entry_pk", sa.BigInteger(), nullable=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("entry_pk", name=op.f("pk_ledger_pendings")),
        sa.ForeignKeyConstraint(
            ["entry_pk"],
            ["ledger_entries.id"],
            name=op.f("fk_ledger_pendings_entry_pk_ledger_entries"),
        ),
        sa.ForeignKeyConstraint(
            ["resolution_entry_pk"],
            ["ledger_entries.id"],
            name=op.f("fk_ledger_pendings_resolution_entry_pk_ledger_entries"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'posted', 'voided', 'expired')", name=op.f("ck_ledger_pendings_status")
        ),
    )
    op.create_index(
        op.f("ix_ledger_pendings_status"), "ledger_pendings", ["status", "expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_ledger_pendings_status"), table_name="ledger_pendings")
    op.drop_table("ledger_pendings")
    op.drop_index(op.f("ix_ledger_postings_entry_pk"), table_name="ledger_postings")
    op.drop_index(op.f("ix_ledger_postings_account_id"), table_name="ledger_postings")
    op.drop_table("ledger_postings")
    op.drop_index("uq_ledger_entries_reverses_entry_pk", table_name="ledger_entries")
    op.drop_index("uq_ledger_entries_pending_entry_pk", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_table("ledger_balances")
    op.drop_table("ledger_accounts")
