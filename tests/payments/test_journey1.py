"""Journey 1 end to end (issue 7): one business day of the coach station's smart cashier.

Everything goes over real HTTP against the application served by uvicorn: the station's side
through the bank's routes with the admin key, the wallet partner's side through the SDK's
``PartnerClient``. The simulated clock runs the day (2026-01-01 in Asia/Shanghai; the clock starts
at 08:00 local): the merchant and its windows are configured through the admin API, three operators
are added, two cashiers sign in at the two windows, passengers pay dynamic QR codes from their own
bank accounts (through the wallet, with consent), show payment codes issued through the wallet,
or pay cash; a supervisor approves a partial refund; the shifts close and every statement is
checked figure by figure; after midnight the day is settled (gross, fees, net, and its ledger
effect) and reconciled against the acquiring channel's file, CSV and camt.053, in which one
payment is missing and one has the wrong amount: both are found, nothing else, and one is resolved
by a named user with the audit recorded. The merchant's system receives every event as a signed
webhook.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

import httpx
import pytest

from core.sdk import PartnerClient
from core.sdk.errors import SceneOSAPIError
from core.testing.factories import mobile, resident_id
from core.testing.harness import partner_config, tenant_config
from products.payments.reconciliation import CLEARING_ACCOUNT, WRITE_OFF_ACCOUNT
from tests.payments.conftest import fund_wallet, ledger_call
from tests.payments.test_merchant_webhooks import SECRET, Receiver, send_due

BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
ADMIN_KEY = "admin-key-journey1-0123456789abcdef"
WALLET = ("wallet-key-j1", "wallet-secret-j1-0123456789abcdef")
BASE = "/v1/tenants/bank/payments"
DAY = date(2026, 1, 1)
SHANGHAI = ZoneInfo("Asia/Shanghai")
FEE_RATE = Decimal("0.006")
OPENING_BALANCE = 100_000  # each passenger's account, 1,000.00 CNY

OPERATORS = [
    {"employee_no": "C001", "merchant_id": "station1", "name": "Wang Fang", "role": "cashier", "pin": "1234"},
    {"employee_no": "C002", "merchant_id": "station1", "name": "Li Na", "role": "cashier", "pin": "2345"},
    {"employee_no": "S001", "merchant_id": "station1", "name": "Zhao Lei", "role": "supervisor", "pin": "9876"},
]
PASSENGERS = {"alice": ("Han Meimei", date(1990, 3, 8), 1), "bob": ("Li Lei", date(1988, 7, 21), 2)}


def fee_of(amount_minor: int) -> int:
    """The merchant discount as the bank computes it: amount x rate, half-even to the fen."""
    return int((Decimal(amount_minor) * FEE_RATE).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, f"{response.request.method} {response.request.url}: {response.text}"
    return response.json()


@dataclass
class Day:
    """What the day produced, by name, for the checks after it."""

    bank: httpx.Client
    wallet: PartnerClient
    receiver: Receiver
    payments: dict[str, dict]
    shifts: dict[str, str]
    accounts: dict[str, str]
    users: dict[str, str]


@pytest.fixture
def receiver(sim_clock) -> Iterator[Receiver]:
    hook = Receiver(sim_clock)
    yield hook
    hook.close()


def build_app(make_sceneos):
    return make_sceneos({
        "entry": {"webhook_poll_seconds": 0, "admin_api_keys": [ADMIN_KEY]},
        "tenants": {"bank": tenant_config(
            "Test Bank",
            modules={"party": {}, "entry": {},
                     # No merchant in the file: the station is configured through the admin API.
                     "payments": {"pin_scrypt_n": 1024, "max_pin_failures": 3, "lockout_seconds": 600,
                                  "qr_ttl_seconds": 300}},
            partners={"wallet": partner_config("Wallet", key_id=WALLET[0], secret=WALLET[1], scopes=["payments"])},
        )},
    })


def configure_station(app, live_server, partner_client, receiver) -> Day:
    url = live_server(app)
    bank = httpx.Client(base_url=url, headers={"X-SceneOS-Admin-Key": ADMIN_KEY}, timeout=30)
    refused = httpx.get(f"{url}{BASE}/merchants", timeout=30)  # the bank's routes need its key
    assert refused.status_code == 401 and refused.json()["code"] == "admin_key_required"

    station = {"merchant_id": "station1", "name": "Coach Station", "city": "Hangzhou", "mcc": "4131",
               "settlement_account": "merchant:station1", "fee_rate": str(FEE_RATE),
               "webhook_url": receiver.url, "webhook_secret": SECRET,
               "stores": [{"store_id": "hall", "name": "Ticket hall",
                           "terminals": [{"terminal_id": "win1", "label": "Window 1"},
                                         {"terminal_id": "win2", "label": "Window 2"}]}]}
    merchant = ok(bank.put(f"{BASE}/merchants/station1", json=station))
    assert merchant["webhook_secret_set"] is True and SECRET not in str(merchant)
    assert [t["terminal_id"] for t in merchant["stores"][0]["terminals"]] == ["win1", "win2"]
    for operator in OPERATORS:
        made = ok(bank.post(f"{BASE}/operators", json=operator), 201)
        assert made["role"] == operator["role"] and "pin" not in made

    # The passengers are the bank's customers (registered through the party module), each with an
    # account the wallet pays from, opened and funded in the ledger: there is no deposit product yet.
    accounts, users = {}, {}
    wallet = partner_client(app, *WALLET)
    for key, (name, born, sequence) in PASSENGERS.items():
        customer = ok(bank.post("/v1/tenants/bank/party/customers", json={
            "name": name, "id_number": resident_id(born, sequence=sequence), "phone": mobile(sequence)}), 201)
        accounts[key] = f"cust:{customer['customer_no']}"
        fund_wallet(app, accounts[key], OPENING_BALANCE, owner=customer["customer_no"])
        users[key] = f"u-{key}"
        wallet.put(f"/v1/users/{users[key]}", json={"customer_no": customer["customer_no"]})
    # Without the user's consent the wallet cannot pay for them.
    with pytest.raises(SceneOSAPIError) as no_consent:
        wallet.post("/v1/payments/codes", json={"request_id": "c-0", "payer_account": accounts["alice"]},
                    user_id=users["alice"])
    assert (no_consent.value.status, no_consent.value.code) == (403, "consent_required")
    for user_id in users.values():
        wallet.post(f"/v1/users/{user_id}/consents", json={"scopes": ["payments"]})
    return Day(bank, wallet, receiver, {}, {}, accounts, users)


def qr_sale(day: Day, key: str, shift: str, amount_minor: int, bill_no: str, payer: str) -> None:
    """The cashier shows a QR; the passenger's wallet resolves it, then pays from their account."""
    qr = ok(day.bank.post(f"{BASE}/shifts/{day.shifts[shift]}/qr",
                          json={"request_id": f"qr-{key}", "amount_minor": amount_minor, "bill_no": bill_no}), 201)
    assert qr["status"] == "created" and qr["payload"].startswith("000201010212")
    quote = day.wallet.post("/v1/payments/qr/resolve", json={"payload": qr["payload"]}).data
    assert (quote["merchant_name"], quote["bill_no"], quote["amount_minor"], quote["status"]) == (
        "Coach Station", bill_no, amount_minor, "created")
    paid = day.wallet.post("/v1/payments/qr/pay", json={
        "payload": qr["payload"], "payer_account": day.accounts[payer], "request_id": f"w-{key}"},
        user_id=day.users[payer]).data
    assert paid["status"] == "succeeded"
    # The window sees "paid".
    day.payments[key] = ok(day.bank.get(f"{BASE}/payments/{qr['payment_no']}"))
    assert day.payments[key]["status"] == "succeeded" and day.payments[key]["fee_minor"] == fee_of(amount_minor)


def code_sale(day: Day, key: str, shift: str, amount_minor: int, bill_no: str, payer: str) -> None:
    """The wallet shows the passenger a one-time code; the cashier scans it."""
    issued = day.wallet.post("/v1/payments/codes", json={"request_id": f"code-{key}",
                                                         "payer_account": day.accounts[payer]},
                             user_id=day.users[payer])
    assert issued.headers["cache-control"] == "no-store"
    paid = ok(day.bank.post(f"{BASE}/shifts/{day.shifts[shift]}/code", json={
        "request_id": f"scan-{key}", "code": issued.data["code"], "amount_minor": amount_minor,
        "bill_no": bill_no}), 201)
    assert (paid["status"], paid["tender"], paid["fee_minor"]) == ("succeeded", "code", fee_of(amount_minor))
    day.payments[key] = paid


def cash_sale(day: Day, key: str, shift: str, amount_minor: int, bill_no: str) -> None:
    paid = ok(day.bank.post(f"{BASE}/shifts/{day.shifts[shift]}/cash", json={
        "request_id": f"cash-{key}", "amount_minor": amount_minor, "bill_no": bill_no}), 201)
    assert (paid["status"], paid["tender"], paid["fee_minor"]) == ("succeeded", "cash", 0)
    day.payments[key] = paid


def run_the_day(day: Day, sim_clock) -> None:
    """08:00-16:00 local. Window 1 (C001): QR 126.50, code 30.00, cash 20.00, QR 45.00, and a
    supervisor refunds 26.50 of the first ticket. Window 2 (C002): a QR that expires unpaid, then
    the same bill again, 88.00, paid; code 12.50; cash 8.00 and 15.00."""
    bank = day.bank
    sim_clock.advance(minutes=5)
    for employee_no, pin, terminal in (("C001", "1234", "win1"), ("C002", "2345", "win2")):
        shift = ok(bank.post(f"{BASE}/shifts", json={"employee_no": employee_no, "pin": pin,
                                                     "terminal_id": terminal}), 201)
        assert (shift["employee_no"], shift["terminal_id"], shift["closed_at"]) == (employee_no, terminal, None)
        day.shifts[terminal] = shift["shift_no"]

    qr_sale(day, "q1", "win1", 12_650, "TK-1001", "alice")
    svg = bank.get(f"{BASE}/payments/{day.payments['q1']['payment_no']}/qr.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    sim_clock.advance(minutes=7)
    late = ok(bank.post(f"{BASE}/shifts/{day.shifts['win2']}/qr",
                        json={"request_id": "qr-late", "amount_minor": 8_800, "bill_no": "TK-2001"}), 201)
    code_sale(day, "k1", "win1", 3_000, "TK-1002", "bob")
    cash_sale(day, "c1", "win1", 2_000, "TK-1003")
    sim_clock.advance(minutes=6)  # the passenger at window 2 never paid: the QR expired
    with pytest.raises(SceneOSAPIError) as expired:
        day.wallet.post("/v1/payments/qr/pay", json={"payload": late["payload"], "payer_account": day.accounts["bob"],
                                                     "request_id": "w-late"}, user_id=day.users["bob"])
    assert (expired.value.status, expired.value.code) == (422, "qr_expired")
    day.payments["expired"] = ok(bank.get(f"{BASE}/payments/{late['payment_no']}"))
    assert day.payments["expired"]["status"] == "expired"
    qr_sale(day, "q2", "win2", 8_800, "TK-2001", "bob")
    sim_clock.advance(hours=1)
    code_sale(day, "k2", "win2", 1_250, "TK-2002", "alice")  # fee 0.075 -> 0.08 (half-even)
    cash_sale(day, "c2", "win2", 800, "TK-2003")
    qr_sale(day, "q3", "win1", 4_500, "TK-1004", "alice")
    sim_clock.advance(hours=1)
    cash_sale(day, "c3", "win2", 1_500, "TK-2004")

    # A passenger returns one of the tickets bought with the first QR: partial refund, supervisor's PIN.
    refund = ok(bank.post(f"{BASE}/payments/{day.payments['q1']['payment_no']}/refunds", json={
        "request_id": "rf-1", "amount_minor": 2_650, "supervisor_employee_no": "S001", "supervisor_pin": "9876",
        "reason": "one ticket returned"}), 201)
    assert (refund["approved_by"], refund["amount_minor"]) == ("S001", 2_650)
    assert ok(bank.get(f"{BASE}/payments/{day.payments['q1']['payment_no']}"))["refunded_minor"] == 2_650
    day.payments["refund"] = refund


def lines(statement: dict, kind: str) -> dict[str, tuple[int, int]]:
    return {line["tender"]: (line["count"], line["amount_minor"]) for line in statement[kind]}


def close_shifts(day: Day, sim_clock) -> None:
    sim_clock.advance(hours=1)  # 11:19 local
    one = ok(day.bank.post(f"{BASE}/shifts/{day.shifts['win1']}/close"))
    assert (one["employee_no"], one["terminal_id"]) == ("C001", "win1") and one["closed_at"] is not None
    assert lines(one, "sales") == {"qr": (2, 12_650 + 4_500), "cash": (1, 2_000), "code": (1, 3_000)}
    assert lines(one, "refunds") == {"qr": (1, 2_650), "cash": (0, 0)}
    assert (one["sales_minor"], one["refunds_minor"], one["net_minor"]) == (22_150, 2_650, 19_500)
    assert ok(day.bank.post(f"{BASE}/shifts/{day.shifts['win1']}/close")) == one  # signing out again: same

    sim_clock.advance(hours=4, minutes=41)  # 16:00 local
    two = ok(day.bank.post(f"{BASE}/shifts/{day.shifts['win2']}/close"))
    # The expired QR is no sale.
    assert lines(two, "sales") == {"qr": (1, 8_800), "cash": (2, 2_300), "code": (1, 1_250)}
    assert lines(two, "refunds") == {"qr": (0, 0), "cash": (0, 0)}
    assert (two["sales_minor"], two["refunds_minor"], two["net_minor"]) == (12_350, 0, 12_350)
    assert ok(day.bank.get(f"{BASE}/shifts/{day.shifts['win2']}/statement")) == two
    closed = day.bank.post(f"{BASE}/shifts/{day.shifts['win2']}/cash",
                           json={"request_id": "cash-after", "amount_minor": 100, "bill_no": "TK-X"})
    assert closed.status_code == 409 and closed.json()["code"] == "wrong_state"


def check_day_statements(day: Day) -> None:
    bank, params = day.bank, {"day": DAY.isoformat()}
    c001 = ok(bank.get(f"{BASE}/operators/C001/statement", params=params))
    assert c001["shift_nos"] == [day.shifts["win1"]] and c001["net_minor"] == 19_500
    c002 = ok(bank.get(f"{BASE}/operators/C002/statement", params=params))
    assert c002["shift_nos"] == [day.shifts["win2"]] and c002["net_minor"] == 12_350
    s001 = ok(bank.get(f"{BASE}/operators/S001/statement", params=params))
    assert s001["shift_nos"] == [] and s001["net_minor"] == 0  # the supervisor took no sales

    fees_win1 = fee_of(12_650) + fee_of(3_000) + fee_of(4_500) - 76 * 2_650 // 12_650  # 76 + 18 + 27 - 15
    fees_win2 = fee_of(8_800) + fee_of(1_250)  # 53 + 8
    assert (fees_win1, fees_win2) == (106, 61)
    win1 = ok(bank.get(f"{BASE}/terminals/win1/statement", params=params))
    assert lines(win1, "sales") == {"qr": (2, 17_150), "cash": (1, 2_000), "code": (1, 3_000)}
    assert lines(win1, "refunds") == {"qr": (1, 2_650), "cash": (0, 0)}
    assert (win1["sales_minor"], win1["refunds_minor"], win1["net_minor"], win1["fees_minor"]) == (
        22_150, 2_650, 19_500, fees_win1)
    win2 = ok(bank.get(f"{BASE}/terminals/win2/statement", params=params))
    assert (win2["sales_minor"], win2["refunds_minor"], win2["net_minor"], win2["fees_minor"]) == (
        12_350, 0, 12_350, fees_win2)
    merchant = ok(bank.get(f"{BASE}/merchants/station1/statement", params=params))
    assert merchant["terminals"] == ["win1", "win2"]
    assert lines(merchant, "sales") == {"qr": (3, 25_950), "cash": (3, 4_300), "code": (2, 4_250)}
    assert lines(merchant, "refunds") == {"qr": (1, 2_650), "cash": (0, 0)}
    assert (merchant["sales_minor"], merchant["refunds_minor"], merchant["net_minor"], merchant["fees_minor"]) == (
        34_500, 2_650, 31_850, fees_win1 + fees_win2)
    assert merchant["net_minor"] == win1["net_minor"] + win2["net_minor"]
    assert (merchant["sales_amount"], merchant["net_amount"], merchant["fees_amount"]) == ("345.00", "318.50", "1.67")
    # The CSV export says the same.
    exported = bank.get(f"{BASE}/merchants/station1/statement", params={**params, "format": "csv"})
    rows = {(r["kind"], r["tender"]): (r["count"], r["amount"]) for r in csv.DictReader(io.StringIO(exported.text))}
    assert rows[("sale", "qr")] == ("3", "259.50") and rows[("refund", "qr")] == ("1", "26.50")
    assert rows[("net", "")] == ("", "318.50") and rows[("fees", "")] == ("", "1.67")


def balances(app, *codes: str) -> dict[str, int]:
    return ledger_call(app, lambda ledger: {c: ledger.balance(c).net_posted_minor for c in codes})


def settle_the_day(app, day: Day, sim_clock) -> None:
    params = {"day": DAY.isoformat()}
    early = day.bank.post(f"{BASE}/merchants/station1/settlement", params=params)
    assert early.status_code == 422 and early.json()["code"] == "day_not_over"

    sim_clock.set(datetime(2026, 1, 2, 2, 0, tzinfo=SHANGHAI))  # the next morning, 02:00 local
    gross, refunds, fees = 12_650 + 3_000 + 8_800 + 1_250 + 4_500, 2_650, 167  # cash never reaches the bank
    net = gross - refunds - fees
    preview = ok(day.bank.get(f"{BASE}/merchants/station1/settlement", params=params))
    assert (preview["payment_count"], preview["gross_minor"], preview["refund_count"], preview["refunds_minor"],
            preview["fees_minor"], preview["net_minor"], preview["posted"]) == (5, 30_200, 1, 2_650, 167, 27_383, False)
    assert net == 27_383 and (preview["gross"], preview["fees"], preview["net"]) == ("302.00", "1.67", "273.83")
    # The day put exactly the net on the merchant's payable account, and the fees on fee income.
    paid_alice = 12_650 + 1_250 + 4_500 - 2_650
    before = balances(app, "merchant:station1", "bank:payments:fees", day.accounts["alice"], day.accounts["bob"])
    assert before == {"merchant:station1": net, "bank:payments:fees": fees,
                      day.accounts["alice"]: OPENING_BALANCE - paid_alice,
                      day.accounts["bob"]: OPENING_BALANCE - 3_000 - 8_800}

    posted = ok(day.bank.post(f"{BASE}/merchants/station1/settlement", params=params), 201)
    assert posted["posted"] and posted["net_minor"] == net
    assert posted["entry_id"] == "payments:settlement:station1:2026-01-01"
    again = ok(day.bank.post(f"{BASE}/merchants/station1/settlement", params=params), 200)
    assert again == posted  # settling again changes nothing
    after = balances(app, "merchant:station1", "bank:payments:merchant_settlement", "bank:payments:fees")
    assert after == {"merchant:station1": 0, "bank:payments:merchant_settlement": net, "bank:payments:fees": fees}
    entry = ledger_call(app, lambda ledger: ledger.get_entry(posted["entry_id"]))
    assert sorted((p.account, p.side, p.amount_minor) for p in entry.postings) == [
        ("bank:payments:merchant_settlement", "credit", net), ("merchant:station1", "debit", net)]
    assert ledger_call(app, lambda ledger: ledger.trial_balance("CNY").net_minor) == 0


def channel_records(day: Day) -> list[tuple[str, str, str, str]]:
    """The channel's view of the day's QR and code payments: (channel_ref, payment_no, amount,
    booked_at), leaving out the code payment k2 and with q2 settled at 80.00 instead of 88.00, and
    the refund of q1 as a debit naming the refund."""
    records = []
    for n, key in enumerate(("q1", "k1", "q2", "q3"), start=1):
        payment = day.payments[key]
        amount = "80.00" if key == "q2" else f"{Decimal(payment['amount_minor']).scaleb(-2):f}"
        booked = datetime.fromisoformat(payment["completed_at"]).astimezone(SHANGHAI).isoformat()
        records.append((f"CH2026010100000{n}", payment["payment_no"], amount, booked))
    refund = day.payments["refund"]
    booked = datetime.fromisoformat(refund["created_at"]).astimezone(SHANGHAI).isoformat()
    records.append(("CH20260101000005", refund["refund_no"], f"-{Decimal(refund['amount_minor']).scaleb(-2):f}", booked))
    return records


def channel_csv(records) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["channel_ref", "payment_ref", "amount", "currency", "status", "booked_at"])
    for ref, payment_no, amount, booked in records:
        writer.writerow([ref, payment_no, amount, "CNY", "SUCCESS", booked])
    return out.getvalue().encode()


def channel_camt053(records) -> bytes:
    entries = "".join(
        f"<Ntry><NtryRef>{n}</NtryRef><Amt Ccy=\"CNY\">{amount.lstrip('-')}</Amt>"
        f"<CdtDbtInd>{'DBIT' if amount.startswith('-') else 'CRDT'}</CdtDbtInd>"
        f"<Sts><Cd>BOOK</Cd></Sts><BookgDt><DtTm>{booked}</DtTm></BookgDt><AcctSvcrRef>{ref}</AcctSvcrRef>"
        f"<NtryDtls><TxDtls><Refs><EndToEndId>{payment_no}</EndToEndId></Refs></TxDtls></NtryDtls></Ntry>"
        for n, (ref, payment_no, amount, booked) in enumerate(records, start=1))
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>'
            "<GrpHdr><MsgId>STMT-20260101-ACQ</MsgId><CreDtTm>2026-01-02T02:00:00+08:00</CreDtTm></GrpHdr>"
            f"<Stmt><Id>ACQ-20260101</Id>{entries}</Stmt></BkToCstmrStmt></Document>").encode()


def reconcile_the_day(app, day: Day, sim_clock) -> None:
    bank = day.bank
    records = channel_records(day)
    missing, short = day.payments["k2"]["payment_no"], day.payments["q2"]["payment_no"]
    runs = {}
    for fmt, content in (("csv", channel_csv(records)), ("camt053", channel_camt053(records))):
        run = ok(bank.post(f"{BASE}/recon/files", content=content, params={
            "date": DAY.isoformat(), "format": fmt, "file_name": f"acq-20260101.{fmt}", "actor": "ops.wang"}), 201)
        # Five payments of ours expected (the expired QR and cash are not) and the refund; five
        # records (the refund a debit naming it); four match.
        assert (run["status"], run["line_count"], run["our_count"], run["matched_count"], run["exception_count"]) == (
            "reconciled", 5, 6, 4, 2), run
        assert {k: v for k, v in run["summary"].items() if v} == {"missing_in_channel": 1, "amount_under": 1}
        found = {e["kind"]: e for e in ok(bank.get(f"{BASE}/recon/runs/{run['run_no']}/exceptions"))}
        assert set(found) == {"missing_in_channel", "amount_under"}
        assert (found["missing_in_channel"]["payment_no"], found["missing_in_channel"]["our_amount_minor"],
                found["missing_in_channel"]["difference_minor"]) == (missing, 1_250, -1_250)
        assert (found["amount_under"]["payment_no"], found["amount_under"]["line_no"],
                found["amount_under"]["channel_ref"], found["amount_under"]["our_amount_minor"],
                found["amount_under"]["channel_amount_minor"], found["amount_under"]["difference_minor"]) == (
            short, 4 if fmt == "csv" else 3, "CH20260101000003", 8_800, 8_000, -800)
        runs[fmt] = (run, found)

    # The finance office writes off the short settlement (a named user, with a note).
    sim_clock.advance(hours=7)  # 09:00 local
    run, found = runs["csv"]
    short_no = found["amount_under"]["exception_no"]
    resolved = ok(bank.post(f"{BASE}/recon/exceptions/{short_no}/resolve", json={
        "action": "write_off", "actor": "ops.li", "note": "channel confirmed the short settlement of TK-2001"}))
    assert (resolved["resolution"], resolved["resolved_by"], resolved["ledger_entry_id"]) == (
        "write_off", "ops.li", f"recon:writeoff:{short_no}")
    assert datetime.fromisoformat(resolved["resolved_at"]) == sim_clock.now()
    twice = bank.post(f"{BASE}/recon/exceptions/{short_no}/resolve",
                      json={"action": "accept", "actor": "ops.zhao", "note": "again"})
    assert twice.status_code == 409 and twice.json()["code"] == "already_resolved"
    assert ok(bank.get(f"{BASE}/recon/runs/{run['run_no']}"))["open_count"] == 1
    audit = ok(bank.get(f"{BASE}/recon/runs/{run['run_no']}/audit"))
    assert [(a["action"], a["actor"], a["exception_no"]) for a in audit] == [
        ("received", "ops.wang", None), ("reconciled", "ops.wang", None), ("write_off", "ops.li", short_no)]
    assert audit[-1]["ledger_entry_id"] == resolved["ledger_entry_id"]
    assert datetime.fromisoformat(audit[-1]["at"]) == sim_clock.now()
    assert balances(app, WRITE_OFF_ACCOUNT, CLEARING_ACCOUNT) == {WRITE_OFF_ACCOUNT: 800, CLEARING_ACCOUNT: -800}
    assert ledger_call(app, lambda ledger: ledger.trial_balance("CNY").net_minor) == 0
    assert ledger_call(app, lambda ledger: ledger.verify()) == []


def check_webhooks(app, day: Day) -> None:
    report = send_due(app)
    hook = day.receiver
    # Every sale (3 QR, 2 codes, 3 cash), the expired QR and the refund; each verified by the SDK.
    assert (report.attempted, report.delivered, hook.bad_signatures) == (10, 10, 0)
    by_payment = {}
    for received in hook.received:
        event = received["event"]
        assert received["headers"]["SceneOS-Signature"].startswith("t=")
        by_payment.setdefault(event["data"]["payment_no"], []).append(event["type"])
    q1 = day.payments["q1"]["payment_no"]
    assert by_payment[q1] == ["payments.payment.succeeded", "payments.refund.succeeded"]
    assert by_payment[day.payments["expired"]["payment_no"]] == ["payments.payment.expired"]
    paid = next(r["event"] for r in hook.received if r["event"]["data"]["payment_no"] == q1)
    assert (paid["data"]["amount_minor"], paid["data"]["terminal_id"], paid["data"]["employee_no"],
            paid["data"]["bill_no"]) == (12_650, "win1", "C001", "TK-1001")
    assert send_due(app).attempted == 0  # nothing twice


@BOTH
def test_a_day_at_the_coach_station(make_sceneos, live_server, partner_client, receiver, sim_clock) -> None:
    app = build_app(make_sceneos)
    day = configure_station(app, live_server, partner_client, receiver)
    try:
        run_the_day(day, sim_clock)
        close_shifts(day, sim_clock)
        check_day_statements(day)
        settle_the_day(app, day, sim_clock)
        reconcile_the_day(app, day, sim_clock)
        check_webhooks(app, day)
    finally:
        day.bank.close()
