"""Parsers of the acquiring channel's statement files: CSV and ISO 20022 camt.053 (XML).

Both give the same :class:`StatementLine` records: amounts as integer minor units of their ISO 4217
currency (parsed from the decimal string exactly, never through float), statuses normalized to our
payment statuses (``succeeded``, ``pending``, ``failed``). A malformed file is refused as a whole
with one :class:`StatementFileInvalid` naming the line (CSV) or the entry (camt.053); nothing is
returned, so nothing is stored.

XML is read with lxml configured never to resolve entities, load a DTD or use the network, and a
document with a document type declaration at all (``<!ENTITY xxe SYSTEM "file:///etc/passwd">``,
"billion laughs", an external DTD) is refused before its body is read.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from datetime import UTC, date, datetime, time
from typing import Any, NamedTuple

from lxml import etree

from core.errors import ValidationFailed
from core.money import currency_exponent

FORMATS = ("csv", "camt053")
CSV_COLUMNS = ("channel_ref", "payment_ref", "amount", "currency", "status", "booked_at")
CAMT053_NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:camt.053.001."
# A statement of a day is bounded; past this the file is refused rather than read into memory.
MAX_LINES = 5_000_000
REF = re.compile(r"^[A-Za-z0-9_.:/+-]{1,64}$")
AMOUNT = re.compile(r"^([+-]?)(\d{1,15})(?:\.(\d{1,18}))?$")
CURRENCY = re.compile(r"^[A-Z]{3}$")

# Channel status words (CSV) and camt.053 entry status codes (Sts) -> our payment statuses.
CSV_STATUSES = {
    "success": "succeeded", "succeeded": "succeeded", "settled": "succeeded", "booked": "succeeded",
    "pending": "pending", "processing": "pending",
    "failed": "failed", "rejected": "failed", "declined": "failed",
}
CSV_STATUSES.update({word.upper(): status for word, status in list(CSV_STATUSES.items())})
CAMT_STATUSES = {"BOOK": "succeeded", "PDNG": "pending", "INFO": "pending", "FUTR": "pending"}


class StatementFileInvalid(ValidationFailed):
    """The statement file cannot be read; the message names the line or entry. Nothing was stored."""

    code = "invalid_statement_file"


class StatementLine(NamedTuple):
    """One record of the channel's file. ``payment_ref`` is our payment number as the channel echoes it."""

    line_no: int
    channel_ref: str
    payment_ref: str | None
    amount_minor: int
    currency: str
    status: str
    booked_at: datetime | None


def parse_statement(content: bytes, file_format: str) -> list[StatementLine]:
    """Parse a whole file (``csv`` or ``camt053``); raise :class:`StatementFileInvalid` if malformed."""
    if file_format == "csv":
        return parse_csv(content)
    if file_format == "camt053":
        return parse_camt053(content)
    raise StatementFileInvalid(f"unknown statement format {file_format!r} (use csv or camt053)",
                               details=[{"field": "format", "code": "invalid", "message": "csv or camt053"}])


def _invalid(where: str, message: str) -> StatementFileInvalid:
    return StatementFileInvalid(f"{where}: {message}", details=[{"code": "invalid_statement_file",
                                                                 "message": f"{where}: {message}"}])


class _Amounts:
    """Exact decimal strings -> minor units, with a cache of currency exponents."""

    def __init__(self) -> None:
        self.exponents: dict[str, int] = {}

    def currency(self, code: str, where: str) -> int:
        exponent = self.exponents.get(code)
        if exponent is None:
            if not CURRENCY.match(code):
                raise _invalid(where, f"currency {code!r} is not an ISO 4217 code")
            try:
                exponent = currency_exponent(code)
            except Exception:
                raise _invalid(where, f"currency {code!r} is not an ISO 4217 code") from None
            self.exponents[code] = exponent
        return exponent

    def minor(self, text: str, code: str, where: str) -> int:
        exponent = self.currency(code, where)
        match = AMOUNT.match(text)
        if match is None:
            raise _invalid(where, f"amount {text!r} is not a decimal number")
        sign, whole, fraction = match.groups()
        fraction = (fraction or "").rstrip("0")
        if len(fraction) > exponent:
            raise _invalid(where, f"amount {text!r} has more decimals than {code} has ({exponent})")
        value = int(whole) * 10**exponent + (int(fraction.ljust(exponent, "0")) if exponent else 0)
        return -value if sign == "-" else value


def _ref(value: str | None, where: str, what: str, *, required: bool) -> str | None:
    value = (value or "").strip()
    if not value:
        if required:
            raise _invalid(where, f"{what} is missing")
        return None
    if not REF.match(value):
        raise _invalid(where, f"{what} {value[:70]!r} must be 1-64 letters, digits or _.:/+-")
    return value


def _timestamp(text: str, where: str) -> datetime:
    text = text.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time.min, tzinfo=UTC)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise _invalid(where, f"booked time {text[:40]!r} is not an ISO 8601 date or time") from None
    if value.tzinfo is None:
        raise _invalid(where, f"booked time {text!r} has no UTC offset")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-23:59 is past the last UTC instant
        raise _invalid(where, f"booked time {text[:40]!r} is out of range") from None


# --- CSV ---------------------------------------------------------------------------------------


def parse_csv(content: bytes) -> list[StatementLine]:
    """A CSV file with a header row naming at least the columns of :data:`CSV_COLUMNS` (any order,
    other columns ignored; UTF-8, an optional BOM). Line numbers count the header as line 1."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _invalid("file", f"not UTF-8 text (byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise _invalid("line 1", "the file is empty; a header row is required") from None
    except csv.Error as exc:
        raise _invalid("line 1", f"not CSV: {exc}") from None
    names = [name.strip().lower() for name in header]
    missing = [column for column in CSV_COLUMNS if column not in names]
    if missing:
        raise _invalid("line 1", f"missing column(s) {', '.join(missing)} in the header "
                                 f"(expected {', '.join(CSV_COLUMNS)})")
    i_chan, i_pay, i_amt, i_ccy, i_sts, i_bkd = (names.index(column) for column in CSV_COLUMNS)
    width = len(names)
    amounts = _Amounts()
    lines: list[StatementLine] = []
    times: dict[str, datetime] = {}  # a day's file repeats its booking times
    ref_ok, amount_re, exponents, statuses = REF.match, AMOUNT.match, amounts.exponents, CSV_STATUSES
    make = StatementLine._make
    try:
        # The loop is the parser's hot path (a million lines a day): each field is checked by one
        # C-level match; only a field that fails it goes to the slow path that says why.
        for row in reader:
            if len(row) != width:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # a blank line
                raise _invalid(f"line {reader.line_num}", f"{len(row)} fields where the header has {width}")
            line_no = reader.line_num
            channel_ref, payment_ref, amount, currency = row[i_chan], row[i_pay], row[i_amt], row[i_ccy]
            if ref_ok(channel_ref) is None:
                channel_ref = _ref(channel_ref, f"line {line_no}", "channel_ref", required=True)
            if not payment_ref or ref_ok(payment_ref) is None:
                payment_ref = _ref(payment_ref, f"line {line_no}", "payment_ref", required=False)
            exponent = exponents.get(currency)
            match = amount_re(amount)
            if exponent is None or match is None:
                amount_minor = amounts.minor(amount.strip(), currency.strip(), f"line {line_no}")
                currency = currency.strip()
            else:
                sign, whole, fraction = match.groups()
                if fraction is None:
                    amount_minor = int(whole) * 10**exponent
                elif len(fraction) == exponent:
                    amount_minor = int(whole + fraction)
                else:
                    amount_minor = amounts.minor(amount, currency, f"line {line_no}")
                    sign = ""
                if sign == "-":
                    amount_minor = -amount_minor
            status = statuses.get(row[i_sts]) or statuses.get(row[i_sts].strip().lower())
            if status is None:
                raise _invalid(f"line {line_no}",
                               f"status {row[i_sts][:20]!r} is not one of {', '.join(sorted(k for k in CSV_STATUSES if k.islower()))}")
            booked = row[i_bkd]
            booked_at = times.get(booked) if booked else None
            if booked and booked_at is None:
                booked_at = times[booked] = _timestamp(booked, f"line {line_no}") if booked.strip() else None
            if len(lines) >= MAX_LINES:
                raise _invalid(f"line {line_no}", f"more than {MAX_LINES} records")
            lines.append(make((line_no, channel_ref, payment_ref, amount_minor, currency, status, booked_at)))
    except csv.Error as exc:
        raise _invalid(f"line {reader.line_num}", f"not CSV: {exc}") from None
    return lines


# --- camt.053 ----------------------------------------------------------------------------------


def parse_camt053(content: bytes) -> list[StatementLine]:
    """An ISO 20022 BankToCustomerStatement (camt.053.001.02 and later versions).

    Each ``Ntry`` is one record (or, for a batch booking, each of its ``NtryDtls/TxDtls`` with its
    own amount): ``Amt@Ccy``, ``CdtDbtInd`` (a ``DBIT`` entry has a negative amount), ``Sts`` (or
    ``Sts/Cd``), ``BookgDt/DtTm`` or ``BookgDt/Dt``, our payment number from
    ``NtryDtls/TxDtls/Refs/EndToEndId`` and the channel's reference from ``AcctSvcrRef`` (of the
    entry, else of the transaction's ``Refs``, else ``NtryRef``, else ``NTRY-<n>``). Records are
    numbered in file order; errors name the entry (``Ntry 3``).

    Read with lxml (libxml2) configured not to resolve entities, load DTDs or touch the network,
    and with its size limits on (no ``huge_tree``); a document that has a DTD at all is refused
    before its body is read. The file is read twice: the first event gives the root and any DTD,
    then the entries are streamed one at a time and dropped once read.
    """
    namespace = _camt_root(content)
    entry_tag = f"{{{namespace}}}Ntry"
    amounts = _Amounts()
    lines: list[StatementLine] = []
    times: dict[str, datetime] = {}  # a day's file repeats its booking times
    entry_no = 0
    try:
        for _event, element in etree.iterparse(io.BytesIO(content), events=("end",), tag=entry_tag, **_SAFE):
            entry_no += 1
            if len(lines) >= MAX_LINES:
                raise _invalid(f"Ntry {entry_no}", f"more than {MAX_LINES} records")
            lines.extend(_camt_entry(element, namespace, entry_no, len(lines), amounts, times))
            element.clear()
            while element.getprevious() is not None:  # drop the entries already read
                del element.getparent()[0]
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc) from None
    return lines


# libxml2 options: never expand entities, never fetch or load a DTD, keep the parser's size limits.
_SAFE: dict[str, Any] = {"resolve_entities": False, "no_network": True, "load_dtd": False, "huge_tree": False,
                         "dtd_validation": False, "remove_pis": True}


def _syntax_error(exc: etree.XMLSyntaxError) -> StatementFileInvalid:
    line, column = getattr(exc, "position", None) or (exc.lineno or 0, 0)
    return _invalid(f"XML line {line} column {column}", "not well-formed XML")


def _camt_root(content: bytes) -> str:
    """The camt.053 namespace of the document's root; refuses a DTD and any other document."""
    if not content.strip():
        raise _invalid("XML", "the file is empty")
    events = etree.iterparse(io.BytesIO(content), events=("start",), **_SAFE)
    try:
        _event, root = next(iter(events))
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc) from None
    except StopIteration:
        raise _invalid("XML", "the file is empty") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise _invalid("XML", "refused: a DTD (DTDs, entities and external references are not allowed in a "
                              "statement file)")
    tag = root.tag if isinstance(root.tag, str) else ""
    namespace, _, local = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
    if not namespace:
        raise _invalid("XML root", f"<{local}> is not a camt.053 Document (namespace {CAMT053_NAMESPACE}NN)")
    if not namespace.startswith(CAMT053_NAMESPACE):
        raise _invalid("XML root", f"namespace {namespace[:100]!r} is not camt.053's ({CAMT053_NAMESPACE}NN)")
    if local != "Document":
        raise _invalid("XML root", f"<{local}> is not a camt.053 Document (namespace {CAMT053_NAMESPACE}NN)")
    return namespace


@functools.lru_cache(maxsize=64)
def _qualified(ns: str, path: str) -> tuple[str, ...]:
    return tuple(f"{{{ns}}}{part}" for part in path.split("/"))


def _camt_entry(entry: Any, ns: str, entry_no: int, first: int, amounts: _Amounts,
                times: dict[str, datetime]) -> list[StatementLine]:
    # Each element's children by tag (the first of each), built once: a dozen direct lookups per
    # entry cost far less than as many ElementPath searches.
    children: dict[int, dict[str, Any]] = {}

    def find(parent: Any, path: str) -> Any:
        node = parent
        for tag in _qualified(ns, path):
            kids = children.get(id(node))
            if kids is None:
                kids = children[id(node)] = {}
                for child in node:
                    kids.setdefault(child.tag, child)
            node = kids.get(tag)
            if node is None:
                return None
        return node

    def text(parent: Any, path: str) -> str | None:
        found = find(parent, path)
        return None if found is None or found.text is None else found.text.strip()

    where = f"Ntry {entry_no}"
    indicator = text(entry, "CdtDbtInd")
    if indicator not in ("CRDT", "DBIT"):
        raise _invalid(where, f"CdtDbtInd {indicator!r} must be CRDT or DBIT")
    status_code = text(entry, "Sts/Cd") or text(entry, "Sts")
    status = CAMT_STATUSES.get(status_code or "")
    if status is None:
        raise _invalid(where, f"Sts {status_code!r} is not one of {', '.join(CAMT_STATUSES)}")
    booked_text = text(entry, "BookgDt/DtTm") or text(entry, "BookgDt/Dt")
    booked_at = None
    if booked_text:
        booked_at = times.get(booked_text)
        if booked_at is None:
            booked_at = times[booked_text] = _timestamp(booked_text, where)
    entry_ref = text(entry, "AcctSvcrRef")
    details_tag, transaction_tag = _qualified(ns, "NtryDtls/TxDtls")
    transactions = [tx for details in entry if details.tag == details_tag
                    for tx in details if tx.tag == transaction_tag]

    def amount_of(parent: Any, path: str, what: str) -> tuple[int, str]:
        element = find(parent, path)
        if element is None or not (element.text or "").strip():
            raise _invalid(what, f"{path} is missing")
        currency = (element.get("Ccy") or "").strip()
        if not currency:
            raise _invalid(what, f"{path} has no Ccy attribute")
        value = amounts.minor(element.text.strip(), currency, what)  # type: ignore[union-attr]
        if value < 0:
            raise _invalid(what, f"{path} must not be negative (the sign is CdtDbtInd)")
        return (-value if indicator == "DBIT" else value), currency

    entry_amount = amount_of(entry, "Amt", where)
    if len(transactions) <= 1:
        tx = transactions[0] if transactions else None
        payment_ref = _end_to_end(text(tx, "Refs/EndToEndId") if tx is not None else None)
        channel_ref = (entry_ref or (text(tx, "Refs/AcctSvcrRef") if tx is not None else None)
                       or text(entry, "NtryRef") or f"NTRY-{entry_no}")
        return [StatementLine(first + 1, _ref(channel_ref, where, "AcctSvcrRef", required=True),  # type: ignore[arg-type]
                              _ref(payment_ref, where, "EndToEndId", required=False),
                              entry_amount[0], entry_amount[1], status, booked_at)]
    # A batch booking: one record per transaction, each with its own amount.
    lines = []
    total = 0
    for index, tx in enumerate(transactions, start=1):
        tx_where = f"{where} TxDtls {index}"
        amount = (amount_of(tx, "Amt", tx_where) if find(tx, "Amt") is not None
                  else amount_of(tx, "AmtDtls/TxAmt/Amt", tx_where))
        if amount[1] != entry_amount[1]:
            raise _invalid(tx_where, f"currency {amount[1]} differs from the entry's {entry_amount[1]}")
        total += amount[0]
        batch_ref = entry_ref or text(entry, "NtryRef") or f"NTRY-{entry_no}"
        channel_ref = text(tx, "Refs/AcctSvcrRef") or f"{batch_ref}/{index}"
        lines.append(StatementLine(first + index, _ref(channel_ref, tx_where, "AcctSvcrRef", required=True),  # type: ignore[arg-type]
                                   _ref(_end_to_end(text(tx, "Refs/EndToEndId")), tx_where, "EndToEndId", required=False),
                                   amount[0], amount[1], status, booked_at))
    if total != entry_amount[0]:
        raise _invalid(where, "the transactions' amounts do not add up to the entry's Amt")
    return lines


def _end_to_end(value: str | None) -> str | None:
    return None if value is None or value.upper() == "NOTPROVIDED" else value
