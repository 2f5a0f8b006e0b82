"""status: the InjectionMissed condition (pods admitted without the webhook)."""

from __future__ import annotations

from sidecarset.core import rollout, status
from sidecarset.core.model import Condition, SidecarSetStatus
from sidecarset.core.podview import PodKey
from tests.unit.podbuilders import NOW, make_sidecarset, updated_pod

MISSED = status.INJECTION_MISSED


def _status(missed: list[PodKey] | None, previous: tuple[Condition, ...] = ()) -> SidecarSetStatus:
    sidecarset = make_sidecarset()
    pods = [updated_pod("a")]
    return status.compute_status(
        sidecarset,
        rollout.plan_round(sidecarset, pods, NOW),
        latest_revision="rev-2",
        collision_count=0,
        now=NOW,
        previous_conditions=previous,
        missed_injection=missed,
    )


def _missed(result: SidecarSetStatus) -> Condition | None:
    return next((c for c in result.conditions if c.type == MISSED), None)


def test_no_condition_while_nothing_was_ever_missed() -> None:
    assert _missed(_status([])) is None


def test_missed_pods_raise_the_condition_naming_them() -> None:
    condition = _missed(_status([PodKey("ns", "b"), PodKey("ns", "a")]))
    assert condition is not None
    assert (condition.status, condition.reason) == ("True", status.PODS_WITHOUT_SIDECARS)
    assert "2 selected pods" in condition.message
    assert "ns/a, ns/b" in condition.message


def test_the_condition_clears_once_the_pods_are_gone() -> None:
    before = _status([PodKey("ns", "a")]).conditions
    condition = _missed(_status([], previous=before))
    assert condition is not None
    assert (condition.status, condition.reason) == ("False", status.ALL_INJECTED)


def test_a_caller_that_did_not_look_keeps_the_previous_condition() -> None:
    before = _status([PodKey("ns", "a")]).conditions
    kept = _missed(_status(None, previous=before))
    assert kept == _missed(_status([PodKey("ns", "a")]))


def test_the_rollout_conditions_are_unchanged_by_it() -> None:
    with_missed = [c for c in _status([PodKey("ns", "a")]).conditions if c.type != MISSED]
    assert with_missed == list(_status([]).conditions)
