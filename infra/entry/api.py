"""HTTP routes of the entry itself.

* For partners (signed, mounted at ``/v1``): ``/me`` and their end users and consents (``/users``).
* For the bank (admin API key, mounted at ``/v1/admin/tenants/{tenant_id}``): partners, their keys and
  webhook secrets, and the webhook delivery log with manual redelivery.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from core.http import get_app, get_tenant
from core.settings import KEY_ID_PATTERN, PARTNER_ID_PATTERN
from core.tenancy import Tenant
from infra.entry.consent import USER_ID_PATTERN, ConsentGrant, ConsentView, EndUserLink, EndUsers, EndUserView
from infra.entry.gateway import partner_context
from infra.entry.runtime import MODULE_NAME, PartnerContext, entry_of

UserId = Path(pattern=USER_ID_PATTERN, max_length=128, description="the partner's own id of its user")
PartnerId = Path(pattern=PARTNER_ID_PATTERN, max_length=63)
ConsentId = Path(pattern=r"^cns_[0-9a-f]{24}$")
DeliveryId = Path(pattern=r"^whd_[0-9a-f]{24}$")


class PartnerView(BaseModel):
    partner_id: str
    name: str
    display_name: str | None
    scopes: list[str]
    enabled: bool
    rate_limit: str | None
    webhook_url: str | None
    webhook_events: list[str]
    source: Literal["configuration", "database"]


class MeView(BaseModel):
    partner_id: str
    tenant_id: str
    display_name: str | None
    scopes: list[str]
    key_id: str


def _users(context: PartnerContext, uow: Any) -> EndUsers:
    settings = context.tenant.module(MODULE_NAME).settings
    return EndUsers(uow, context.partner.partner_id, settings.consent_default_days)


def partner_router() -> APIRouter:
    api = APIRouter()

    @api.get("/me", tags=["partner"])
    def who_am_i(context: PartnerContext = Depends(partner_context)) -> MeView:
        """The calling partner as the bank knows it (white-label name, scopes)."""
        p = context.partner
        return MeView(partner_id=p.partner_id, tenant_id=p.tenant_id, display_name=p.display_name or p.name,
                      scopes=list(p.scopes), key_id=context.key_id)

    @api.put("/users/{user_id}", tags=["end users"])
    def link_user(body: EndUserLink, user_id: str = UserId,
                  context: PartnerContext = Depends(partner_context)) -> EndUserView:
        """Register the partner's user, optionally mapped to the bank's customer (``customer_no``)."""
        with context.tenant.unit_of_work() as uow:
            return _users(context, uow).link(user_id, body.customer_no)

    @api.get("/users/{user_id}", tags=["end users"])
    def get_user(user_id: str = UserId, context: PartnerContext = Depends(partner_context)) -> EndUserView:
        with context.tenant.unit_of_work() as uow:
            return _users(context, uow).view(user_id)

    @api.post("/users/{user_id}/consents", status_code=201, tags=["end users"])
    def grant_consent(grant: ConsentGrant, user_id: str = UserId,
                      context: PartnerContext = Depends(partner_context)) -> ConsentView:
        """Record the user's consent to some purposes (e.g. ``credit_decision``)."""
        with context.tenant.unit_of_work() as uow:
            return _users(context, uow).grant(user_id, grant)

    @api.get("/users/{user_id}/consents", tags=["end users"])
    def list_consents(user_id: str = UserId, context: PartnerContext = Depends(partner_context)) -> list[ConsentView]:
        with context.tenant.unit_of_work() as uow:
            return _users(context, uow).consents(user_id)

    @api.post("/users/{user_id}/consents/{consent_id}/revoke", tags=["end users"])
    def revoke_consent(user_id: str = UserId, consent_id: str = ConsentId,
                       context: PartnerContext = Depends(partner_context)) -> ConsentView:
        """Revoke a consent (repeating it is harmless); calls needing it are refused from now on."""
        with context.tenant.unit_of_work() as uow:
            return _users(context, uow).revoke(user_id, consent_id)

    return api


# --- the bank's admin API -----------------------------------------------------------------------------


class PartnerDraft(BaseModel):
    partner_id: str = Field(pattern=PARTNER_ID_PATTERN, max_length=63)
    name: str = Field(min_length=1, max_length=200)
    display_name: str | None = Field(default=None, max_length=200)
    scopes: list[str] = Field(default_factory=list, max_length=100)
    rate_limit: str | None = Field(default=None, max_length=200)
    webhook_url: str | None = Field(default=None, max_length=2000)
    webhook_events: list[str] = Field(default_factory=list, max_length=100)


class PartnerChange(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    display_name: str | None = Field(default=None, max_length=200)
    scopes: list[str] | None = Field(default=None, max_length=100)
    rate_limit: str | None = Field(default=None, max_length=200)
    webhook_url: str | None = Field(default=None, max_length=2000)
    webhook_events: list[str] | None = Field(default=None, max_length=100)
    enabled: bool | None = None


class IssuedCredential(BaseModel):
    key_id: str
    secret: str = Field(description="shown once; the bank keeps it encrypted")


class IssuedWebhookSecret(BaseModel):
    secret: str = Field(description="shown once; sign-checks every webhook")


class NewPartnerView(BaseModel):
    partner: PartnerView
    credential: IssuedCredential
    webhook_secret: IssuedWebhookSecret | None


class CredentialView(BaseModel):
    key_id: str
    created_at: datetime | None
    revoked_at: datetime | None


class AttemptView(BaseModel):
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryView(BaseModel):
    delivery_id: str
    event_id: str
    event_type: str
    partner_id: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    log: list[AttemptView] | None = None


class RedeliveryView(BaseModel):
    outcome: str | None
    delivery: DeliveryView


def admin_router() -> APIRouter:
    from infra.entry.partners import PartnerAdmin
    from infra.entry.webhooks import WebhookDispatcher, delivery_detail, delivery_log

    api = APIRouter()

    def admin(request: Request, tenant: Tenant, uow: Any) -> PartnerAdmin:
        return PartnerAdmin(uow, entry_of(get_app(request)).directory)

    @api.get("/partners", tags=["admin: partners"])
    def list_partners(request: Request, tenant: Tenant = Depends(get_tenant)) -> list[PartnerView]:
        with tenant.unit_of_work() as uow:
            return [PartnerView(**p.public()) for p in entry_of(get_app(request)).directory.all(uow)]

    @api.post("/partners", status_code=201, tags=["admin: partners"])
    def create_partner(draft: PartnerDraft, request: Request, tenant: Tenant = Depends(get_tenant)) -> NewPartnerView:
        """Create a partner with its first signing key (and a webhook secret if it has a URL)."""
        with tenant.unit_of_work() as uow:
            made = admin(request, tenant, uow).create(**draft.model_dump())
        webhook = IssuedWebhookSecret(secret=made.webhook_secret.secret) if made.webhook_secret else None
        return NewPartnerView(partner=PartnerView(**made.partner.public()),
                              credential=IssuedCredential(key_id=made.credential.key_id or "",
                                                          secret=made.credential.secret),
                              webhook_secret=webhook)

    @api.get("/partners/{partner_id}", tags=["admin: partners"])
    def get_partner(request: Request, partner_id: str = PartnerId, tenant: Tenant = Depends(get_tenant)) -> PartnerView:
        from core.errors import NotFound

        with tenant.unit_of_work() as uow:
            partner = entry_of(get_app(request)).directory.get(uow, partner_id)
        if partner is None:
            raise NotFound(f"no partner {partner_id!r}")
        return PartnerView(**partner.public())

    @api.patch("/partners/{partner_id}", tags=["admin: partners"])
    def change_partner(change: PartnerChange, request: Request, partner_id: str = PartnerId,
                       tenant: Tenant = Depends(get_tenant)) -> PartnerView:
        with tenant.unit_of_work() as uow:
            partner = admin(request, tenant, uow).update(partner_id, **change.model_dump(exclude_unset=True))
        return PartnerView(**partner.public())

    @api.get("/partners/{partner_id}/credentials", tags=["admin: partners"])
    def list_credentials(request: Request, partner_id: str = PartnerId,
                         tenant: Tenant = Depends(get_tenant)) -> list[CredentialView]:
        with tenant.unit_of_work() as uow:
            return [CredentialView(**c) for c in admin(request, tenant, uow).credentials(partner_id)]

    @api.post("/partners/{partner_id}/credentials", status_code=201, tags=["admin: partners"])
    def add_credential(request: Request, partner_id: str = PartnerId,
                       tenant: Tenant = Depends(get_tenant)) -> IssuedCredential:
        """A new signing key, for rotation: both keys work until the old one is revoked."""
        with tenant.unit_of_work() as uow:
            issued = admin(request, tenant, uow).add_credential(partner_id)
        return IssuedCredential(key_id=issued.key_id or "", secret=issued.secret)

    @api.post("/partners/{partner_id}/credentials/{key_id}/revoke", tags=["admin: partners"])
    def revoke_credential(request: Request, partner_id: str = PartnerId,
                          key_id: str = Path(pattern=KEY_ID_PATTERN), tenant: Tenant = Depends(get_tenant)) -> list[CredentialView]:
        with tenant.unit_of_work() as uow:
            service = admin(request, tenant, uow)
            service.revoke_credential(partner_id, key_id)
            return [CredentialView(**c) for c in service.credentials(partner_id)]

    @api.post("/partners/{partner_id}/webhook-secrets", status_code=201, tags=["admin: partners"])
    def rotate_webhook_secret(request: Request, partner_id: str = PartnerId,
                              grace_hours: int = Query(24, ge=0, le=720),
                              tenant: Tenant = Depends(get_tenant)) -> IssuedWebhookSecret:
        """A new webhook secret; webhooks carry both signatures for ``grace_hours``."""
        from datetime import timedelta

        with tenant.unit_of_work() as uow:
            issued = admin(request, tenant, uow).rotate_webhook_secret(partner_id, grace=timedelta(hours=grace_hours))
        return IssuedWebhookSecret(secret=issued.secret)

    @api.get("/webhooks/deliveries", tags=["admin: webhooks"])
    def list_deliveries(status: Literal["pending", "delivered", "dead"] | None = None,
                        limit: int = Query(100, ge=1, le=1000),
                        tenant: Tenant = Depends(get_tenant)) -> list[DeliveryView]:
        return [DeliveryView(**d) for d in delivery_log(tenant, status=status, limit=limit)]  # type: ignore[arg-type]

    @api.get("/webhooks/deliveries/{delivery_id}", tags=["admin: webhooks"])
    def get_delivery(delivery_id: str = DeliveryId, tenant: Tenant = Depends(get_tenant)) -> DeliveryView:
        return DeliveryView(**delivery_detail(tenant, delivery_id))  # type: ignore[arg-type]

    @api.post("/webhooks/deliveries/{delivery_id}/redeliver", tags=["admin: webhooks"])
    def redeliver(request: Request, delivery_id: str = DeliveryId,
                  tenant: Tenant = Depends(get_tenant)) -> RedeliveryView:
        """Send a delivery again now (after a partner fixed its endpoint)."""
        app = get_app(request)
        dispatcher = WebhookDispatcher(app, entry_of(app))
        try:
            outcome = dispatcher.redeliver(tenant, delivery_id)
        finally:
            dispatcher.close()
        return RedeliveryView(outcome=outcome, delivery=DeliveryView(**delivery_detail(tenant, delivery_id)))  # type: ignore[arg-type]

    return api
