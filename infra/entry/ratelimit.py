"""Per-partner rate limits, with the ``limits`` library: in memory by default, Redis by URL.

Limits count wall-clock time (they protect the servers, not a business date), which is the clock
``limits`` and Redis keep; nothing business-related is decided from it.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter


def parse_rate_limit(text: str) -> list[RateLimitItem]:
    """``"20/second; 1000/hour"`` -> limit items; ValueError naming the problem."""
    try:
        items = parse_many(text)
    except ValueError:
        raise ValueError(f"rate limit {text!r} is not like '20/second; 1000/hour'") from None
    if not items:
        raise ValueError(f"rate limit {text!r} is empty")
    return items


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, self.reset_seconds))
        return headers


class PartnerRateLimiter:
    """One moving window per partner and limit item."""

    def __init__(self, storage_uri: str) -> None:
        self.storage = storage_from_string(storage_uri)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self._parsed: dict[str, list[RateLimitItem]] = {}
        self._lock = threading.Lock()

    def _items(self, text: str) -> list[RateLimitItem]:
        with self._lock:
            items = self._parsed.get(text)
            if items is None:
                items = self._parsed[text] = parse_rate_limit(text)
            return items

    def hit(self, tenant_id: str, partner_id: str, limit: str) -> RateDecision:
        """Count one request; the decision reports the tightest limit."""
        tightest: RateDecision | None = None
        for item in self._items(limit):
            allowed = self.limiter.hit(item, "entry", tenant_id, partner_id)
            stats = self.limiter.get_window_stats(item, "entry", tenant_id, partner_id)
            reset = max(0, math.ceil(stats.reset_time - time.time()))
            decision = RateDecision(allowed, item.amount, max(0, stats.remaining), reset)
            if not allowed:
                return decision
            if tightest is None or decision.remaining < tightest.remaining:
                tightest = decision
        assert tightest is not None  # parse_rate_limit never gives an empty list
        return tightest

    def reset(self) -> None:
        self.storage.reset()
