"""credit pay installment plans reduced by partial refunds of their purchase

Revision ID: credit_pay_0009
Revises: credit_pay_0008
Create Date: 2026-12-07 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "credit_pay_0009"
down_revision = "credit_pay_0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("credit_pay_installment_plans", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("refunded_principal_minor", sa.BigInteger(), nullable=False, server_default="0")
        )
    # Plans closed by a full refund before this revision: what they had left unbilled then.
    op.execute(
        """
        UPDATE credit_pay_installment_plans
        SET refunded_principal_minor = COALESCE((
            SELECT SUM(i.principal_minor) FROM credit_pay_installments AS i
            WHERE i.tenant_id = credit_pay_installment_plans.tenant_id
              AND i.plan_no = credit_pay_installment_plans.plan_no AND i.status = 'refunded'), 0)
        WHERE status = 'refunded'
        """
    )
    with op.batch_alter_table("credit_pay_installment_plans", schema=None) as batch_op:
        batch_op.alter_column("refunded_principal_minor", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("credit_pay_installment_plans", schema=None) as batch_op:
        batch_op.drop_column("refunded_principal_minor")
