"""payments: reconciliation against the channel's statement files (runs, lines, exceptions, audit)

Revision ID: payments_0003
Revises: payments_0002
Create Date: 2026-11-25 11:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.db

revision = "payments_0003"
down_revision = "payments_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payments_recon_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_no", sa.String(length=40), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("file_digest", sa.String(length=64), nullable=False),
        sa.Column("file_name", sa.String(length=200), nullable=False),
        sa.Column("file_format", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("received_by", sa.String(length=64), nullable=False),
        sa.Column("received_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reconciled_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("our_count", sa.Integer(), nullable=True),
        sa.Column("matched_count", sa.Integer(), nullable=True),
        sa.Column("exception_count", sa.Integer(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_recon_runs")),
        sa.UniqueConstraint("tenant_id", "business_date", "file_digest",
                            name=op.f("uq_payments_recon_runs_tenant_id_business_date_file_digest")),
        sa.UniqueConstraint("tenant_id", "run_no", name=op.f("uq_payments_recon_runs_tenant_id_run_no")),
    )
    with op.batch_alter_table("payments_recon_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payments_recon_runs_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "payments_recon_lines",
        sa.Column("run_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("line_no", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("channel_ref", sa.String(length=64), nullable=False),
        sa.Column("payment_ref", sa.String(length=64), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("booked_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("duplicate", sa.Boolean(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "line_no", name=op.f("pk_payments_recon_lines")),
    )
    with op.batch_alter_table("payments_recon_lines", schema=None) as batch_op:
        batch_op.create_index("ix_payments_recon_lines_ref", ["run_id", "payment_ref"], unique=False)

    op.create_table(
        "payments_recon_exceptions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("exception_no", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("payment_no", sa.String(length=40), nullable=True),
        sa.Column("line_no", sa.Integer(), nullable=True),
        sa.Column("channel_ref", sa.String(length=64), nullable=True),
        sa.Column("our_amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("our_currency", sa.String(length=3), nullable=True),
        sa.Column("our_status", sa.String(length=12), nullable=True),
        sa.Column("channel_amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("channel_currency", sa.String(length=3), nullable=True),
        sa.Column("channel_status", sa.String(length=12), nullable=True),
        sa.Column("difference_minor", sa.BigInteger(), nullable=True),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.Column("resolved_by", sa.String(length=64), nullable=True),
        sa.Column("resolved_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resolution_note", sa.String(length=500), nullable=True),
        sa.Column("ledger_entry_id", sa.String(length=120), nullable=True),
        sa.Column("fixed_by_run_no", sa.String(length=40), nullable=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_recon_exceptions")),
        sa.UniqueConstraint("tenant_id", "exception_no",
                            name=op.f("uq_payments_recon_exceptions_tenant_id_exception_no")),
    )
    with op.batch_alter_table("payments_recon_exceptions", schema=None) as batch_op:
        batch_op.create_index("ix_payments_recon_exceptions_run", ["run_id", "kind"], unique=False)
        batch_op.create_index(batch_op.f("ix_payments_recon_exceptions_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "payments_recon_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("exception_no", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("ledger_entry_id", sa.String(length=120), nullable=True),
        sa.Column("at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_recon_audit")),
    )
    with op.batch_alter_table("payments_recon_audit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payments_recon_audit_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_payments_recon_audit_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:
    for table in ("payments_recon_audit", "payments_recon_exceptions", "payments_recon_lines", "payments_recon_runs"):
        op.drop_table(table)
