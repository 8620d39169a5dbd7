"""The signing schemes: the documented worked examples stay true, canonical forms, webhook checks,
and the SDK importing without the server's dependencies."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.sdk.signing import (
    SignatureFormatError,
    WebhookSignatureError,
    canonical_path,
    canonical_query,
    parse_authorization,
    sign,
    sign_request,
    string_to_sign,
    verify_webhook,
    webhook_signature_header,
)

DOC = (Path(__file__).parents[2] / "docs" / "super-entry.md").read_text(encoding="utf-8")


def test_the_documented_request_example_is_what_the_code_computes() -> None:
    section = DOC.split("### Worked example", 1)[1].split("### Refusals", 1)[0]
    key_id, secret = "pk_test_travel", "sk_test_s3cr3t-0123456789abcdef"
    assert f"Key id `{key_id}`, secret `{secret}`" in section
    request_line, body, documented_string, documented_header = re.findall(r"```\n(.*?)\n```", section, flags=re.S)
    method, target = request_line.split(" ")
    raw_path, _, raw_query = target.partition("?")
    body_bytes = body.encode("utf-8")
    assert f"({len(body_bytes)} bytes" in section
    assert hashlib.sha256(body_bytes).hexdigest() in section
    args = dict(key_id=key_id, timestamp=1767225600, nonce="n0nce-7Fq2Kx9LmP4wZ8tR", method=method,
                raw_path=raw_path, raw_query=raw_query, body=body_bytes)
    assert string_to_sign(**args) == documented_string
    header = sign_request(secret=secret, **args)["Authorization"]
    assert documented_header == f"Authorization: {header}"
    assert parse_authorization(header).signature == sign(secret, **args)


def test_the_documented_webhook_example_verifies() -> None:
    blocks = re.findall(r"```\n(.*?)\n```", DOC.split("For example, with secrets", 1)[1], flags=re.S)
    body, header_line = blocks[0], blocks[1]
    secrets = ["whsec_test_new-0123456789", "whsec_test_old-0123456789"]
    expected = webhook_signature_header(body.encode(), secrets, 1767225600)
    assert header_line == f"SceneOS-Signature: {expected}"
    assert verify_webhook(body.encode(), expected, secrets[1], now=1767225600 + 10) == 1767225600


def test_canonical_forms() -> None:
    assert canonical_path("/v1/a%20b/caf%C3%A9/x~y") == "/v1/a%20b/caf%C3%A9/x~y"
    assert canonical_path("/v1/a b/café") == "/v1/a%20b/caf%C3%A9"
    assert canonical_query("b=2&a=x+y&a&&c=%2F") == "a=&a=x%20y&b=2&c=%2F"
    assert canonical_query("") == ""


@given(path=st.text(min_size=1, max_size=30), params=st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=5))
def test_any_encoding_of_the_same_request_signs_the_same(path: str, params: list[tuple[str, str]]) -> None:
    from urllib.parse import quote, urlencode

    path = "/" + path.replace("\x00", "")
    encodings = [quote(path, safe="/"), quote(path, safe="/-_.~!$&'()*+,;=:@")]
    queries = [urlencode(params), urlencode(params, quote_via=quote)]
    paths = {canonical_path(p) for p in encodings}
    assert len(paths) == 1
    assert len({canonical_query(q) for q in queries}) == 1


def test_authorization_parsing_is_strict() -> None:
    good = "SceneOS-HMAC-SHA256 KeyId=k1, Timestamp=1, Nonce=" + "a" * 16 + ", Signature=" + "f" * 64
    assert parse_authorization(good).key_id == "k1"
    assert parse_authorization(good.replace(", ", ",")).nonce == "a" * 16
    for bad in ["", good.replace("k1", "k 1"), good + ", Extra=1", good.replace("f" * 64, "F" * 64),
                good.replace("SceneOS-HMAC-SHA256", "HMAC")]:
        with pytest.raises(SignatureFormatError):
            parse_authorization(bad)


def test_webhook_verification_refuses_what_it_should() -> None:
    body = b'{"id":"e1"}'
    header = webhook_signature_header(body, ["new-secret", "old-secret"], 1000)
    assert verify_webhook(body, header, ["new-secret"], now=1000) == 1000
    assert verify_webhook(body, header, "old-secret", now=1200) == 1000
    for call in [
        lambda: verify_webhook(body + b" ", header, "new-secret", now=1000),
        lambda: verify_webhook(body, header, "other", now=1000),
        lambda: verify_webhook(body, header, "new-secret", now=1000 + 301),
        lambda: verify_webhook(body, None, "new-secret", now=1000),
        lambda: verify_webhook(body, "t=1000", "new-secret", now=1000),
    ]:
        with pytest.raises(WebhookSignatureError):
            call()


def test_the_sdk_imports_without_the_servers_dependencies() -> None:
    code = (
        "import sys, core.sdk\n"
        "heavy = sorted(m for m in ('fastapi', 'starlette', 'sqlalchemy', 'pydantic', 'pluggy', 'structlog',"
        " 'dependency_injector', 'cryptography', 'limits') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).parents[2])
    assert result.stdout.strip() == "", f"core.sdk pulled in {result.stdout.strip()}"
