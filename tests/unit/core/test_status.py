"""status: Kruise's counters (behaviour.md §9.1) and the Ready/Progressing/Stalled conditions."""

from __future__ import annotations

from datetime import timedelta

from sidecarset.core import pod_contract, rollout, status
from sidecarset.core.model import Condition, SidecarSet, SidecarSetStatus
from sidecarset.core.podview import PodView
from tests.unit.podbuilders import (
    NOW,
    failing_pod,
    hot_pod,
    hot_sidecarset,
    kruise_factory_pods,
    make_pod,
    make_sidecarset,
    outdated_pod,
    updated_pod,
    updating_pod,
)

LONG_AGO = NOW - timedelta(hours=1)


def _status(
    pods: list[PodView],
    sidecarset: SidecarSet | None = None,
    previous: tuple[Condition, ...] = (),
    now: object = NOW,
) -> SidecarSetStatus:
    sidecarset = sidecarset or make_sidecarset()
    plan = rollout.plan_round(sidecarset, pods, NOW)
    return status.compute_status(
        sidecarset,
        plan,
        latest_revision="rev-2",
        collision_count=0,
        now=now,  # type: ignore[arg-type]
        previous_conditions=previous,
    )


def _conditions(result: SidecarSetStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in result.conditions}


def test_counters_follow_the_observed_pods() -> None:
    result = _status(kruise_factory_pods(10, 4, 3))
    assert (
        result.matched_pods,
        result.updated_pods,
        result.ready_pods,
        result.updated_ready_pods,
    ) == (10, 4, 9, 3)
    assert (result.latest_revision, result.collision_count, result.observed_generation) == (
        "rev-2",
        0,
        3,
    )


def test_pods_updated_this_round_are_not_counted_as_updated_yet() -> None:
    result = _status([outdated_pod("a")])
    assert result.updated_pods == 0


def test_a_pod_mid_hot_upgrade_is_not_counted_ready() -> None:
    pod = hot_pod("p", working="mesh-2", images=("mesh:v1", "mesh:v2"), pod_hash="bbb")
    result = _status([pod], hot_sidecarset())
    assert (result.updated_pods, result.ready_pods) == (1, 0)


def test_a_rolling_rollout_is_progressing() -> None:
    assert _conditions(_status([outdated_pod("a"), outdated_pod("b")])) == {
        "Ready": ("False", "Rolling"),
        "Progressing": ("True", "Rolling"),
        "Stalled": ("False", "Rolling"),
    }


def test_a_complete_rollout_is_ready() -> None:
    assert _conditions(_status([updated_pod("a"), updated_pod("b")])) == {
        "Ready": ("True", "RolloutComplete"),
        "Progressing": ("False", "RolloutComplete"),
        "Stalled": ("False", "RolloutComplete"),
    }


def test_a_complete_rollout_with_unready_pods_is_not_ready() -> None:
    result = _status([updated_pod("a"), updated_pod("b", sidecar_ready=False, ready=False)])
    # Not yet failing: the pod's last change is recent.
    assert _conditions(result)["Ready"][0] == "False"


def test_partition_held_pods_do_not_keep_the_rollout_going() -> None:
    sidecarset = make_sidecarset(strategy={"partition": 1})
    result = _status([updated_pod("a"), outdated_pod("b")], sidecarset)
    conditions = {c.type: c for c in result.conditions}
    assert (conditions["Progressing"].status, conditions["Progressing"].reason) == (
        "False",
        "RolloutComplete",
    )
    assert "1 kept back by partition or selector" in conditions["Progressing"].message


def test_a_paused_rollout_reports_paused() -> None:
    sidecarset = make_sidecarset(strategy={"paused": True})
    assert _conditions(_status([outdated_pod("a")], sidecarset))["Progressing"] == (
        "False",
        "Paused",
    )


def test_not_update_reports_not_update_and_is_ready_when_pods_are() -> None:
    sidecarset = make_sidecarset(strategy={"type": "NotUpdate"})
    assert _conditions(_status([outdated_pod("a")], sidecarset))["Ready"] == ("True", "NotUpdate")


def test_pods_waiting_for_the_budget_report_waiting() -> None:
    pods = [updating_pod("u"), outdated_pod("a")]
    result = _status(pods)
    conditions = {c.type: c for c in result.conditions}
    assert (conditions["Progressing"].status, conditions["Progressing"].reason) == (
        "True",
        "WaitingForUnavailableBudget",
    )
    assert "1 pods wait for maxUnavailable: 1 of 1 allowed pods unavailable" in (
        conditions["Progressing"].message
    )


def test_only_not_upgradable_pods_left_stalls_the_rollout() -> None:
    sidecarset = make_sidecarset(hash_without_image="without-bbb")
    result = _status([updated_pod("ok"), outdated_pod("stuck")], sidecarset)
    conditions = {c.type: c for c in result.conditions}
    assert (conditions["Stalled"].status, conditions["Stalled"].reason) == (
        "True",
        "PodsNotUpgradable",
    )
    assert "default/stuck" in conditions["Stalled"].message
    assert "spec.containers" in conditions["Stalled"].message


def test_updated_pods_that_stay_unready_with_the_budget_spent_stall_the_rollout() -> None:
    pods = [failing_pod("broken")] + [outdated_pod(f"pod-{i}") for i in range(3)]
    result = _status(pods)
    conditions = {c.type: c for c in result.conditions}
    stalled = conditions["Stalled"]
    assert (stalled.status, stalled.reason) == ("True", "UpdatedPodsFailing")
    assert stalled.message.startswith("updated pods not ready for over 5m0s: default/broken;")
    assert conditions["Ready"].status == "False"
    assert conditions["Progressing"].status == "False"


def test_recently_updated_unready_pods_are_waited_for_not_called_failing() -> None:
    pods = [updating_pod("fresh", sidecar_ready=False, ready=False, ready_since=NOW)]
    pods += [outdated_pod("a")]
    assert _conditions(_status(pods))["Stalled"][0] == "False"


def test_failing_messages_name_three_example_pods_and_count_the_rest() -> None:
    pods = [failing_pod(f"broken-{i}") for i in range(5)]
    sidecarset = make_sidecarset(strategy={"maxUnavailable": 5})
    stalled = next(c for c in _status(pods, sidecarset).conditions if c.type == "Stalled")
    assert "default/broken-0, default/broken-1, default/broken-2 (+2 more)" in stalled.message


def test_transition_times_move_only_when_a_status_flips() -> None:
    first = _status([outdated_pod("a"), outdated_pod("b")], now=NOW)
    later = NOW + timedelta(minutes=3)
    second = _status([updating_pod("a"), outdated_pod("b")], previous=first.conditions, now=later)
    times = {c.type: c.last_transition_time for c in second.conditions}
    reasons = {c.type: c.reason for c in second.conditions}
    assert reasons["Progressing"] == "WaitingForUnavailableBudget"
    assert times == {"Ready": NOW, "Progressing": NOW, "Stalled": NOW}
    third = _status([updated_pod("a"), updated_pod("b")], previous=second.conditions, now=later)
    times = {c.type: c.last_transition_time for c in third.conditions}
    assert times == {"Ready": later, "Progressing": later, "Stalled": NOW}


def test_conditions_of_other_types_are_kept() -> None:
    foreign = Condition(type="Custom", status="True", reason="X", last_transition_time=NOW)
    result = _status([updated_pod("a")], previous=(foreign,))
    assert result.conditions[-1] == foreign


def test_conditions_carry_the_observed_generation() -> None:
    assert {c.observed_generation for c in _status([updated_pod("a")]).conditions} == {3}


def test_no_matched_pods_is_a_complete_rollout() -> None:
    stranger = make_pod("x", annotations={pod_contract.INJECTED_LIST_ANNOTATION: "other"})
    result = _status([stranger])
    assert result.matched_pods == 0
    assert _conditions(result)["Ready"] == ("True", "RolloutComplete")
