"""`sidecarset status` rendering: the state summary, the table and the watch lines."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest
from rich.console import Console

from sidecarset.cli import status

WHEN = datetime(2025, 1, 31, 12, 0, 5, tzinfo=UTC)


def condition(type_: str, value: bool, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True" if value else "False",
        "reason": reason,
        "message": message,
    }


def sidecarset(
    name: str = "filebeat", *, generation: int = 2, observed: int = 2, **counts: int
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "generation": generation},
        "status": {
            "observedGeneration": observed,
            "matchedPods": counts.get("matched", 5),
            "updatedPods": counts.get("updated", 2),
            "readyPods": counts.get("ready", 5),
            "updatedReadyPods": counts.get("updated_ready", 1),
            "conditions": [
                condition("Ready", False, "Rolling"),
                condition("Progressing", True, "Rolling", "2 of 5 matched pods updated"),
                condition("Stalled", False, "Rolling"),
            ],
        },
    }


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        pytest.param(
            [condition("Ready", True, "RolloutComplete"), condition("Progressing", False, "X")],
            "Ready: RolloutComplete",
            id="complete",
        ),
        pytest.param(
            [condition("Ready", False, "Rolling"), condition("Progressing", True, "Rolling")],
            "Progressing: Rolling",
            id="rolling",
        ),
        pytest.param(
            [
                condition("Ready", False, "UpdatedPodsFailing"),
                condition("Progressing", True, "Rolling"),
                condition("Stalled", True, "UpdatedPodsFailing"),
            ],
            "Stalled: UpdatedPodsFailing",
            id="stall-beats-progress",
        ),
        pytest.param(
            [condition("Ready", False, "Paused"), condition("Progressing", False, "Paused")],
            "NotReady: Paused",
            id="paused",
        ),
        pytest.param([], "-", id="no-status-yet"),
    ],
)
def test_the_summary_names_the_condition_that_explains_the_state(
    conditions: list[dict[str, Any]], expected: str
) -> None:
    assert status.summary(conditions)[0] == expected


def test_the_table_has_one_row_per_sidecarset_sorted_by_name() -> None:
    rows = [status.row_of(sidecarset("zeta")), status.row_of(sidecarset("alpha", updated=5))]
    assert status.status_table(rows).splitlines() == [
        "NAME    MATCHED   UPDATED   READY   UPDATED-READY   STATE",
        "alpha   5         5         5       1               Progressing: Rolling",
        "zeta    5         2         5       1               Progressing: Rolling",
    ]


def test_a_status_older_than_the_spec_says_so() -> None:
    row = status.row_of(sidecarset(generation=3, observed=2))
    assert row.stale
    assert "Progressing: Rolling (status of generation 2)" in status.status_table([row])


def test_a_watch_line_has_time_counters_state_and_message() -> None:
    line = status.status_line(status.row_of(sidecarset()), WHEN)
    assert line == (
        "12:00:05 filebeat matched=5 updated=2 ready=5 updated-ready=1 Progressing: Rolling"
        " - 2 of 5 matched pods updated"
    )


def test_a_sidecarset_without_status_renders_zeroes() -> None:
    row = status.row_of({"metadata": {"name": "new", "generation": 1}})
    assert (row.matched, row.updated, row.ready, row.updated_ready, row.state) == (0, 0, 0, 0, "-")


def test_the_status_object_for_scripts_keeps_the_stored_status() -> None:
    obj = sidecarset()
    assert status.status_object(obj) == {
        "name": "filebeat",
        "generation": 2,
        "status": obj["status"],
    }


def test_progress_bars_fit_one_line_per_sidecarset_on_an_80_column_terminal() -> None:
    bars = status._Bars()
    bars.show(status.row_of(sidecarset("filebeat", updated=3, updated_ready=2)))
    bars.show(status.row_of(sidecarset("fresh", generation=2, observed=1, updated=5)))
    bars.show(status.row_of({"metadata": {"name": "new", "generation": 1}}))
    out = io.StringIO()
    console = Console(width=80, file=out)
    console.print(bars._progress.get_renderable())
    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == ["filebeat", "fresh", "new"]
    assert lines[0].rstrip().endswith("2/5 updated 3 ready 5 Rolling")
    assert lines[1].rstrip().endswith("Rolling (stale)")
    assert lines[2].rstrip().endswith("0/0 updated 0 ready 0 no status yet")
