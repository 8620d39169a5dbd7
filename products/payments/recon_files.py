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
    numbered in file order; errors name the entry (``Ntry 3``). Where an element repeats, the first
    one counts.

    Read with lxml (libxml2) configured not to resolve entities, load DTDs or touch the network,
    and with its size limits on (no ``huge_tree``); a document that has a DTD at all is refused
    before its body is read. The file is read twice: the first event gives the root and any DTD,
    then the entries are streamed and dropped from the tree in batches once read, so memory stays
    bounded whatever the file's size.
    """
    namespace = _camt_root(content)
    tags = _camt_tags(namespace)
    amounts = _Amounts()
    lines: list[StatementLine] = []
    times: dict[str, datetime] = {}  # a day's file repeats its booking times
    entry_no = 0
    try:
        for _event, element in etree.iterparse(io.BytesIO(content), events=("end",), tag=tags.ntry, **XML_OPTIONS):
            entry_no += 1
            if len(lines) >= MAX_LINES:
                raise _invalid(f"Ntry {entry_no}", f"more than {MAX_LINES} records")
            _camt_entry(element, tags, entry_no, lines, amounts, times)
            if not entry_no % _DROP_EVERY:  # drop the entries read so far (and whatever preceded them)
                parent = element.getparent()
                if parent is not None:
                    del parent[:parent.index(element) + 1]
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc) from None
    return lines


# Entries read are dropped from the tree every this many (one deletion per batch, not per entry).
_DROP_EVERY = 256
# libxml2 options: never expand entities, never fetch or load a DTD, keep the parser's size limits.
# (Public so that the benchmark's baseline reads the file with the very same parser settings.)
XML_OPTIONS: dict[str, Any] = {"resolve_entities": False, "no_network": True, "load_dtd": False, "huge_tree": False,
                               "dtd_validation": False, "remove_pis": True}


def _syntax_error(exc: etree.XMLSyntaxError) -> StatementFileInvalid:
    line, column = getattr(exc, "position", None) or (exc.lineno or 0, 0)
    return _invalid(f"XML line {line} column {column}", "not well-formed XML")


def _camt_root(content: bytes) -> str:
    """The camt.053 namespace of the document's root; refuses a DTD and any other document."""
    if not content.strip():
        raise _invalid("XML", "the file is empty")
    events = etree.iterparse(io.BytesIO(content), events=("start",), **XML_OPTIONS)
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


class _CamtTags(NamedTuple):
    """The qualified (``{namespace}Local``) tags of the camt.053 elements read, for one namespace."""

    ntry: str
    amt: str
    cdt_dbt_ind: str
    sts: str
    cd: str
    bookg_dt: str
    dt_tm: str
    dt: str
    acct_svcr_ref: str
    ntry_ref: str
    ntry_dtls: str
    tx_dtls: str
    refs: str
    end_to_end_id: str
    amt_dtls: str
    tx_amt: str


@functools.lru_cache(maxsize=32)
def _camt_tags(ns: str) -> _CamtTags:
    return _CamtTags(*(f"{{{ns}}}{local}" for local in (
        "Ntry", "Amt", "CdtDbtInd", "Sts", "Cd", "BookgDt", "DtTm", "Dt", "AcctSvcrRef", "NtryRef", "NtryDtls",
        "TxDtls", "Refs", "EndToEndId", "AmtDtls", "TxAmt")))


def _child(parent: Any, tag: str) -> Any:
    """The first child of ``parent`` with ``tag`` (None if ``parent`` is None or has none)."""
    if parent is not None:
        for child in parent:
            if child.tag == tag:
                return child
    return None


def _text(element: Any) -> str | None:
    if element is None:
        return None
    value = element.text
    return None if value is None else value.strip()


def _camt_amount(element: Any, path: str, where: str, debit: bool, amounts: _Amounts) -> tuple[int, str]:
    """An ``Amt`` element -> (signed minor units, currency); refuses a missing, negative or bad amount."""
    text = _text(element)
    if not text:
        raise _invalid(where, f"{path} is missing")
    currency = element.get("Ccy")
    exponent = amounts.exponents.get(currency) if currency else None
    match = AMOUNT.match(text) if exponent is not None else None
    if match is not None and not match.group(1):  # the common case: unsigned, all decimals given
        whole, fraction = match.group(2, 3)
        if fraction is None:
            value = int(whole) * 10**exponent  # type: ignore[operator]
        elif len(fraction) == exponent:
            value = int(whole + fraction)
        else:
            value = amounts.minor(text, currency, where)  # type: ignore[arg-type]
    else:
        currency = (currency or "").strip()
        if not currency:
            raise _invalid(where, f"{path} has no Ccy attribute")
        value = amounts.minor(text, currency, where)
        if value < 0:
            raise _invalid(where, f"{path} must not be negative (the sign is CdtDbtInd)")
    return (-value if debit else value), currency  # type: ignore[return-value]


def _camt_entry(entry: Any, t: _CamtTags, entry_no: int, lines: list[StatementLine], amounts: _Amounts,
                times: dict[str, datetime]) -> None:
    """Append the record(s) of one ``Ntry`` to ``lines``; raise :class:`StatementFileInvalid` if malformed.

    The entry's children are visited once (a tag comparison each), then a few direct child lookups
    below them: no ElementPath search, no per-entry lookup tables.
    """
    amt = indicator = sts = booked = entry_ref = ntry_ref = None
    details = []
    for child in entry:
        tag = child.tag
        if tag == t.amt:
            if amt is None:
                amt = child
        elif tag == t.cdt_dbt_ind:
            if indicator is None:
                indicator = child
        elif tag == t.sts:
            if sts is None:
                sts = child
        elif tag == t.bookg_dt:
            if booked is None:
                booked = child
        elif tag == t.acct_svcr_ref:
            if entry_ref is None:
                entry_ref = child
        elif tag == t.ntry_dtls:
            details.append(child)
        elif tag == t.ntry_ref and ntry_ref is None:
            ntry_ref = child
    where = f"Ntry {entry_no}"
    direction = _text(indicator)
    if direction != "CRDT" and direction != "DBIT":
        raise _invalid(where, f"CdtDbtInd {direction!r} must be CRDT or DBIT")
    status_code = _text(_child(sts, t.cd)) or _text(sts)
    status = CAMT_STATUSES.get(status_code or "")
    if status is None:
        raise _invalid(where, f"Sts {status_code!r} is not one of {', '.join(CAMT_STATUSES)}")
    booked_at = None
    if booked is not None:
        date_time = day = None
        for child in booked:
            tag = child.tag
            if tag == t.dt_tm:
                if date_time is None:
                    date_time = child
            elif tag == t.dt and day is None:
                day = child
        booked_text = _text(date_time) or _text(day)
        if booked_text:
            booked_at = times.get(booked_text)
            if booked_at is None:
                booked_at = times[booked_text] = _timestamp(booked_text, where)
    debit = direction == "DBIT"
    amount, currency = _camt_amount(amt, "Amt", where, debit, amounts)
    entry_ref_text = _text(entry_ref)
    transactions = [tx for detail in details for tx in detail if tx.tag == t.tx_dtls]
    if len(transactions) <= 1:
        refs = _child(transactions[0], t.refs) if transactions else None
        channel_ref = entry_ref_text
        if channel_ref is None or REF.match(channel_ref) is None:
            channel_ref = _ref(channel_ref or _text(_child(refs, t.acct_svcr_ref)) or _text(ntry_ref)
                               or f"NTRY-{entry_no}", where, "AcctSvcrRef", required=True)
        payment_ref = _text(_child(refs, t.end_to_end_id))
        if payment_ref is None or REF.match(payment_ref) is None or payment_ref.upper() == "NOTPROVIDED":
            payment_ref = _ref(_end_to_end(payment_ref), where, "EndToEndId", required=False)
        lines.append(StatementLine(len(lines) + 1, channel_ref, payment_ref,  # type: ignore[arg-type]
                                   amount, currency, status, booked_at))
        return
    # A batch booking: one record per transaction, each with its own amount.
    first = len(lines)
    total = 0
    batch_ref = entry_ref_text or _text(ntry_ref) or f"NTRY-{entry_no}"
    for index, tx in enumerate(transactions, start=1):
        tx_where = f"{where} TxDtls {index}"
        tx_amt = _child(tx, t.amt)
        if tx_amt is not None:
            tx_amount, tx_currency = _camt_amount(tx_amt, "Amt", tx_where, debit, amounts)
        else:
            tx_amount, tx_currency = _camt_amount(_child(_child(_child(tx, t.amt_dtls), t.tx_amt), t.amt),
                                                  "AmtDtls/TxAmt/Amt", tx_where, debit, amounts)
        if tx_currency != currency:
            raise _invalid(tx_where, f"currency {tx_currency} differs from the entry's {currency}")
        total += tx_amount
        refs = _child(tx, t.refs)
        channel_ref = _text(_child(refs, t.acct_svcr_ref)) or f"{batch_ref}/{index}"
        lines.append(StatementLine(first + index, _ref(channel_ref, tx_where, "AcctSvcrRef", required=True),  # type: ignore[arg-type]
                                   _ref(_end_to_end(_text(_child(refs, t.end_to_end_id))), tx_where, "EndToEndId",
                                        required=False),
                                   tx_amount, tx_currency, status, booked_at))
    if total != amount:
        raise _invalid(where, "the transactions' amounts do not add up to the entry's Amt")


def _end_to_end(value: str | None) -> str | None:
    return None if value is None or value.upper() == "NOTPROVIDED" else value
