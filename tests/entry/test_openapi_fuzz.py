"""Property-based fuzzing of the whole API against its own OpenAPI document (schemathesis): no 500s,
every status, content type, header and body as documented. Partner routes are signed the way the SDK
signs them; the bank's routes carry the admin key. Bounded: ``SCENEOS_FUZZ_EXAMPLES`` per operation."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import datetime

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.clock import SimulatedClock
from core.sdk.signing import sign_request
from core.testing.harness import make_app, partner_config, tenant_config
from core.testing.live import LiveServer
from infra.entry.gateway import is_partner_path

EXAMPLES = int(os.environ.get("SCENEOS_FUZZ_EXAMPLES", "8"))
ADMIN_KEY = "fuzz-admin-key-0123456789abcdef"
KEY = ("pk_fuzz", "fuzz-secret-0123456789abcdef-0123")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


class Signer(requests.auth.AuthBase):
    """Signs partner requests like the SDK (fresh nonce, the bank's clock); admin key elsewhere."""

    def __init__(self, clock: SimulatedClock) -> None:
        self.clock = clock

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        path, _, query = (request.path_url or "/").partition("?")
        if not is_partner_path(path):
            request.headers["X-SceneOS-Admin-Key"] = ADMIN_KEY
            return request
        body = request.body or b""
        body = body.encode("utf-8") if isinstance(body, str) else body
        if request.method in ("POST", "PATCH") and "Idempotency-Key" not in request.headers:
            request.headers["Idempotency-Key"] = secrets.token_hex(8)
        request.headers.update(sign_request(key_id=KEY[0], secret=KEY[1], method=request.method or "GET",
                                            raw_path=path, raw_query=query, body=body,
                                            timestamp=int(self.clock.now().timestamp()), nonce=secrets.token_hex(12)))
        return request


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, SimulatedClock, dict]]:
    clock = SimulatedClock(datetime.fromisoformat("2026-01-01T00:00:00+00:00"))
    database = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    config = {
        "entry": {"admin_api_keys": [ADMIN_KEY], "webhook_poll_seconds": 0},
        "tenants": {"bank": tenant_config("Fuzz Bank", modules={"party": {}, "entry": {}}, partners={
            "fuzz": partner_config("Fuzz", key_id=KEY[0], secret=KEY[1], scopes=["party"], rate_limit="100000/second"),
        })},
    }
    app = make_app(config, database_url=f"sqlite:///{database}", clock=clock)
    http = app.http()
    schema = http.openapi()
    with LiveServer(http) as server:
        yield server.url, clock, schema
    app.close()


def test_the_api_keeps_its_documented_promises(fuzz_server) -> None:
    """Positive and negative cases for every operation; all failures reported together."""
    from hypothesis import given

    url, clock, document = fuzz_server
    failures: list[str] = []
    operations = [result.ok() for result in schemathesis.openapi.from_dict(document).get_all_operations()]
    assert len(operations) > 20
    session = requests.Session()
    session.auth = Signer(clock)
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                      derandomize=True, database=None)
            def run(case) -> None:
                response = case.call(base_url=url, session=session)
                if _refused_by_the_http_server(response):
                    return
                case.validate_response(response, checks=CHECKS)

            try:
                run()
            except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
                continue
            except Exception as exc:  # collect, so one run shows every broken promise
                failures.append(f"{operation.label} [{mode.value}]: {type(exc).__name__}: {str(exc)[:700]}")
    session.close()
    assert not failures, "\n\n".join(failures)


def _refused_by_the_http_server(response: requests.Response) -> bool:
    """A negative case can be a malformed HTTP message (a header named ``-``, a ``content-length``
    of ``o-l``): uvicorn's parser refuses it with its own plain-text 400 before the API sees it.
    That answer is the HTTP server's, not one of the API's documented promises."""
    return (response.status_code == 400 and response.text == "Invalid HTTP request received."
            and response.headers.get("content-type", "").startswith("text/plain"))


def test_the_document_declares_the_security_schemes_and_problem_errors(fuzz_server) -> None:
    document = fuzz_server[2]
    assert set(document["components"]["securitySchemes"]) == {"PartnerSignature", "AdminApiKey"}
    operation = document["paths"]["/v1/party/customers"]["post"]
    assert operation["security"] == [{"PartnerSignature": []}]
    assert {"400", "401", "403", "409", "422", "429", "500"} <= set(operation["responses"])
    assert "application/problem+json" in operation["responses"]["422"]["content"]
    assert any(p["name"] == "Idempotency-Key" and p["required"] for p in operation["parameters"])
    admin = document["paths"]["/v1/tenants/{tenant_id}/party/customers"]["post"]
    assert admin["security"] == [{"AdminApiKey": []}] and "401" in admin["responses"]
