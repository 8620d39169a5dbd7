"""credit pay repayments found by partner and business date (a remittance reads a partner's day)

Revision ID: credit_pay_0008
Revises: credit_pay_0007
Create Date: 2026-12-07 20:10:00
"""

from __future__ import annotations

from alembic import op

revision = "credit_pay_0008"
down_revision = "credit_pay_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("credit_pay_repayments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_credit_pay_repayments_partner_day",
            ["tenant_id", "partner_id", "currency", "business_date"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("credit_pay_repayments", schema=None) as batch_op:
        batch_op.drop_index("ix_credit_pay_repayments_partner_day")
