"""The cashier console in a real browser: headless Chromium (the OS's package) driven by Playwright.

A cashier signs in, shows a QR code, the payer's wallet pays it through the super entry with the
partner SDK, the page shows "succeeded" within a second without reloading, a supervisor approves a
refund, the cashier takes cash, closes the shift and reads its statement. Skipped with the reason when ``/usr/bin/chromium`` is missing,
except under ``CI=true``, where it must run (``.ci/run`` installs Chromium), as PostgreSQL tests do.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.testing.harness import partner_config, tenant_config
from products.payments.service import OperatorDraft
from tests.payments.conftest import OPERATORS, SETTINGS, fund_wallet, ledger_call, service_call

CHROMIUM = Path(os.environ.get("SCENEOS_TEST_CHROMIUM", "/usr/bin/chromium"))
WALLET = ("wallet-key-1", "wallet-secret-0123456789abcdef")
BASE = "/web/bank/payments"


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium, or set SCENEOS_TEST_CHROMIUM)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " — required under CI=true", pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # The OS's Chromium, never a downloaded build (`playwright install` is not used).
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def app(make_sceneos):
    config = {
        "entry": {"webhook_poll_seconds": 0},
        "tenants": {"bank": tenant_config(
            modules={"party": {}, "entry": {},
                     "payments": {**SETTINGS, "console": {"session_secret": "browser-test-secret-0123456789abcdef"}}},
            partners={"wallet": partner_config("Wallet", key_id=WALLET[0], secret=WALLET[1], scopes=["payments"])},
        )},
    }
    app = make_sceneos(config)
    for employee_no, name, role, pin in OPERATORS:
        service_call(app, lambda svc, e=employee_no, n=name, r=role, p=pin: svc.add_operator(
            OperatorDraft(employee_no=e, merchant_id="station1", name=n, role=r, pin=p)))
    fund_wallet(app, "cust:alice", 5_000, owner="cus_alice")
    return app


def test_a_qr_sale_in_the_browser_paid_by_the_wallet(app, browser, live_server, partner_client) -> None:
    from playwright.sync_api import expect

    url = live_server(app)
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    # Script errors, CSP violations and failed requests (a wrong PIN's 401 page is expected; so is the
    # browser's own /favicon.ico probe). Failed loads are judged by their responses, not console lines.
    page.on("console", lambda message: problems.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource") else None)
    page.on("response", lambda response: problems.append(f"{response.status} {response.url}")
            if response.status >= 400 and not response.url.endswith(("/sign-in", "/favicon.ico")) else None)

    # Sign in at window 1.
    page.goto(f"{url}{BASE}/?terminal=win1")
    page.fill("#employee_no", "C001")
    page.fill("#pin", "0000")
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#error")).to_contain_text("wrong employee number or PIN")
    page.fill("#pin", "1234")
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#qr-form")).to_be_visible()
    expect(page.locator("#operator")).to_have_text("C001")

    # Show a QR code for 20.00.
    page.fill("#qr-amount", "20.00")
    page.fill("#qr-bill", "TK-1")
    page.click("#qr-form button[type=submit]")
    expect(page.locator("#payment-status")).to_have_text("created")
    image = page.locator("#qr img")
    expect(image).to_be_visible()
    page.wait_for_function("() => { const img = document.querySelector('#qr img');"
                           " return img.complete && img.naturalWidth > 0; }", timeout=5_000)  # the SVG renders
    payload = page.locator("#qr").get_attribute("data-payload")
    assert payload and payload.startswith("000201")
    page.evaluate("window.sceneosSamePage = 'not reloaded'")

    # The payer's wallet pays it through the super entry, for its consenting user.
    wallet = partner_client(app, *WALLET)
    wallet.put("/v1/users/u-alice", json={"customer_no": "cus_alice"})
    wallet.post("/v1/users/u-alice/consents", json={"scopes": ["payments"]})
    paid = wallet.post("/v1/payments/qr/pay", json={"payload": payload, "payer_account": "cust:alice",
                                                    "request_id": "w-1"}, user_id="u-alice").data
    assert paid["status"] == "succeeded"
    started = time.monotonic()
    expect(page.locator("#payment-status")).to_have_text("succeeded", timeout=1_000)
    shown_after = time.monotonic() - started
    assert shown_after < 1.0, f"the page showed the payment {shown_after:.2f}s after it succeeded"
    assert page.evaluate("window.sceneosSamePage") == "not reloaded"
    expect(page.locator("#outcome")).to_have_text("Paid.")
    expect(page.locator("#qr")).to_be_hidden()
    expect(page.locator("#refund-section")).to_be_visible()

    # A supervisor approves a refund of 5.00 at the window.
    page.fill("#refund-amount", "5.00")
    page.fill("#supervisor-no", "S001")
    page.fill("#supervisor-pin", "9876")
    page.click("#refund-form button[type=submit]")
    expect(page.locator("#notice")).to_have_text("Refund recorded.")
    expect(page.locator("#refunded")).to_have_text("5.00")

    # Cash for 12.50.
    page.click("#new-sale")
    page.fill("#cash-amount", "12.50")
    page.fill("#cash-bill", "TK-2")
    page.click("#cash-form button[type=submit]")
    expect(page.locator("#payment-status")).to_have_text("succeeded")

    # Close the shift and read its statement.
    page.click("#new-sale")
    expect(page.locator("#recent tbody tr")).to_have_count(2)
    page.click("#close-shift")
    expect(page.locator("#statement")).to_be_visible()
    expect(page.locator("#statement tr[data-kind=sale][data-tender=qr] td").nth(1)).to_have_text("1")
    expect(page.locator("#statement tr[data-kind=sale][data-tender=cash] td").nth(2)).to_have_text("12.50")
    expect(page.locator("#total-sales")).to_have_text("32.50")
    expect(page.locator("#total-refunds")).to_have_text("5.00")
    expect(page.locator("#net")).to_have_text("27.50")
    # The session ended with the shift: the console asks to sign in again.
    page.goto(f"{url}{BASE}/")
    expect(page.locator("#sign-in-form")).to_be_visible()
    assert problems == []

    assert service_call(app, lambda svc: svc.open_shift_of("C001")) is None
    balances = ledger_call(app, lambda ledger: ledger.balances(["cust:alice", "merchant:station1", "bank:payments:fees"]))
    assert balances["cust:alice"].available_minor == 3_500
    # 20.00 less the 0.12 fee, then 5.00 back of which 0.03 (pro rata, rounded down) came from the fee.
    assert (balances["merchant:station1"].available_minor, balances["bank:payments:fees"].available_minor) == (1_491, 9)
