"""``sceneos credit_pay ...``: the bank's view of credit-pay accounts, purchases and plan trials."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from core.cli_support import open_app

cli = typer.Typer(help="Credit pay: accounts, purchases, installment trials.", no_args_is_help=True)
console = Console()

TENANT = typer.Option(..., "--tenant", "-t", help="tenant (bank) id")
CONFIG = typer.Option(None, "--config", "-c", help="config file (default ./sceneos.toml)")


def _in_unit_of_work(config: str | None, tenant: str, call: Any) -> Any:
    """``call(credit-pay service)`` in one unit of work; bad input or a refusal is one line, exit 1."""
    from pydantic import ValidationError

    from core.errors import SceneOSError

    try:
        with open_app(config) as app:
            runtime = app.tenant(tenant).module("credit_pay")
            with runtime.tenant.unit_of_work() as uow:
                return call(runtime.container.service(uow=uow))
    except SceneOSError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        console.print(f"[red]error:[/red] {'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
        raise typer.Exit(1) from None


@cli.command("trial")
def trial(
    amount_minor: int = typer.Argument(..., help="amount in minor units (fen)"),
    tenant: str = TENANT,
    product: str = typer.Option("standard", help="product code"),
    terms: int | None = typer.Option(None, help="only plans of this many terms"),
    merchant: str | None = typer.Option(None, help="the merchant selling: its interest-free plans too"),
    config: str | None = CONFIG,
) -> None:
    """Every installment of each plan for an amount, with the annualized rate (IRR)."""
    result = _in_unit_of_work(
        config, tenant, lambda pay: pay.trial(product, amount_minor, terms=terms, merchant_id=merchant)
    )
    for plan in result.plans:
        paid_by = (
            f", interest-free: merchant {plan.subsidised_by} pays {plan.merchant_subsidy_minor}"
            if plan.subsidised_by
            else ""
        )
        table = Table(
            title=f"{plan.terms} x {plan.method}: annualized {plan.annualized_rate_bps} bps "
            f"(IRR), total charge {plan.total_charge_minor}{paid_by}"
        )
        for column in ("#", "principal", "charge", "total"):
            table.add_column(column, justify="right")
        for item in plan.installments:
            table.add_row(
                str(item.number), str(item.principal_minor), str(item.charge_minor), str(item.total_minor)
            )
        console.print(table)
    for withheld in result.withheld:
        console.print(f"withheld (above the {result.annual_rate_ceiling_bps} bps ceiling): {withheld}")


@cli.command("account")
def account(
    account_no: str = typer.Argument(..., help="credit account number (cpa_...)"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """One account: line, available, held and outstanding amounts, price."""
    with open_app(config) as app:
        runtime = app.tenant(tenant).module("credit_pay")
        with runtime.tenant.unit_of_work() as uow:
            view = runtime.container.service(uow=uow).account(account_no)
    table = Table(show_header=False)
    for key, value in view.model_dump().items():
        table.add_row(key, str(value))
    console.print(table)


@cli.command("purchases")
def purchases(
    account_no: str = typer.Argument(..., help="credit account number (cpa_...)"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """Every purchase of an account, oldest first."""
    with open_app(config) as app:
        runtime = app.tenant(tenant).module("credit_pay")
        with runtime.tenant.unit_of_work() as uow:
            rows = runtime.container.service(uow=uow).purchases(account_no)
    table = Table()
    for column in ("purchase", "merchant", "amount", "status", "refunded", "reasons", "created"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.purchase_id,
            row.merchant_id,
            str(row.amount_minor),
            row.status,
            str(row.refunded_minor),
            ",".join(row.reasons),
            row.created_at.isoformat(),
        )
    console.print(table)


# --- lifecycle: repayments, statements, transactions (the bank's own channel) --------------------


@cli.command("repay")
def repay(
    account_no: str = typer.Argument(..., help="credit account number (cpa_...)"),
    amount_minor: int = typer.Argument(..., help="amount in minor units (fen)"),
    repayment_id: str = typer.Option(..., "--id", help="the bank's id of the repayment (idempotent)"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """Apply a repayment through the bank's own channel, allocated in the product's order."""
    from pydantic import ValidationError

    from products.credit_pay.repayment import RepaymentDraft

    try:
        draft = RepaymentDraft(repayment_id=repayment_id, account_no=account_no, amount_minor=amount_minor)
    except ValidationError as exc:
        first = exc.errors()[0]
        console.print(f"[red]error:[/red] {'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
        raise typer.Exit(1) from None
    view = _in_unit_of_work(config, tenant, lambda service: service.repay(draft))
    allocation = ", ".join(f"{k} {v}" for k, v in view.allocation.items() if v)
    state = "applied" if view.created else "already applied"
    console.print(f"repayment {view.repayment_id} {state}: {view.amount_minor} {view.currency} ({allocation})")


@cli.command("statements")
def statements(
    account_no: str = typer.Argument(..., help="credit account number (cpa_...)"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """Every statement of an account, newest first."""
    rows = _in_unit_of_work(config, tenant, lambda service: service.statements(account_no))
    table = Table(title=f"statements of {account_no}")
    columns = ("statement", "date", "due", "previous", "purchases", "installments", "interest", "penalty",
               "fees", "payments", "new balance", "minimum", "paid", "status")
    for column in columns:
        table.add_column(column, justify="left" if column in ("statement", "status") else "right")
    for s in rows:
        table.add_row(
            s.statement_no, s.statement_date.isoformat(), s.due_date.isoformat(), str(s.previous_balance_minor),
            str(s.purchases_minor), str(s.installments_minor), str(s.interest_minor), str(s.penalty_minor),
            str(s.fees_minor), str(s.payments_minor), str(s.new_balance_minor), str(s.minimum_payment_minor),
            str(s.paid_minor), s.status,
        )
    console.print(table)


@cli.command("statement")
def statement(
    statement_no: str = typer.Argument(..., help="statement number (cpa_...-YYYYMMDD)"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """One statement: its figures and its lines."""
    view = _in_unit_of_work(config, tenant, lambda service: service.statement(statement_no))
    figures = Table(show_header=False, title=f"statement {view.statement_no}")
    for key, value in view.model_dump(exclude={"lines"}).items():
        figures.add_row(key, str(value))
    console.print(figures)
    _print_transactions(view.lines or [], "lines")


@cli.command("transactions")
def transactions(
    account_no: str = typer.Argument(..., help="credit account number (cpa_...)"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """Every movement of an account's balance, oldest first."""
    rows = _in_unit_of_work(config, tenant, lambda service: service.transactions(account_no))
    _print_transactions(rows, f"transactions of {account_no}")


def _print_transactions(rows: list[Any], title: str) -> None:
    table = Table(title=title)
    for column in ("date", "kind", "amount", "reference", "statement"):
        table.add_column(column, justify="right" if column == "amount" else "left")
    for t in rows:
        table.add_row(t.business_date.isoformat(), t.kind, str(t.amount_minor), t.reference, t.statement_no or "")
    console.print(table)


# --- installment plans and line adjustment (products/credit_pay/installments.py, lines.py) --------


def _print_plan(plan: Any) -> None:
    table = Table(
        title=f"{plan.plan_no} ({plan.source}{' ' + plan.purchase_id if plan.purchase_id else ''}): "
        f"{plan.terms} x {plan.method} on {plan.principal_minor} {plan.currency}, annualized "
        f"{plan.annualized_rate_bps} bps (IRR), {plan.status}, remaining {plan.remaining_principal_minor}"
        + (f", refunded {plan.refunded_principal_minor}" if plan.refunded_principal_minor else "")
        + (
            f"; interest-free, merchant {plan.subsidised_by} paid {plan.merchant_subsidy_minor}"
            if plan.subsidised_by
            else ""
        )
    )
    for column in ("#", "due on", "principal", "interest", "fee", "total", "status", "billed on"):
        table.add_column(column, justify="right")
    for item in plan.installments:
        table.add_row(
            str(item.term_no),
            item.due_on.isoformat(),
            str(item.principal_minor),
            str(item.interest_minor),
            str(item.fee_minor),
            str(item.total_minor),
            item.status,
            item.billed_on.isoformat() if item.billed_on else "",
        )
    console.print(table)


@cli.command("plans")
def plans(
    account_no: str = typer.Argument(..., help="credit account number (cpa_...)"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """Every installment plan of an account with its schedule."""
    from products.credit_pay.installments import InstallmentService

    found = _in_unit_of_work(config, tenant, lambda pay: InstallmentService(pay).plans(account_no))
    if not found:
        console.print(f"no installment plans on {account_no}")
    for plan in found:
        _print_plan(plan)


@cli.command("plan")
def plan(
    plan_no: str = typer.Argument(..., help="installment plan number (cpi_...)"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """One installment plan and its schedule."""
    from products.credit_pay.installments import InstallmentService

    _print_plan(_in_unit_of_work(config, tenant, lambda pay: InstallmentService(pay).plan(plan_no)))


@cli.command("adjust-line")
def adjust_line(
    account_no: str = typer.Argument(..., help="credit account number (cpa_...)"),
    new_line_minor: int = typer.Argument(..., help="the new line in minor units (fen)"),
    adjustment_id: str = typer.Option(..., "--id", help="the bank's id of this adjustment (idempotent)"),
    reason: str = typer.Option(..., help="reason code, e.g. customer_request, risk_review"),
    note: str | None = typer.Option(None, help="free text for the history (no personal data)"),
    forced: bool = typer.Option(False, "--forced", help="lower below the amount in use (available becomes 0)"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """Raise or lower an account's line, with a reason."""
    from products.credit_pay.lines import LineAdjustmentDraft, LineService

    def call(pay: Any) -> Any:
        draft = LineAdjustmentDraft(
            adjustment_id=adjustment_id,
            account_no=account_no,
            new_line_minor=new_line_minor,
            reason=reason,
            note=note,
            forced=forced,
        )
        return LineService(pay).adjust(draft)

    view = _in_unit_of_work(config, tenant, call)
    state = "applied" if view.created else "already applied"
    console.print(
        f"line adjustment {view.adjustment_id} {state}: {view.previous_line_minor} -> {view.new_line_minor} "
        f"({view.kind}, {view.used_minor} in use)"
    )


@cli.command("line-history")
def line_history(
    account_no: str = typer.Argument(..., help="credit account number (cpa_...)"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """Every line adjustment and review of an account, oldest first."""
    from products.credit_pay.lines import LineService

    rows = _in_unit_of_work(config, tenant, lambda pay: LineService(pay).history(account_no))
    table = Table(title=f"line history of {account_no}")
    for column in ("id", "date", "source", "kind", "from", "to", "in use", "ledger", "forced", "reason", "note"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.adjustment_id,
            row.business_date.isoformat(),
            row.source,
            row.kind,
            str(row.previous_line_minor),
            str(row.new_line_minor),
            str(row.used_minor),
            str(row.ledger_delta_minor),
            "yes" if row.forced else "",
            row.reason,
            row.note or "",
        )
    console.print(table)


# --- merchant settlement (products/credit_pay/settlement.py) --------------------------------------


@cli.command("settle")
def settle(
    merchant_id: str = typer.Argument(..., help="merchant id"),
    day: str = typer.Option(..., "--date", help="business date to settle through (YYYY-MM-DD), once it has ended"),
    currency: str = typer.Option("CNY", help="currency of the merchant's payable"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """Settle a merchant's credit-pay sales through a business date (one entry to the payouts)."""
    from products.credit_pay.settlement import MerchantSettlements

    business_date = _date(day)
    view, posted = _in_unit_of_work(
        config, tenant, lambda pay: MerchantSettlements(pay).settle(merchant_id, business_date, currency)
    )
    if view.amount_minor == 0 and not posted and view.entry_id is None:
        console.print(
            f"nothing to settle for {merchant_id} through {business_date}: owed "
            f"{view.owed_through_day_minor}, settled before {view.settled_before_minor}"
        )
        return
    state = "settled" if posted else "already settled"
    console.print(f"{merchant_id} {state} through {business_date}: {view.amount_minor} {view.currency} ({view.entry_id})")


@cli.command("settlements")
def settlements(
    merchant_id: str = typer.Argument(..., help="merchant id"),
    currency: str = typer.Option("CNY", help="currency of the merchant's payable"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """A merchant's settlements, oldest first."""
    from products.credit_pay.settlement import MerchantSettlements

    rows = _in_unit_of_work(config, tenant, lambda pay: MerchantSettlements(pay).settlements(merchant_id, currency))
    table = Table(title=f"credit-pay settlements of {merchant_id} ({currency})")
    for column in ("date", "amount", "owed through the day", "settled before", "entry"):
        table.add_column(column, justify="left" if column in ("date", "entry") else "right")
    for row in rows:
        table.add_row(
            row.business_date.isoformat(),
            str(row.amount_minor),
            str(row.owed_through_day_minor),
            str(row.settled_before_minor),
            row.entry_id or "",
        )
    console.print(table)


def _date(value: str) -> Any:
    from datetime import date

    try:
        return date.fromisoformat(value)
    except ValueError:
        console.print(f"[red]error:[/red] --date: {value!r} is not a date (YYYY-MM-DD)")
        raise typer.Exit(1) from None


# --- partner remittances (products/credit_pay/remittance.py) --------------------------------------


@cli.command("remit")
def remit(
    partner_id: str = typer.Argument(..., help="partner id"),
    amount_minor: int = typer.Argument(..., help="amount remitted, minor units"),
    remittance_id: str = typer.Option(..., "--id", help="the bank's id of the remittance (a retry is safe)"),
    day: str = typer.Option(..., "--date", help="business date whose collections it pays (YYYY-MM-DD)"),
    currency: str = typer.Option("CNY", help="currency"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """Record money a partner remitted for the repayments it collected."""
    _remit(partner_id, amount_minor, remittance_id, day, currency, tenant, config)


@cli.command("channel-remit")
def channel_remit(
    amount_minor: int = typer.Argument(..., help="amount transferred, minor units"),
    remittance_id: str = typer.Option(..., "--id", help="the bank's id of the transfer (a retry is safe)"),
    day: str = typer.Option(..., "--date", help="business date whose collections it pays (YYYY-MM-DD)"),
    currency: str = typer.Option("CNY", help="currency"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """Record core banking's transfer of the repayments the bank's own channel collected."""
    _remit(None, amount_minor, remittance_id, day, currency, tenant, config)


@cli.command("remittances")
def remittances(
    partner_id: str = typer.Argument(..., help="partner id"),
    currency: str = typer.Option("CNY", help="currency"),
    tenant: str = TENANT,
    config: str | None = CONFIG,
) -> None:
    """A partner's remittances and what it still owes."""
    _remittances(partner_id, currency, tenant, config)


@cli.command("channel-remittances")
def channel_remittances(
    currency: str = typer.Option("CNY", help="currency"), tenant: str = TENANT, config: str | None = CONFIG
) -> None:
    """The bank's own channel's transfers and what is still to come from core banking."""
    _remittances(None, currency, tenant, config)


def _remit(
    partner_id: str | None, amount_minor: int, remittance_id: str, day: str, currency: str, tenant: str,
    config: str | None,
) -> None:
    from products.credit_pay.remittance import RemittanceDraft, Remittances

    business_date = _date(day)

    def call(pay: Any) -> Any:
        draft = RemittanceDraft(
            remittance_id=remittance_id,
            partner_id=partner_id,
            business_date=business_date,
            amount_minor=amount_minor,
            currency=currency,
        )
        return Remittances(pay).record(draft), Remittances(pay).position(partner_id, currency)

    view, position = _in_unit_of_work(config, tenant, call)
    state = "recorded" if view.created else "already recorded"
    console.print(
        f"remittance {view.remittance_id} {state}: {view.amount_minor} {view.currency} for {view.business_date} "
        f"(collected that day {view.collected_minor}, difference {view.difference_minor}); "
        f"{partner_id or 'the bank channel'} still owes {position.outstanding_minor}"
    )


def _remittances(partner_id: str | None, currency: str, tenant: str, config: str | None) -> None:
    from products.credit_pay.remittance import Remittances

    rows, position = _in_unit_of_work(
        config,
        tenant,
        lambda pay: (Remittances(pay).remittances(partner_id, currency), Remittances(pay).position(partner_id, currency)),
    )
    table = Table(title=f"remittances of {partner_id or 'the bank channel'} ({currency})")
    for column in ("id", "business date", "amount", "collected that day", "difference"):
        table.add_column(column, justify="left" if column in ("id", "business date") else "right")
    for row in rows:
        table.add_row(
            row.remittance_id,
            row.business_date.isoformat(),
            str(row.amount_minor),
            str(row.collected_minor),
            str(row.difference_minor),
        )
    console.print(table)
    console.print(
        f"collected {position.collected_minor}, remitted {position.remitted_minor}, "
        f"outstanding {position.outstanding_minor}"
    )
