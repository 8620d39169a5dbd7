"""The injected clock and money in minor units."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.clock import SimulatedClock, SystemClock, business_date
from core.money import Money, RoundingMode, currency_exponent


def test_simulated_clock_moves_months_ahead_and_never_back() -> None:
    clock = SimulatedClock(datetime(2026, 1, 31, 16, 30, tzinfo=UTC))
    assert business_date(clock, "Asia/Shanghai") == date(2026, 2, 1)  # 00:30 in Beijing
    clock.advance(days=180)
    assert clock.now() == datetime(2026, 7, 30, 16, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.set(datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(ValueError, match="aware"):
        SimulatedClock(datetime(2026, 1, 1))


def test_system_clock_is_aware_utc() -> None:
    assert SystemClock().now().tzinfo is UTC


def test_the_app_clock_is_the_injected_one(sceneos_app, sim_clock) -> None:
    assert sceneos_app.clock is sim_clock
    assert sceneos_app.tenant("bank").clock is sim_clock
    sim_clock.advance(days=40)
    assert sceneos_app.tenant("bank").business_date() == date(2026, 2, 10)


def test_money_rounds_explicitly_per_mode() -> None:
    assert Money.of(Decimal("126.505"), "CNY", RoundingMode.HALF_EVEN) == Money(12650, "CNY")
    assert Money.of(Decimal("126.505"), "CNY", RoundingMode.HALF_UP) == Money(12651, "CNY")
    assert Money.of("1000.4", "JPY", RoundingMode.HALF_UP) == Money(1000, "JPY")
    assert Money.of("1.0005", "BHD", RoundingMode.DOWN) == Money(1000, "BHD")
    assert str(Money(12650, "CNY")) == "126.50 CNY"
    with pytest.raises(TypeError, match="float"):
        Money.of(1.5, "CNY", RoundingMode.HALF_UP)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money(1.5, "CNY")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="currency mismatch"):
        Money(1, "CNY") + Money(1, "USD")
    with pytest.raises(ValueError, match="unknown ISO 4217"):
        currency_exponent("RMB")


@given(amount=st.decimals(min_value=-10**9, max_value=10**9, places=4, allow_nan=False),
       mode=st.sampled_from(list(RoundingMode)))
def test_rounding_never_moves_more_than_one_minor_unit(amount: Decimal, mode: RoundingMode) -> None:
    money = Money.of(amount, "CNY", mode)
    assert abs(money.amount - amount) < Decimal("0.01")
    assert Money.of(money.amount, "CNY", mode) == money
