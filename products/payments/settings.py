"""Settings of the payments module, under ``[tenants.<id>.modules.payments]``."""

from __future__ import annotations

import re
from decimal import Decimal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from core.settings import ModuleSettings
from infra.payouts import BankAccount
from products.payments.console.settings import ConsoleSettings

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"
# What a merchant's system hears about by default: its payments' outcomes and refunds.
MERCHANT_WEBHOOK_EVENTS = ("payments.payment.succeeded", "payments.payment.failed", "payments.payment.expired",
                           "payments.refund.succeeded")


class TerminalConfig(BaseModel):
    """A terminal (ticket window) of a store."""

    terminal_id: str = Field(pattern=_ID)
    label: str = Field(min_length=1, max_length=25, description="shown in the QR's additional data")


class StoreConfig(BaseModel):
    store_id: str = Field(pattern=_ID)
    name: str = Field(min_length=1, max_length=100)
    terminals: list[TerminalConfig] = Field(default_factory=list)


class MerchantConfig(BaseModel):
    """A merchant as configured per tenant; seeded into the database at startup."""

    merchant_id: str = Field(pattern=_ID)
    name: str = Field(min_length=1, max_length=25, description="EMVCo tag 59 allows 25 characters")
    city: str = Field(min_length=1, max_length=15, description="EMVCo tag 60 allows 15 characters")
    mcc: str = Field(description="ISO 18245 merchant category code, four digits")
    settlement_account: str = Field(min_length=1, max_length=64, description="ledger account code")
    fee_rate: Decimal = Field(default=Decimal("0"), ge=0, lt=1, description="merchant discount rate, e.g. 0.006")
    stores: list[StoreConfig] = Field(default_factory=list)
    payout_account: str | None = Field(default=None, min_length=1, max_length=64,
                                       description="ledger account the daily settlement pays the net to "
                                                   "(default: the module's settlement_clearing_account)")
    bank_account: BankAccount | None = Field(
        default=None, description="with the payouts module enabled, each day's net settlement is sent here")
    webhook_url: str | None = Field(default=None, pattern=r"^https?://", max_length=500,
                                    description="the merchant's system, notified of payment events")
    webhook_secret: SecretStr | None = Field(default=None, description="HMAC-SHA256 signing secret of the "
                                             "merchant's webhooks; stored encrypted, never shown or logged")
    webhook_events: list[str] = Field(default_factory=lambda: list(MERCHANT_WEBHOOK_EVENTS),
                                      description="event types (fnmatch patterns) the merchant is sent")

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("webhook_secret must be at least 16 characters")
        return value

    @field_validator("mcc")
    @classmethod
    def _mcc(cls, value: str) -> str:
        if not re.fullmatch(r"\d{4}", value):
            raise ValueError("mcc must be four digits, e.g. '4111'")
        return value


class PaymentsSettings(ModuleSettings):
    merchants: list[MerchantConfig] = Field(default_factory=list)
    qr_ttl_seconds: int = Field(default=300, ge=10, le=86_400, description="how long a dynamic QR can be paid")
    qr_guid: str = Field(default="cn.sceneos.pay", min_length=1, max_length=32,
                         description="globally unique id in merchant account information (tag 26, sub-tag 00)")
    country_code: str = Field(default="CN", pattern=r"^[A-Z]{2}$")
    fee_income_account: str = Field(default="bank:payments:fees", description="ledger account of fee income")
    max_pin_failures: int = Field(default=5, ge=1, le=20, description="wrong PINs in a row before lockout")
    lockout_seconds: int = Field(default=900, ge=1, description="how long a locked operator waits")
    # scrypt cost (N); stored with each hash so it can be raised later without breaking old PINs.
    pin_scrypt_n: int = Field(default=2**14, ge=2**10, le=2**20)
    code_ttl_seconds: int = Field(default=60, ge=10, le=600, description="how long a payment code can be scanned")
    code_prefix: str = Field(default="28", pattern=r"^[1-9]\d{1,3}$",
                             description="first digits of every 18-digit payment code (2-4 digits)")
    settlement_clearing_account: str = Field(default="bank:payments:merchant_settlement", min_length=1, max_length=64,
                                             description="ledger account of settled amounts owed to merchants, "
                                                         "when a merchant has no payout_account")
    # Reconciliation write-offs (reconciliation.py): the channel's receivable (asset) and the expense
    # or surplus it is written down or up against; another currency than the bank's gets ":<ccy>".
    recon_clearing_account: str = Field(default="bank:payments:channel_clearing", min_length=1, max_length=64,
                                        description="ledger account of what payment channels owe the bank")
    recon_write_off_account: str = Field(default="bank:payments:recon_writeoff", min_length=1, max_length=64,
                                         description="ledger account reconciliation differences are written off to")
    # The parsed lines of a reconciled statement file are read only while it is matched: after this
    # many days the job payments.recon_purge deletes them (the run, its exceptions and audit stay).
    # 0 keeps them for ever; the channel's original file is the record a bank archives.
    recon_line_retention_days: int = Field(default=0, ge=0, le=36_500,
                                           description="days to keep a reconciled file's lines (0: for ever)")
    console: ConsoleSettings = Field(default_factory=ConsoleSettings, description="the cashier console's sessions")

    @model_validator(mode="after")
    def _unique_ids(self) -> PaymentsSettings:
        merchants = [m.merchant_id for m in self.merchants]
        if len(set(merchants)) != len(merchants):
            raise ValueError("merchant_id values must be unique")
        terminals = [t.terminal_id for m in self.merchants for s in m.stores for t in s.terminals]
        if len(set(terminals)) != len(terminals):
            raise ValueError("terminal_id values must be unique across merchants")
        if self.pin_scrypt_n & (self.pin_scrypt_n - 1):
            raise ValueError("pin_scrypt_n must be a power of two")
        if self.recon_clearing_account == self.recon_write_off_account:
            raise ValueError("recon_clearing_account and recon_write_off_account must be different accounts")
        return self
