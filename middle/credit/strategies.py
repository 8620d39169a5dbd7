"""The built-in limit and pricing strategies (registered ``trylast`` by ``plugin.py``).

A bank replaces either by answering the hook in its own plugin; these stay as the fallback.
"""

from __future__ import annotations

from middle.credit.service import CreditProfile, Pricing
from middle.credit.settings import CreditSettings, ScoreBand

LIMIT_STRATEGY_NAME = "credit.default_limit"
PRICING_STRATEGY_NAME = "credit.default_pricing"


def default_line_minor(profile: CreditProfile, band: ScoreBand, settings: CreditSettings) -> int:
    """The band's line, bounded by a multiple of the consented monthly income, less existing lines.

    Without a consented income band, ``unknown_income_line_pct`` of the band's line.
    """
    monthly_income_minor = settings.income_bands.get(profile.income_band) if profile.income_band else None
    if monthly_income_minor is None:
        line = band.max_line_minor * settings.unknown_income_line_pct // 100
    else:
        line = min(band.max_line_minor, monthly_income_minor * band.income_multiple_pct // 100)
    return max(line - profile.existing_line_minor, 0)


def default_pricing(band: ScoreBand) -> Pricing:
    """The band's rates, as configured."""
    return Pricing(annual_rate_bps=band.annual_rate_bps, fee_rate_bps=band.fee_rate_bps)
