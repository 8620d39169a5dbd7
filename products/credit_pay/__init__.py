"""Credit pay: a bank's consumer-credit product embedded in partner platforms (journeys 2 and 3).

This increment: product configuration, installment trial calculation (annuity, equal principal,
flat fee; annualized rate by IRR), activation through the risk module, and purchases held on the
credit line in the ledger (authorize, capture, cancel, refund). See ``docs/credit-pay.md``.
"""
