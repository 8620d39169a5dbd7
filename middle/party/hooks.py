"""Hookspecs of the party module: where a bank customizes customer registration."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.hookspecs import hookspec

if TYPE_CHECKING:
    from core.errors import Rejection
    from core.identity import ResidentId
    from core.tenancy import Tenant
    from middle.party.service import CustomerDraft


@hookspec
def sceneos_party_validate_customer(
    tenant: Tenant, draft: CustomerDraft, resident_id: ResidentId, phone_e164: str
) -> Rejection | None:  # type: ignore[empty-body]
    """Decide whether a new customer may register with ``tenant`` (e.g. a local blacklist).

    Called before a customer is created, after the module's own checks (ID checksum, age, region)
    have passed, and not for a retry that finds the customer already registered.

    :param tenant: the bank the customer registers with.
    :param draft: what the caller sent.
    :param resident_id: facts read from the validated ID number (birth date, region, gender).
    :param phone_e164: the validated mobile number.
    :return: a :class:`core.errors.Rejection` to refuse, or None to accept. Every plugin is asked
        (collected); any rejection refuses, and all rejections are reported. Return, don't raise.
    """
