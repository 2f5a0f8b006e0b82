"""docs/performance.md leads with the peer comparison's table: it must be the one the committed
results render to, so the figures a reader sees are the ones in bench/results/peer-kruise.json."""

from __future__ import annotations

import json

import pytest
from bench import harness, peer_report


def test_the_docs_table_matches_the_committed_results() -> None:
    path = harness.RESULTS / "peer-kruise.json"
    doc = (harness.ROOT / "docs" / "performance.md").read_text()
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make bench PEER=kruise` and commit it")
    committed = json.loads(path.read_text())
    peer_report.validate(committed)
    assert committed["quick"] is False
    assert peer_report.section(doc) == peer_report.render_table(committed)


def test_large_rollouts_run_at_the_equal_qps_in_the_first_repetitions_only() -> None:
    from bench import peer

    settings = {"large": {"from_pods": peer.LARGE, "repetitions": 1}}
    assert peer.runs_at(2000, 1, "default", settings)
    assert peer.runs_at(10000, 0, "equal", settings)
    assert not peer.runs_at(10000, 0, "default", settings)
    assert not peer.runs_at(10000, 1, "equal", settings)
    assert peer.plan(quick=False)["sizes"][-1] >= peer.LARGE


def test_a_partial_run_takes_its_sizes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bench import peer

    monkeypatch.setenv(peer.SIZES_VARIABLE, "2000,10000")
    assert peer.partial()
    assert peer.plan(quick=False)["sizes"] == [2000, 10000]
    for wrong in ("abc", "2000,", "0"):
        monkeypatch.setenv(peer.SIZES_VARIABLE, wrong)
        with pytest.raises(ValueError, match=peer.SIZES_VARIABLE):
            peer.plan(quick=False)
