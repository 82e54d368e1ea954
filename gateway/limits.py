"""Rate limits for what the network can make us do: a token bucket, and a bounded per-key failure counter.

Both take the clock as an argument, so their behaviour is tested without sleeping.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def try_take(self) -> bool:
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def wait_s(self) -> float:
        """How long until the next token; 0 when one is there."""
        self._refill()
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate


class FailureLimiter:
    """At most `failures` failures per `window_s` per key (a remote address), remembering `keys` keys at most
    (the oldest are forgotten first, so the memory an attacker can make us use is bounded)."""

    def __init__(self, failures: int, window_s: float, keys: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.failures = failures
        self.window_s = window_s
        self.keys = keys
        self._clock = clock
        self._seen: OrderedDict[str, list[float]] = OrderedDict()

    def allowed(self, key: str) -> bool:
        return len(self._recent(key)) < self.failures

    def failed(self, key: str) -> None:
        recent = self._recent(key)
        recent.append(self._clock())
        self._seen[key] = recent
        self._seen.move_to_end(key)
        while len(self._seen) > self.keys:
            self._seen.popitem(last=False)

    def _recent(self, key: str) -> list[float]:
        horizon = self._clock() - self.window_s
        return [t for t in self._seen.get(key, ()) if t > horizon]
