"""Settings of the party module, under ``[tenants.<id>.modules.party]``."""

from __future__ import annotations

from pydantic import Field, model_validator

from core.settings import ModuleSettings


class PartySettings(ModuleSettings):
    min_age_years: int = Field(default=18, ge=0, le=150, description="youngest customer accepted")
    max_age_years: int = Field(default=100, ge=0, le=150, description="oldest customer accepted")
    # Two-digit province codes (e.g. "11" Beijing) whose residents may register; empty: all.
    allowed_provinces: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ages_ordered(self) -> PartySettings:
        if self.min_age_years > self.max_age_years:
            raise ValueError("min_age_years must not exceed max_age_years")
        for code in self.allowed_provinces:
            if len(code) != 2 or not code.isdigit():
                raise ValueError(f"allowed_provinces holds {code!r}; use two-digit province codes like '11'")
        return self
