"""EMVCo QR Code Specification for Payment Systems, Merchant-Presented Mode: build a dynamic payload.

A payload is a sequence of ID (2 digits) + length (2 digits) + value objects ending with the CRC
object ``63``; the CRC is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF) over the
whole payload including ``6304``, as four upper-case hexadecimal characters.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from datetime import UTC, datetime

import segno


def crc16_ccitt_false(data: bytes) -> int:
    # binascii's CRC-CCITT (polynomial 0x1021, not reflected, no final XOR) started at 0xFFFF is
    # exactly CRC-16/CCITT-FALSE, in C: a bit-by-bit loop in Python cost ~0.2 ms per payload, and
    # every QR sale computes it four times (issue, resolve, pay). test_emv checks it independently.
    return binascii.crc_hqx(data, 0xFFFF)


def tlv(tag: str, value: str) -> str:
    if len(tag) != 2 or not tag.isdigit():
        raise ValueError(f"EMV tag must be two digits, not {tag!r}")
    if not value or len(value) > 99:
        raise ValueError(f"EMV tag {tag}: value must be 1-99 characters, got {len(value)}")
    return f"{tag}{len(value):02d}{value}"


@dataclass(frozen=True)
class QrFields:
    guid: str
    merchant_id: str
    mcc: str
    currency_numeric: str
    amount: str  # major units, "126.50"
    country_code: str
    merchant_name: str
    merchant_city: str
    bill_no: str
    reference: str  # the payment number
    terminal_label: str
    expires_at: datetime


def build_payload(f: QrFields) -> str:
    """A dynamic (point of initiation ``12``) Merchant-Presented Mode payload with its CRC."""
    body = "".join([
        tlv("00", "01"),
        tlv("01", "12"),
        tlv("26", tlv("00", f.guid) + tlv("01", f.merchant_id)),
        tlv("52", f.mcc),
        tlv("53", f.currency_numeric),
        tlv("54", f.amount),
        tlv("58", f.country_code),
        tlv("59", f.merchant_name),
        tlv("60", f.merchant_city),
        # Additional data: 01 bill number, 05 reference label, 07 terminal label.
        tlv("62", tlv("01", f.bill_no) + tlv("05", f.reference) + tlv("07", f.terminal_label)),
        # Unreserved template: 00 GUID, 01 expiry (UTC, YYYYMMDDhhmmss).
        tlv("80", tlv("00", f.guid) + tlv("01", f.expires_at.astimezone(UTC).strftime("%Y%m%d%H%M%S"))),
    ])
    body += "6304"
    return body + f"{crc16_ccitt_false(body.encode('utf-8')):04X}"


def parse_objects(text: str) -> dict[str, str]:
    """Top-level ID/length/value objects of a payload (no CRC check). Raises ValueError if malformed."""
    out: dict[str, str] = {}
    i = 0
    while i < len(text):
        if i + 4 > len(text) or not text[i:i + 4].isdigit():
            raise ValueError(f"malformed object at position {i}")
        tag, length = text[i:i + 2], int(text[i + 2:i + 4])
        value = text[i + 4:i + 4 + length]
        if len(value) != length:
            raise ValueError(f"object {tag} is truncated")
        out[tag] = value
        i += 4 + length
    return out


def check_crc(payload: str) -> bool:
    if len(payload) < 8 or payload[-8:-4] != "6304":
        return False
    return f"{crc16_ccitt_false(payload[:-4].encode('utf-8')):04X}" == payload[-4:].upper()


def reference_of(payload: str) -> str:
    """The payment number (tag 62, sub-tag 05) of a payload whose CRC is right."""
    if not check_crc(payload):
        raise ValueError("the QR payload's CRC does not match")
    top = parse_objects(payload)
    if top.get("00") != "01" or "62" not in top:
        raise ValueError("not an EMVCo merchant-presented payload with additional data")
    reference = parse_objects(top["62"]).get("05")
    if not reference:
        raise ValueError("the QR payload has no reference label")
    return reference


def render_svg(payload: str, *, scale: int = 4) -> str:
    """The payload as an SVG QR code (segno, error correction M)."""
    import io

    buffer = io.BytesIO()
    segno.make_qr(payload, error="m").save(buffer, kind="svg", scale=scale, xmldecl=False)
    return buffer.getvalue().decode("utf-8")
