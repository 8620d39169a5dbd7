"""credit pay: a merchant's subsidy of an interest-free plan is earned term by term

Revision ID: credit_pay_0011
Revises: credit_pay_0010
Create Date: 2026-12-07 21:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "credit_pay_0011"
down_revision = "credit_pay_0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plans converted before this revision booked their subsidy as income at once: their terms
    # have nothing left to earn (0), then the column keeps no default (the application writes it).
    with op.batch_alter_table("credit_pay_installments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subsidy_minor", sa.BigInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("credit_pay_installments", schema=None) as batch_op:
        batch_op.alter_column("subsidy_minor", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("credit_pay_installments", schema=None) as batch_op:
        batch_op.drop_column("subsidy_minor")
