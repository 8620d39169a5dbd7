"""A fake credit bureau: answers ``sceneos_credit_fetch_bureau_report`` without any network.

Enable it for a tenant (``plugins = ["fake_bureau"]``). Configuration (``plugin_config.fake_bureau``):

* ``reports``: ``{customer_no: {fact: value, ...}}``, returned as they are (tests pin facts);
* ``no_record``: customer numbers the bureau knows nothing of (the hook answers None);
* otherwise a report is made up from a hash of the customer number, the same every time, with
  the facts the default scorecard reads (``checking_status``, ``savings_band``,
  ``credit_history``, ``other_installment_plans``, ``property``).

A real bureau plugin has the same shape: read its endpoint and credentials with
``tenant.plugin_config`` (secrets from the environment), call the bureau, map its report to flat facts.
"""

from __future__ import annotations

import hashlib
from typing import Any

from core.hookspecs import hookimpl

PLUGIN_NAME = "fake_bureau"

# Each fact's values with weights roughly as common as in the German credit data.
FACT_VALUES: dict[str, tuple[tuple[str, int], ...]] = {
    "checking_status": (("none", 39), ("negative", 27), ("low", 27), ("high", 7)),
    "savings_band": (("lt_100", 60), ("none", 18), ("100_500", 10), ("500_1000", 7), ("1000_plus", 5)),
    "credit_history": (("paying_duly", 53), ("critical", 29), ("past_delay", 9), ("all_paid_here", 5),
                       ("none_or_all_paid", 4)),
    "other_installment_plans": (("none", 81), ("bank", 14), ("stores", 5)),
    "property": (("car_or_other", 33), ("real_estate", 28), ("savings_or_insurance", 23), ("none", 16)),
}


def made_up_report(customer_no: str) -> dict[str, Any]:
    """A deterministic report for a customer number."""
    report: dict[str, Any] = {"source": PLUGIN_NAME}
    for fact, choices in FACT_VALUES.items():
        digest = hashlib.sha256(f"{fact}:{customer_no}".encode()).digest()
        ticket = int.from_bytes(digest[:4], "big") % sum(weight for _, weight in choices)
        for value, weight in choices:
            if ticket < weight:
                report[fact] = value
                break
            ticket -= weight
    return report


@hookimpl
def sceneos_credit_fetch_bureau_report(tenant: Any, profile: Any) -> dict[str, Any] | None:
    config = tenant.plugin_config(PLUGIN_NAME)
    if profile.customer_no in set(config.get("no_record", [])):
        return None
    pinned = config.get("reports", {}).get(profile.customer_no)
    if pinned is not None:
        return dict(pinned)
    return made_up_report(profile.customer_no)
