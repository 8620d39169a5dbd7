"""Parsing the acquiring channel's statement files: CSV and camt.053, exact amounts, safe XML."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from products.payments.recon_files import StatementFileInvalid, parse_camt053, parse_csv, parse_statement

DATA = Path(__file__).parent / "data"
HEADER = "channel_ref,payment_ref,amount,currency,status,booked_at\n"
CAMT = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"


def sample(name: str, **refs: str) -> bytes:
    text = (DATA / name).read_text(encoding="utf-8")
    for key, value in refs.items():
        text = text.replace("{" + key + "}", value)
    return text.encode("utf-8")


def camt_entry(amount: str, ccy: str = "CNY", indicator: str = "CRDT", status: str = "BOOK", ref: str = "pay_1") -> bytes:
    return (f'<Document xmlns="{CAMT}"><BkToCstmrStmt><Stmt><Ntry><Amt Ccy="{ccy}">{amount}</Amt>'
            f"<CdtDbtInd>{indicator}</CdtDbtInd><Sts>{status}</Sts><AcctSvcrRef>C1</AcctSvcrRef>"
            f"<NtryDtls><TxDtls><Refs><EndToEndId>{ref}</EndToEndId></Refs></TxDtls></NtryDtls>"
            "</Ntry></Stmt></BkToCstmrStmt></Document>").encode()


def test_the_sample_csv_and_camt053_files_give_the_same_records() -> None:
    refs = {"P1": "pay_one", "P2": "pay_two", "P4": "pay_four"}
    from_csv = parse_csv(sample("recon_channel_2026-01-01.csv", **refs))
    from_camt = parse_camt053(sample("recon_channel_2026-01-01.camt053.xml", **refs))
    assert [(r.channel_ref, r.payment_ref, r.amount_minor, r.currency, r.status) for r in from_csv] == [
        ("CH20260101000001", "pay_one", 10_000, "CNY", "succeeded"),
        ("CH20260101000002", "pay_two", 4_500, "CNY", "succeeded"),
        ("CH20260101000004", "pay_four", 3_000, "CNY", "succeeded"),
    ]
    assert [(r.channel_ref, r.payment_ref, r.amount_minor, r.currency, r.status) for r in from_camt] == [
        (r.channel_ref, r.payment_ref, r.amount_minor, r.currency, r.status) for r in from_csv]
    assert from_csv[0].booked_at == datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)
    assert from_camt[2].booked_at == datetime(2026, 1, 1, tzinfo=UTC)  # BookgDt/Dt
    assert [r.line_no for r in from_csv] == [2, 3, 4]  # the header is line 1


def test_camt053_v02_batch_booking_debits_and_fallback_references() -> None:
    lines = parse_camt053((DATA / "recon_camt053_v02_batch.xml").read_bytes())
    assert [(r.line_no, r.channel_ref, r.payment_ref, r.amount_minor, r.status) for r in lines] == [
        (1, "CH-A", "pay_a", 10_000, "succeeded"),
        (2, "BATCH-1/2", None, 5_000, "succeeded"),       # EndToEndId NOTPROVIDED
        (3, "FEE-1", None, -500, "pending"),              # DBIT is negative, PDNG pending
    ]


@given(amount_minor=st.integers(min_value=-10**14, max_value=10**14),
       currency=st.sampled_from([("CNY", 2), ("JPY", 0), ("BHD", 3), ("USD", 2)]))
def test_amounts_parse_exactly_in_minor_units(amount_minor: int, currency: tuple[str, int]) -> None:
    code, exponent = currency
    text = f"{Decimal(amount_minor).scaleb(-exponent):f}"
    [line] = parse_csv((HEADER + f"C1,pay_1,{text},{code},SUCCESS,\n").encode())
    assert (line.amount_minor, line.currency) == (amount_minor, code)
    magnitude = f"{Decimal(abs(amount_minor)).scaleb(-exponent):f}"
    [entry] = parse_camt053(camt_entry(magnitude, code, "DBIT" if amount_minor < 0 else "CRDT"))
    assert entry.amount_minor == amount_minor


@pytest.mark.parametrize(("content", "message"), [
    (b"", "line 1: the file is empty"),
    (b"channel_ref,payment_ref,amount,currency,status\n", "line 1: missing column(s) booked_at"),
    ((HEADER + "C1,pay_1,1.00,CNY,SUCCESS,\nC2,pay_2,12.5.0,CNY,SUCCESS,\n").encode(), "line 3: amount '12.5.0'"),
    ((HEADER + "C1,pay_1,1.001,CNY,SUCCESS,\n").encode(), "more decimals than CNY has (2)"),
    ((HEADER + "C1,pay_1,1e2,CNY,SUCCESS,\n").encode(), "not a decimal number"),
    ((HEADER + "C1,pay_1,1.00,RMB,SUCCESS,\n").encode(), "line 2: currency 'RMB' is not an ISO 4217 code"),
    ((HEADER + "C1,pay_1,1.00,cny,SUCCESS,\n").encode(), "currency 'cny'"),
    ((HEADER + "C1,pay_1,1.00,CNY,MAYBE,\n").encode(), "line 2: status 'MAYBE'"),
    ((HEADER + "C1,pay_1,1.00,CNY,SUCCESS\n").encode(), "line 2: 5 fields where the header has 6"),
    ((HEADER + ",pay_1,1.00,CNY,SUCCESS,\n").encode(), "line 2: channel_ref is missing"),
    ((HEADER + "C1,pay_1,1.00,CNY,SUCCESS,2026-01-01T10:00:00\n").encode(), "has no UTC offset"),
    (b"\xff\xfe bad", "not UTF-8"),
])
def test_a_malformed_csv_is_refused_naming_the_line(content: bytes, message: str) -> None:
    with pytest.raises(StatementFileInvalid) as refused:
        parse_statement(content, "csv")
    assert message in str(refused.value) and refused.value.code == "invalid_statement_file"


@pytest.mark.parametrize(("content", "message"), [
    (b"<Document xmlns='urn:iso:std:iso:20022:tech:xsd:camt.053.001.02'><Stmt>", "not well-formed XML"),
    (b"not xml at all", "XML line 1"),
    (b"<Document xmlns='urn:iso:std:iso:20022:tech:xsd:camt.052.001.02'/>", "camt.052.001.02' is not camt.053's"),
    (b"<Document/>", "<Document> is not a camt.053 Document"),
    (b"<Report xmlns='urn:iso:std:iso:20022:tech:xsd:camt.053.001.02'/>", "<Report> is not a camt.053 Document"),
    (camt_entry("1.00").replace(b'<Amt Ccy="CNY">1.00</Amt>', b""), "Ntry 1: Amt is missing"),
    (camt_entry("1.00", ccy="XXY"), "Ntry 1: currency 'XXY'"),
    (camt_entry("-1.00"), "must not be negative"),
    (camt_entry("1,00"), "Ntry 1: amount '1,00' is not a decimal number"),
    (camt_entry("1.00", indicator="CRED"), "CdtDbtInd 'CRED'"),
    (camt_entry("1.00", status="DONE"), "Sts 'DONE'"),
    (camt_entry("1.00").replace(b' Ccy="CNY"', b""), "Amt has no Ccy attribute"),
])
def test_a_malformed_camt053_is_refused_naming_the_element(content: bytes, message: str) -> None:
    with pytest.raises(StatementFileInvalid) as refused:
        parse_statement(content, "camt053")
    assert message in str(refused.value)


XXE = (b'<?xml version="1.0"?>\n<!DOCTYPE Document [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
       b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt><Stmt><Ntry>'
       b'<Amt Ccy="CNY">1.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts><AcctSvcrRef>&xxe;</AcctSvcrRef>'
       b"</Ntry></Stmt></BkToCstmrStmt></Document>")
LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
          b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">&lol2;</Document>')
EXTERNAL_DTD = (b'<?xml version="1.0"?><!DOCTYPE Document SYSTEM "http://127.0.0.1:9/camt.dtd">'
                b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"/>')


@pytest.mark.parametrize("payload", [XXE, LAUGHS, EXTERNAL_DTD], ids=["xxe", "billion-laughs", "external-dtd"])
def test_xxe_and_entity_payloads_are_refused_before_expansion(payload: bytes) -> None:
    with pytest.raises(StatementFileInvalid) as refused:
        parse_camt053(payload)
    assert "DTDs, entities and external references are not allowed" in str(refused.value)
    assert "root:" not in str(refused.value)


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(StatementFileInvalid, match="unknown statement format 'mt940'"):
        parse_statement(b"", "mt940")


def test_no_external_entity_or_dtd_is_ever_fetched() -> None:
    """The parser refuses these documents without touching the network: a listening server sees nothing."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    hits: list[bytes] = []

    def serve() -> None:
        try:
            connection, _ = server.accept()
            hits.append(connection.recv(1024))
            connection.close()
        except OSError:
            pass

    thread = threading.Thread(target=serve)
    thread.start()
    payloads = [
        f'<?xml version="1.0"?><!DOCTYPE Document SYSTEM "http://127.0.0.1:{port}/camt.dtd"><Document xmlns="{CAMT}"/>',
        f'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY % ext SYSTEM "http://127.0.0.1:{port}/p.ent"> %ext;]>'
        f'<Document xmlns="{CAMT}"/>',
        f'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "http://127.0.0.1:{port}/x">]>'
        f'<Document xmlns="{CAMT}"><BkToCstmrStmt>&x;</BkToCstmrStmt></Document>',
    ]
    try:
        for payload in payloads:
            with pytest.raises(StatementFileInvalid, match="not allowed in a statement file"):
                parse_camt053(payload.encode())
    finally:
        thread.join()
        server.close()
    assert hits == []


# The parser drops entries it has read in batches of 256: a longer file reads the same as its CSV.
CAMT_NS_08 = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**9), st.sampled_from(["CNY", "JPY", "USD"]), st.booleans(),
                          st.sampled_from(["BOOK", "PDNG"])), min_size=250, max_size=700))
def test_a_long_camt053_file_reads_like_the_csv_of_the_same_records(records):
    def text(minor, ccy):
        return str(minor) if ccy == "JPY" else f"{minor // 100}.{minor % 100:02d}"
    entries, rows = [], ["channel_ref,payment_ref,amount,currency,status,booked_at"]
    for n, (minor, ccy, debit, sts) in enumerate(records):
        entries.append(f'<Ntry><Amt Ccy="{ccy}">{text(minor, ccy)}</Amt><CdtDbtInd>{"DBIT" if debit else "CRDT"}'
                       f"</CdtDbtInd><Sts><Cd>{sts}</Cd></Sts><BookgDt><Dt>2026-03-02</Dt></BookgDt>"
                       f"<AcctSvcrRef>CH{n}</AcctSvcrRef><NtryDtls><TxDtls><Refs><EndToEndId>pay_{n}</EndToEndId>"
                       "</Refs></TxDtls></NtryDtls></Ntry>")
        rows.append(f"CH{n},pay_{n},{'-' if debit else ''}{text(minor, ccy)},{ccy},"
                    f"{'booked' if sts == 'BOOK' else 'pending'},2026-03-02")
    xml = f'<Document xmlns="{CAMT_NS_08}"><BkToCstmrStmt><Stmt>{"".join(entries)}</Stmt></BkToCstmrStmt></Document>'
    from_xml = parse_camt053(xml.encode())
    from_csv = parse_csv("\n".join(rows).encode())
    assert [line[1:] for line in from_xml] == [line[1:] for line in from_csv]
    assert [line.line_no for line in from_xml] == list(range(1, len(records) + 1))
