"""Journeys for ``sceneos demo``: 2 and 3 (credit pay, in ``credit_journeys.py``) and 6 here.

Journey 6 of SCENARIOS.md: two banks, one operating system.

Bank A enables the party registry with its own plugin (``example_bank``: minimum age 22, a local
blacklist); Bank B enables the party registry alone. The same 20-year-old applicant registers with
both: Bank A's plugin refuses, Bank B accepts, and Bank B's customers stay invisible to Bank A.
"""

from __future__ import annotations

from datetime import date

from rich.console import Console

from core.app import SceneOS
from core.demo import DemoJourney
from core.errors import SceneOSError
from core.hookspecs import hookimpl
from core.testing.factories import mobile, resident_id
from middle.party.service import CustomerDraft, PartyService

TWO_BANKS = {
    "tenants": {
        "bank_a": {
            "name": "Bank A",
            "rounding": "HALF_UP",
            "plugins": ["example_bank"],
            "modules": {"party": {"max_age_years": 70}},
            "plugin_config": {"example_bank": {"min_age_years": 22, "blacklisted_phones": ["+8613900000000"]}},
            "partners": {"travel_app": {"name": "Travel app", "display_name": "Fly Now Pay Later"}},
        },
        "bank_b": {
            "name": "Bank B",
            "modules": {"party": {}},
            "partners": {"super_app": {"name": "Super app", "display_name": "Wealth"}},
        },
    }
}


def play_two_banks(app: SceneOS, console: Console) -> None:
    today = app.tenant("bank_a").business_date()
    applicant = CustomerDraft(
        name="Li Lei",
        id_number=resident_id(date(today.year - 20, 1, 15), sequence=7),
        phone=mobile(20240001),
    )
    console.print("The same 20-year-old applicant registers with both banks:")
    for tenant_id in ("bank_a", "bank_b"):
        runtime = app.tenant(tenant_id).module("party")
        try:
            with runtime.tenant.unit_of_work() as uow:
                service: PartyService = runtime.container.service(uow=uow)
                result = service.register(applicant)
            outcome = f"registered as {result.customer.customer_no} ({result.customer.id_number_masked})"
        except SceneOSError as exc:
            outcome = f"refused: {exc.message}"
        console.print(f"  {tenant_id} (minimum age {runtime.settings.min_age_years}): {outcome}")
    # Each bank looks the applicant up by ID number: only the bank that registered them finds them
    # (journeys 2 and 3 add Bank A customers of their own, so a count would not say this).
    for tenant_id in ("bank_a", "bank_b"):
        with app.tenant(tenant_id).unit_of_work() as uow:
            party = PartyService(uow, app.tenant(tenant_id).module("party").settings, uow.tenant.hooks)
            found = party.find_by_id_number(applicant.id_number)
        console.print(f"  {tenant_id} finds the applicant: {found.customer_no if found else 'no'}")


@hookimpl
def sceneos_demo_journeys() -> list[DemoJourney]:
    from plugins.demo.credit_journeys import credit_journeys

    journey_6 = DemoJourney(order=6, title="Journey 6: two banks, one operating system", config=TWO_BANKS,
                            play=play_two_banks)
    return [*credit_journeys(), journey_6]
