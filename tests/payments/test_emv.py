"""Every generated QR payload parsed by an independent EMVCo MPM parser and CRC written here."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from products.payments import emv
from tests.payments.conftest import service_call, sign_in


def crc_ccitt_false(data: bytes) -> str:
    """Table-driven CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor)."""
    table = []
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = (c << 1) ^ 0x1021 if c & 0x8000 else c << 1
        table.append(c & 0xFFFF)
    crc = 0xFFFF
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ b) & 0xFF]
    return f"{crc:04X}"


def parse(payload: str) -> dict[str, str]:
    """ID (2 digits), length (2 digits), value; the CRC object must be last and correct."""
    out, i = {}, 0
    while i < len(payload):
        tag, n = payload[i:i + 2], int(payload[i + 2:i + 4])
        out[tag] = payload[i + 4:i + 4 + n]
        assert len(out[tag]) == n, f"object {tag} truncated"
        i += 4 + n
    assert list(out)[-1] == "63" and len(out["63"]) == 4
    assert crc_ccitt_false(payload[:-4].encode()) == out["63"]
    return out


def test_crc_matches_the_published_check_value() -> None:
    # CRC-16/CCITT-FALSE of "123456789" is 0x29B1 (the catalogue's check value).
    assert crc_ccitt_false(b"123456789") == "29B1"
    assert emv.crc16_ccitt_false(b"123456789") == 0x29B1


def test_a_known_emvco_sample_payload_has_the_right_crc() -> None:
    # The sample payload of the EMVCo MPM specification's annex (CRC 6304 + "A13A").
    body = ("00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678"
            "520441115802CN5914BEST TRANSPORT6007BEIJING64200002ZH0104最佳运输0202北京"
            "540523.7253031565502016233030412340603***0708A60086670902ME91320016A0112233449988770708123456786304")
    assert emv.check_crc(body + "A13A")
    assert crc_ccitt_false(body.encode()) == "A13A"


def test_every_generated_payload_parses_with_the_independent_parser(station, sim_clock) -> None:
    shift = sign_in(station, "C001", "1234", "win1")
    for i, amount in enumerate([1, 99, 12650, 100000000]):
        view = service_call(station, lambda svc, a=amount, i=i: svc.create_qr(shift.shift_no, a, f"BILL-{i}", f"r{i}"))
        top = parse(view.payload)
        assert top["00"] == "01" and top["01"] == "12"  # format 01, dynamic
        assert top["52"] == "4131" and top["53"] == "156" and top["58"] == "CN"
        assert top["54"] == f"{amount // 100}.{amount % 100:02d}"
        assert top["59"] == "Coach Station" and top["60"] == "Hangzhou"
        account = parse_sub(top["26"])
        assert account == {"00": "cn.sceneos.pay", "01": "station1"}
        extra = parse_sub(top["62"])
        assert extra == {"01": f"BILL-{i}", "05": view.payment_no, "07": "Window 1"}
        expiry = parse_sub(top["80"])["01"]
        assert datetime.strptime(expiry, "%Y%m%d%H%M%S").replace(tzinfo=UTC) == view.expires_at.replace(microsecond=0)


def parse_sub(value: str) -> dict[str, str]:
    out, i = {}, 0
    while i < len(value):
        n = int(value[i + 2:i + 4])
        out[value[i:i + 2]] = value[i + 4:i + 4 + n]
        i += 4 + n
    return out


@settings(max_examples=60, deadline=None)
@given(amount=st.integers(min_value=1, max_value=10**12),
       bill=st.from_regex(r"[A-Za-z0-9_.-]{1,25}", fullmatch=True),
       name=st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=25))
def test_builder_fields_round_trip(amount: int, bill: str, name: str) -> None:
    payload = emv.build_payload(emv.QrFields(
        guid="g", merchant_id="m1", mcc="5411", currency_numeric="156", amount=f"{amount // 100}.{amount % 100:02d}",
        country_code="CN", merchant_name=name, merchant_city="City", bill_no=bill, reference="pay_x",
        terminal_label="T", expires_at=datetime(2026, 1, 1, tzinfo=UTC)))
    top = parse(payload)
    assert top["59"] == name and parse_sub(top["62"])["01"] == bill
    assert emv.reference_of(payload) == "pay_x"


def test_a_tampered_payload_is_refused() -> None:
    payload = emv.build_payload(emv.QrFields("g", "m1", "5411", "156", "1.00", "CN", "N", "C", "B", "pay_x", "T",
                                             datetime(2026, 1, 1, tzinfo=UTC)))
    with pytest.raises(ValueError, match="CRC"):
        emv.reference_of(payload.replace("541", "542", 1)[:-4] + payload[-4:])
    with pytest.raises(ValueError):
        emv.reference_of("garbage")


def test_svg_rendering_is_a_qr_code() -> None:
    payload = emv.build_payload(emv.QrFields("g", "m1", "5411", "156", "1.00", "CN", "N", "C", "B", "pay_x", "T",
                                             datetime(2026, 1, 1, tzinfo=UTC)))
    svg = emv.render_svg(payload)
    assert svg.startswith("<svg") and "</svg>" in svg and "path" in svg
