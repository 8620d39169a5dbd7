"""Ledger rollups: each account's posted sums up to its tenant's rollup mark, and the postings'
account index by id instead of time (a balance read sums only the postings after the mark).

On a large ``ledger_postings`` table, building the new index locks the table's writes while it
runs: create ``ix_ledger_postings_account_id_id`` by hand with ``CREATE INDEX CONCURRENTLY`` first
if that matters (docs/ledger.md, Rollups); this revision then only renames it.

Revision ID: ledger_0002
Revises: ledger_0001
Create Date: 2026-12-07 00:00:00+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ledger_0002"
down_revision = "ledger_0001"
branch_labels = None
depends_on = None

_BY_ID = "ix_ledger_postings_account_id_id"


def upgrade() -> None:
    op.create_table(
        "ledger_rollups",
        sa.Column("account_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("debits_posted_minor", sa.BigInteger(), nullable=False),
        sa.Column("credits_posted_minor", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_ledger_rollups")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["ledger_accounts.id"], name=op.f("fk_ledger_rollups_account_id_ledger_accounts")
        ),
        sa.CheckConstraint("debits_posted_minor >= 0", name=op.f("ck_ledger_rollups_debits_posted_minor")),
        sa.CheckConstraint("credits_posted_minor >= 0", name=op.f("ck_ledger_rollups_credits_posted_minor")),
    )
    op.create_table(
        "ledger_rollup_marks",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("through_posting_id", sa.BigInteger(), nullable=False),
        sa.Column("held_from_posting_id", sa.BigInteger(), nullable=False),
        sa.Column("rolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_ledger_rollup_marks")),
    )
    inspector = sa.inspect(op.get_bind())
    if _BY_ID not in {i["name"] for i in inspector.get_indexes("ledger_postings")}:
        op.create_index(_BY_ID, "ledger_postings", ["account_id", "id"], unique=False)
    op.drop_index(op.f("ix_ledger_postings_account_id"), table_name="ledger_postings")
    # The models name it like every single-purpose index: ix_<table>_<first column>.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER INDEX {_BY_ID} RENAME TO ix_ledger_postings_account_id")
    else:  # SQLite cannot rename an index
        op.drop_index(_BY_ID, table_name="ledger_postings")
        op.create_index(op.f("ix_ledger_postings_account_id"), "ledger_postings", ["account_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_ledger_postings_account_id"), table_name="ledger_postings")
    op.create_index(
        op.f("ix_ledger_postings_account_id"), "ledger_postings", ["account_id", "created_at"], unique=False
    )
    op.drop_table("ledger_rollup_marks")
    op.drop_table("ledger_rollups")
