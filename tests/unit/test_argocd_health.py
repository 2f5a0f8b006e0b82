"""The shipped Argo CD health check on recorded SidecarSet objects (Lua 5.1, as in Argo CD)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.luahealth import OURS, LuaHealthError, article_script, health


def sidecarset(
    status: dict[str, Any] | None, *, generation: int = 2, paused: bool = False
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "SidecarSet",
        "metadata": {"name": "filebeat", "generation": generation},
        "spec": {"updateStrategy": {"type": "RollingUpdate", "paused": paused}},
    }
    if status is not None:
        obj["status"] = status
    return obj


def cond(kind: str, status: str, reason: str, message: str = "") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": message or reason}


ROLLING = [
    cond("Ready", "False", "Rolling"),
    cond("Progressing", "True", "Rolling"),
    cond("Stalled", "False", "Rolling"),
]
COMPLETE = [
    cond("Ready", "True", "RolloutComplete"),
    cond("Progressing", "False", "RolloutComplete"),
    cond("Stalled", "False", "RolloutComplete"),
]
FAILING = [
    cond("Ready", "False", "UpdatedPodsFailing"),
    cond("Progressing", "False", "UpdatedPodsFailing"),
    cond("Stalled", "True", "UpdatedPodsFailing", "updated pods not ready: ns/p-1"),
]


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(sidecarset(None), "Progressing", id="no-status-yet"),
        pytest.param(
            sidecarset(
                {
                    "observedGeneration": 1,
                    "matchedPods": 3,
                    "updatedPods": 3,
                    "readyPods": 3,
                    "updatedReadyPods": 3,
                }
            ),
            "Progressing",
            id="generation-not-observed",
        ),
        pytest.param(
            sidecarset(
                {
                    "observedGeneration": 2,
                    "matchedPods": 5,
                    "updatedPods": 2,
                    "readyPods": 4,
                    "updatedReadyPods": 1,
                    "conditions": ROLLING,
                }
            ),
            "Progressing",
            id="rolling",
        ),
        pytest.param(
            sidecarset(
                {
                    "observedGeneration": 2,
                    "matchedPods": 5,
                    "updatedPods": 5,
                    "readyPods": 5,
                    "updatedReadyPods": 5,
                    "conditions": COMPLETE,
                }
            ),
            "Healthy",
            id="complete",
        ),
        pytest.param(
            sidecarset(
                {
                    "observedGeneration": 2,
                    "matchedPods": 5,
                    "updatedPods": 3,
                    "readyPods": 5,
                    "updatedReadyPods": 3,
                    "conditions": COMPLETE,
                }
            ),
            "Healthy",
            id="held-by-partition-on-purpose",
        ),
        pytest.param(
            sidecarset(
                {
                    "observedGeneration": 2,
                    "matchedPods": 5,
                    "updatedPods": 2,
                    "readyPods": 3,
                    "updatedReadyPods": 0,
                    "conditions": FAILING,
                }
            ),
            "Degraded",
            id="broken-image",
        ),
        pytest.param(
            sidecarset(
                {
                    "observedGeneration": 2,
                    "matchedPods": 5,
                    "updatedPods": 0,
                    "readyPods": 5,
                    "conditions": ROLLING,
                },
                paused=True,
            ),
            "Suspended",
            id="paused",
        ),
        pytest.param(
            sidecarset(
                {"observedGeneration": 2, "matchedPods": 4, "updatedPods": 2, "readyPods": 4}
            ),
            "Progressing",
            id="kruise-updatedReady-omitted",
        ),
        pytest.param(
            sidecarset(
                {
                    "observedGeneration": 2,
                    "matchedPods": 4,
                    "updatedPods": 4,
                    "readyPods": 4,
                    "updatedReadyPods": 4,
                }
            ),
            "Healthy",
            id="kruise-complete",
        ),
    ],
)
def test_the_shipped_check_reports_the_expected_health(obj: dict[str, Any], expected: str) -> None:
    assert health(OURS.read_text(), obj)["status"] == expected


def test_the_shipped_check_survives_a_missing_update_strategy() -> None:
    obj = sidecarset(
        {
            "observedGeneration": 2,
            "matchedPods": 1,
            "updatedPods": 1,
            "updatedReadyPods": 1,
            "conditions": COMPLETE,
        }
    )
    del obj["spec"]["updateStrategy"]
    assert health(OURS.read_text(), obj)["status"] == "Healthy"


def test_the_articles_check_fails_on_every_sidecarset_with_a_status() -> None:
    """It compares status.updatedPods with spec.matchedPods, a field that does not exist."""
    obj = sidecarset(
        {
            "observedGeneration": 2,
            "matchedPods": 5,
            "updatedPods": 5,
            "readyPods": 5,
            "updatedReadyPods": 5,
            "conditions": COMPLETE,
        }
    )
    with pytest.raises(LuaHealthError, match="attempt to compare"):
        health(article_script(), obj)


def test_the_articles_check_works_only_while_paused_or_without_status() -> None:
    assert health(article_script(), sidecarset(None))["status"] == "Progressing"
    assert health(article_script(), sidecarset(None, paused=True))["status"] == "Suspended"
