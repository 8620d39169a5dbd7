"""Settings of the payouts module, under ``[tenants.<id>.modules.payouts]``."""

from __future__ import annotations

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
