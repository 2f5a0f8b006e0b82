"""Retry policies: pure arithmetic over the times and draws passed in."""

from __future__ import annotations

import pytest

from sidecarset.shell import backoff


def test_per_key_backoff_doubles_from_five_milliseconds() -> None:
    limiter: backoff.PerKeyExponential[str] = backoff.PerKeyExponential()
    delays = [limiter.when("a", now=0.0) for _ in range(5)]
    assert delays == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08])
    assert limiter.retries("a") == 5


def test_per_key_backoff_stops_at_its_cap_even_after_many_failures() -> None:
    limiter: backoff.PerKeyExponential[str] = backoff.PerKeyExponential(base=1.0, cap=60.0)
    delays = [limiter.when("a", now=0.0) for _ in range(200)]
    assert max(delays) == 60.0
    assert delays[-1] == 60.0


def test_forgetting_a_key_resets_only_that_key() -> None:
    limiter: backoff.PerKeyExponential[str] = backoff.PerKeyExponential()
    for _ in range(3):
        limiter.when("a", now=0.0)
        limiter.when("b", now=0.0)
    limiter.forget("a")
    assert limiter.retries("a") == 0
    assert limiter.when("a", now=0.0) == pytest.approx(0.005)
    assert limiter.when("b", now=0.0) == pytest.approx(0.04)


def test_overall_bucket_lets_a_burst_through_then_spaces_retries_at_its_rate() -> None:
    bucket: backoff.OverallBucket[str] = backoff.OverallBucket(qps=10.0, burst=3)
    delays = [bucket.when(f"k{i}", now=0.0) for i in range(6)]
    assert delays == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2, 0.3])


def test_overall_bucket_refills_with_time_but_not_beyond_its_burst() -> None:
    bucket: backoff.OverallBucket[str] = backoff.OverallBucket(qps=10.0, burst=2)
    assert [bucket.when("a", now=0.0) for _ in range(2)] == [0.0, 0.0]
    assert bucket.when("a", now=100.0) == 0.0
    assert bucket.when("a", now=100.0) == 0.0
    assert bucket.when("a", now=100.0) == pytest.approx(0.1)


def test_combined_limiter_waits_for_the_strictest_and_forgets_in_all() -> None:
    per_key: backoff.PerKeyExponential[str] = backoff.PerKeyExponential(base=1.0)
    bucket: backoff.OverallBucket[str] = backoff.OverallBucket(qps=1.0, burst=1)
    limiter = backoff.MaxOf(per_key, bucket)
    assert limiter.when("a", now=0.0) == 1.0  # per-key 1 s, bucket free
    assert limiter.when("b", now=0.0) == 1.0  # per-key 1 s, bucket 1 s
    assert limiter.when("c", now=0.0) == 2.0  # bucket now 2 s behind
    limiter.forget("a")
    assert limiter.retries("a") == 0
    assert limiter.retries("b") == 1


def test_default_rate_limiter_is_client_gos() -> None:
    limiter: backoff.MaxOf[str] = backoff.default_rate_limiter()
    assert limiter.when("a", now=0.0) == pytest.approx(0.005)
    assert [limiter.when(f"k{i}", now=0.0) for i in range(99)][-1] == pytest.approx(0.005)
    assert limiter.when("z", now=0.0) == pytest.approx(0.1)  # burst of 100 spent, 10 qps


@pytest.mark.parametrize(
    ("draw", "expected"),
    [
        pytest.param(0.0, [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0], id="no-jitter"),
        pytest.param(0.5, [1.2, 2.4, 4.8, 9.6, 19.2, 38.4, 45.0, 45.0], id="half-jitter"),
    ],
)
def test_jittered_backoff_doubles_to_its_cap_stretched_by_the_draw(
    draw: float, expected: list[float]
) -> None:
    retry = backoff.JitteredBackoff(draw=lambda: draw)
    assert [retry.next_delay(now=float(i)) for i in range(8)] == pytest.approx(expected)


def test_jittered_backoff_starts_over_after_a_quiet_period() -> None:
    retry = backoff.JitteredBackoff(draw=lambda: 0.0, reset_after=120.0)
    for i in range(4):
        retry.next_delay(now=float(i))
    assert retry.next_delay(now=3.0 + 119.0) == pytest.approx(12.8)
    assert retry.next_delay(now=122.0 + 120.0) == pytest.approx(0.8)


def test_jittered_backoff_reset_starts_from_the_initial_delay() -> None:
    retry = backoff.JitteredBackoff(draw=lambda: 0.0)
    retry.next_delay(now=0.0)
    retry.next_delay(now=1.0)
    retry.reset()
    assert retry.next_delay(now=2.0) == pytest.approx(0.8)
