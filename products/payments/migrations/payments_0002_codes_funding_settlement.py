"""payments: payment codes, funding sources, merchant webhooks, daily settlements

Revision ID: payments_0002
Revises: payments_0001
Create Date: 2026-11-25 11:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.db

revision = "payments_0002"
down_revision = "payments_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payments_merchants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("payout_account", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("webhook_url", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("webhook_secret_encrypted", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("webhook_events", sa.JSON(), nullable=True))

    with op.batch_alter_table("payments_payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("funding_source", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("funding_ref", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("customer_no", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("code_ref", sa.String(length=40), nullable=True))

    op.create_table(
        "payments_codes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("code_ref", sa.String(length=40), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("customer_no", sa.String(length=32), nullable=False),
        sa.Column("partner_id", sa.String(length=64), nullable=True),
        sa.Column("funding_source", sa.String(length=32), nullable=False),
        sa.Column("payer_account", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("payment_no", sa.String(length=40), nullable=True),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_codes")),
        sa.UniqueConstraint("tenant_id", "code_hash", name=op.f("uq_payments_codes_tenant_id_code_hash")),
        sa.UniqueConstraint("tenant_id", "code_ref", name=op.f("uq_payments_codes_tenant_id_code_ref")),
        sa.UniqueConstraint("tenant_id", "request_id", name=op.f("uq_payments_codes_tenant_id_request_id")),
    )
    with op.batch_alter_table("payments_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payments_codes_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "payments_settlements",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payment_count", sa.Integer(), nullable=False),
        sa.Column("gross_minor", sa.BigInteger(), nullable=False),
        sa.Column("refund_count", sa.Integer(), nullable=False),
        sa.Column("refunds_minor", sa.BigInteger(), nullable=False),
        sa.Column("fees_minor", sa.BigInteger(), nullable=False),
        sa.Column("net_minor", sa.BigInteger(), nullable=False),
        sa.Column("payout_account", sa.String(length=64), nullable=False),
        sa.Column("entry_id", sa.String(length=120), nullable=True),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_settlements")),
        sa.UniqueConstraint("tenant_id", "merchant_id", "business_date",
                            name=op.f("uq_payments_settlements_tenant_id_merchant_id_business_date")),
    )
    with op.batch_alter_table("payments_settlements", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payments_settlements_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("payments_settlements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payments_settlements_tenant_id"))
    op.drop_table("payments_settlements")
    with op.batch_alter_table("payments_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payments_codes_tenant_id"))
    op.drop_table("payments_codes")
    with op.batch_alter_table("payments_payments", schema=None) as batch_op:
        batch_op.drop_column("code_ref")
        batch_op.drop_column("customer_no")
        batch_op.drop_column("funding_ref")
        batch_op.drop_column("funding_source")
    with op.batch_alter_table("payments_merchants", schema=None) as batch_op:
        batch_op.drop_column("webhook_events")
        batch_op.drop_column("webhook_secret_encrypted")
        batch_op.drop_column("webhook_url")
        batch_op.drop_column("payout_account")
