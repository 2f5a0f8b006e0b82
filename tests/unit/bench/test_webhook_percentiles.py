"""The webhook benchmark's percentiles count failed and timed-out reviews: a p99 over the
successes alone gets better as more reviews fail."""

from __future__ import annotations

from bench import harness, webhook_server
from bench.webhook_server import REQUEST_TIMEOUT, Sample


def test_failed_reviews_count_in_the_p99_at_the_timeout() -> None:
    fast = [Sample(latency=0.001, service=0.001, ok=True) for _ in range(95)]
    failed = [Sample(latency=0.002, service=0.002, ok=False) for _ in range(5)]
    empty = harness.Scrape.parse("")

    result = webhook_server.summarize(100, fast + failed, 1.0, empty, empty)

    assert result["errors"] == 5
    assert result["p99_ms"] == harness.ms(REQUEST_TIMEOUT)
    assert result["p99_ms_successes_only"] == harness.ms(0.001)
