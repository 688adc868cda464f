"""The token bucket on its own: refill, per-client buckets, bounded memory."""

from __future__ import annotations

import pytest

from lexdpr_pipeline.api.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_steady_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(6, clock=clock)  # 6 a minute: one token every 10 s
    assert [limiter.allow("a")[0] for _ in range(7)] == [True] * 6 + [False]
    assert limiter.allow("a") == (False, 10)
    clock.now += 4
    assert limiter.allow("a") == (False, 6)  # 0.4 token so far: 6 s to go
    clock.now += 6
    assert limiter.allow("a") == (True, 0)
    assert limiter.allow("b") == (True, 0)  # another client has its own bucket


def test_idle_clients_are_forgotten_when_full() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock=clock, max_clients=3)
    for client in ("a", "b", "c"):
        limiter.allow(client)
    clock.now += 61  # a, b and c have refilled completely
    limiter.allow("d")
    assert len(limiter) == 1
    for client in ("e", "f"):
        limiter.allow(client)
    limiter.allow("g")  # nobody idle: the older half goes
    assert len(limiter) <= 3


def test_rejects_a_nonpositive_rate() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0)
