"""payments: a reconciled run's lines may be purged after the retention period

Revision ID: payments_0005
Revises: payments_0004
Create Date: 2026-12-07 21:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.db import UTCDateTime

revision = "payments_0005"
down_revision = "payments_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payments_recon_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lines_purged_at", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payments_recon_runs", schema=None) as batch_op:
        batch_op.drop_column("lines_purged_at")
