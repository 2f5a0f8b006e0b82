"""Retry delays: per-key exponential backoff and an overall token bucket for the work queue, and
a jittered backoff for one stream of attempts (informer reconnects).

Every policy is pure arithmetic over a `now` (or a random draw) passed in, so tests need no clock.
The defaults are client-go's, which controller-runtime and Kruise run with.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)
K_contra = TypeVar("K_contra", bound=Hashable, contravariant=True)


class RateLimiter(Protocol[K_contra]):
    """How long a key waits before its next retry."""

    def when(self, key: K_contra, now: float) -> float:
        """Record one more failure of `key` at monotonic `now`; return the delay in seconds."""
        ...

    def forget(self, key: K_contra) -> None:
        """`key` succeeded: its next failure starts from the shortest delay again."""
        ...

    def retries(self, key: K_contra) -> int:
        """Failures recorded for `key` since it was last forgotten."""
        ...


class PerKeyExponential(Generic[K]):
    """`base * 2**failures`, at most `cap`: 5 ms, 10 ms, 20 ms, ... 1000 s (client-go's
    ItemExponentialFailureRateLimiter). A key that keeps failing settles at one try per `cap`."""

    def __init__(self, *, base: float = 0.005, cap: float = 1000.0) -> None:
        self._base, self._cap = base, cap
        self._failures: dict[K, int] = {}

    def when(self, key: K, now: float) -> float:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        if failures >= 64:  # 2**64 * base is past any sane cap; avoid float overflow
            return self._cap
        return min(self._cap, self._base * 2.0**failures)

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def retries(self, key: K) -> int:
        return self._failures.get(key, 0)


class OverallBucket(Generic[K]):
    """All keys together: `qps` retries per second sustained, `burst` at once (client-go's
    BucketRateLimiter, 10 qps and 100 burst). Each call reserves a token, so a storm of
    failures is spread out instead of retried in one burst."""

    def __init__(self, *, qps: float = 10.0, burst: int = 100) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("qps must be positive and burst at least 1")
        self._qps, self._burst = qps, float(burst)
        self._tokens = float(burst)
        self._last: float | None = None

    def when(self, key: K, now: float) -> float:
        if self._last is not None and now > self._last:
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._qps)
        if self._last is None or now > self._last:
            self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self._qps

    def forget(self, key: K) -> None:
        pass

    def retries(self, key: K) -> int:
        return 0


class MaxOf(Generic[K]):
    """The longest delay any of `limiters` asks for; every limiter records every failure."""

    def __init__(self, *limiters: RateLimiter[K]) -> None:
        if not limiters:
            raise ValueError("MaxOf needs at least one limiter")
        self._limiters = limiters

    def when(self, key: K, now: float) -> float:
        return max([limiter.when(key, now) for limiter in self._limiters])

    def forget(self, key: K) -> None:
        for limiter in self._limiters:
            limiter.forget(key)

    def retries(self, key: K) -> int:
        return max(limiter.retries(key) for limiter in self._limiters)


def default_rate_limiter() -> MaxOf[K]:
    """client-go's DefaultControllerRateLimiter: per-key 5 ms..1000 s, overall 10 qps / 100."""
    return MaxOf(PerKeyExponential(), OverallBucket())


class JitteredBackoff:
    """Delays for one stream of attempts, e.g. an informer reconnecting to the API server.

    The n-th consecutive failure waits `min(cap, initial * factor**n)` stretched by a random
    factor in `[1, 1 + jitter)`, so replicas that lost the API server together do not return
    together. After `reset_after` seconds without a failure the next one starts from `initial`
    again. Defaults are client-go's reflector (0.8 s, doubling, 30 s cap, jitter 1.0, 2 min).
    """

    def __init__(
        self,
        *,
        initial: float = 0.8,
        cap: float = 30.0,
        factor: float = 2.0,
        jitter: float = 1.0,
        reset_after: float = 120.0,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._initial, self._cap, self._factor = initial, cap, factor
        self._jitter, self._reset_after, self._draw = jitter, reset_after, draw
        self._steps = 0
        self._last_failure: float | None = None

    def next_delay(self, now: float) -> float:
        """Record a failure at monotonic `now`; return how long to wait before the next try."""
        if self._last_failure is not None and now - self._last_failure >= self._reset_after:
            self._steps = 0
        self._last_failure = now
        base = min(self._cap, self._initial * self._factor ** min(self._steps, 64))
        self._steps += 1
        return base * (1.0 + self._jitter * self._draw())

    def reset(self) -> None:
        """An attempt succeeded: the next failure waits `initial` again."""
        self._steps = 0
        self._last_failure = None
