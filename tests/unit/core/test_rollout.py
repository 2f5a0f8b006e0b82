"""rollout: who updates this round and why the others wait (behaviour.md §7, §8.2, §8.3)."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest

from sidecarset.core import pod_classification, pod_contract, rollout
from sidecarset.core.podview import PodKey, PodView, podview_from_dict
from sidecarset.core.rollout import Hold
from tests.unit.podbuilders import (
    HOT_EMPTY,
    NOW,
    SET,
    SIDECAR,
    V1,
    V1_ID,
    V2,
    hot_pod,
    hot_sidecarset,
    kruise_factory_pods,
    make_pod,
    make_pod_dict,
    make_sidecarset,
    outdated_pod,
    sidecar_spec,
    updated_pod,
    updating_pod,
)


def _plan(pods: list[PodView], **strategy: object) -> rollout.RoundPlan:
    return rollout.plan_round(make_sidecarset(strategy=strategy), pods, NOW)


def _key(name: str) -> PodKey:
    return PodKey("default", name)


# --- behaviour.md §7.4: Kruise's worked numbers -------------------------------------------------
# All candidates in these tables are Ready, so our stricter budget rule (not-ready candidates
# pay too, in-flight pods count as unavailable) gives Kruise's numbers unchanged. The tables
# after these show where the rules part.


@pytest.mark.parametrize(
    ("count", "upgraded", "upgraded_ready", "strategy", "expected"),
    [
        pytest.param(
            1000, 800, 760, {"maxUnavailable": 100, "partition": 180}, 20, id="partition-180"
        ),
        pytest.param(
            1000, 800, 760, {"maxUnavailable": 100, "partition": 100}, 60, id="partition-100"
        ),
        pytest.param(
            1000, 800, 760, {"maxUnavailable": 100, "partition": "18%"}, 20, id="partition-18%"
        ),
        pytest.param(
            1000, 800, 760, {"maxUnavailable": 100, "partition": "10%"}, 60, id="partition-10%"
        ),
        pytest.param(100, 30, 26, {"maxUnavailable": 10}, 6, id="max-unavailable-10"),
        pytest.param(100, 30, 27, {"maxUnavailable": 100}, 70, id="max-unavailable-100"),
        pytest.param(1000, 300, 260, {"maxUnavailable": "10%"}, 60, id="max-unavailable-10%"),
        pytest.param(1000, 300, 250, {"maxUnavailable": "5%"}, 0, id="max-unavailable-5%-spent"),
        pytest.param(5, 0, 0, {"maxUnavailable": "5%"}, 1, id="5%-of-5-rounds-up"),
        pytest.param(
            5, 0, 0, {"maxUnavailable": 5, "partition": "99%"}, 1, id="partition-99%-keeps-n-1"
        ),
        pytest.param(
            5, 0, 0, {"maxUnavailable": 5, "partition": "1%"}, 4, id="partition-1%-rounds-up"
        ),
    ],
)
def test_kruise_worked_numbers(
    count: int, upgraded: int, upgraded_ready: int, strategy: dict[str, object], expected: int
) -> None:
    pods = kruise_factory_pods(count, upgraded, upgraded_ready)
    random.Random(count + upgraded).shuffle(pods)
    plan = _plan(pods, **strategy)
    assert len(plan.update) == expected
    assert set(plan.held) | set(plan.updated_keys) == {pod.key for pod in pods}


def test_the_canary_selector_updates_only_selected_pods_kruise_numbers() -> None:
    pods = [
        outdated_pod(f"pod-{i}", labels={"app": "test" if i < 30 else "sidecar"})
        for i in range(1000)
    ]
    plan = _plan(pods, maxUnavailable=100, selector={"matchLabels": {"app": "test"}})
    assert len(plan.update) == 30
    assert sum(1 for h in plan.held.values() if h is Hold.NOT_SELECTED) == 970


def test_not_upgradable_pods_are_all_held_and_none_updated_kruise_numbers() -> None:
    sidecarset = make_sidecarset(hash_without_image="without-bbb", strategy={"maxUnavailable": 100})
    plan = rollout.plan_round(sidecarset, kruise_factory_pods(100, 0, 0), NOW)
    assert plan.update == ()
    assert list(plan.held.values()).count(Hold.NOT_UPGRADABLE) == 100
    assert len(plan.blocked) == 100
    assert len(plan.conditions) == 100


def test_a_write_limit_builds_that_many_updates_and_the_next_pods_wait_for_the_next_round() -> None:
    pods = [outdated_pod(f"p-{i}") for i in range(10)]
    sidecarset = make_sidecarset(strategy={"maxUnavailable": 5})
    plan = rollout.plan_round(sidecarset, pods, NOW, write_limit=2)
    assert [u.pod.name for u in plan.update] == ["p-0", "p-1"]
    holds = {key.name: hold for key, hold in plan.held.items()}
    # The walk counts only what is written this round: none of the others is over the budget.
    assert [holds[f"p-{i}"] for i in range(2, 10)] == [Hold.NEXT_ROUND] * 8
    assert plan.budget.used == 2
    assert plan.requeue_after == rollout.PROGRESS_RECHECK
    # The next round, once those two writes are seen, takes the next two.
    written = [updating_pod(f"p-{i}") for i in range(2)] + pods[2:]
    follow = rollout.plan_round(sidecarset, written, NOW, write_limit=2)
    assert [u.pod.name for u in follow.update] == ["p-2", "p-3"]


# --- where our budget rule intentionally differs from Kruise ----------------------------------


def test_not_ready_candidates_are_taken_first_but_pay_for_the_budget() -> None:
    # Kruise takes all 5 not-ready candidates for free and then 2 ready ones: 7 pods.
    # Ours: not-ready candidates come first in the order and each costs one unit: 2 pods.
    pods = [outdated_pod(f"nr-{i}", ready=False, sidecar_ready=False) for i in range(5)]
    pods += [outdated_pod(f"r-{i}") for i in range(5)]
    plan = _plan(pods, maxUnavailable=2)
    assert [u.pod.name for u in plan.update] == ["nr-0", "nr-1"]
    assert plan.held[_key("r-0")] is Hold.BUDGET


def test_a_pending_pod_is_updated_within_the_budget() -> None:
    # Kruise's unit test updates a Pending candidate without consuming maxUnavailable.
    pending = outdated_pod("a-pending", phase="Pending", ready=False)
    plan = _plan([pending, outdated_pod("b"), outdated_pod("c")], maxUnavailable=1)
    assert plan.updated_keys == (_key("a-pending"),)


def test_pods_mid_update_against_an_older_hash_count_as_unavailable() -> None:
    # Kruise counts only updated pods; a pod still rolling an older update is free for it.
    rolling = updating_pod("rolling", pod_hash="older")
    plan = _plan([rolling, outdated_pod("a"), outdated_pod("b")], maxUnavailable=1)
    assert plan.held[_key("rolling")] is Hold.IN_FLIGHT
    assert plan.update == ()
    assert plan.held[_key("a")] is Hold.BUDGET


def test_pending_writes_hold_their_pods_and_count_against_the_budget() -> None:
    pods = [outdated_pod("a"), outdated_pod("b"), outdated_pod("c")]
    plan = rollout.plan_round(
        make_sidecarset(strategy={"maxUnavailable": 2}), pods, NOW, pending={_key("a")}
    )
    assert plan.held[_key("a")] is Hold.IN_FLIGHT
    assert plan.updated_keys == (_key("b"),)
    assert plan.requeue_after == rollout.PENDING_WRITE_RECHECK


def test_an_update_that_changes_no_image_of_an_available_pod_is_free() -> None:
    # The pod already runs v2 (edited by hand) but carries the old hash: no container restarts.
    pods = [make_pod("a-same", spec_image=V2), updating_pod("u1")]
    plan = _plan(pods, maxUnavailable=1)
    assert plan.updated_keys == (_key("a-same"),)
    assert plan.update[0].images == ()


def test_max_unavailable_zero_updates_nothing_that_would_restart_a_container() -> None:
    plan = _plan([outdated_pod("a", ready=False)], maxUnavailable=0)
    assert plan.update == ()
    assert plan.held[_key("a")] is Hold.BUDGET


# --- partition, canary selector, paused, NotUpdate, pod by pod ---------------------------------


def test_partition_holds_back_the_last_pods_in_update_order() -> None:
    pods = [outdated_pod(f"pod-{i}") for i in range(5)]
    plan = _plan(pods, maxUnavailable=5, partition=2)
    assert plan.updated_keys == (_key("pod-0"), _key("pod-1"), _key("pod-2"))
    assert plan.held[_key("pod-3")] is Hold.PARTITION
    assert plan.held[_key("pod-4")] is Hold.PARTITION


def test_partition_applies_to_waiting_pods_only() -> None:
    # 2 of 5 already updated; partition 2 keeps 2 of the 3 waiting pods on the old version.
    pods = [updated_pod("u1"), updated_pod("u2")] + [outdated_pod(f"pod-{i}") for i in range(3)]
    plan = _plan(pods, maxUnavailable=5, partition=2)
    assert plan.updated_keys == (_key("pod-0"),)
    assert plan.held[_key("u1")] is Hold.UPDATED


def test_partition_larger_than_the_waiting_list_updates_nothing() -> None:
    plan = _plan([outdated_pod("a"), outdated_pod("b")], maxUnavailable=5, partition=3)
    assert plan.update == ()
    assert set(plan.held.values()) == {Hold.PARTITION}


def test_the_canary_selector_holds_back_exactly_the_unselected_pods() -> None:
    pods = [
        outdated_pod("canary", labels={"app": "sidecar", "canary": "true"}),
        outdated_pod("stable", labels={"app": "sidecar"}),
        updated_pod("done", labels={"app": "sidecar"}),
    ]
    plan = _plan(pods, maxUnavailable=5, selector={"matchLabels": {"canary": "true"}})
    assert plan.updated_keys == (_key("canary"),)
    assert plan.held == {_key("stable"): Hold.NOT_SELECTED, _key("done"): Hold.UPDATED}


def test_an_invalid_canary_selector_selects_nothing() -> None:
    selector = {"matchExpressions": [{"key": "x", "operator": "Bogus"}]}
    plan = _plan([outdated_pod("a")], selector=selector)
    assert plan.held[_key("a")] is Hold.NOT_SELECTED


def test_paused_holds_every_outdated_pod_and_flips_nothing() -> None:
    pods = [outdated_pod("a"), updated_pod("b")]
    plan = _plan(pods, paused=True)
    assert plan.update == ()
    assert plan.flip == ()
    assert plan.held == {_key("a"): Hold.PAUSED, _key("b"): Hold.UPDATED}
    assert plan.requeue_after is None


def test_not_update_holds_every_outdated_pod() -> None:
    plan = _plan([outdated_pod("a")], type="NotUpdate")
    assert plan.held == {_key("a"): Hold.NOT_UPDATE}
    assert plan.conditions == ()


def test_unknown_update_types_roll_like_rolling_update() -> None:
    assert len(_plan([outdated_pod("a")], type="Surprise").update) == 1


def test_a_finished_rollout_needs_no_requeue() -> None:
    plan = _plan([updated_pod("a"), updated_pod("b")])
    assert plan.update == ()
    assert plan.requeue_after is None


def test_an_unreadable_partition_holds_every_pod_and_says_so() -> None:
    plan = _plan([outdated_pod("a")], partition="lots")
    assert plan.held[_key("a")] is Hold.PARTITION
    assert plan.warnings == (
        'spec.updateStrategy.partition: Invalid value: "lots": must be a non-negative integer or'
        ' a percentage such as "20%"; holding every pod',
    )


def test_unmatched_pods_are_neither_updated_nor_held() -> None:
    stranger = make_pod("stranger", annotations={pod_contract.INJECTED_LIST_ANNOTATION: "other"})
    plan = _plan([stranger, outdated_pod("a")])
    assert _key("stranger") not in plan.held
    assert plan.updated_keys == (_key("a"),)


# --- arithmetic -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("partition", "matched", "expected"),
    [
        pytest.param(None, 10, 0, id="unset"),
        pytest.param(3, 10, 3, id="int"),
        pytest.param(30, 10, 10, id="int-clamped"),
        pytest.param("0%", 10, 0, id="zero-percent"),
        pytest.param("15%", 10, 2, id="percent-rounds-up"),
        pytest.param("99%", 5, 4, id="rounds-to-all-keeps-one-fewer"),
        pytest.param("100%", 5, 5, id="exactly-100%"),
        pytest.param("99%", 1, 1, id="single-pod-not-reduced"),
        pytest.param("120%", 5, 5, id="over-100%-clamped"),
        pytest.param("x%", 5, None, id="unreadable"),
        pytest.param(-1, 5, None, id="negative"),
    ],
)
def test_partition_count(partition: int | str | None, matched: int, expected: int | None) -> None:
    assert rollout.partition_count(partition, matched) == expected


@pytest.mark.parametrize(
    ("value", "matched", "expected"),
    [
        pytest.param(None, 10, 1, id="unset-is-1"),
        pytest.param(3, 10, 3, id="int"),
        pytest.param("5%", 5, 1, id="rounds-up"),
        pytest.param("10%", 1000, 100, id="exact"),
        pytest.param("0%", 10, 0, id="zero"),
        pytest.param("5", 10, None, id="string-without-percent"),
    ],
)
def test_max_unavailable_count(value: int | str | None, matched: int, expected: int | None) -> None:
    assert rollout.max_unavailable_count(value, matched) == expected


# --- the pod mutation (behaviour.md §7.5) ------------------------------------------------------

SIDECARSET = make_sidecarset()


def test_pod_update_replaces_only_the_sidecar_image() -> None:
    update = rollout.pod_update(SIDECARSET, outdated_pod("p"), NOW)
    assert [(c.container, c.location, c.index, c.image, c.previous) for c in update.images] == [
        (SIDECAR, "containers", 1, V2, V1)
    ]
    assert update.resource_version == "7"
    assert update.uid == "uid-p"


def test_a_pod_with_an_unreadable_hash_annotation_is_updated_and_the_annotation_repaired() -> None:
    pod = outdated_pod("p", annotations={pod_contract.HASH_ANNOTATION: "{not json"})

    plan = rollout.plan_round(SIDECARSET, [pod], NOW)

    (update,) = plan.update
    assert update.repairs == (pod_contract.HASH_ANNOTATION,)
    assert not update.blockers
    assert list(json.loads(update.annotations[pod_contract.HASH_ANNOTATION])) == [SET]
    assert [c.image for c in update.images] == [V2]
    assert not plan.blocked


def test_pod_update_bumps_the_hash_entry_with_time_and_revision() -> None:
    update = rollout.pod_update(SIDECARSET, outdated_pod("p"), NOW, latest_revision="rev-9")
    assert json.loads(update.annotations[pod_contract.HASH_ANNOTATION]) == {
        SET: {
            "updateTimestamp": "2025-01-01T12:00:00Z",
            "hash": "bbb",
            "sidecarSetName": SET,
            "sidecarList": [SIDECAR],
            "controllerRevision": "rev-9",
        }
    }
    assert pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION not in update.annotations


def test_pod_update_records_the_imageid_before_the_change() -> None:
    update = rollout.pod_update(SIDECARSET, outdated_pod("p"), NOW)
    assert json.loads(update.annotations[pod_contract.INPLACE_UPDATE_STATE_ANNOTATION]) == {
        SET: {
            "revision": "bbb",
            "updateTimestamp": "2025-01-01T12:00:00Z",
            "lastContainerStatuses": {SIDECAR: {"imageID": V1_ID}},
        }
    }


def test_a_second_update_refreshes_the_inplace_state_revision_and_time() -> None:
    # Kruise keeps the first update's revision and timestamp forever (behaviour.md §12.16).
    pod = updated_pod("p", pod_hash="older")
    sidecarset = make_sidecarset(hash_="ccc", containers=[sidecar_spec(image="test-image:v3")])
    update = rollout.pod_update(sidecarset, pod, NOW + timedelta(hours=1))
    state = json.loads(update.annotations[pod_contract.INPLACE_UPDATE_STATE_ANNOTATION])[SET]
    assert state["revision"] == "ccc"
    assert state["updateTimestamp"] == "2025-01-01T13:00:00Z"


def test_pod_update_backfills_a_missing_injected_list_from_the_hash_annotation() -> None:
    raw = make_pod_dict("p", annotations={pod_contract.INJECTED_LIST_ANNOTATION: ""})
    raw["metadata"]["annotations"][pod_contract.HASH_ANNOTATION] = json.dumps(  # type: ignore[index]
        {SET: {"hash": "aaa"}, "other": {"hash": "x"}}
    )
    update = rollout.pod_update(SIDECARSET, podview_from_dict(raw), NOW)
    assert update.annotations[pod_contract.INJECTED_LIST_ANNOTATION] == f"other,{SET}"


def test_pod_update_rewrites_legacy_hash_annotations_in_the_current_form() -> None:
    pod = make_pod(
        "p",
        annotations={
            pod_contract.HASH_ANNOTATION: json.dumps({SET: "aaa", "other": "x"}),
            pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION: json.dumps({SET: "without-aaa"}),
        },
    )
    update = rollout.pod_update(SIDECARSET, pod, NOW)
    hashes = json.loads(update.annotations[pod_contract.HASH_ANNOTATION])
    assert hashes["other"]["hash"] == "x"
    assert hashes["other"]["updateTimestamp"] == "2025-01-01T12:00:00Z"
    without = json.loads(update.annotations[pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION])
    assert without[SET]["hash"] == "without-aaa"


@pytest.mark.parametrize(
    ("policy", "current", "expected"),
    [
        pytest.param("Retain", None, '{"a":1}', id="retain-adds"),
        pytest.param("Retain", "keep", "keep", id="retain-keeps"),
        pytest.param("Overwrite", "old", '{"a":1}', id="overwrite"),
        pytest.param("MergePatchJson", '{"b":2}', '{"a":1,"b":2}', id="merge"),
        pytest.param("MergePatchJson", None, '{"a":1}', id="merge-into-nothing"),
    ],
)
def test_pod_update_applies_patch_pod_metadata(
    policy: str, current: str | None, expected: str
) -> None:
    sidecarset = make_sidecarset(
        patch_pod_metadata=[{"annotations": {"note": '{"a":1}'}, "patchPolicy": policy}]
    )
    pod = outdated_pod("p", annotations={"note": current} if current is not None else {})
    update = rollout.pod_update(sidecarset, pod, NOW)
    assert update.annotations.get("note", current) == expected


def test_a_merge_patch_into_a_non_json_annotation_makes_the_pod_not_upgradable() -> None:
    sidecarset = make_sidecarset(
        patch_pod_metadata=[{"annotations": {"note": '{"a":1}'}, "patchPolicy": "MergePatchJson"}],
        strategy={"maxUnavailable": 5},
    )
    pods = [outdated_pod("bad", annotations={"note": "not json"}), outdated_pod("good")]
    plan = rollout.plan_round(sidecarset, pods, NOW)
    assert plan.held[_key("bad")] is Hold.NOT_UPGRADABLE
    assert plan.blocked[_key("bad")].field == "spec.patchPodMetadata"
    assert plan.updated_keys == (_key("good"),)


def test_pod_update_marks_the_pod_upgradable_for_this_sidecarset() -> None:
    pod = outdated_pod("p")
    update = rollout.pod_update(SIDECARSET, pod, NOW)
    assert update.condition is not None
    assert (update.condition.status, update.condition.reason, update.condition.message) == (
        "True",
        "AllSidecarsetUpgradable",
        f'{{"{SET}":true}}',
    )


def test_not_upgradable_conditions_are_written_only_when_they_change() -> None:
    sidecarset = make_sidecarset(hash_without_image="without-bbb")
    raw = make_pod_dict("marked")
    raw["status"]["conditions"].append(  # type: ignore[index]
        {
            "type": "SidecarSetUpgradable",
            "status": "False",
            "reason": "UpdateImmutableField",
            "message": f'{{"{SET}":false}}',
        }
    )
    plan = rollout.plan_round(sidecarset, [podview_from_dict(raw), outdated_pod("fresh")], NOW)
    assert [c.pod.name for c in plan.conditions] == ["fresh"]
    assert plan.conditions[0].message == f'{{"{SET}":false}}'
    assert plan.conditions[0].last_transition_time == NOW


# --- native sidecars --------------------------------------------------------------------------


def test_native_sidecar_images_are_updated_in_place_too() -> None:
    sidecarset = make_sidecarset(
        init_containers=[{"name": "proxy", "image": "proxy:v2", "restartPolicy": "Always"}]
    )
    raw = make_pod_dict("p")
    raw["spec"]["initContainers"] = [  # type: ignore[index]
        {"name": "proxy", "image": "proxy:v1", "restartPolicy": "Always"}
    ]
    raw["status"]["initContainerStatuses"] = [  # type: ignore[index]
        {"name": "proxy", "image": "proxy:v1", "imageID": "proxy-id-1", "ready": True}
    ]
    plan = rollout.plan_round(sidecarset, [podview_from_dict(raw)], NOW)
    (update,) = plan.update
    assert [(c.container, c.location, c.index, c.image) for c in update.images] == [
        ("proxy", "initContainers", 0, "proxy:v2"),
        (SIDECAR, "containers", 1, V2),
    ]
    state = json.loads(update.annotations[pod_contract.INPLACE_UPDATE_STATE_ANNOTATION])[SET]
    assert state["lastContainerStatuses"]["proxy"] == {"imageID": "proxy-id-1"}
    assert json.loads(update.annotations[pod_contract.HASH_ANNOTATION])[SET]["sidecarList"] == [
        "proxy",
        SIDECAR,
    ]


# --- hot upgrade (behaviour.md §8.2, §8.3) -----------------------------------------------------

HOT_SET = hot_sidecarset()


def test_hot_upgrade_overwrites_the_empty_twin_and_moves_the_working_annotation() -> None:
    pod = hot_pod("p", versions={pod_contract.version_annotation("mesh-1"): "1"})
    update = rollout.pod_update(HOT_SET, pod, NOW)
    assert [(c.container, c.image) for c in update.images] == [("mesh-2", "mesh:v2")]
    assert json.loads(update.annotations[pod_contract.WORKING_HOT_UPGRADE_ANNOTATION]) == {
        "mesh": "mesh-2"
    }
    assert update.annotations[pod_contract.version_annotation("mesh-2")] == "100"
    assert update.annotations[pod_contract.version_alt_annotation("mesh-2")] == "1"
    assert update.annotations[pod_contract.version_alt_annotation("mesh-1")] == "100"


def test_hot_upgrade_overwrites_the_only_not_ready_twin() -> None:
    pod = hot_pod(
        "p", working="mesh-2", images=("mesh:v1", "mesh:bad"), ready=(True, False), pod_ready=False
    )
    update = rollout.pod_update(hot_sidecarset("mesh:v3"), pod, NOW)
    assert [(c.container, c.image) for c in update.images] == [("mesh-2", "mesh:v3")]


def test_hot_upgrade_overwrites_the_idle_twin_when_both_are_ready() -> None:
    pod = hot_pod("p", working="mesh-2", images=("mesh:v1", "mesh:v2"))
    update = rollout.pod_update(hot_sidecarset("mesh:v3"), pod, NOW)
    assert [(c.container, c.image) for c in update.images] == [("mesh-1", "mesh:v3")]


def test_hot_upgrade_changes_nothing_when_the_other_twin_runs_the_new_image() -> None:
    pod = hot_pod("p", working="mesh-1", images=("mesh:v2", HOT_EMPTY))
    update = rollout.pod_update(HOT_SET, pod, NOW)
    assert update.images == ()
    assert pod_contract.WORKING_HOT_UPGRADE_ANNOTATION not in update.annotations


def test_rolling_back_a_failed_hot_upgrade_reverts_to_the_twin_still_running_the_old_image() -> (
    None
):
    # mesh-2 got the bad image and never became ready; mesh-1 still serves v1. Kruise would
    # change nothing ("the other twin runs the new image") and leave mesh-2 crash-looping.
    pod = hot_pod(
        "p",
        working="mesh-2",
        images=("mesh:v1", "mesh:bad"),
        ready=(True, False),
        pod_ready=False,
        pod_hash="older",
        versions={
            pod_contract.version_annotation("mesh-1"): "1",
            pod_contract.version_alt_annotation("mesh-1"): "50",
            pod_contract.version_annotation("mesh-2"): "50",
            pod_contract.version_alt_annotation("mesh-2"): "1",
        },
    )
    update = rollout.pod_update(hot_sidecarset("mesh:v1"), pod, NOW)
    assert [(c.container, c.image) for c in update.images] == [("mesh-2", HOT_EMPTY)]
    assert json.loads(update.annotations[pod_contract.WORKING_HOT_UPGRADE_ANNOTATION]) == {
        "mesh": "mesh-1"
    }
    assert update.annotations[pod_contract.version_annotation("mesh-2")] == "0"
    assert update.annotations[pod_contract.version_alt_annotation("mesh-1")] == "0"
    assert pod_contract.version_annotation("mesh-1") not in update.annotations
    state = json.loads(update.annotations[pod_contract.INPLACE_UPDATE_STATE_ANNOTATION])[SET]
    assert state["lastContainerStatuses"] == {"mesh-2": {"imageID": "id-2"}}


def test_a_reverted_hot_upgrade_is_neither_pending_nor_flipped_again() -> None:
    reverted = hot_pod("p", working="mesh-1", images=("mesh:v1", HOT_EMPTY), pod_hash="bbb")
    assert not pod_classification.hot_upgrade_pending(hot_sidecarset("mesh:v1"), reverted)
    assert rollout.flip_update(hot_sidecarset("mesh:v1"), reverted, NOW) is None


def test_a_rollback_of_a_failed_hot_upgrade_is_planned_even_when_the_budget_is_spent() -> None:
    failed = hot_pod(
        "failed",
        working="mesh-2",
        images=("mesh:v1", "mesh:bad"),
        ready=(True, False),
        pod_ready=False,
        pod_hash="older",
    )
    plan = rollout.plan_round(
        hot_sidecarset("mesh:v1", strategy={"maxUnavailable": 1}),
        [failed, hot_pod("x", pod_hash="bbb")],
        NOW,
    )
    assert plan.budget.disrupted == (_key("failed"),)
    assert plan.updated_keys == (_key("failed"),)
    assert [(c.container, c.image) for c in plan.update[0].images] == [("mesh-2", HOT_EMPTY)]


def test_flip_resets_the_idle_twin_and_its_versions_without_touching_the_hash() -> None:
    pod = hot_pod("p", working="mesh-2", images=("mesh:v1", "mesh:v2"), pod_hash="bbb")
    flip = rollout.flip_update(HOT_SET, pod, NOW)
    assert flip is not None
    assert [(c.container, c.image) for c in flip.images] == [("mesh-1", HOT_EMPTY)]
    assert flip.annotations[pod_contract.version_annotation("mesh-1")] == "0"
    assert flip.annotations[pod_contract.version_alt_annotation("mesh-2")] == "0"
    assert pod_contract.HASH_ANNOTATION not in flip.annotations
    state = json.loads(flip.annotations[pod_contract.INPLACE_UPDATE_STATE_ANNOTATION])[SET]
    assert state["lastContainerStatuses"] == {"mesh-1": {"imageID": "id-1"}}


def test_flip_keeps_the_revision_and_time_of_the_update_it_completes() -> None:
    pod = hot_pod(
        "p",
        working="mesh-2",
        images=("mesh:v1", "mesh:v2"),
        pod_hash="bbb",
        recorded={"mesh-2": "x"},
    )
    flip = rollout.flip_update(HOT_SET, pod, NOW)
    assert flip is not None
    state = json.loads(flip.annotations[pod_contract.INPLACE_UPDATE_STATE_ANNOTATION])[SET]
    assert state["updateTimestamp"] == "2025-01-01T00:00:00Z"
    assert state["lastContainerStatuses"] == {
        "mesh-1": {"imageID": "id-1"},
        "mesh-2": {"imageID": "x"},
    }


def test_flip_of_a_pod_without_a_pending_hot_upgrade_is_none() -> None:
    assert rollout.flip_update(HOT_SET, hot_pod("p"), NOW) is None


def test_flips_do_not_end_the_round_and_the_flipped_pod_is_held_in_flight() -> None:
    # Kruise ends the round after any flip (behaviour.md §12.15). A flipped pod already counts as
    # unavailable, so with maxUnavailable 2 one more pod can start.
    flipping = hot_pod("a-flip", working="mesh-2", images=("mesh:v1", "mesh:v2"), pod_hash="bbb")
    waiting = [hot_pod(f"w-{i}") for i in range(3)]
    plan = rollout.plan_round(
        hot_sidecarset(strategy={"maxUnavailable": 2}), [flipping, *waiting], NOW
    )
    assert [f.pod.name for f in plan.flip] == ["a-flip"]
    assert plan.held[_key("a-flip")] is Hold.IN_FLIGHT
    assert plan.updated_keys == (_key("w-0"),)
    assert plan.held[_key("w-1")] is Hold.BUDGET


def test_a_pod_flipped_against_an_older_hash_is_held_in_flight() -> None:
    flipping = hot_pod("a", working="mesh-2", images=("mesh:v1", "mesh:v2"), pod_hash="older")
    plan = rollout.plan_round(hot_sidecarset("mesh:v3"), [flipping], NOW)
    assert [f.pod.name for f in plan.flip] == ["a"]
    assert plan.held[_key("a")] is Hold.IN_FLIGHT
    assert plan.update == ()


def test_a_pod_stuck_mid_hot_upgrade_gets_a_fixed_image_even_when_the_budget_is_spent() -> None:
    stuck = hot_pod(
        "stuck",
        working="mesh-2",
        images=("mesh:v1", "mesh:bad"),
        ready=(True, False),
        pod_ready=False,
        pod_hash="older",
    )
    others = [hot_pod("x"), hot_pod("y")]
    plan = rollout.plan_round(hot_sidecarset("mesh:v3"), [stuck, *others], NOW)
    assert plan.updated_keys == (_key("stuck"),)
    assert plan.held[_key("x")] is Hold.BUDGET
    assert plan.budget.used == 1


def test_every_outdated_pod_of_a_bad_image_rollout_waits_for_the_budget() -> None:
    pods = [updating_pod("broken", sidecar_ready=False, ready=False)] + [
        outdated_pod(f"pod-{i}") for i in range(3)
    ]
    plan = _plan(pods, maxUnavailable=1)
    assert plan.update == ()
    assert plan.budget.disrupted == (_key("broken"),)
    assert {plan.held[_key(f"pod-{i}")] for i in range(3)} == {Hold.BUDGET}
    assert plan.requeue_after == rollout.PROGRESS_RECHECK


def test_plans_reproduce_whatever_the_pod_order() -> None:
    pods = kruise_factory_pods(40, 10, 6)
    shuffled = list(pods)
    random.Random(7).shuffle(shuffled)
    assert _plan(pods, maxUnavailable=8) == _plan(shuffled, maxUnavailable=8)


def test_the_v1_builder_still_runs_v1() -> None:
    assert outdated_pod("p").container(SIDECAR).image == V1  # type: ignore[union-attr]
