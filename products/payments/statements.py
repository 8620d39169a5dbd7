"""Day statements per terminal and per merchant, and their CSV / JSON exports.

A business day is the bank's calendar day (``tenant.timezone``). A sale counts on the day it
succeeded (``completed_at``), a refund on the day it was made, whatever shift took the sale: so
a day's statement never changes once the day is over. Amounts are integer minor units; exports
write them as decimal strings in the currency's minor unit (``126.50``), never floats.

:class:`DayStatements` is a part of :class:`products.payments.service.PaymentsService`.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from core.clock import day_window as clock_day_window
from core.errors import NotFound
from core.money import Money
from products.payments.models import Payment, Refund

if TYPE_CHECKING:
    from products.payments.service import PaymentsService, TenderLine


@dataclass(frozen=True)
class DayStatement:
    """Counts and amounts by tender of one terminal's or merchant's business day."""

    scope: str  # "terminal" or "merchant"
    scope_id: str
    merchant_id: str
    day: date
    currency: str
    sales: list[TenderLine]
    refunds: list[TenderLine]
    sales_minor: int
    refunds_minor: int
    net_minor: int
    # The merchant discount on the day's non-cash sales, less the part returned with refunds.
    fees_minor: int
    terminals: list[str] = field(default_factory=list)


def day_window(tenant: Any, day: date) -> tuple[datetime, datetime]:
    """The UTC instants [start, end) of a business day in the bank's time zone (``core.clock``)."""
    return clock_day_window(tenant.timezone, day)


def decimal_amount(amount_minor: int, currency: str) -> str:
    """``12650`` CNY -> ``"126.50"``: the exact amount in the currency's minor unit."""
    return f"{Money(amount_minor, currency).amount:f}"


class DayStatements:
    """Per-terminal and per-merchant day statements (mixed into ``PaymentsService``)."""

    def terminal_statement(self: PaymentsService, terminal_id: str, day: date) -> DayStatement:
        terminal = self._terminal(terminal_id)
        return self._day_statement("terminal", terminal_id, terminal.merchant_id, day,
                                   Payment.terminal_id == terminal_id, [terminal_id])

    def merchant_statement(self: PaymentsService, merchant_id: str, day: date) -> DayStatement:
        if self._merchant_row(merchant_id) is None:
            raise NotFound(f"no merchant {merchant_id!r}")
        from products.payments.models import Terminal

        terminals = list(self.session.scalars(select(Terminal.terminal_id).where(Terminal.merchant_id == merchant_id)
                                              .order_by(Terminal.id)))
        return self._day_statement("merchant", merchant_id, merchant_id, day, Payment.merchant_id == merchant_id,
                                   terminals)

    def _day_statement(self: PaymentsService, scope: str, scope_id: str, merchant_id: str, day: date,
                       where: Any, terminals: list[str]) -> DayStatement:
        from products.payments.service import TENDERS, TenderLine

        start, end = day_window(self.tenant, day)
        sales = {t: TenderLine(t, 0, 0) for t in TENDERS}
        refunds = {t: TenderLine(t, 0, 0) for t in TENDERS}
        fees = 0
        for tender, count, total, fee in self.session.execute(
            select(Payment.tender, func.count(), func.coalesce(func.sum(Payment.amount_minor), 0),
                   func.coalesce(func.sum(Payment.fee_minor), 0))
            .where(where, Payment.status == "succeeded", Payment.completed_at >= start, Payment.completed_at < end)
            .group_by(Payment.tender).order_by(Payment.tender)
        ):
            sales[tender] = TenderLine(tender, int(count), int(total))
            fees += int(fee)
        for tender, count, total, fee in self.session.execute(
            select(Refund.tender, func.count(), func.coalesce(func.sum(Refund.amount_minor), 0),
                   func.coalesce(func.sum(Refund.fee_minor), 0))
            .join(Payment, Payment.payment_no == Refund.payment_no)
            .where(where, Refund.created_at >= start, Refund.created_at < end)
            .group_by(Refund.tender).order_by(Refund.tender)
        ):
            refunds[tender] = TenderLine(tender, int(count), int(total))
            fees -= int(fee)
        sales_minor = sum(line.amount_minor for line in sales.values())
        refunds_minor = sum(line.amount_minor for line in refunds.values())
        return DayStatement(scope, scope_id, merchant_id, day, self.tenant.currency, list(sales.values()),
                            list(refunds.values()), sales_minor, refunds_minor, sales_minor - refunds_minor, fees,
                            terminals)


# --- exports -------------------------------------------------------------------------------------

STATEMENT_COLUMNS = ("scope", "id", "merchant_id", "day", "currency", "kind", "tender", "count", "amount")


def statement_rows(s: DayStatement) -> list[dict[str, str]]:
    """One row per tender for sales and refunds, then the totals (``sales``, ``refunds``, ``fees``,
    ``net``) with an empty tender."""
    base = {"scope": s.scope, "id": s.scope_id, "merchant_id": s.merchant_id, "day": s.day.isoformat(),
            "currency": s.currency}
    rows = []
    for kind, lines in (("sale", s.sales), ("refund", s.refunds)):
        for line in lines:
            rows.append({**base, "kind": kind, "tender": line.tender, "count": str(line.count),
                         "amount": decimal_amount(line.amount_minor, s.currency)})
    sale_count = str(sum(line.count for line in s.sales))
    refund_count = str(sum(line.count for line in s.refunds))
    for kind, count, amount in (("sales", sale_count, s.sales_minor), ("refunds", refund_count, s.refunds_minor),
                                ("fees", "", s.fees_minor), ("net", "", s.net_minor)):
        rows.append({**base, "kind": kind, "tender": "", "count": count, "amount": decimal_amount(amount, s.currency)})
    return rows


def to_csv(columns: tuple[str, ...], rows: list[dict[str, str]]) -> str:
    """CSV with a header row (RFC 4180, ``\\r\\n`` line ends)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def statement_json(s: DayStatement) -> dict[str, Any]:
    """The statement as JSON: minor-unit integers and, beside each, the decimal string
    (``sales_minor`` and ``sales_amount``; each tender line's ``amount_minor`` and ``amount``)."""
    document = asdict(s)
    document["day"] = s.day.isoformat()
    for key in ("sales_minor", "refunds_minor", "net_minor", "fees_minor"):
        document[key.removesuffix("_minor") + "_amount"] = decimal_amount(getattr(s, key), s.currency)
    for kind in ("sales", "refunds"):
        for line in document[kind]:
            line["amount"] = decimal_amount(line["amount_minor"], s.currency)
    return document
