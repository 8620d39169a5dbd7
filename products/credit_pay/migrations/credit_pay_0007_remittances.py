"""credit pay partner remittances

Revision ID: credit_pay_0007
Revises: credit_pay_0006
Create Date: 2026-12-07 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.db

revision = "credit_pay_0007"
down_revision = "credit_pay_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credit_pay_remittances",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("remittance_id", sa.String(length=64), nullable=False),
        sa.Column("partner_id", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("collected_minor", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", sa.String(length=128), nullable=False),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_pay_remittances")),
        sa.UniqueConstraint(
            "tenant_id", "remittance_id", name=op.f("uq_credit_pay_remittances_tenant_id_remittance_id")
        ),
    )
    with op.batch_alter_table("credit_pay_remittances", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_credit_pay_remittances_partner_id"), ["partner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_credit_pay_remittances_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("credit_pay_remittances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credit_pay_remittances_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_credit_pay_remittances_partner_id"))
    op.drop_table("credit_pay_remittances")
