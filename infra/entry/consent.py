"""End users and their consents.

A partner names its users by its own ids (``user_id``); the entry maps each to the bank's customer
(``customer_no``, from the party registry). Sharing a user's data with the partner, or using it for
credit decisions or marketing, needs the user's consent for that purpose: a record with scopes, when
it was granted, when it expires, and when it was revoked. Product routes declare what they need with
:func:`require_consent`; a call without a live consent is ``403 consent_required``.

Purposes the bank's products use: ``data_sharing``, ``credit_decision``, ``marketing``; products may
define more (lower-case, ``[a-z0-9_.:-]``).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import Header, Request
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import select

from core.errors import Conflict, ValidationFailed
from core.sdk.signing import END_USER_HEADER
from infra.entry.errors import ConsentRequired, EndUserRequired, EndUserUnknown
from infra.entry.models import EntryConsent, EntryEndUser

if TYPE_CHECKING:
    from core.tenancy import UnitOfWork

USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
CONSENT_SCOPE_PATTERN = r"^[a-z][a-z0-9_.:-]{0,62}$"
STANDARD_PURPOSES = ("data_sharing", "credit_decision", "marketing")


class ConsentGrant(BaseModel):
    scopes: list[str] = Field(min_length=1, max_length=20, description="purposes, e.g. credit_decision")
    expires_at: AwareDatetime | None = Field(default=None, description="default: the bank's consent period")
    evidence: str | None = Field(default=None, max_length=500, description="how the user consented (screen, version)")


class EndUserLink(BaseModel):
    customer_no: str | None = Field(default=None, min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_]+$")


class ConsentView(BaseModel):
    consent_id: str
    user_id: str
    scopes: list[str]
    evidence: str | None
    granted_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    active: bool

    @classmethod
    def of(cls, row: EntryConsent, now: datetime) -> ConsentView:
        return cls(consent_id=row.id, user_id=row.user_ref, scopes=list(row.scopes), evidence=row.evidence,
                   granted_at=row.granted_at, expires_at=row.expires_at, revoked_at=row.revoked_at,
                   active=row.revoked_at is None and row.expires_at > now)


class EndUserView(BaseModel):
    user_id: str
    customer_no: str | None
    created_at: datetime
    consents: list[ConsentView]


@dataclass(frozen=True)
class EndUser:
    """What a consent-guarded route learns: the user, the bank's customer, and the consent used."""

    user_id: str
    customer_no: str | None
    consent_id: str
    scopes: tuple[str, ...]


def check_user_id(user_id: str) -> str:
    if not re.match(USER_ID_PATTERN, user_id):
        raise ValidationFailed("user id must be 1 to 128 of A-Z a-z 0-9 _ . : @ -",
                               details=[{"field": "user_id", "code": "invalid", "message": "not a valid user id"}])
    return user_id


class EndUsers:
    """One partner's end users and consents, inside one unit of work of its tenant."""

    def __init__(self, uow: UnitOfWork, partner_id: str, consent_default_days: int = 365) -> None:
        self.uow = uow
        self.session = uow.session
        self.partner_id = partner_id
        self.consent_default_days = consent_default_days

    def _row(self, user_id: str) -> EntryEndUser | None:
        return self.session.scalars(select(EntryEndUser).where(
            EntryEndUser.partner_id == self.partner_id, EntryEndUser.user_ref == user_id)).one_or_none()

    def _ensure(self, user_id: str) -> EntryEndUser:
        row = self._row(check_user_id(user_id))
        if row is None:
            now = self.uow.clock.now()
            row = EntryEndUser(partner_id=self.partner_id, user_ref=user_id, customer_no=None, created_at=now,
                               updated_at=now)
            self.session.add(row)
            self.session.flush()
        return row

    def link(self, user_id: str, customer_no: str | None) -> EndUserView:
        """Map the partner's user to the bank's customer. Repeating it is harmless; re-pointing a
        user at another customer is a conflict (a user is one person)."""
        row = self._ensure(user_id)
        if customer_no is not None and row.customer_no not in (None, customer_no):
            raise Conflict("this user is linked to another customer",
                           details=[{"field": "customer_no", "code": "linked_to_another_customer",
                                     "message": "differs from the linked customer"}])
        if customer_no is not None and row.customer_no is None:
            row.customer_no = customer_no
            row.updated_at = self.uow.clock.now()
            self.uow.publish("entry.end_user.linked", {"partner_id": self.partner_id, "user_id": user_id},
                             subject=f"end_user:{self.partner_id}:{user_id}")
        return self.view(user_id)

    def view(self, user_id: str) -> EndUserView:
        row = self._row(check_user_id(user_id))
        if row is None:
            raise EndUserUnknown(f"no user {user_id!r} for this partner")
        return EndUserView(user_id=row.user_ref, customer_no=row.customer_no, created_at=row.created_at,
                           consents=self.consents(user_id))

    def consents(self, user_id: str) -> list[ConsentView]:
        now = self.uow.clock.now()
        rows = self.session.scalars(select(EntryConsent).where(
            EntryConsent.partner_id == self.partner_id, EntryConsent.user_ref == user_id)
            .order_by(EntryConsent.granted_at, EntryConsent.id)).all()
        return [ConsentView.of(row, now) for row in rows]

    def grant(self, user_id: str, grant: ConsentGrant) -> ConsentView:
        now = self.uow.clock.now()
        errors = [{"field": "scopes", "code": "invalid", "message": f"scope {s!r} is not well formed"}
                  for s in grant.scopes if not re.match(CONSENT_SCOPE_PATTERN, s)]
        expires_at = grant.expires_at or now + timedelta(days=self.consent_default_days)
        if expires_at <= now:
            errors.append({"field": "expires_at", "code": "in_the_past", "message": "must be in the future"})
        if errors:
            raise ValidationFailed("; ".join(e["message"] for e in errors), details=errors)
        self._ensure(user_id)
        row = EntryConsent(id="cns_" + secrets.token_hex(12), partner_id=self.partner_id, user_ref=user_id,
                           scopes=sorted(set(grant.scopes)), evidence=grant.evidence, granted_at=now,
                           expires_at=expires_at, revoked_at=None)
        self.session.add(row)
        self.session.flush()
        self.uow.publish("entry.consent.granted", {"partner_id": self.partner_id, "user_id": user_id,
                                                   "consent_id": row.id, "scopes": row.scopes},
                         subject=f"consent:{row.id}")
        return ConsentView.of(row, now)

    def revoke(self, user_id: str, consent_id: str) -> ConsentView:
        row = self.session.scalars(select(EntryConsent).where(
            EntryConsent.id == consent_id, EntryConsent.partner_id == self.partner_id,
            EntryConsent.user_ref == user_id)).one_or_none()
        if row is None:
            raise EndUserUnknown(f"no consent {consent_id!r} for this user")
        now = self.uow.clock.now()
        if row.revoked_at is None:
            row.revoked_at = now
            self.uow.publish("entry.consent.revoked", {"partner_id": self.partner_id, "user_id": user_id,
                                                       "consent_id": row.id}, subject=f"consent:{row.id}")
        return ConsentView.of(row, now)

    def require(self, user_id: str, scopes: tuple[str, ...]) -> EndUser:
        """The user and a live consent covering every scope, or ``ConsentRequired`` naming what is missing."""
        row = self._row(check_user_id(user_id))
        if row is None:
            raise ConsentRequired(f"no consent from user {user_id!r} for {', '.join(scopes)}",
                                  details=[{"field": END_USER_HEADER, "code": "consent_missing", "message": s}
                                           for s in scopes])
        now = self.uow.clock.now()
        live = [c for c in self.session.scalars(select(EntryConsent).where(
            EntryConsent.partner_id == self.partner_id, EntryConsent.user_ref == user_id,
            EntryConsent.revoked_at.is_(None), EntryConsent.expires_at > now)).all()]
        for consent in sorted(live, key=lambda c: c.granted_at, reverse=True):
            if set(scopes) <= set(consent.scopes):
                return EndUser(user_id, row.customer_no, consent.id, tuple(consent.scopes))
        covered = {s for c in live for s in c.scopes}
        missing = [s for s in scopes if s not in covered] or list(scopes)
        raise ConsentRequired(
            f"user {user_id!r} has no live consent for {', '.join(missing)} (missing, expired or revoked)",
            details=[{"field": END_USER_HEADER, "code": "consent_missing", "message": s} for s in missing],
        )


def require_consent(*scopes: str) -> Callable[..., Any]:
    """Route dependency: the calling partner's user (header ``SceneOS-User-Id``) has consented to
    ``scopes``. Returns an :class:`EndUser`, or None on the bank's own (admin) mount, where the
    bank's staff act on its own legal basis."""
    for scope in scopes:
        if not re.match(CONSENT_SCOPE_PATTERN, scope):
            raise ValueError(f"consent scope {scope!r} is not well formed")

    def dependency(
        request: Request,
        user_id: str | None = Header(default=None, alias=END_USER_HEADER,
                                     description="the partner's id of the user this call is for"),
    ) -> EndUser | None:
        from infra.entry.gateway import STATE_PARTNER
        from infra.entry.runtime import MODULE_NAME

        context = getattr(request.state, STATE_PARTNER, None)
        if context is None:
            return None
        if not user_id:
            raise EndUserRequired(f"this operation acts for a user: send the {END_USER_HEADER} header")
        settings = context.tenant.module(MODULE_NAME).settings
        with context.tenant.unit_of_work() as uow:
            return EndUsers(uow, context.partner.partner_id, settings.consent_default_days).require(user_id, scopes)

    dependency.__name__ = "consent_" + "_".join(re.sub(r"\W", "_", s) for s in scopes)
    return dependency
