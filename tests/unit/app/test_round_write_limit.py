"""How many pod updates one round hands the writer: what the client's rate limit sends in 5 s,
never less than a burst, and no limit for a client without one."""

from __future__ import annotations

import pytest

from sidecarset.app.reconciler import ROUND_WRITE_SECONDS, round_write_limit
from sidecarset.app.settings import OperatorSettings


def test_the_default_rate_limit_gives_250_updates_a_round() -> None:
    defaults = OperatorSettings()
    assert round_write_limit(defaults.qps, defaults.burst) == 250
    assert 250 / defaults.qps == ROUND_WRITE_SECONDS


@pytest.mark.parametrize(
    ("qps", "burst", "limit"),
    [(5.0, 100, 100), (12.5, 10, 62), (200.0, 100, 1000), (0.0, 100, None)],
)
def test_the_limit_follows_the_rate_and_is_at_least_a_burst(
    qps: float, burst: int, limit: int | None
) -> None:
    assert round_write_limit(qps, burst) == limit
