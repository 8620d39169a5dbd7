"""Journeys 2 and 3 of SCENARIOS.md for ``sceneos demo``: credit pay in partner platforms.

Journey 2: a travel app's user activates the bank's credit pay (shown under the app's own name)
with consent, books a flight and a hotel, cancels the hotel (the refund restores the line), turns
the flight into 6 monthly installments after a trial calculation, receives the month's statement
and repays it; the next statement shows the payment and no interest (the interest-free period).

Journey 3: a luxury e-commerce site offers installments at checkout as a white-labelled joint
product: its own product code (``luxe``), its own name for its users and its own plans (an
interest-free 3-month plan, 6 months at a flat fee, 12 months of equal principal); at one boutique
the 6 months are interest-free too, their fee paid by the boutique (a merchant-subsidised plan).

Both play in Bank A, on the same configuration and database as the rest of the demo but on a
simulated clock (starting 6 March 2026, noon in Shanghai) that the journey moves a month ahead, so
end of day runs the missed days for the account (inline catch-up) and issues the statement.
Playing the demo again on the same database plays each journey again for a new applicant, so the
figures are the same on every run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

from core.app import SceneOS
from core.clock import SimulatedClock
from core.demo import DemoJourney
from core.money import Money
from core.testing.factories import mobile, resident_id
from middle.party.service import CustomerDraft
from products.credit_pay.billing import StatementView
from products.credit_pay.installments import InstallmentService, PlanView, PurchaseConversion
from products.credit_pay.repayment import RepaymentDraft
from products.credit_pay.service import ActivationDraft, CreditPayService, PurchaseDraft

T = TypeVar("T")

BANK = "bank_a"
MAX_RUNS = 499  # resident ID sequence numbers of one birth date
TRAVEL_APP = "travel_app"
LUXE_MALL = "luxe_mall"
BOUTIQUE = "luxe-boutique-12"
# Noon in Shanghai: the business date is the 6th, the day after the billing day.
START = datetime(2026, 3, 6, 4, 0, tzinfo=UTC)
CONSENTED = {"income_band": "10k_20k", "occupation": "skilled", "employment_band": "4y_7y", "housing": "own"}

CREDIT_PAY_PRODUCTS: dict[str, Any] = {
    # Journey 2: the bank's own product, which the travel app shows under its own name.
    "travel": {
        "name": "Bank A Credit Pay",
        "display_names": {TRAVEL_APP: "Fly Now Pay Later"},
        "billing_day": 5,
        "due_day": 25,
        "grace_days": 3,
        "revolving_annual_rate_bps": 1825,
        "penalty_annual_rate_bps": 1825,
        "late_fee_minor": 2_500,
        "installment_plans": [
            {"terms": 3, "method": "flat_fee", "period_rate_bps": 60},
            {"terms": 6, "method": "annuity", "period_rate_bps": 100},
            {"terms": 12, "method": "equal_principal", "period_rate_bps": 100},
        ],
    },
    # Journey 3: a joint product of the bank and the luxury mall, with its own code and plans.
    "luxe": {
        "name": "Bank A x Luxe Mall Installments",
        "display_names": {LUXE_MALL: "Luxe Pay"},
        "billing_day": 1,
        "due_day": 20,
        "grace_days": 3,
        "revolving_annual_rate_bps": 1800,
        "max_purchase_minor": 3_000_000,
        "max_daily_minor": 5_000_000,
        "installment_plans": [
            {"terms": 3, "method": "flat_fee", "period_rate_bps": 0},
            {"terms": 6, "method": "flat_fee", "period_rate_bps": 45},
            {"terms": 12, "method": "equal_principal", "period_rate_bps": 80},
        ],
        # The boutique's campaign: 6 months interest-free, the fee paid by the boutique.
        "merchant_subsidised_plans": [
            {"terms": 6, "method": "flat_fee", "period_rate_bps": 45, "merchants": [BOUTIQUE]},
        ],
    },
}

CREDIT_BANK = {
    "tenants": {
        BANK: {
            "modules": {
                "party": {},
                "credit": {},
                "risk": {},
                "credit_pay": {"products": CREDIT_PAY_PRODUCTS},
            },
            "partners": {
                TRAVEL_APP: {"name": "Travel app", "display_name": "Fly Now Pay Later"},
                LUXE_MALL: {"name": "Luxe mall", "display_name": "Luxe Pay"},
            },
        }
    }
}


# --- a second view of the demo's application on a simulated clock ---------------------------------


class CreditScene:
    """Bank A of the demo's configuration and database, on its own simulated clock."""

    def __init__(self, app: SceneOS) -> None:
        self.clock = SimulatedClock(START)
        self.app = SceneOS.build(
            app.settings, source=app.source, clock=self.clock, catalog=app.catalog, migrate=True
        )
        self.app.start()
        self.tenant = self.app.tenant(BANK)

    def close(self) -> None:
        self.app.close()

    def move_to(self, day: date) -> None:
        """Noon of ``day`` in the bank's time zone (Asia/Shanghai, UTC+8)."""
        self.clock.set(datetime(day.year, day.month, day.day, 4, 0, tzinfo=UTC))

    def today(self) -> date:
        return self.tenant.business_date()

    def credit_pay(self, action: Callable[[CreditPayService], T], partner_id: str | None = None) -> T:
        """One unit of work of the credit-pay service, as ``partner_id`` (None: the bank)."""
        with self.tenant.unit_of_work() as uow:
            return action(self.tenant.module("credit_pay").container.service(uow=uow, partner_id=partner_id))

    def register(self, name: str, birth: date, sequence: int, phone_base: int) -> str:
        draft = CustomerDraft(
            name=name, id_number=resident_id(birth, sequence=sequence), phone=mobile(phone_base + sequence)
        )
        with self.tenant.unit_of_work() as uow:
            return self.tenant.module("party").container.service(uow=uow).register(draft).customer.customer_no

    def new_applicant(self, name: str, birth: date, phone_base: int, product: str) -> tuple[str, str]:
        """A customer without an account of ``product`` and the run's id prefix. Playing the demo
        again on the same database plays the journey again for the next applicant (ids
        ``<run>-...``), so every run shows the same figures from a fresh account."""
        for run in range(MAX_RUNS):
            customer_no = self.register(name, birth, run, phone_base)
            accounts = self.credit_pay(lambda pay, c=customer_no: pay.accounts_of(c))
            if not any(account.product == product for account in accounts):
                return customer_no, f"demo-{product}-{run}"
        raise RuntimeError(
            f"the demo database already holds {MAX_RUNS} runs of this journey: start a new one"
        )


@contextmanager
def credit_scene(app: SceneOS) -> Iterator[CreditScene]:
    scene = CreditScene(app)
    try:
        yield scene
    finally:
        scene.close()


# --- printing ------------------------------------------------------------------------------------


def money(amount_minor: int, currency: str = "CNY") -> str:
    return f"{Money(amount_minor, currency).amount:,f}"


def rate(bps: str | int) -> str:
    return f"{float(bps) / 100:.2f} %"


def print_decision(console: Console, view: Any) -> None:
    table = Table(title="Activation decision", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("outcome", view.outcome)
    table.add_row("reasons", ", ".join(view.reasons) or "-")
    table.add_row("decision", view.decision_no)
    if view.account is not None:
        account = view.account
        table.add_row("product", f"{account.display_name} (product {account.product})")
        table.add_row("account", account.account_no)
        table.add_row("line", f"{money(account.line_minor, account.currency)} {account.currency}")
        table.add_row("price", f"{rate(account.annual_rate_bps)} a year")
    console.print(table)


def print_trial(console: Console, trial: Any) -> None:
    table = Table(
        title=f"Trial calculation for {money(trial.amount_minor, trial.currency)} {trial.currency}",
        title_justify="left",
    )
    for column in ("plan", "each installment", "total cost", "IRR a year"):
        table.add_column(column, justify="right" if column != "plan" else "left")
    for plan in trial.plans:
        totals = sorted({i.total_minor for i in plan.installments})
        each = money(totals[0]) if len(totals) == 1 else f"{money(totals[0])} .. {money(totals[-1])}"
        paid_by = (
            f" (interest-free: the merchant pays {money(plan.merchant_subsidy_minor)})" if plan.subsidised_by else ""
        )
        table.add_row(
            f"{plan.terms} x {plan.method}, {rate(plan.period_rate_bps)} a month{paid_by}",
            each,
            money(plan.total_charge_minor),
            rate(plan.annualized_rate_bps),
        )
    console.print(table)
    if trial.withheld:
        console.print(
            f"  withheld (above the {rate(trial.annual_rate_ceiling_bps)} ceiling): {', '.join(trial.withheld)}"
        )


def print_schedule(console: Console, plan: PlanView) -> None:
    console.print(
        f"Installment schedule {plan.plan_no}: {plan.terms} x {plan.method} at {rate(plan.period_rate_bps)} a "
        f"month on {money(plan.principal_minor, plan.currency)} {plan.currency}"
    )
    table = Table()
    charge = "fee" if plan.method == "flat_fee" else "interest"
    for column in ("term", "due", "principal", charge, "total"):
        table.add_column(column, justify="right")
    for i in plan.installments:
        table.add_row(
            str(i.term_no),
            i.due_on.isoformat(),
            money(i.principal_minor),
            money(i.fee_minor if plan.method == "flat_fee" else i.interest_minor),
            money(i.total_minor),
        )
    table.add_section()
    table.add_row(
        "",
        "total",
        money(plan.principal_minor),
        money(plan.total_charge_minor),
        money(plan.principal_minor + plan.total_charge_minor),
    )
    console.print(table)
    console.print(f"  annualized rate (IRR method): {rate(plan.annualized_rate_bps)}")


def print_statement(console: Console, statement: StatementView) -> None:
    console.print(
        f"Statement {statement.statement_no}, {statement.period_start} .. {statement.statement_date}"
    )
    table = Table(show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = [
        ("previous balance", statement.previous_balance_minor),
        ("purchases", statement.purchases_minor),
        ("moved to installment plans", statement.converted_minor),
        ("installments due", statement.installments_minor),
        ("interest", statement.interest_minor),
        ("penalty interest", statement.penalty_minor),
        ("fees", statement.fees_minor),
        ("payments", -statement.payments_minor),
        ("new balance", statement.new_balance_minor),
        ("minimum payment", statement.minimum_payment_minor),
    ]
    for label, amount in rows:
        table.add_row(label, money(amount, statement.currency))
    table.add_row("due date", statement.due_date.isoformat())
    console.print(table)


def statement_of(scene: CreditScene, account_no: str, partner_id: str) -> StatementView:
    """The statement of the last billing day. Reading it catches the account up first: end of day
    runs the days the account missed (the same code as the nightly job)."""
    statements = scene.credit_pay(lambda pay: pay.statements(account_no), partner_id)
    return statements[0]


def available(scene: CreditScene, account_no: str, partner_id: str) -> str:
    view = scene.credit_pay(lambda pay: pay.account(account_no), partner_id)
    return f"{money(view.available_minor, view.currency)} of {money(view.line_minor, view.currency)} {view.currency}"


def buy(
    scene: CreditScene,
    account_no: str,
    purchase_id: str,
    merchant_id: str,
    amount_minor: int,
    partner_id: str,
) -> str:
    draft = PurchaseDraft(
        purchase_id=purchase_id, account_no=account_no, merchant_id=merchant_id, amount_minor=amount_minor
    )
    authorized = scene.credit_pay(lambda pay: pay.authorize(draft), partner_id)
    if authorized.status not in {"authorized", "captured"}:
        return f"{authorized.status} ({', '.join(authorized.reasons)})"
    return scene.credit_pay(lambda pay: pay.capture(purchase_id), partner_id).status


def convert(
    scene: CreditScene, plan_id: str, purchase_id: str, terms: int, method: str, partner_id: str
) -> PlanView:
    draft = PurchaseConversion(plan_id=plan_id, purchase_id=purchase_id, terms=terms, method=method)
    return scene.credit_pay(lambda pay: InstallmentService(pay).convert_purchase(draft), partner_id)


# --- journey 2 -----------------------------------------------------------------------------------


def play_travel_credit_pay(app: SceneOS, console: Console) -> None:
    with credit_scene(app) as scene:
        console.print(f"Simulated clock: business date {scene.today()} in {BANK} (Asia/Shanghai).")
        customer_no, run = scene.new_applicant("Wang Fang", date(1992, 6, 1), 20_260_200, "travel")
        console.print(
            f'The travel app\'s user taps "activate" and consents to the credit decision '
            f"(customer {customer_no})."
        )
        activation = scene.credit_pay(
            lambda pay: pay.activate(
                ActivationDraft(
                    request_id=f"{run}-activate",
                    customer_no=customer_no,
                    product="travel",
                    consented=CONSENTED,
                )
            ),
            TRAVEL_APP,
        )
        print_decision(console, activation)
        if activation.account is None:
            return
        no = activation.account.account_no
        flight = buy(scene, no, f"{run}-flight", "airline", 186_000, TRAVEL_APP)
        console.print(f"Flight, 1,860.00 CNY: {flight}; available {available(scene, no, TRAVEL_APP)}")
        hotel = buy(scene, no, f"{run}-hotel", "hotel", 60_000, TRAVEL_APP)
        console.print(f"Hotel, 600.00 CNY: {hotel}; available {available(scene, no, TRAVEL_APP)}")
        scene.credit_pay(lambda pay: pay.refund(f"{run}-hotel", f"{run}-hotel-cancelled", 60_000), TRAVEL_APP)
        console.print(f"Booking cancelled, hotel refunded: available {available(scene, no, TRAVEL_APP)}")
        print_trial(console, scene.credit_pay(lambda pay: pay.trial("travel", 186_000), TRAVEL_APP))
        plan = convert(scene, f"{run}-flight-6", f"{run}-flight", 6, "annuity", TRAVEL_APP)
        console.print("The user chooses 6 monthly installments for the flight:")
        print_schedule(console, plan)

        scene.move_to(date(2026, 4, 6))
        console.print(f"One month later ({scene.today()}): end of day has issued the statement.")
        statement = statement_of(scene, no, TRAVEL_APP)
        print_statement(console, statement)
        scene.move_to(date(2026, 4, 20))
        repayment = scene.credit_pay(
            lambda pay: pay.repay(
                RepaymentDraft(
                    repayment_id=f"{run}-repay-1", account_no=no, amount_minor=statement.new_balance_minor
                )
            ),
            TRAVEL_APP,
        )
        parts = ", ".join(f"{k} {money(v)}" for k, v in repayment.allocation.items() if v)
        console.print(
            f"{scene.today()}: repaid {money(repayment.amount_minor)} CNY in full before the due date "
            f"({parts}); available {available(scene, no, TRAVEL_APP)}"
        )
        scene.move_to(date(2026, 5, 6))
        console.print(f"Next statement ({scene.today()}): the payment, the second installment, no interest.")
        print_statement(console, statement_of(scene, no, TRAVEL_APP))


# --- journey 3 -----------------------------------------------------------------------------------


def play_joint_installments(app: SceneOS, console: Console) -> None:
    with credit_scene(app) as scene:
        console.print(
            f"Simulated clock: business date {scene.today()} in {BANK}. The luxury mall shows the "
            f'bank\'s joint product as its own: product code "luxe", name '
            f'"{CREDIT_PAY_PRODUCTS["luxe"]["display_names"][LUXE_MALL]}", its own plans.'
        )
        customer_no, run = scene.new_applicant("Zhou Min", date(1988, 11, 20), 20_260_300, "luxe")
        activation = scene.credit_pay(
            lambda pay: pay.activate(
                ActivationDraft(
                    request_id=f"{run}-activate", customer_no=customer_no, product="luxe", consented=CONSENTED
                )
            ),
            LUXE_MALL,
        )
        print_decision(console, activation)
        if activation.account is None:
            return
        no = activation.account.account_no
        bag = buy(scene, no, f"{run}-handbag", BOUTIQUE, 680_000, LUXE_MALL)
        console.print(
            f"Handbag, 6,800.00 CNY at checkout: {bag}; available {available(scene, no, LUXE_MALL)}"
        )
        trial = scene.credit_pay(lambda pay: pay.trial("luxe", 680_000, merchant_id=BOUTIQUE), LUXE_MALL)
        print_trial(console, trial)
        plan = convert(scene, f"{run}-handbag-12", f"{run}-handbag", 12, "equal_principal", LUXE_MALL)
        console.print("The user chooses 12 months of equal principal:")
        print_schedule(console, plan)
        scene.move_to(date(2026, 4, 2))
        console.print(f"One month later ({scene.today()}): the first installment is on the statement.")
        print_statement(console, statement_of(scene, no, LUXE_MALL))
        own = scene.credit_pay(lambda pay: pay.account(no))  # the bank's own app: no partner
        console.print(
            f'In the bank\'s own app the same account is "{own.display_name}": '
            f"{money(own.balance_minor, own.currency)} {own.currency} owed, "
            f"{money(own.available_minor, own.currency)} available."
        )


def credit_journeys() -> list[DemoJourney]:
    return [
        DemoJourney(
            order=2,
            title="Journey 2: credit pay inside a travel app",
            config=CREDIT_BANK,
            play=play_travel_credit_pay,
        ),
        DemoJourney(
            order=3,
            title="Journey 3: installments as a white-labelled joint product",
            config=CREDIT_BANK,
            play=play_joint_installments,
        ),
    ]
