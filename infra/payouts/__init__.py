"""Payouts: money owed outside the bank sent as ISO 20022 credit transfers (``service.py``)."""

from infra.payouts.service import BankAccount, BatchView, PayoutDraft, Payouts, PayoutView, StatusOutcome

__all__ = ["BankAccount", "BatchView", "PayoutDraft", "PayoutView", "Payouts", "StatusOutcome"]
