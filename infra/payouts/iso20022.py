"""The ISO 20022 messages of a payout: the pain.001 the bank sends its payment system (customer
credit transfer initiation, version 09), the pain.002 status report it gets back, and the pacs.004
payment return that brings back, days later, a transfer the beneficiary's bank could not credit.

Built and read with lxml. Reports and returns are parsed with entities, DTDs and the network off,
and one with a document type declaration is refused (no XXE, no entity expansion); they are read
by local names, so the versions banks send (pain.002.001.03 to .10, pacs.004.001.02 to .11) read
alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from lxml import etree

from core.errors import ValidationFailed
from core.money import currency_exponent

PAIN_001 = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"
IBAN = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$")
BIC = re.compile(r"^[A-Z0-9]{8}([A-Z0-9]{3})?$")
MAX_REPORT_BYTES = 64 * 1024 * 1024
_PARSER_OPTIONS: dict[str, Any] = {"resolve_entities": False, "no_network": True, "load_dtd": False,
                                   "huge_tree": False, "dtd_validation": False, "remove_pis": True}
# A transfer the payment system took (ACCP, ACSP, ACSC, ACWC...) or returned (RJCT); the others
# (PDNG, RCVD) say nothing final yet.
ACCEPTED = frozenset({"ACCP", "ACSP", "ACSC", "ACWC", "ACTC", "ACFC", "ACCC"})
REJECTED = "RJCT"


class StatusReportInvalid(ValidationFailed):
    """The file is not a pain.002 (or, for returns, a pacs.004) that can be read; nothing was applied."""

    code = "invalid_status_report"


@dataclass(frozen=True)
class Transfer:
    """One credit transfer of a pain.001 (an instruction's fields)."""

    end_to_end_id: str
    amount_minor: int
    currency: str
    creditor_name: str
    creditor_account: str
    creditor_agent: str | None
    remittance_info: str


@dataclass(frozen=True)
class StatusReport:
    """A pain.002: the message it answers, its group status, and each transfer's status and reason."""

    original_message_id: str | None
    group_status: str | None
    transfers: tuple[tuple[str, str, str | None], ...]  # (end-to-end id, status, reason code)


def amount_text(amount_minor: int, currency: str) -> str:
    exponent = currency_exponent(currency)
    return str(Decimal(amount_minor).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent)))


def credit_transfer_initiation(
    *, message_id: str, created_at: datetime, execution_date: date, debtor_name: str, debtor_account: str,
    debtor_agent_bic: str | None, currency: str, transfers: list[Transfer],
) -> bytes:
    """The pain.001.001.09 document of ``transfers`` (one payment information block, one currency)."""
    ns = f"{{{PAIN_001}}}"

    def sub(parent: Any, tag: str, text: str | None = None, **attrs: str) -> Any:
        element = etree.SubElement(parent, ns + tag, attrs)
        if text is not None:
            element.text = text
        return element

    def account(parent: Any, number: str) -> None:
        ident = sub(parent, "Id")
        if IBAN.match(number):
            sub(ident, "IBAN", number)
        else:
            sub(sub(ident, "Othr"), "Id", number)

    def agent(parent: Any, code: str | None) -> None:
        institution = sub(parent, "FinInstnId")
        if code is None:
            sub(sub(institution, "Othr"), "Id", "NOTPROVIDED")
        elif BIC.match(code):
            sub(institution, "BICFI", code)
        else:  # a domestic clearing code (e.g. a CNAPS bank code)
            sub(sub(institution, "ClrSysMmbId"), "MmbId", code)

    total = sum(t.amount_minor for t in transfers)
    document = etree.Element(ns + "Document", nsmap={None: PAIN_001})
    initiation = sub(document, "CstmrCdtTrfInitn")
    header = sub(initiation, "GrpHdr")
    sub(header, "MsgId", message_id)
    sub(header, "CreDtTm", created_at.isoformat(timespec="seconds"))
    sub(header, "NbOfTxs", str(len(transfers)))
    sub(header, "CtrlSum", amount_text(total, currency))
    sub(sub(header, "InitgPty"), "Nm", debtor_name)
    payment = sub(initiation, "PmtInf")
    sub(payment, "PmtInfId", message_id)
    sub(payment, "PmtMtd", "TRF")
    sub(payment, "NbOfTxs", str(len(transfers)))
    sub(payment, "CtrlSum", amount_text(total, currency))
    sub(sub(payment, "ReqdExctnDt"), "Dt", execution_date.isoformat())
    sub(sub(payment, "Dbtr"), "Nm", debtor_name)
    debtor = sub(payment, "DbtrAcct")
    account(debtor, debtor_account)
    sub(debtor, "Ccy", currency)
    agent(sub(payment, "DbtrAgt"), debtor_agent_bic)
    sub(payment, "ChrgBr", "SLEV")
    for transfer in transfers:
        item = sub(payment, "CdtTrfTxInf")
        ids = sub(item, "PmtId")
        sub(ids, "InstrId", transfer.end_to_end_id)
        sub(ids, "EndToEndId", transfer.end_to_end_id)
        sub(sub(item, "Amt"), "InstdAmt", amount_text(transfer.amount_minor, transfer.currency), Ccy=transfer.currency)
        if transfer.creditor_agent is not None:
            agent(sub(item, "CdtrAgt"), transfer.creditor_agent)
        sub(sub(item, "Cdtr"), "Nm", transfer.creditor_name)
        account(sub(item, "CdtrAcct"), transfer.creditor_account)
        sub(sub(item, "RmtInf"), "Ustrd", transfer.remittance_info)
    return etree.tostring(document, xml_declaration=True, encoding="UTF-8", pretty_print=True)


@dataclass(frozen=True)
class ReturnedTransfer:
    """One transfer of a pacs.004: the end-to-end id it returns, the amount that came back, why."""

    end_to_end_id: str
    amount_minor: int
    currency: str
    reason: str | None


def _parse(content: bytes) -> Any:
    """The root element of a report or return read safely (see the module docstring)."""
    if len(content) > MAX_REPORT_BYTES:
        raise _invalid(f"larger than {MAX_REPORT_BYTES} bytes")
    try:
        root = etree.fromstring(content, etree.XMLParser(**_PARSER_OPTIONS))
    except etree.XMLSyntaxError as exc:
        raise _invalid(f"not well-formed XML ({exc.msg})") from None
    if root.getroottree().docinfo.doctype:
        raise _invalid("a document type declaration (DTD) is not allowed")
    return root


def parse_payment_return(content: bytes) -> tuple[ReturnedTransfer, ...]:
    """A pacs.004's returned transfers (``TxInf``: ``OrgnlEndToEndId``, ``RtrdIntrBkSttlmAmt`` with
    its ``Ccy``, ``RtrRsnInf/Rsn/Cd``); a file that is not one is refused as a whole."""
    root = _parse(content)
    message = _first(root, "PmtRtr")
    if message is None:
        raise _invalid("no PmtRtr element: not a pacs.004 payment return")
    returned = []
    for element in message.iter("{*}TxInf"):
        end_to_end, amount = _text(element, "OrgnlEndToEndId"), _first(element, "RtrdIntrBkSttlmAmt")
        if not end_to_end or amount is None or not amount.text or not amount.get("Ccy"):
            raise _invalid("a TxInf without OrgnlEndToEndId or RtrdIntrBkSttlmAmt (with Ccy)")
        currency = amount.get("Ccy")
        try:
            minor = Decimal(amount.text.strip()).scaleb(currency_exponent(currency))
        except (ArithmeticError, ValueError):
            raise _invalid(f"returned amount {amount.text.strip()!r} {currency} is not an amount") from None
        if minor != minor.to_integral_value() or minor <= 0:
            raise _invalid(f"returned amount {amount.text.strip()} {currency} is not a positive amount in minor units")
        reason = _first(element, "RtrRsnInf")
        returned.append(ReturnedTransfer(end_to_end, int(minor), currency, _text(reason, "Cd") if reason is not None else None))
    if not returned:
        raise _invalid("no TxInf: a payment return lists the transfers it returns")
    return tuple(returned)


def parse_status_report(content: bytes) -> StatusReport:
    """A pain.002's statuses; a file that is not one is refused as a whole (``invalid_status_report``)."""
    root = _parse(content)
    report = _first(root, "CstmrPmtStsRpt")
    if report is None:
        raise _invalid("no CstmrPmtStsRpt element: not a pain.002 status report")
    group = _first(report, "OrgnlGrpInfAndSts")
    original = _text(group, "OrgnlMsgId") if group is not None else None
    group_status = _text(group, "GrpSts") if group is not None else None
    transfers = []
    for element in report.iter("{*}TxInfAndSts"):
        end_to_end, status = _text(element, "OrgnlEndToEndId"), _text(element, "TxSts")
        if not end_to_end or not status:
            raise _invalid("a TxInfAndSts without OrgnlEndToEndId or TxSts")
        reason = _first(element, "StsRsnInf")
        transfers.append((end_to_end, status, _text(reason, "Cd") if reason is not None else None))
    if not transfers and group_status is None:
        raise _invalid("neither a group status nor a transaction status")
    return StatusReport(original, group_status, tuple(transfers))


def _first(element: Any, name: str) -> Any:
    return next(element.iter(f"{{*}}{name}"), None)


def _text(element: Any, name: str) -> str | None:
    found = _first(element, name)
    return found.text.strip() if found is not None and found.text else None


def _invalid(message: str) -> StatusReportInvalid:
    return StatusReportInvalid(f"invalid file from the payment system: {message}",
                               details=[{"field": "file", "code": "invalid_status_report", "message": message}])
