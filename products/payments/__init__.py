"""Payments: the smart cashier. Merchants, stores and terminals; operators, PINs and shifts; dynamic
EMVCo QR collection paid from a payer's ledger account; cash sales; refunds; shift statements.
See ``docs/payments.md``."""
