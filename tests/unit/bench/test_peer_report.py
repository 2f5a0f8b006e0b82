"""The peer comparison's pure parts: medians over repetitions, ratios, targets, the schema check,
and the table docs/performance.md leads with (which must match the committed results)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from bench import harness, peer_report
from bench.peer_report import OURS, PEER

LIMITS = {
    OURS: {"equal": {"qps": 50, "burst": 100}},
    PEER: {"equal": {"qps": 50, "burst": 100}, "default": {"qps": 30, "burst": 50}},
}
SETTINGS: dict[str, Any] = {
    "repetitions": 2,
    "sizes": [200, 2000],
    "max_unavailable": "10%",
    "pod_creation": {"rounds": 2, "pods_per_batch": 10},
    "limits": LIMITS,
    "order": [[OURS, PEER], [PEER, OURS]],
}


def creation(rep: int, operator: str, base: float) -> dict[str, Any]:
    stats = {
        case: {"p50_ms": base + i, "p90_ms": base + i + 1, "p99_ms": base + i + 2, "mean_ms": 1.0}
        for i, case in enumerate(peer_report.CASES)
    }
    return {
        "operator": operator,
        "rep": rep,
        "workload": "pod_creation",
        "limit": "equal",
        "figures": stats,
    }


def rollout(rep: int, operator: str, limit: str, pods: int, seconds: float) -> dict[str, Any]:
    return {
        "operator": operator,
        "rep": rep,
        "workload": "rollout",
        "limit": limit,
        "pods": pods,
        "figures": {
            "seconds_to_all_pods_updated_and_ready": seconds,
            "seconds_to_status_complete": seconds + 1,
            "max_unavailable_seen": pods // 10,
            "max_unavailable_allowed": pods // 10,
            "operator_writes_per_pod": 2.0 if operator == OURS else 1.9,
            "all_clients_writes_per_pod": 4.0,
            "operator_cpu_seconds": seconds / 10,
            "operator_cpu_ms_per_pod": 1000 * seconds / 10 / pods,
            "operator_peak_rss_mib": 80.0 if operator == OURS else 100.0,
        },
    }


def runs() -> list[dict[str, Any]]:
    found = []
    for rep in (0, 1):
        found += [creation(rep, OURS, 10.0 + rep), creation(rep, PEER, 12.0 + rep)]
        for pods in (200, 2000):
            found.append(rollout(rep, OURS, "equal", pods, pods / 40 + rep))
            found.append(rollout(rep, PEER, "equal", pods, pods / 20 + rep))
            found.append(rollout(rep, PEER, "default", pods, pods / 15 + rep))
    return found


def result(recorded: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return peer_report.build(
        runs() if recorded is None else recorded,
        SETTINGS,
        quick=False,
        measured_at="2026-12-04T09:00:00Z",
        machine={"nproc": 2, "cpu_model": "test CPU", "load_average": [1.0, 1.0, 1.0]},
        versions={OURS: "0.1.0", PEER: "v1.9.1 (go version go1.26.8 linux/amd64)"},
    )


def test_medians_over_repetitions() -> None:
    got = result()["summary"]
    # rep 0: 10, rep 1: 11 -> 10.5
    assert got[OURS]["pod_creation"]["none"]["p50_ms"] == 10.5
    # 2000/40 + 0 and + 1 -> 50.5
    assert got[OURS]["rollout"]["equal"]["2000"]["seconds_to_all_pods_updated_and_ready"] == 50.5
    # added over "none": inject3 is index 3 in CASES, so +3 in every repetition
    assert got[PEER]["added_p50_ms"]["inject3"] == 3.0


def test_an_operator_whose_default_is_the_equal_setting_uses_those_runs() -> None:
    got = result()["summary"][OURS]["rollout"]
    assert got["default"] == got["equal"]


def test_ratios_are_ours_over_theirs() -> None:
    got = result()["ratios"]["rollout"]
    assert got["equal"]["2000"]["seconds_to_all_pods_updated_and_ready"] == round(50.5 / 100.5, 3)
    assert got["equal"]["200"]["operator_peak_rss_mib"] == 0.8
    assert peer_report.ratio(1.0, 0.0) is None
    assert peer_report.ratio(None, 2.0) is None


def test_targets_judged_on_medians_and_marked_where_they_apply() -> None:
    found = {(t["name"], t["pods"]): t for t in result()["targets"]}
    wall = found[("rollout wall time", 2000)]
    assert wall["met"] is True
    assert wall["applies"] is True
    assert found[("rollout wall time", 200)]["applies"] is False
    writes = found[(peer_report.WRITES, 2000)]
    assert writes["met"] is False  # 2.0 against 1.9
    rss = found[("operator peak RSS", 2000)]
    assert rss["met"] is True  # 80 <= 0.85 * 100
    gap = found[("pod create p50, 3 sidecars, over the no-op webhook (ms)", None)]
    assert gap["ours"] == 2.0
    assert gap["met"] is False


def test_validate_names_what_is_missing() -> None:
    good = result()
    peer_report.validate(good)
    broken = copy.deepcopy(good)
    del broken["versions"]
    with pytest.raises(peer_report.SchemaError, match="versions"):
        peer_report.validate(broken)
    short = copy.deepcopy(good)
    short["runs"] = [r for r in short["runs"] if r["rep"] == 0]
    with pytest.raises(peer_report.SchemaError, match="1 repetitions recorded"):
        peer_report.validate(short)


def test_the_table_shows_both_operators_ratios_and_verdicts() -> None:
    table = peer_report.render_table(result())
    assert table.startswith("| | Kruise v1.9.1 | sidecarset 0.1.0 | ours / Kruise | target |")
    assert "| rollout 2,000 pods, equal QPS 50/100: wall time (s) | 100.5 | 50.5 | 0.50× |" in table
    assert "API writes per updated pod | 1.90 | 2.00 | 1.05× | <= Kruise's: **missed** |" in table
    assert "(Kruise 30/50, ours 50/100)" in table
    assert "indicative" in table


def test_replace_section_round_trips() -> None:
    doc = f"# Title\n\n{peer_report.BEGIN}\nold\n{peer_report.END}\n\nrest\n"
    table = peer_report.render_table(result())
    updated = peer_report.replace_section(doc, table)
    assert peer_report.section(updated) == table
    assert updated.endswith(f"{peer_report.END}\n\nrest\n")
    with pytest.raises(peer_report.SchemaError):
        peer_report.replace_section("no markers", table)


def test_quick_results_go_to_an_ignored_folder() -> None:
    quick = harness.result_path("rollout", quick=True)
    assert quick.parent == harness.QUICK_RESULTS
    assert harness.result_path("rollout", quick=False).parent == harness.RESULTS
    ignored = (harness.ROOT / ".gitignore").read_text().splitlines()
    assert "bench/results/quick/" in ignored


def test_writes_and_cpu_read_before_the_operator_stopped_writing_are_left_out() -> None:
    settled = {"seconds_to_status_complete": 40.0, "seconds_to_writes_settled": 80.0}
    gave_up = {"seconds_to_status_complete": 220.0, "seconds_to_writes_settled": 345.0}
    assert peer_report.writes_complete(settled)
    assert not peer_report.writes_complete(gave_up)  # results from before the flag existed
    assert not peer_report.writes_complete({**settled, "writes_settled": False})
    assert peer_report.writes_complete({**gave_up, "writes_settled": True})


def test_a_results_file_from_before_the_preinjected_case_still_reads() -> None:
    older = runs()
    for run in older:
        if run["workload"] == "pod_creation":
            del run["figures"]["preinjected"]
    got = result(older)
    assert "preinjected" not in got["summary"][OURS]["pod_creation"]
    assert got["summary"][PEER]["added_p50_ms"]["inject3"] == 3.0
    table = peer_report.render_table(got)
    assert "already in" not in table
    assert "| pod create p50 added over no webhook (ms): no match / 1 / 3 sidecars | " in table
    assert "already in, no webhook" in peer_report.render_table(result())
