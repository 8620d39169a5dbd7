"""credit pay merchant-subsidised installment plans

Revision ID: credit_pay_0004
Revises: credit_pay_0003
Create Date: 2026-12-07 17:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "credit_pay_0004"
down_revision = "credit_pay_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("credit_pay_installment_plans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subsidised_by", sa.String(length=64), nullable=True))
        # Plans converted before this revision had no subsidy: 0, then the column keeps no default
        # (the application always writes it).
        batch_op.add_column(
            sa.Column("merchant_subsidy_minor", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("credit_pay_installment_plans", schema=None) as batch_op:
        batch_op.alter_column("merchant_subsidy_minor", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("credit_pay_installment_plans", schema=None) as batch_op:
        batch_op.drop_column("merchant_subsidy_minor")
        batch_op.drop_column("subsidised_by")
