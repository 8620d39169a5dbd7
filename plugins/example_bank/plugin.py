"""Example bank customizations: a stricter minimum age and a local blacklist for registration."""

from __future__ import annotations

from typing import Any

from core.errors import Rejection
from core.hookspecs import hookimpl
from core.logging import get_logger

log = get_logger("plugins.example_bank")

PLUGIN_NAME = "example_bank"
DEFAULT_MIN_AGE_YEARS = 22


@hookimpl
def sceneos_adjust_module_settings(tenant: Any, module: str, settings: Any) -> dict[str, Any] | None:
    """This bank lends only to customers aged 22 and over (configurable: ``min_age_years``)."""
    if module != "party":
        return None
    wanted = int(tenant.plugin_config(PLUGIN_NAME).get("min_age_years", DEFAULT_MIN_AGE_YEARS))
    return {"min_age_years": max(wanted, settings.min_age_years)}


@hookimpl
def sceneos_party_validate_customer(tenant: Any, resident_id: Any, phone_e164: str) -> Rejection | None:
    """Refuse ID numbers and phones on the bank's local blacklist."""
    config = tenant.plugin_config(PLUGIN_NAME)
    if resident_id.number in set(config.get("blacklisted_id_numbers", [])):
        return Rejection("blacklisted_id_number", "the ID number is on the bank's blacklist")
    if phone_e164 in set(config.get("blacklisted_phones", [])):
        return Rejection("blacklisted_phone", "the phone number is on the bank's blacklist")
    return None


@hookimpl
def sceneos_on_event(event: Any, tenant: Any) -> None:
    if event.type == "party.customer.registered":
        log.info("new customer", tenant_id=tenant.id, customer_no=event.payload["customer_no"])
