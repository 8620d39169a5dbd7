"""entry: the route template stored with an idempotent answer, sealed answers

Revision ID: entry_0002
Revises: entry_0001
Create Date: 2026-11-25 11:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "entry_0002"
down_revision = "entry_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("entry_idempotency_keys", sa.Column("route", sa.String(length=255), nullable=True))
    op.add_column("entry_idempotency_keys", sa.Column("response_sealed", sa.Boolean(), nullable=False,
                                                      server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("entry_idempotency_keys") as batch:
        batch.drop_column("route")
        batch.drop_column("response_sealed")
