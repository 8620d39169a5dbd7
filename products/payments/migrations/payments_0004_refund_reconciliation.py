"""payments reconciliation of refunds: an exception names the refund

Revision ID: payments_0004
Revises: payments_0003
Create Date: 2026-12-07 17:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "payments_0004"
down_revision = "payments_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payments_recon_exceptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refund_no", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payments_recon_exceptions", schema=None) as batch_op:
        batch_op.drop_column("refund_no")
