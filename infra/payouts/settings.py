"""Settings of the payouts module, under ``[tenants.<id>.modules.payouts]``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from core.settings import ModuleSettings

_ACCOUNT = r"^[A-Za-z0-9]{1,34}$"  # an IBAN, or a domestic account number (ISO 20022 Othr/Id)


class PayoutsSettings(ModuleSettings):
    # The bank's own account the transfers are paid from (pain.001 Dbtr / DbtrAcct / DbtrAgt).
    debtor_name: str = Field(default="", max_length=140, description="the bank's name on the transfers")
    debtor_account: str | None = Field(default=None, pattern=_ACCOUNT,
                                       description="the bank's account the transfers are paid from (IBAN or number)")
    debtor_agent_bic: str | None = Field(default=None, pattern=r"^[A-Z0-9]{8}([A-Z0-9]{3})?$",
                                         description="BIC of the bank's account servicer")
    # Ledger accounts (suffixed ":<currency>"): money sent and not yet confirmed (liability), and
    # the bank's funds at the payment system that a confirmed transfer leaves (asset).
    in_transit_account: str = Field(default="bank:payouts:in_transit", min_length=1, max_length=60)
    funding_account: str = Field(default="bank:payouts:funding", min_length=1, max_length=60)
    # A pacs.004 that returns less than was sent (the beneficiary's bank kept its charges): "refuse"
    # (list it, apply nothing: handled by hand), "bank" (the owing account is owed the whole payout
    # again, the charges are the bank's expense), "beneficiary" (owed again only what came back).
    return_charges: Literal["refuse", "bank", "beneficiary"] = "refuse"
    # Where the bank books those charges (suffixed ":<currency>", an expense).
    return_charges_account: str = Field(default="bank:payouts:return_charges", min_length=1, max_length=60)
