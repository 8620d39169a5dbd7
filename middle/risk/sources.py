"""Where a live decision reads its facts: the party registry, the blacklist, the velocity table
and the credit module, all within the decision's unit of work and at one instant of the clock.

Only steps' ``gather`` use this; what they read goes into the decision record, so a replay never
touches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, select

from core.errors import NotFound
from core.statements import run, tenant_bound, tenant_filter
from core.tenancy import UnitOfWork
from middle.party.models import Customer
from middle.risk.blacklist import Blacklist
from middle.risk.facts import ApplicantFacts
from middle.risk.settings import RiskSettings
from middle.risk.velocity import velocity_facts

# Built once, a Core statement (through the ORM session this one read cost three times as much),
# checked by the kernel's tenant_bound and run by its run(), which binds the unit of work's
# tenant. The columns are what the applicant facts, the blacklist
# look-up and the credit module's identity facts need.
_PARTY = Customer.__table__
_APPLICANT = tenant_bound(select(
    _PARTY.c.customer_no,
    _PARTY.c.birth_date,
    _PARTY.c.gender,
    _PARTY.c.region_code,
    _PARTY.c.phone_e164,
    _PARTY.c.id_number,
    _PARTY.c.created_at,
).where(tenant_filter(_PARTY), _PARTY.c.customer_no == bindparam("customer_no")))


@dataclass(frozen=True)
class Identifiers:
    """The applicant's raw identifiers, for blacklist look-ups only (never put into facts)."""

    id_number: str | None = None
    phone: str | None = None
    device: str | None = None


def age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


class LiveFacts:
    """Reads for one decision. ``now`` is fixed when the decision starts."""

    def __init__(self, uow: UnitOfWork, settings: RiskSettings) -> None:
        self.uow = uow
        self.tenant = uow.tenant
        self.settings = settings
        self.now: datetime = uow.clock.now()
        self._credit: Any = None

    def applicant(self, customer_no: str) -> tuple[dict[str, Any], Identifiers, Any]:
        """The applicant's facts, raw identifiers and party row (the credit module reuses the row)."""
        row = run(self.uow, _APPLICANT, {"customer_no": customer_no}).one_or_none()
        if row is None:
            raise NotFound(f"no customer {customer_no!r}")
        today = self.tenant.business_date()
        facts = ApplicantFacts(
            known=True,
            customer_no=row.customer_no,
            age=age_on(row.birth_date, today),
            gender=row.gender,
            region_code=row.region_code,
            province_code=row.region_code[:2],
            phone_prefix=row.phone_e164.removeprefix("+86")[:3],
            customer_since_days=max((self.now - row.created_at).days, 0),
        )
        return facts.model_dump(mode="json"), Identifiers(id_number=row.id_number, phone=row.phone_e164), row

    def blacklist_hits(self, identifiers: Identifiers) -> dict[str, bool]:
        return Blacklist(self.uow).hits(
            id_number=identifiers.id_number, phone=identifiers.phone, device=identifiers.device
        )

    def velocity(self, kind: str, keys: dict[str, str | None]) -> dict[str, Any]:
        return velocity_facts(
            self.uow, kind, keys, self.settings.velocity_windows, self.now
        )

    def credit(self) -> Any:
        """The credit module's service (``middle.credit.service.CreditService``) on this unit of work."""
        if self._credit is None:
            self._credit = self.tenant.module("credit").container.service(uow=self.uow)
        return self._credit
