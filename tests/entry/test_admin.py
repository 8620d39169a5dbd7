"""The bank's side: admin API key, partners created through the API and CLI, secrets at rest,
configuration checks, logs and metrics."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from entry_support import TRAVEL
from sqlalchemy import select

from core.errors import ConfigError
from core.sdk import AuthenticationError, PermissionDenied

ADMIN_KEY = "admin-key-0123456789abcdef"
ADMIN = {"X-SceneOS-Admin-Key": ADMIN_KEY}


def test_the_banks_routes_need_an_admin_key(entry_app, live_server) -> None:
    app = entry_app(admin_api_keys=[ADMIN_KEY])
    url = live_server(app)
    for path in ("/v1/tenants/bank_a/party/customers/cus_x", "/v1/admin/tenants/bank_a/partners"):
        refused = httpx.get(f"{url}{path}")
        assert refused.status_code == 401 and refused.json()["code"] == "admin_key_required"
        assert httpx.get(f"{url}{path}", headers={"X-SceneOS-Admin-Key": "nope"}).status_code == 401
    assert httpx.get(f"{url}/v1/tenants/bank_a/party/customers/cus_x", headers=ADMIN).status_code == 404
    assert httpx.get(f"{url}/v1/tenants/nobody/party/customers/cus_x").status_code == 401  # learns nothing
    partners = httpx.get(f"{url}/v1/admin/tenants/bank_a/partners", headers=ADMIN).json()
    assert [p["partner_id"] for p in partners] == ["reader", "shop", "sleepy", "travel"]
    assert all(p["source"] == "configuration" for p in partners)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_on_postgresql_no_admin_key_means_closed_and_no_master_key_means_no_start(entry_app, live_server,
                                                                                  make_sceneos) -> None:
    app = entry_app()
    assert httpx.get(f"{live_server(app)}/v1/admin/tenants/bank_a/partners").status_code == 401
    with pytest.raises(ConfigError, match=r"entry\.master_key: is required with a server database"):
        make_sceneos({"entry": {"master_key": None}, "tenants": {"bank": {"name": "B", "modules": {"entry": {}}}}})


def test_partners_created_through_the_admin_api_sign_rotate_and_are_revoked(entry_app, live_server,
                                                                             partner_client) -> None:
    from infra.entry.models import EntryCredential
    from infra.entry.runtime import entry_of

    app = entry_app(admin_api_keys=[ADMIN_KEY])
    url = f"{live_server(app)}/v1/admin/tenants/bank_a"
    made = httpx.post(f"{url}/partners", headers=ADMIN, json={
        "partner_id": "mall", "name": "Luxury mall", "display_name": "Mall Installments", "scopes": ["orders:read"],
        "webhook_url": "https://mall.example/hooks"}).json()
    key_id, secret = made["credential"]["key_id"], made["credential"]["secret"]
    assert made["partner"]["source"] == "database" and made["webhook_secret"]["secret"].startswith("whsec_")
    mall = partner_client(app, key_id, secret)
    assert mall.get("/v1/me").data["display_name"] == "Mall Installments"
    with pytest.raises(PermissionDenied):
        mall.post("/v1/orders/orders", json={"reference": "m", "amount": "1.00"})

    # Secrets are stored encrypted, never in clear.
    with app.system_unit_of_work() as session:
        stored = session.scalars(select(EntryCredential.secret_encrypted)).one()
    assert secret not in stored and entry_of(app).cipher.decrypt(stored) == secret

    changed = httpx.patch(f"{url}/partners/mall", headers=ADMIN, json={"scopes": ["orders"]}).json()
    assert changed["scopes"] == ["orders"]
    assert mall.post("/v1/orders/orders", json={"reference": "m", "amount": "1.00"}).status_code == 201

    second = httpx.post(f"{url}/partners/mall/credentials", headers=ADMIN).json()
    assert partner_client(app, second["key_id"], second["secret"]).get("/v1/me").status_code == 200
    revoked = httpx.post(f"{url}/partners/mall/credentials/{key_id}/revoke", headers=ADMIN).json()
    assert [c["key_id"] for c in revoked if c["revoked_at"]] == [key_id]
    with pytest.raises(AuthenticationError) as refused:
        mall.get("/v1/me")
    assert refused.value.code == "signature_invalid"

    assert httpx.post(f"{url}/partners", headers=ADMIN, json={"partner_id": "mall", "name": "x"}).status_code == 409
    assert httpx.patch(f"{url}/partners/travel", headers=ADMIN, json={"name": "x"}).json()["code"] == \
        "partner_managed_by_configuration"
    bad = httpx.post(f"{url}/partners", headers=ADMIN, json={"partner_id": "x1", "name": "x", "scopes": ["Bad Scope"]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "scopes"


def sceneos(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "COLUMNS": "200", **(env or {})}
    environment.pop("SCENEOS_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "core.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120, env=environment)


CONFIG = """
[database]
url = "sqlite:///cli.db"
[entry]
admin_api_keys = ["admin-key-in-the-file-0123456789"]
[tenants.bank_a]
name = "Bank A"
[tenants.bank_a.modules.party]
[tenants.bank_a.partners.travel]
name = "Travel"
scopes = ["party"]
credentials = [{ key_id = "pk_cli_travel", secret = "cli-travel-secret-0123456789" }]
webhook_secret = "cli-webhook-secret-0123456789"
"""


def test_the_cli_creates_and_lists_partners_and_config_check_masks_every_secret(tmp_path: Path) -> None:
    (tmp_path / "sceneos.toml").write_text(CONFIG, encoding="utf-8")
    env = {"SCENEOS__ENTRY__MASTER_KEY": "cli-master-key-0123456789abcdef"}
    created = sceneos("entry", "partners", "create", "shop", "--name", "Shop", "-t", "bank_a", "--scope", "party:read",
                      cwd=tmp_path, env=env)
    assert created.returncode == 0, created.stderr
    secret = next(line.split()[1] for line in created.stdout.splitlines() if line.startswith("secret:"))
    listed = sceneos("entry", "partners", "list", "-t", "bank_a", cwd=tmp_path, env=env)
    assert listed.returncode == 0 and "shop" in listed.stdout and "travel" in listed.stdout
    assert secret not in listed.stdout
    checked = sceneos("config", "check", "--json", cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stderr
    for value in ("cli-travel-secret", "cli-webhook-secret", "admin-key-in-the-file", "cli-master-key"):
        assert value not in checked.stdout, value
    assert json.loads(checked.stdout)["entry"]["master_key"] == "**********"


def test_each_request_logs_one_line_without_raw_identifiers(entry_app, partner_client, live_server) -> None:
    import structlog

    from core.logging import configure_logging
    from core.testing.factories import mobile, resident_id

    stream = io.StringIO()
    configure_logging("json", "INFO", stream=stream)
    try:
        from datetime import date

        app = entry_app()
        id_number = resident_id(date(1980, 1, 1))
        # No SDK retry on a slow answer (a loaded CI machine once took over the SDK's 10 s): this
        # test counts the access log's lines, and a retry is a line of its own (409, in progress).
        bank = partner_client(app, *TRAVEL, timeout=120, max_retries=0)
        customer = bank.post("/v1/party/customers", json={"name": "Log", "id_number": id_number,
                                                          "phone": mobile(4242)}, headers={"X-Request-ID": "r-77"},
                             idempotency_key="log-1")
        replayed = bank.post("/v1/party/customers", json={"name": "Log", "id_number": id_number,
                                                          "phone": mobile(4242)}, idempotency_key="log-1")
        assert replayed.replayed
        bank.get(f"/v1/party/customers/{customer.data['customer_no']}")
        metrics = httpx.get(f"{live_server(app)}/metrics").text
    finally:
        structlog.reset_defaults()
        configure_logging("console", "WARNING")
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    access = [line for line in lines if line["event"] == "request" and line.get("partner_id") == "travel"]
    assert [(a["method"], a["route"], a["status"]) for a in access] == [
        ("POST", "/v1/party/customers", 201), ("POST", "/v1/party/customers", 201),
        ("GET", "/v1/party/customers/{customer_no}", 200)]
    assert access[0]["request_id"] == "r-77" and access[0]["tenant_id"] == "bank_a" and "duration_ms" in access[0]
    assert id_number not in stream.getvalue() and mobile(4242) not in stream.getvalue()
    assert customer.data["customer_no"] not in json.dumps(access)
    assert 'sceneos_http_requests_total{method="POST",partner="travel",route="/v1/party/customers",status="201",tenant="bank_a"} 2.0' in metrics
    assert "sceneos_http_request_duration_seconds_bucket" in metrics
