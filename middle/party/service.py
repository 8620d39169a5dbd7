"""Customer registration and lookup. No HTTP here: the API and CLI call these operations."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.errors import Conflict, NotFound, Rejected, Rejection, ValidationFailed
from core.identity import InvalidIdentifier, ResidentId, mask_phone, normalize_mobile, parse_resident_id
from core.plugins import TenantHooks
from core.tenancy import UnitOfWork
from middle.party.models import Customer
from middle.party.settings import PartySettings

CUSTOMER_NO_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


class CustomerDraft(BaseModel):
    """What a caller sends to register a customer."""

    name: str = Field(min_length=1, max_length=100)
    id_number: str = Field(min_length=15, max_length=21, description="18-character resident ID number")
    phone: str = Field(min_length=5, max_length=24, description="mainland mobile number")


@dataclass(frozen=True)
class CustomerView:
    """A customer as other modules and partners see it: identifiers masked."""

    customer_no: str
    name: str
    id_number_masked: str
    phone_masked: str
    birth_date: date
    gender: str
    region_code: str
    created_at: datetime

    @classmethod
    def of(cls, row: Customer) -> CustomerView:
        return cls(
            customer_no=row.customer_no,
            name=row.name,
            id_number_masked=f"{row.id_number[:6]}********{row.id_number[-4:]}",
            phone_masked=mask_phone(row.phone_e164),
            birth_date=row.birth_date,
            gender=row.gender,
            region_code=row.region_code,
            created_at=row.created_at,
        )


@dataclass(frozen=True)
class Registration:
    customer: CustomerView
    created: bool


def new_customer_no() -> str:
    return "cus_" + "".join(secrets.choice(CUSTOMER_NO_ALPHABET) for _ in range(16))


class PartyService:
    """Operations on one tenant's customers within one unit of work."""

    def __init__(self, uow: UnitOfWork, settings: PartySettings, hooks: TenantHooks) -> None:
        self.uow = uow
        self.session = uow.session
        self.settings = settings
        self.hooks = hooks

    def register(self, draft: CustomerDraft) -> Registration:
        """Register a customer; the resident ID number makes it idempotent.

        Registering the same ID number again with the same name and phone returns the existing
        customer (``created=False``); with a different name or phone it is a conflict naming the
        field, since one person is one customer of a bank.
        """
        today = self.uow.tenant.business_date()
        resident_id, phone = self._validate(draft, today)
        existing = self._by_id_number(resident_id.number)
        if existing is not None:
            return Registration(self._same_person(existing, draft, phone), created=False)
        rejections = [r for r in self.hooks.hook.sceneos_party_validate_customer(
            tenant=self.uow.tenant, draft=draft, resident_id=resident_id, phone_e164=phone
        ) if r is not None]
        if rejections:
            raise Rejected(
                "; ".join(r.message for r in rejections),
                details=[r.as_detail() for r in rejections],
            )
        row = Customer(
            customer_no=new_customer_no(),
            name=draft.name.strip(),
            id_number=resident_id.number,
            birth_date=resident_id.birth_date,
            gender=resident_id.gender,
            region_code=resident_id.region_code,
            phone_e164=phone,
            created_at=self.uow.clock.now(),
        )
        try:
            with self.session.begin_nested():
                self.session.add(row)
        except IntegrityError:
            # A concurrent registration of the same person won the race: answer as a retry would.
            existing = self._by_id_number(resident_id.number)
            if existing is None:
                raise
            return Registration(self._same_person(existing, draft, phone), created=False)
        view = CustomerView.of(row)
        self.uow.publish(
            "party.customer.registered",
            {"customer_no": view.customer_no, "region_code": view.region_code},
            subject=f"customer:{view.customer_no}",
        )
        return Registration(view, created=True)

    def get(self, customer_no: str) -> CustomerView:
        row = self.session.scalars(select(Customer).where(Customer.customer_no == customer_no)).one_or_none()
        if row is None:
            raise NotFound(f"no customer {customer_no!r}")
        return CustomerView.of(row)

    def find_by_id_number(self, id_number: str) -> CustomerView | None:
        row = self._by_id_number(id_number.strip().upper())
        return CustomerView.of(row) if row else None

    def find_by_phone(self, phone: str) -> list[CustomerView]:
        try:
            e164 = normalize_mobile(phone)
        except InvalidIdentifier as exc:
            raise ValidationFailed(str(exc), details=[{"field": "phone", "code": exc.code, "message": str(exc)}]) from None
        rows = self.session.scalars(select(Customer).where(Customer.phone_e164 == e164).order_by(Customer.id))
        return [CustomerView.of(row) for row in rows]

    def count(self) -> int:
        from sqlalchemy import func

        return self.session.scalar(select(func.count()).select_from(Customer)) or 0

    # --- rules --------------------------------------------------------------------------------

    def _validate(self, draft: CustomerDraft, today: date) -> tuple[ResidentId, str]:
        errors = []
        resident_id = phone = None
        try:
            resident_id = parse_resident_id(draft.id_number, today=today)
        except InvalidIdentifier as exc:
            errors.append({"field": "id_number", "code": exc.code, "message": str(exc)})
        try:
            phone = normalize_mobile(draft.phone)
        except InvalidIdentifier as exc:
            errors.append({"field": "phone", "code": exc.code, "message": str(exc)})
        if resident_id is not None:
            errors.extend(self._policy_errors(resident_id, today))
        if errors:
            raise ValidationFailed("; ".join(e["message"] for e in errors), details=errors)
        assert resident_id is not None and phone is not None
        return resident_id, phone

    def _policy_errors(self, resident_id: ResidentId, today: date) -> list[dict[str, str]]:
        errors = []
        age = resident_id.age_on(today)
        if age < self.settings.min_age_years:
            errors.append({"field": "id_number", "code": "age_below_minimum",
                           "message": f"customer must be at least {self.settings.min_age_years} years old"})
        if age > self.settings.max_age_years:
            errors.append({"field": "id_number", "code": "age_above_maximum",
                           "message": f"customer must be at most {self.settings.max_age_years} years old"})
        allowed = self.settings.allowed_provinces
        if allowed and resident_id.region_code[:2] not in allowed:
            errors.append({"field": "id_number", "code": "region_not_served",
                           "message": "this bank does not serve the customer's region"})
        return errors

    def _by_id_number(self, id_number: str) -> Customer | None:
        return self.session.scalars(select(Customer).where(Customer.id_number == id_number)).one_or_none()

    def _same_person(self, row: Customer, draft: CustomerDraft, phone: str) -> CustomerView:
        if row.name != draft.name.strip():
            raise Conflict("a customer with this ID number exists with a different name",
                           details=[{"field": "name", "code": "exists_with_different_name",
                                     "message": "differs from the registered customer"}])
        if row.phone_e164 != phone:
            raise Conflict("a customer with this ID number exists with a different phone",
                           details=[{"field": "phone", "code": "exists_with_different_phone",
                                     "message": "differs from the registered customer"}])
        return CustomerView.of(row)


__all__ = ["CustomerDraft", "CustomerView", "PartyService", "Registration", "Rejection"]
