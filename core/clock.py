"""The one source of time. Nothing in SceneOS calls ``datetime.now()``: it asks an injected clock.

A simulated clock lets a test or a demo run months of an account's life in seconds.
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo


@runtime_checkable
class Clock(Protocol):
    """Gives the current instant as an aware UTC datetime."""

    def now(self) -> datetime: ...


def day_window(timezone: str | tzinfo, day: date) -> tuple[datetime, datetime]:
    """The UTC instants [start, end) of business day ``day`` in a bank's time zone; a day at the
    edge of the calendar (year 1, 9999-12-31) has no such window and is refused."""
    from core.errors import ValidationFailed

    zone = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
    try:
        start = datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)
        end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone).astimezone(UTC)
    except OverflowError:
        raise ValidationFailed(
            f"day {day.isoformat()} is out of range",
            details=[{"field": "day", "code": "out_of_range", "message": "not a business day the bank can have"}],
        ) from None
    return start, end


def retained_from(timezone: str | tzinfo, day: date, days: int) -> datetime:
    """The first instant a retention of ``days`` days keeps as of business day ``day``: the start of
    day ``day - days`` in the bank's time zone (what happened before it may be deleted)."""
    return day_window(timezone, day - timedelta(days=days))[0]


def business_date(clock: Clock, timezone: str | tzinfo) -> date:
    """The calendar date at the clock's instant in a bank's timezone (banks close days locally)."""
    tz = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
    return clock.now().astimezone(tz).date()


class SystemClock:
    """Wall-clock time, in UTC. The only place that reads the real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


class SimulatedClock:
    """A clock that stands still until told to move. Thread-safe, never goes backwards."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("SimulatedClock needs an aware datetime (give tzinfo)")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, instant: datetime) -> None:
        if instant.tzinfo is None:
            raise ValueError("SimulatedClock.set needs an aware datetime (give tzinfo)")
        with self._lock:
            if instant < self._now:
                # Going back would let a test post entries "before" ones already written.
                raise ValueError(f"clock cannot go back from {self._now.isoformat()} to {instant.isoformat()}")
            self._now = instant.astimezone(UTC)

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move forward by ``delta`` or by ``timedelta(**kwargs)``; returns the new instant."""
        step = delta if delta is not None else timedelta(**kwargs)
        if step < timedelta(0):
            raise ValueError("SimulatedClock.advance takes a non-negative step")
        with self._lock:
            self._now = self._now + step
            return self._now

    def __repr__(self) -> str:
        return f"SimulatedClock({self._now.isoformat()})"
