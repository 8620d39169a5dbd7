"""The contract between a module that takes payments and a module that funds them.

A payment module (``products.payments``) must be able to fund a purchase from a consumer-credit
line (``products.credit_pay``) without importing it: products never import each other. The funding
module implements :class:`FundingSource` and offers it by name through the tenant-level hook
``sceneos_funding_sources(tenant)``; the payment module asks the hook for the source the payer
chose. Every call takes the caller's unit of work, so the payment and the source's own records
(a credit purchase, its hold on the line) commit or roll back together.

Flow of one payment funded by a source:

1. ``hold``: reserve ``amount_minor`` for the customer at the merchant, under the caller's
   ``reference`` (idempotent: the same reference answers the same). A refusal is an answer
   (``FundingHold.declined`` with reason codes), not an exception, so the caller can record it.
2. ``capture``: take what was held. The source then has credited ``FundingHold.clearing_account``
   (a ledger account) with the amount; the payment module pays the merchant from that account in
   its own ledger entry, in the same unit of work.
3. ``release``: give an uncaptured hold back (the payment did not complete).
4. ``refund``: after the payment module has put ``amount_minor`` back into the clearing account,
   the source gives it back to the customer (e.g. restores the credit line). Idempotent on
   ``refund_reference``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from core.tenancy import Tenant, UnitOfWork

FUNDING_SOURCE_NAME = r"^[a-z][a-z0-9_]{0,31}$"


@dataclass(frozen=True)
class FundingHold:
    """The state of one reservation at a funding source.

    ``status`` is ``held``, ``captured``, ``released`` or ``declined``; ``reasons`` are the source's
    reason codes of a decline (e.g. ``insufficient_available_line``); ``clearing_account`` is the
    ledger account (in ``currency``) the source credits on capture and debits on refund.
    """

    reference: str
    status: str
    amount_minor: int
    currency: str
    clearing_account: str
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def declined(self) -> bool:
        return self.status == "declined"


@runtime_checkable
class FundingSource(Protocol):
    """A way for a customer to fund a payment other than their own bank account.

    Implementations never commit: they write through ``uow`` only. Every method is idempotent on
    its reference. Bad input (unknown reference, refund above what was captured) raises a
    :class:`core.errors.SceneOSError`; a business refusal of a hold is returned as ``declined``.
    """

    name: str

    def hold(self, uow: UnitOfWork, *, customer_no: str, amount_minor: int, currency: str, merchant_id: str,
             reference: str) -> FundingHold:
        """Reserve ``amount_minor`` of ``currency`` for ``customer_no`` buying at ``merchant_id``."""
        ...

    def capture(self, uow: UnitOfWork, reference: str) -> FundingHold:
        """Take the whole held amount; the clearing account is credited with it."""
        ...

    def release(self, uow: UnitOfWork, reference: str) -> FundingHold:
        """Give a hold back uncaptured (idempotent; a declined hold is returned unchanged)."""
        ...

    def refund(self, uow: UnitOfWork, reference: str, refund_reference: str, amount_minor: int) -> None:
        """Give ``amount_minor`` of a captured hold back to the customer, taking it from the
        clearing account (which the caller has credited with it in the same unit of work)."""
        ...


def funding_sources(tenant: Tenant) -> dict[str, FundingSource]:
    """Every funding source the tenant's enabled modules offer, by name (hook
    ``sceneos_funding_sources``). A name offered twice is a configuration error."""
    from core.errors import ConfigError

    found: dict[str, FundingSource] = {}
    for offered in tenant.hooks.hook.sceneos_funding_sources(tenant=tenant):
        for source in offered or ():
            if not isinstance(source, FundingSource):
                raise ConfigError(f"sceneos_funding_sources returned {source!r}, which is not a FundingSource")
            if source.name in found:
                raise ConfigError(f"funding source {source.name!r} is offered twice")
            found[source.name] = source
    return found
