"""The cashier console (``/web/{tenant}/payments/``) through an HTTP client: sessions, CSRF, forms.

The browser itself is driven in ``test_console_browser.py``; here every form is posted as a browser
would post it, and outcomes are checked in the database and the ledger.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ValidationFailed
from core.testing.harness import tenant_config
from products.payments.console.amounts import format_amount, parse_amount
from products.payments.console.session import SESSION_COOKIE
from products.payments.service import OperatorDraft
from tests.payments.conftest import OPERATORS, SETTINGS, fund_wallet, ledger_call, service_call

BASE = "/web/bank/payments"
SECRET = "console-secret-0123456789abcdefghij"
ADMIN_KEY = "admin-key-0123456789abcdefghijklmnop"


def config(*, console: dict | None = None, admin_key: bool = False, **settings) -> dict:
    payments = {**SETTINGS, "console": console if console is not None else {"session_secret": SECRET}, **settings}
    cfg: dict = {"tenants": {"bank": tenant_config(modules={"party": {}, "payments": payments})}}
    if admin_key:
        cfg["entry"] = {"admin_api_keys": [ADMIN_KEY]}
    return cfg


def add_operators(app) -> None:
    for employee_no, name, role, pin in OPERATORS:
        service_call(app, lambda svc, e=employee_no, n=name, r=role, p=pin: svc.add_operator(
            OperatorDraft(employee_no=e, merchant_id="station1", name=n, role=r, pin=p)))


@pytest.fixture
def station(make_sceneos):
    app = make_sceneos(config())
    add_operators(app)
    return app


def field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no field {name} in the page"
    return found.group(1)


def sign_in(client, employee_no: str = "C001", pin: str = "1234", terminal_id: str = "win1"):
    page = client.get(f"{BASE}/")
    assert page.status_code == 200 and 'id="sign-in-form"' in page.text
    return client.post(f"{BASE}/sign-in", data={"employee_no": employee_no, "pin": pin, "terminal_id": terminal_id,
                                               "login_token": field(page.text, "login_token")},
                       follow_redirects=False)


def signed_in(http_client, app, **kwargs):
    client = http_client(app)
    answer = sign_in(client, **kwargs)
    assert answer.status_code == 303 and answer.headers["location"] == f"{BASE}/", answer.text
    return client


def csrf(client) -> str:
    return field(client.get(f"{BASE}/").text, "csrf_token")


def take(client, kind: str, amount: str, bill_no: str, *, request_id: str | None = None, token: str | None = None):
    home = client.get(f"{BASE}/").text
    form = home.split(f'id="{kind}-form"', 1)[1]
    return client.post(f"{BASE}/{kind}", data={
        "amount": amount, "bill_no": bill_no, "csrf_token": token if token is not None else field(form, "csrf_token"),
        "request_id": request_id or field(form, "request_id")}, follow_redirects=False)


def payments_of(app):
    from sqlalchemy import select

    from products.payments.models import Payment

    return service_call(app, lambda svc: [(p.tender, p.status, p.amount_minor) for p in
                                          svc.session.scalars(select(Payment).order_by(Payment.id))])


def open_shifts(app) -> list:
    return [service_call(app, lambda svc, e=e: svc.open_shift_of(e)) for e, *_ in OPERATORS]


# --- the whole window, sign-in to statement -------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_a_shift_at_the_window(make_sceneos, http_client) -> None:
    app = make_sceneos(config())
    add_operators(app)
    client = http_client(app)
    answer = sign_in(client)
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert SESSION_COOKIE in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert f"Path={BASE}/" in cookie and "Max-Age=36000" in cookie and "1234" not in cookie
    home = client.get(f"{BASE}/")
    assert home.status_code == 200 and 'id="qr-form"' in home.text and "C001" in home.text
    assert "Content-Security-Policy" in home.headers and home.headers["cache-control"] == "no-store"

    made = take(client, "qr", "20.00", "TK-1")
    assert made.status_code == 303
    payment_url = made.headers["location"]
    payment_no = payment_url.rsplit("/", 1)[1]
    page = client.get(payment_url)
    assert page.status_code == 200 and 'data-status="created"' in page.text and "20.00" in page.text
    payload = re.search(r'data-payload="([^"]+)"', page.text).group(1)
    svg = client.get(f"{payment_url}/qr.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml") and "<svg" in svg.text
    assert client.get(f"{payment_url}/status").json()["status"] == "created"

    # The payer's wallet pays it (service layer here; through the SDK in the browser test).
    fund_wallet(app, "cust:alice", 5_000, owner="cus_alice")
    service_call(app, lambda svc: svc.pay(payload.replace("&amp;", "&"), "cust:alice", "w-1"))
    status = client.get(f"{payment_url}/status").json()
    assert (status["status"], status["amount"], status["currency"]) == ("succeeded", "20.00", "CNY")

    cash = take(client, "cash", "12.50", "TK-2")
    assert cash.status_code == 303
    assert 'data-status="succeeded"' in client.get(cash.headers["location"]).text

    # A refund of 5.00 of the QR payment, approved by the supervisor.
    page = client.get(payment_url).text
    refund_form = page.split('id="refund-form"', 1)[1]
    refunded = client.post(f"{payment_url}/refund", data={
        "amount": "5.00", "supervisor_employee_no": "S001", "supervisor_pin": "9876", "reason": "seat changed",
        "request_id": field(refund_form, "request_id"), "csrf_token": field(refund_form, "csrf_token")},
        follow_redirects=False)
    assert refunded.status_code == 303, refunded.text
    assert 'id="refunded">5.00<' in client.get(payment_url).text
    # The same form sent again (a double click) refunds nothing more.
    again = client.post(f"{payment_url}/refund", data={
        "amount": "5.00", "supervisor_employee_no": "S001", "supervisor_pin": "9876",
        "request_id": field(refund_form, "request_id"), "csrf_token": field(refund_form, "csrf_token")},
        follow_redirects=False)
    assert again.status_code == 303
    assert ledger_call(app, lambda ledger: ledger.balance("cust:alice").available_minor) == 5_000 - 2_000 + 500

    closed = client.post(f"{BASE}/close", data={"csrf_token": csrf(client)})
    assert closed.status_code == 200 and 'id="statement"' in closed.text
    assert re.search(r'data-tender="qr"><td>Sales · qr</td><td class="num">1</td><td class="num">20.00', closed.text)
    assert re.search(r'data-tender="cash"><td>Sales · cash</td><td class="num">1</td><td class="num">12.50', closed.text)
    assert 'id="total-sales">32.50<' in closed.text and 'id="total-refunds">5.00<' in closed.text
    assert 'id="net">27.50<' in closed.text
    assert open_shifts(app) == [None, None, None]
    # The session ended with the shift: the console asks to sign in again, the status endpoint says 401.
    assert 'id="sign-in-form"' in client.get(f"{BASE}/").text
    assert client.get(f"{payment_url}/status").status_code == 401
    statement = service_call(app, lambda svc: svc.statement(closed.text.split('data-shift-no="')[1].split('"')[0]))
    assert (statement.sales_minor, statement.refunds_minor, statement.net_minor) == (3_250, 500, 2_750)
    assert service_call(app, lambda svc: svc.get_payment(payment_no)).refunded_minor == 500


# --- signing in ----------------------------------------------------------------------------------


def test_wrong_pin_then_lockout(station, http_client, sim_clock) -> None:
    client = http_client(station)
    wrong = sign_in(client, pin="0000")
    assert wrong.status_code == 401 and "wrong employee number or PIN" in wrong.text
    assert 'data-code="pin_rejected"' in wrong.text and f"{SESSION_COOKIE}=" not in wrong.headers.get("set-cookie", "")
    unknown = sign_in(client, employee_no="NOBODY", pin="1234")
    assert unknown.status_code == 401 and "wrong employee number or PIN" in unknown.text
    sign_in(client, pin="0001")
    locked = sign_in(client, pin="0002")  # the third wrong PIN in a row (max_pin_failures = 3)
    assert locked.status_code == 423 and "locked" in locked.text and 'data-code="operator_locked"' in locked.text
    still = sign_in(client, pin="1234")
    assert still.status_code == 423 and "locked until" in still.text
    assert open_shifts(station) == [None, None, None]
    assert "Traceback" not in still.text
    sim_clock.advance(timedelta(seconds=601))
    assert sign_in(client, pin="1234").status_code == 303


def test_sign_in_needs_its_form_and_a_window_of_the_merchant(station, http_client) -> None:
    client = http_client(station)
    client.get(f"{BASE}/")
    forged = client.post(f"{BASE}/sign-in", data={"employee_no": "C001", "pin": "1234", "terminal_id": "win1",
                                                 "login_token": "forged"}, follow_redirects=False)
    assert forged.status_code == 403 and 'data-code="csrf_refused"' in forged.text
    empty = sign_in(client, pin="")
    assert empty.status_code == 422 and "enter your employee number, PIN and window" in empty.text
    nowhere = sign_in(client, terminal_id="win9")
    assert nowhere.status_code == 404 and "no terminal" in nowhere.text
    assert open_shifts(station) == [None, None, None]
    # Signed in at window 1, the same operator cannot open a second shift at window 2.
    assert sign_in(client).status_code == 303
    other = http_client(station)
    twice = sign_in(other, terminal_id="win2")
    assert twice.status_code == 409 and "sign out first" in twice.text


# --- CSRF, sessions and the admin key --------------------------------------------------------------


def test_posts_without_the_sessions_token_change_nothing(station, http_client) -> None:
    client = signed_in(http_client, station)
    refused = take(client, "qr", "20.00", "TK-1", token="not-the-token")
    assert refused.status_code == 403 and 'data-code="csrf_refused"' in refused.text
    assert take(client, "cash", "20.00", "TK-1", token="").status_code == 403
    token = csrf(client)
    cross_site = client.post(f"{BASE}/cash", data={"amount": "1.00", "bill_no": "X", "request_id": "r-x",
                                                   "csrf_token": token},
                             headers={"Origin": "https://evil.example"}, follow_redirects=False)
    assert cross_site.status_code == 403 and "another site" in cross_site.text
    assert client.post(f"{BASE}/close", data={"csrf_token": "nope"}).status_code == 403
    assert payments_of(station) == []
    assert open_shifts(station)[0] is not None
    # The same token from another operator's session is refused too: tokens are per session.
    other = signed_in(http_client, station, employee_no="C002", pin="2345", terminal_id="win2")
    assert take(other, "cash", "1.00", "B-1", token=token).status_code == 403
    assert payments_of(station) == []


def test_a_forged_expired_or_foreign_cookie_is_no_session(make_sceneos, http_client, sim_clock) -> None:
    app = make_sceneos(config(console={"session_secret": SECRET, "session_minutes": 30}))
    add_operators(app)
    client = signed_in(http_client, app)
    cookie = client.cookies.get(SESSION_COOKIE)
    body, mac = cookie.split(".")
    tampered = http_client(app)
    tampered.cookies.set(SESSION_COOKIE, body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac,
                         path=f"{BASE}/")
    assert 'id="sign-in-form"' in tampered.get(f"{BASE}/").text
    # A cookie signed with another console's secret is refused.
    other_app = make_sceneos(config(console={"session_secret": "another-secret-0123456789abcdefghij"}))
    add_operators(other_app)
    stranger = http_client(other_app)
    stranger.cookies.set(SESSION_COOKIE, cookie, path=f"{BASE}/")
    assert 'id="sign-in-form"' in stranger.get(f"{BASE}/").text
    assert 'id="qr-form"' in client.get(f"{BASE}/").text
    sim_clock.advance(timedelta(minutes=31))
    expired = client.get(f"{BASE}/", follow_redirects=False)
    assert expired.status_code == 200 and 'id="sign-in-form"' in expired.text


def test_no_admin_key_reaches_the_browser(make_sceneos, http_client) -> None:
    app = make_sceneos(config(admin_key=True))
    add_operators(app)
    client = signed_in(http_client, app)  # no X-SceneOS-Admin-Key header anywhere
    made = take(client, "cash", "3.00", "B-1")
    assert made.status_code == 303
    for page in (client.get(f"{BASE}/"), client.get(made.headers["location"])):
        assert ADMIN_KEY not in page.text and "X-SceneOS-Admin-Key" not in page.text
    # The API itself still wants the key; the console's cookie does not open it.
    assert client.get("/v1/tenants/bank/payments/merchants").status_code == 401


def test_unset_secret_uses_a_process_key_on_sqlite(make_sceneos, http_client) -> None:
    app = make_sceneos(config(console={}))
    add_operators(app)
    client = signed_in(http_client, app)
    assert take(client, "cash", "1.00", "B-1").status_code == 303


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_unset_secret_switches_the_console_off_on_a_server_database(make_sceneos, http_client) -> None:
    app = make_sceneos(config(console={}))
    page = http_client(app).get(f"{BASE}/")
    assert page.status_code == 503 and "session_secret" in page.text


def test_a_tenant_without_the_module_has_no_console(make_sceneos, http_client) -> None:
    app = make_sceneos({"tenants": {"bank": tenant_config(modules={"party": {}})}})
    assert http_client(app).get(f"{BASE}/").status_code == 404


def test_another_merchants_payment_is_not_found(make_sceneos, http_client) -> None:
    from tests.payments.conftest import STATION

    second = {**STATION, "merchant_id": "station2", "settlement_account": "merchant:station2",
              "stores": [{"store_id": "hall2", "name": "Hall 2", "terminals": [{"terminal_id": "w21", "label": "W21"}]}]}
    app = make_sceneos(config(merchants=[STATION, second]))
    add_operators(app)
    service_call(app, lambda svc: svc.add_operator(OperatorDraft(employee_no="X001", merchant_id="station2",
                                                                 name="Other", role="cashier", pin="1111")))
    mine = signed_in(http_client, app)
    made = take(mine, "cash", "1.00", "B-1")
    theirs = signed_in(http_client, app, employee_no="X001", pin="1111", terminal_id="w21")
    assert theirs.get(made.headers["location"]).status_code == 404
    assert theirs.get(made.headers["location"] + "/status").status_code == 404
    assert theirs.get(made.headers["location"] + "/qr.svg").status_code == 404


# --- amounts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "currency", "minor"), [
    ("12.50", "CNY", 1250), ("12.5", "CNY", 1250), ("12", "CNY", 1200), (" 0.01 ", "CNY", 1),
    ("1250", "JPY", 1250), ("1.234", "BHD", 1234), ("99999999.99", "CNY", 9_999_999_999),
])
def test_amounts_are_exact(text, currency, minor) -> None:
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(("text", "currency", "code"), [
    ("12.505", "CNY", "too_many_decimals"), ("100.5", "JPY", "too_many_decimals"), ("0", "CNY", "not_positive"),
    ("0.00", "CNY", "not_positive"), ("-5", "CNY", "invalid_amount"), ("1,000", "CNY", "invalid_amount"),
    ("1e3", "CNY", "invalid_amount"), ("", "CNY", "invalid_amount"), ("12.", "CNY", "invalid_amount"),
    (".5", "CNY", "invalid_amount"), ("NaN", "CNY", "invalid_amount"), ("１２", "CNY", "invalid_amount"),
])
def test_bad_amounts_are_refused(text, currency, code) -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse_amount(text, currency)
    assert refused.value.details[0]["code"] == code


@given(minor=st.integers(min_value=1, max_value=10**15 - 1), currency=st.sampled_from(["CNY", "JPY", "BHD", "USD"]))
def test_typing_what_is_shown_gives_the_same_minor_units(minor, currency) -> None:
    shown = format_amount(minor, currency)
    assert parse_amount(shown, currency) == minor
    assert Decimal(shown) == Decimal(minor).scaleb(-{"JPY": 0, "BHD": 3}.get(currency, 2))


@given(whole=st.integers(min_value=0, max_value=10**6), extra=st.text("0123456789", min_size=3, max_size=6))
def test_more_decimals_than_the_currency_has_are_refused(whole, extra) -> None:
    with pytest.raises(ValidationFailed):
        parse_amount(f"{whole}.{extra}", "CNY")


def test_a_bad_amount_on_the_page_changes_nothing(station, http_client) -> None:
    client = signed_in(http_client, station)
    refused = take(client, "qr", "12.505", "TK-1")
    assert refused.status_code == 422 and "CNY amounts have at most 2 decimals" in refused.text
    assert 'value="12.505"' in refused.text  # the form keeps what the teller typed
    assert take(client, "cash", "abc", "TK-1").status_code == 422
    bad_bill = take(client, "cash", "1.00", "no spaces allowed")
    assert bad_bill.status_code == 422 and "bill_no" in bad_bill.text
    assert payments_of(station) == []


# --- refunds and cancelling ------------------------------------------------------------------------


def test_refunds_need_a_supervisor_and_never_exceed_the_payment(station, http_client) -> None:
    client = signed_in(http_client, station)
    made = take(client, "cash", "10.00", "B-1")
    url = made.headers["location"]

    def refund(amount: str, employee_no: str, pin: str):
        form = client.get(url).text.split('id="refund-form"', 1)[1]
        return client.post(f"{url}/refund", data={
            "amount": amount, "supervisor_employee_no": employee_no, "supervisor_pin": pin,
            "request_id": field(form, "request_id"), "csrf_token": field(form, "csrf_token")}, follow_redirects=False)

    wrong_pin = refund("1.00", "S001", "0000")
    assert wrong_pin.status_code == 401 and "wrong employee number or PIN" in wrong_pin.text
    cashier = refund("1.00", "C002", "2345")
    assert cashier.status_code == 403 and "only a supervisor" in cashier.text
    too_much = refund("10.01", "S001", "9876")
    assert too_much.status_code == 422 and 'data-code="refund_exceeds_paid"' in too_much.text
    assert "exceeds" in too_much.text and 'value="10.01"' in too_much.text
    precise = refund("1.001", "S001", "9876")
    assert precise.status_code == 422
    assert service_call(station, lambda svc: svc.get_payment(url.rsplit("/", 1)[1])).refunded_minor == 0
    assert refund("10.00", "S001", "9876").status_code == 303
    page = client.get(url).text
    assert 'id="refunded">10.00<' in page
    # Fully refunded: the form is hidden.
    assert re.search(r'id="refund-section" data-show-when="succeeded"\s+hidden', page)


def test_an_unpaid_qr_can_be_cancelled_and_is_not_polled_after(station, http_client) -> None:
    client = signed_in(http_client, station)
    url = take(client, "qr", "8.00", "B-1").headers["location"]
    page = client.get(url).text
    cancel_form = page.split('id="cancel-form"', 1)[1]
    cancelled = client.post(f"{url}/cancel", data={"csrf_token": field(cancel_form, "csrf_token")},
                            follow_redirects=False)
    assert cancelled.status_code == 303
    page = client.get(cancelled.headers["location"]).text
    assert "QR code cancelled." in page and 'data-status="cancelled"' in page and "data-status-url" not in page
    again = client.post(f"{url}/cancel", data={"csrf_token": field(cancel_form, "csrf_token")}, follow_redirects=False)
    assert again.status_code == 303  # idempotent


def test_a_double_submitted_form_takes_one_payment(station, http_client) -> None:
    client = signed_in(http_client, station)
    first = take(client, "cash", "4.00", "B-1", request_id="con_same")
    second = take(client, "cash", "4.00", "B-1", request_id="con_same")
    assert first.headers["location"] == second.headers["location"]
    assert payments_of(station) == [("cash", "succeeded", 400)]


def test_the_script_and_style_are_served_from_the_package(station, http_client) -> None:
    client = http_client(station)
    script = client.get(f"{BASE}/static/console.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "data-status-url" in script.text
    assert client.get(f"{BASE}/static/console.css").status_code == 200
    assert client.get(f"{BASE}/static/..%2Fsession.py").status_code == 404
