"""credit pay installment plans and line adjustments

Revision ID: credit_pay_0003
Revises: credit_pay_0002
Create Date: 2026-11-25 11:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.db

revision = "credit_pay_0003"
down_revision = "credit_pay_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credit_pay_installment_plans",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("plan_id", sa.String(length=64), nullable=False),
        sa.Column("plan_no", sa.String(length=40), nullable=False),
        sa.Column("account_no", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("purchase_id", sa.String(length=64), nullable=True),
        sa.Column("statement_ref", sa.String(length=64), nullable=True),
        sa.Column("partner_id", sa.String(length=64), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("terms", sa.Integer(), nullable=False),
        sa.Column("period_rate_bps", sa.Numeric(precision=8, scale=2), nullable=False),
        sa.Column("principal_minor", sa.BigInteger(), nullable=False),
        sa.Column("total_charge_minor", sa.BigInteger(), nullable=False),
        sa.Column("annualized_rate_bps", sa.Numeric(precision=10, scale=2), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_pay_installment_plans")),
        sa.UniqueConstraint(
            "tenant_id", "plan_id", name=op.f("uq_credit_pay_installment_plans_tenant_id_plan_id")
        ),
        sa.UniqueConstraint(
            "tenant_id", "plan_no", name=op.f("uq_credit_pay_installment_plans_tenant_id_plan_no")
        ),
    )
    with op.batch_alter_table("credit_pay_installment_plans", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_credit_pay_installment_plans_account_no"), ["account_no"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_credit_pay_installment_plans_purchase_id"), ["purchase_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_credit_pay_installment_plans_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "credit_pay_installments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("plan_no", sa.String(length=40), nullable=False),
        sa.Column("account_no", sa.String(length=40), nullable=False),
        sa.Column("term_no", sa.Integer(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("principal_minor", sa.BigInteger(), nullable=False),
        sa.Column("interest_minor", sa.BigInteger(), nullable=False),
        sa.Column("fee_minor", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("billed_principal_minor", sa.BigInteger(), nullable=True),
        sa.Column("billed_interest_minor", sa.BigInteger(), nullable=True),
        sa.Column("billed_fee_minor", sa.BigInteger(), nullable=True),
        sa.Column("billed_on", sa.Date(), nullable=True),
        sa.Column("reported_on", sa.Date(), nullable=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_pay_installments")),
        sa.UniqueConstraint(
            "tenant_id",
            "plan_no",
            "term_no",
            name=op.f("uq_credit_pay_installments_tenant_id_plan_no_term_no"),
        ),
    )
    with op.batch_alter_table("credit_pay_installments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_credit_pay_installments_account_no"), ["account_no"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_credit_pay_installments_due_on"), ["due_on"], unique=False)
        batch_op.create_index(batch_op.f("ix_credit_pay_installments_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "credit_pay_line_adjustments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("adjustment_id", sa.String(length=64), nullable=False),
        sa.Column("account_no", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("previous_line_minor", sa.BigInteger(), nullable=False),
        sa.Column("new_line_minor", sa.BigInteger(), nullable=False),
        sa.Column("used_minor", sa.BigInteger(), nullable=False),
        sa.Column("ledger_delta_minor", sa.BigInteger(), nullable=False),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_pay_line_adjustments")),
        sa.UniqueConstraint(
            "tenant_id", "adjustment_id", name=op.f("uq_credit_pay_line_adjustments_tenant_id_adjustment_id")
        ),
    )
    with op.batch_alter_table("credit_pay_line_adjustments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_credit_pay_line_adjustments_account_no"), ["account_no"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_credit_pay_line_adjustments_tenant_id"), ["tenant_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("credit_pay_line_adjustments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credit_pay_line_adjustments_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_credit_pay_line_adjustments_account_no"))

    op.drop_table("credit_pay_line_adjustments")
    with op.batch_alter_table("credit_pay_installments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credit_pay_installments_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_credit_pay_installments_due_on"))
        batch_op.drop_index(batch_op.f("ix_credit_pay_installments_account_no"))

    op.drop_table("credit_pay_installments")
    with op.batch_alter_table("credit_pay_installment_plans", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credit_pay_installment_plans_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_credit_pay_installment_plans_purchase_id"))
        batch_op.drop_index(batch_op.f("ix_credit_pay_installment_plans_account_no"))

    op.drop_table("credit_pay_installment_plans")
