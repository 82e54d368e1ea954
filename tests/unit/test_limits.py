"""Rate limits, with a hand-driven clock."""

from __future__ import annotations

from gateway.limits import FailureLimiter, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate():
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    assert [bucket.try_take() for _ in range(6)] == [True] * 5 + [False]
    assert bucket.wait_s() == 0.1
    clock.now += 0.35
    assert [bucket.try_take() for _ in range(4)] == [True] * 3 + [False]
    clock.now += 100
    assert sum(bucket.try_take() for _ in range(10)) == 5  # never more than the burst saved up


def test_failures_are_counted_per_key_in_a_window_and_keys_are_bounded():
    clock = Clock()
    limiter = FailureLimiter(failures=3, window_s=60, keys=2, clock=clock)
    for _ in range(3):
        assert limiter.allowed("10.0.0.1")
        limiter.failed("10.0.0.1")
    assert not limiter.allowed("10.0.0.1") and limiter.allowed("10.0.0.2")
    clock.now += 61
    assert limiter.allowed("10.0.0.1")
    for key in ("a", "b", "c"):
        limiter.failed(key)
    assert len(limiter._seen) == 2
