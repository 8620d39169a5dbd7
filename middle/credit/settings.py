"""Settings of the credit module, under ``[tenants.<id>.modules.credit]``.

Money is in the tenant currency's minor units (fen for CNY); rates are basis points per year
(``2400`` = 24.00 %). The caps and the rate ceiling here bound every offer, whatever the limit and
pricing hooks answer.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from core.settings import ModuleSettings, StrictModel

# The 24 % a year that Chinese courts protect (above it, interest is not enforceable): a bank sets
# its own ceiling, never above what its regulator allows.
DEFAULT_ANNUAL_RATE_CEILING_BPS = 2400


class ScoreBand(StrictModel):
    """A range of scores (``min_score`` and up, to the next band) and what the default strategies give it."""

    name: str = Field(min_length=1, max_length=16)
    min_score: int = Field(ge=-10_000, le=10_000)
    # The default limit strategy's line for this band before income and existing exposure; 0: no offer.
    max_line_minor: int = Field(ge=0)
    # The line is at most the monthly income times this percentage (300: three months' income).
    income_multiple_pct: int = Field(default=200, ge=0, le=10_000)
    annual_rate_bps: int = Field(ge=0, le=100_000)
    # Fee rate, annualized on the drawn balance; the ceiling bounds annual_rate_bps + fee_rate_bps.
    fee_rate_bps: int = Field(default=0, ge=0, le=100_000)


def default_score_bands() -> list[ScoreBand]:
    # Cut-offs fit the shipped default scorecard (600 points at 50:1 good:bad odds, 20 points to
    # double the odds; German credit data scores 426 to 600). On its data: A is the best 14 % (5 %
    # bad), B the next 22 % (10 %), C 21 % (26 %), D 26 % (40 %: a small, dear line), E no offer.
    return [
        ScoreBand(name="A", min_score=560, max_line_minor=3_000_000, income_multiple_pct=300, annual_rate_bps=1080),
        ScoreBand(name="B", min_score=535, max_line_minor=1_500_000, income_multiple_pct=200, annual_rate_bps=1440),
        ScoreBand(name="C", min_score=510, max_line_minor=800_000, income_multiple_pct=150, annual_rate_bps=1800),
        ScoreBand(name="D", min_score=485, max_line_minor=200_000, income_multiple_pct=100, annual_rate_bps=2160,
                  fee_rate_bps=120),
        ScoreBand(name="E", min_score=-10_000, max_line_minor=0, income_multiple_pct=0, annual_rate_bps=0),
    ]


def default_income_bands() -> dict[str, int]:
    # Conservative monthly income (CNY fen) per consented income band: the band's lower end, or a
    # floor for the lowest band.
    return {
        "lt_3k": 150_000,
        "3k_5k": 300_000,
        "5k_10k": 500_000,
        "10k_20k": 1_000_000,
        "20k_plus": 2_000_000,
    }


class CreditSettings(ModuleSettings):
    # A scorecard shipped in middle/credit/scorecards/ by name ("default"), or a path to a JSON file.
    scorecard: str = "default"
    score_bands: list[ScoreBand] = Field(default_factory=default_score_bands)
    income_bands: dict[str, int] = Field(default_factory=default_income_bands)
    # With no consented income band, the default limit strategy gives this share of the band's line.
    unknown_income_line_pct: int = Field(default=50, ge=0, le=100)

    # Caps applied after the limit hook, in this order: absolute, total exposure, step, minimum.
    max_line_minor: int = Field(default=5_000_000, ge=0, description="largest line ever offered")
    max_total_exposure_minor: int = Field(
        default=10_000_000, ge=0, description="existing lines at this bank plus the new line, at most"
    )
    line_step_minor: int = Field(default=10_000, ge=1, description="lines are rounded down to a multiple of this")
    min_line_minor: int = Field(default=50_000, ge=0, description="a smaller line is no offer at all")

    annual_rate_ceiling_bps: int = Field(
        default=DEFAULT_ANNUAL_RATE_CEILING_BPS, ge=0, le=100_000,
        description="annual rate plus annualized fee rate, at most (after the pricing hook)",
    )
    days_in_year: Literal[360, 365] = 365

    # Ask the bureau hook for a report when the customer authorized it (consented bureau_authorized).
    fetch_bureau: bool = True
    # At most this many principal reasons (adverse-action practice: four).
    max_reasons: int = Field(default=4, ge=0, le=4)
    # Recorded in every offer's strategy_version; raise it when bands or caps change.
    strategy_version: str = Field(default="1", min_length=1, max_length=32)

    @model_validator(mode="after")
    def _consistent(self) -> CreditSettings:
        if not self.score_bands:
            raise ValueError("score_bands must hold at least one band")
        mins = [band.min_score for band in self.score_bands]
        if mins != sorted(mins, reverse=True) or len(set(mins)) != len(mins):
            raise ValueError("score_bands must be listed best first, with strictly decreasing min_score")
        names = [band.name for band in self.score_bands]
        if len(set(names)) != len(names):
            raise ValueError("score band names must be unique")
        if self.min_line_minor > self.max_line_minor:
            raise ValueError("min_line_minor must not exceed max_line_minor")
        for code, monthly_minor in self.income_bands.items():
            if monthly_minor < 0:
                raise ValueError(f"income_bands.{code} must not be negative")
        return self

    def band_for(self, score: int) -> ScoreBand | None:
        """The best band whose ``min_score`` the score reaches; None below the lowest band."""
        for band in self.score_bands:
            if score >= band.min_score:
                return band
        return None
