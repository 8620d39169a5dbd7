"""credit pay applications found by their decision (a review case completes them)

Revision ID: credit_pay_0005
Revises: credit_pay_0004
Create Date: 2026-12-07 18:00:00
"""

from __future__ import annotations

from alembic import op

revision = "credit_pay_0005"
down_revision = "credit_pay_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("credit_pay_applications", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_credit_pay_applications_decision_no"), ["decision_no"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("credit_pay_applications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credit_pay_applications_decision_no"))
