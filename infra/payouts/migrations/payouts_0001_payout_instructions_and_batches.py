"""payout instructions and batches

Revision ID: payouts_0001
Revises:
Create Date: 2026-12-07 20:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.db

revision = "payouts_0001"
down_revision = None
branch_labels = ("payouts",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payout_instructions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("instruction_id", sa.String(length=120), nullable=False),
        sa.Column("payout_no", sa.String(length=35), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("debit_account", sa.String(length=64), nullable=False),
        sa.Column("creditor_name", sa.String(length=140), nullable=False),
        sa.Column("creditor_account", sa.String(length=34), nullable=False),
        sa.Column("creditor_agent", sa.String(length=35), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("remittance_info", sa.String(length=140), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("batch_no", sa.String(length=35), nullable=True),
        sa.Column("reason", sa.String(length=35), nullable=True),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payout_instructions")),
        sa.UniqueConstraint("tenant_id", "instruction_id", name=op.f("uq_payout_instructions_tenant_id_instruction_id")),
        sa.UniqueConstraint("tenant_id", "payout_no", name=op.f("uq_payout_instructions_tenant_id_payout_no")),
    )
    with op.batch_alter_table("payout_instructions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payout_instructions_batch_no"), ["batch_no"], unique=False)
        batch_op.create_index(batch_op.f("ix_payout_instructions_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_payout_instructions_tenant_id"), ["tenant_id"], unique=False)
    op.create_table(
        "payout_batches",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("batch_no", sa.String(length=35), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("entry_id", sa.String(length=120), nullable=False),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payout_batches")),
        sa.UniqueConstraint("tenant_id", "batch_no", name=op.f("uq_payout_batches_tenant_id_batch_no")),
    )
    with op.batch_alter_table("payout_batches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payout_batches_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:
    op.drop_table("payout_batches")
    op.drop_table("payout_instructions")
