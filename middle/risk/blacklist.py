"""Per-tenant blacklists of ID numbers, phones and devices.

Values are stored normalized (ID numbers upper-case, phones in E.164, devices trimmed), so
``13900000000``, ``+86 139 0000 0000`` and ``+8613900000000`` are one entry. Entries come from
configuration and plugins at startup (source ``config`` / ``plugin:<name>``) and from operators
through the CLI or the service (source ``operator:<id>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.exc import IntegrityError

from core.errors import ValidationFailed
from core.identity import InvalidIdentifier, normalize_mobile
from core.settings import StrictModel
from core.statements import run, tenant_bound, tenant_filter
from core.tenancy import UnitOfWork
from middle.risk.models import BlacklistKind, RiskBlacklistEntry


class BlacklistEntrySpec(StrictModel):
    """An entry a plugin seeds (``sceneos_risk_blacklist_entries``)."""

    kind: BlacklistKind
    value: str
    reason: str = "plugin"


@dataclass(frozen=True)
class BlacklistEntryView:
    kind: str
    value: str
    reason: str
    source: str
    created_at: datetime

    @classmethod
    def of(cls, row: RiskBlacklistEntry) -> BlacklistEntryView:
        return cls(row.kind, row.value, row.reason, row.source, row.created_at)


def normalize(kind: str, value: str) -> str:
    """The stored form of an identifier; raises ValidationFailed for a malformed one."""
    try:
        kind = BlacklistKind(kind)
    except ValueError:
        raise ValidationFailed(
            f"blacklist kind must be one of {', '.join(k.value for k in BlacklistKind)}"
        ) from None
    value = value.strip()
    if not value:
        raise ValidationFailed(f"an empty {kind} cannot be blacklisted")
    if kind == BlacklistKind.ID_NUMBER:
        return value.upper()
    if kind == BlacklistKind.PHONE:
        try:
            return normalize_mobile(value)
        except InvalidIdentifier as exc:
            raise ValidationFailed(str(exc)) from None
    if len(value) > 128:
        raise ValidationFailed("a device id is at most 128 characters")
    return value


class Blacklist:
    """One tenant's blacklist, within one unit of work."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.session = uow.session

    def add(self, kind: str, value: str, *, reason: str, source: str) -> tuple[BlacklistEntryView, bool]:
        """Blacklist an identifier; idempotent (an existing entry is returned, ``created`` False)."""
        value = normalize(kind, value)
        existing = self._get(kind, value)
        if existing is not None:
            return BlacklistEntryView.of(existing), False
        row = RiskBlacklistEntry(
            kind=str(kind),
            value=value,
            reason=reason[:200],
            source=source[:100],
            created_at=self.uow.clock.now(),
        )
        try:
            with self.session.begin_nested():
                self.session.add(row)
        except IntegrityError:  # added concurrently: the same entry
            existing = self._get(kind, value)
            if existing is None:
                raise
            return BlacklistEntryView.of(existing), False
        self.uow.publish("risk.blacklist.added", {"kind": str(kind), "source": row.source})
        return BlacklistEntryView.of(row), True

    def remove(self, kind: str, value: str, *, operator: str) -> bool:
        row = self._get(kind, normalize(kind, value))
        if row is None:
            return False
        self.session.delete(row)
        self.uow.publish("risk.blacklist.removed", {"kind": row.kind, "operator": operator})
        return True

    def entries(self, kind: str | None = None, *, limit: int = 1000) -> list[BlacklistEntryView]:
        query = (
            select(RiskBlacklistEntry)
            .order_by(RiskBlacklistEntry.kind, RiskBlacklistEntry.value)
            .limit(limit)
        )
        if kind is not None:
            query = query.where(RiskBlacklistEntry.kind == str(BlacklistKind(kind)))
        return [BlacklistEntryView.of(row) for row in self.session.scalars(query)]

    def contains(self, kind: str, value: str) -> bool:
        return self._get(kind, normalize(kind, value)) is not None

    def hits(self, *, id_number: str | None, phone: str | None, device: str | None) -> dict[str, bool]:
        """Which of the given (already normalized) identifiers are blacklisted: one indexed query."""
        found: set[str] = set()
        if id_number or phone or device:
            found = set(run(self.uow, _HITS, {"id_number": id_number, "phone": phone, "device": device}).scalars())
        facts = {kind.value: kind.value in found for kind in BlacklistKind}
        facts["any"] = bool(found)
        return facts

    def _get(self, kind: str, value: str) -> RiskBlacklistEntry | None:
        query = select(RiskBlacklistEntry).where(
            RiskBlacklistEntry.kind == str(BlacklistKind(kind)), RiskBlacklistEntry.value == value
        )
        return self.session.scalars(query).one_or_none()


# Built once: a look-up of the three identifiers at once (a missing one binds NULL and matches nothing).
# It is on every decision's path, so it is a Core statement (a third of the cost through the ORM
# session), checked by the kernel's tenant_bound and run by its run(), which binds the tenant.
_ENTRIES = RiskBlacklistEntry.__table__
_HITS = tenant_bound(
    select(_ENTRIES.c.kind).where(
        tenant_filter(_ENTRIES),
        or_(
            *(
                and_(_ENTRIES.c.kind == kind.value, _ENTRIES.c.value == bindparam(kind.value))
                for kind in BlacklistKind
            )
        ),
    )
)
