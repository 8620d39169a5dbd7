"""credit pay remittances of the bank's own channel (no partner)

Revision ID: credit_pay_0010
Revises: credit_pay_0009
Create Date: 2026-12-07 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "credit_pay_0010"
down_revision = "credit_pay_0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("credit_pay_remittances", schema=None) as batch_op:
        batch_op.alter_column("partner_id", existing_type=sa.String(length=64), nullable=True)


def downgrade() -> None:
    # Refused by the database while the bank's channel has remittances (rows with no partner).
    with op.batch_alter_table("credit_pay_remittances", schema=None) as batch_op:
        batch_op.alter_column("partner_id", existing_type=sa.String(length=64), nullable=False)
