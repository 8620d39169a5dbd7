"""Per-partner rate limits, with the ``limits`` library: in memory by default, Redis by URL.

Limits count wall-clock time (they protect the servers, not a business date), which is the clock
``limits`` and Redis keep; nothing business-related is decided from it.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, Storage, storage_from_string
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


SWEEP_SECONDS = 0.5


class SweptMemoryStorage(MemoryStorage):
    """``limits``' memory storage, with expired entries swept by one long-lived thread.

    The library's own storage (5.x) starts a new ``threading.Timer`` thread whenever its 10 ms
    expiry timer has run out, that is on nearly every request under steady traffic; starting a
    thread costs the request ~0.1 ms. Decisions do not depend on the sweep (every read compares
    timestamps); it only frees memory, so sweeping twice a second is plenty.
    """

    def __init__(self, uri: str | None = None, **options: str) -> None:
        super().__init__(uri, **options)
        self._stop = threading.Event()
        threading.Thread(target=_sweep, args=(weakref.ref(self), self._stop), name="sceneos-ratelimit-sweeper",
                         daemon=True).start()

    def _MemoryStorage__schedule_expiry(self) -> None:  # overrides the library's private hook
        pass  # the sweeper thread does it

    def __del__(self) -> None:
        self._stop.set()


def _sweep(ref: weakref.ref[SweptMemoryStorage], stop: threading.Event) -> None:
    while not stop.wait(SWEEP_SECONDS):
        storage = ref()
        if storage is None:
            return
        storage._MemoryStorage__expire_events()  # type: ignore[attr-defined]
        del storage  # hold no reference while waiting, so the storage can be collected


def make_storage(storage_uri: str) -> Storage:
    if storage_uri.split("://", 1)[0] == "memory":
        return SweptMemoryStorage(storage_uri)
    return storage_from_string(storage_uri)


class PartnerRateLimiter:
    """One moving window per partner and limit item."""

    def __init__(self, storage_uri: str) -> None:
        self.storage = make_storage(storage_uri)
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
