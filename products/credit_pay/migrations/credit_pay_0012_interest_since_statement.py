"""credit pay: the interest accrued since an account's last statement (interest on interest)

Revision ID: credit_pay_0012
Revises: credit_pay_0011
Create Date: 2026-12-07 23:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "credit_pay_0012"
down_revision = "credit_pay_0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing cycles start at 0 (all interest owed counts as billed until their next statement),
    # then the column keeps no default (the application writes it).
    with op.batch_alter_table("credit_pay_cycles", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("interest_since_statement_minor", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("credit_pay_cycles", schema=None) as batch_op:
        batch_op.alter_column("interest_since_statement_minor", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("credit_pay_cycles", schema=None) as batch_op:
        batch_op.drop_column("interest_since_statement_minor")
