"""Payouts: money owed outside the bank sent as ISO 20022 credit transfers (``service.py``)."""

from infra.payouts.service import BatchView, PayoutDraft, Payouts, PayoutView, StatusOutcome

__all__ = ["BatchView", "PayoutDraft", "PayoutView", "Payouts", "StatusOutcome"]
