"""candidates: where one pod stands against one SidecarSet (behaviour.md §3.2, §7.2, §7.6)."""

from __future__ import annotations

import json

import pytest

from sidecarset.core import pod_classification, pod_contract
from sidecarset.core.pod_classification import PodStateKind
from sidecarset.core.podview import podview_from_dict
from tests.unit.podbuilders import (
    HOT_EMPTY,
    SET,
    SIDECAR,
    V1,
    V1_ID,
    V2,
    V2_ID,
    hot_pod,
    hot_sidecarset,
    make_pod,
    make_pod_dict,
    make_sidecarset,
    outdated_pod,
    sidecar_spec,
    updated_pod,
    updating_pod,
)

SIDECARSET = make_sidecarset()


def test_a_pod_with_the_sidecarsets_hash_is_updated() -> None:
    state = pod_classification.classify(SIDECARSET, updated_pod("p"))
    assert state.kind is PodStateKind.UPDATED
    assert state.available


def test_an_outdated_pod_running_its_spec_is_a_waiting_candidate() -> None:
    state = pod_classification.classify(SIDECARSET, outdated_pod("p"))
    assert state.kind is PodStateKind.CANDIDATE
    assert state.consistent
    assert state.ready


def test_a_changed_hash_without_image_makes_the_pod_not_upgradable_naming_spec_containers() -> None:
    sidecarset = make_sidecarset(hash_without_image="without-bbb")
    state = pod_classification.classify(sidecarset, outdated_pod("p"))
    assert state.kind is PodStateKind.NOT_UPGRADABLE
    assert state.blocker is not None
    assert state.blocker.field == "spec.containers"
    assert "only images can change in place" in state.blocker.message


def test_a_removed_sidecar_is_named_in_the_not_upgradable_message() -> None:
    pod = make_pod(
        "p",
        annotations={
            pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION: json.dumps(
                {SET: {"hash": "without-old", "sidecarList": [SIDECAR, "gone"]}}
            )
        },
    )
    state = pod_classification.classify(SIDECARSET, pod)
    assert state.blocker is not None
    assert "removed gone" in state.blocker.message


def test_a_malformed_hash_annotation_makes_the_pod_a_candidate_as_kruise_does() -> None:
    # Kruise reads an unreadable kruise.io/sidecarset-hash as "not updated" and repairs it.
    pod = make_pod("p", annotations={pod_contract.HASH_ANNOTATION: "{not json"})
    state = pod_classification.classify(SIDECARSET, pod)
    assert state.kind is PodStateKind.CANDIDATE
    assert state.blocker is None


def test_a_malformed_hash_without_image_annotation_still_blocks_the_pod() -> None:
    # Kruise reads it as "" too, which differs from the SidecarSet's: not upgradable.
    pod = make_pod("p", annotations={pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION: "{not json"})
    state = pod_classification.classify(SIDECARSET, pod)
    assert state.kind is PodStateKind.NOT_UPGRADABLE
    assert state.blocker is not None
    assert state.blocker.field == "metadata.annotations[kruise.io/sidecarset-hash-without-image]"


def test_a_ready_sidecar_still_rolling_a_previous_update_is_in_flight() -> None:
    # Outdated against a newer hash, but the kubelet has not yet restarted the last update.
    pod = updating_pod("p", pod_hash="older")
    state = pod_classification.classify(SIDECARSET, pod)
    assert state.kind is PodStateKind.IN_FLIGHT
    assert state.in_flight == (SIDECAR,)


def test_a_not_ready_sidecar_mid_update_is_still_a_candidate_so_a_bad_image_can_be_replaced() -> (
    None
):
    pod = updating_pod("p", pod_hash="older", sidecar_ready=False, ready=False)
    assert pod_classification.classify(SIDECARSET, pod).kind is PodStateKind.CANDIDATE


# --- state consistency (behaviour.md §7.6) -----------------------------------------------------


def test_a_sidecar_never_updated_in_place_is_consistent_whatever_its_status_image() -> None:
    pod = make_pod("p", status_image="something-else:v9")
    assert pod_classification.is_state_consistent(SIDECARSET, pod)


def test_an_updated_sidecar_whose_imageid_has_not_changed_is_inconsistent() -> None:
    assert not pod_classification.is_state_consistent(SIDECARSET, updating_pod("p"))


def test_an_updated_sidecar_running_the_new_image_is_consistent() -> None:
    assert pod_classification.is_state_consistent(SIDECARSET, updated_pod("p"))


def test_a_changed_imageid_is_not_enough_when_the_status_image_is_still_the_old_one() -> None:
    # Kruise calls this complete (imageID changed); a re-pushed old tag would fool it.
    pod = updating_pod("p", status_image=V1, status_image_id=V2_ID)
    assert not pod_classification.is_state_consistent(SIDECARSET, pod)


def test_two_tags_sharing_an_imageid_complete_once_the_status_names_the_new_tag() -> None:
    pod = updating_pod("p", status_image=V2, status_image_id=V1_ID)
    assert pod_classification.is_state_consistent(SIDECARSET, pod)


def test_runtime_normalised_status_images_match_the_short_spec_image() -> None:
    pod = make_pod(
        "p",
        pod_hash="bbb",
        spec_image="nginx",
        status_image="docker.io/library/nginx:latest",
        status_image_id=V1_ID,
        recorded_image_id=V1_ID,
    )
    assert pod_classification.is_state_consistent(SIDECARSET, pod)


def test_a_bare_image_id_as_status_image_falls_back_to_the_imageid_change() -> None:
    done = updating_pod("p", status_image="sha256:" + "9" * 64, status_image_id=V2_ID)
    waiting = updating_pod("q", status_image="sha256:" + "9" * 64, status_image_id=V1_ID)
    assert pod_classification.is_state_consistent(SIDECARSET, done)
    assert not pod_classification.is_state_consistent(SIDECARSET, waiting)


@pytest.mark.parametrize(
    ("spec_image", "image_id", "consistent"),
    [
        pytest.param(
            "busybox@sha256:" + "b" * 64,
            "docker-pullable://docker.io/library/busybox@sha256:" + "b" * 64,
            True,
            id="same-digest-normalised-repo",
        ),
        pytest.param(
            "busybox@sha256:" + "b" * 64,
            "docker-pullable://busybox@sha256:" + "c" * 64,
            False,
            id="other-digest",
        ),
        pytest.param(
            "busybox@sha256:" + "b" * 64,
            "docker-pullable://other@sha256:" + "b" * 64,
            False,
            id="other-repository",
        ),
        pytest.param(
            "busybox@sha256:" + "b" * 64, "sha256:" + "b" * 64, True, id="bare-digest-imageid"
        ),
    ],
)
def test_digest_images_are_consistent_exactly_when_the_imageid_has_the_same_digest(
    spec_image: str, image_id: str, consistent: bool
) -> None:
    pod = make_pod("p", spec_image=spec_image, status_image=spec_image, status_image_id=image_id)
    assert pod_classification.is_state_consistent(SIDECARSET, pod) is consistent


def test_a_pod_with_a_missing_container_status_is_inconsistent() -> None:
    raw = make_pod_dict("p")
    raw["status"]["containerStatuses"] = raw["status"]["containerStatuses"][:1]  # type: ignore[index]
    assert not pod_classification.is_state_consistent(SIDECARSET, podview_from_dict(raw))


@pytest.mark.parametrize(
    ("reference", "normalised"),
    [
        pytest.param("nginx", "docker.io/library/nginx:latest", id="short"),
        pytest.param("nginx:1.25", "docker.io/library/nginx:1.25", id="short-tag"),
        pytest.param("library/nginx", "docker.io/library/nginx:latest", id="library"),
        pytest.param("index.docker.io/x/y:1", "docker.io/x/y:1", id="index-domain"),
        pytest.param("localhost:5000/app", "localhost:5000/app:latest", id="registry-port"),
        pytest.param("quay.io/a/b:2", "quay.io/a/b:2", id="qualified"),
        pytest.param(
            "docker-pullable://busybox@sha256:abc",
            "docker.io/library/busybox@sha256:abc",
            id="digest",
        ),
    ],
)
def test_image_references_normalise_as_runtimes_report_them(
    reference: str, normalised: str
) -> None:
    assert pod_classification.normalize_image(reference) == normalised


# --- matching (behaviour.md §3.2) --------------------------------------------------------------


def test_terminating_pods_are_not_matched() -> None:
    assert not pod_classification.is_matched(SIDECARSET, make_pod("p", deleting=True))


def test_finished_pods_are_not_matched() -> None:
    assert not pod_classification.is_matched(SIDECARSET, make_pod("p", phase="Succeeded"))


def test_pods_injected_by_other_sidecarsets_only_are_not_matched() -> None:
    pod = make_pod("p", annotations={pod_contract.INJECTED_LIST_ANNOTATION: "other"})
    assert not pod_classification.is_matched(SIDECARSET, pod)


def test_pods_without_an_injected_list_match_through_their_hash_entry() -> None:
    pod = make_pod("p", annotations={pod_contract.INJECTED_LIST_ANNOTATION: ""})
    assert pod_classification.is_matched(SIDECARSET, pod)


def test_pods_missing_a_cold_sidecar_container_are_not_matched() -> None:
    sidecarset = make_sidecarset(containers=[sidecar_spec("other-sidecar")])
    assert not pod_classification.is_matched(sidecarset, outdated_pod("p"))


def test_pods_injected_cold_are_not_matched_by_a_hot_sidecarset() -> None:
    sidecarset = make_sidecarset(containers=[sidecar_spec(SIDECAR, V2, hot_empty_image="e")])
    assert not pod_classification.is_matched(sidecarset, outdated_pod("p"))


def test_hot_pods_with_both_twins_and_a_working_entry_are_matched() -> None:
    assert pod_classification.is_matched(hot_sidecarset(), hot_pod("p"))


# --- hot upgrade ------------------------------------------------------------------------------


def test_a_pod_whose_idle_twin_still_runs_a_real_image_is_not_ready() -> None:
    pod = hot_pod("p", working="mesh-2", images=("mesh:v1", "mesh:v2"), pod_hash="bbb")
    state = pod_classification.classify(hot_sidecarset(), pod)
    assert state.hot_upgrade_pending
    assert not state.ready


def test_a_consistent_ready_hot_upgrade_is_ready_to_flip() -> None:
    pod = hot_pod("p", working="mesh-2", images=("mesh:v1", "mesh:v2"), pod_hash="bbb")
    assert pod_classification.is_flip_ready(hot_sidecarset(), pod)


def test_a_hot_upgrade_whose_new_twin_is_not_ready_does_not_flip() -> None:
    pod = hot_pod(
        "p",
        working="mesh-2",
        images=("mesh:v1", "mesh:v2"),
        ready=(True, False),
        pod_ready=False,
        pod_hash="bbb",
    )
    assert not pod_classification.is_flip_ready(hot_sidecarset(), pod)


def test_a_hot_upgrade_still_starting_the_new_twin_does_not_flip() -> None:
    pod = hot_pod(
        "p",
        working="mesh-2",
        images=("mesh:v1", "mesh:v2"),
        status_images=("mesh:v1", HOT_EMPTY),
        recorded={"mesh-2": "id-2"},
        pod_hash="bbb",
    )
    assert not pod_classification.is_flip_ready(hot_sidecarset(), pod)


def test_no_flip_while_the_working_twin_is_not_ready_whatever_the_pod_says() -> None:
    # The reset stops the old twin: the new one must itself report Ready, not just the pod.
    pod = hot_pod(
        "p",
        working="mesh-2",
        images=("mesh:v1", "mesh:v2"),
        ready=(True, False),
        pod_ready=True,
        pod_hash="bbb",
    )
    assert not pod_classification.is_flip_ready(hot_sidecarset(), pod)


def test_a_pod_without_a_pending_hot_upgrade_does_not_flip() -> None:
    assert not pod_classification.is_flip_ready(hot_sidecarset(), hot_pod("p"))


# --- native sidecars --------------------------------------------------------------------------


def _native_pod(
    image: str, status_image: str, image_id: str, *, recorded: bool
) -> dict[str, object]:
    raw = make_pod_dict("p")
    raw["spec"]["initContainers"] = [  # type: ignore[index]
        {"name": "init", "image": "busybox"},
        {"name": "proxy", "image": image, "restartPolicy": "Always"},
    ]
    raw["status"]["initContainerStatuses"] = [  # type: ignore[index]
        {"name": "init", "image": "busybox", "imageID": "x", "ready": False},
        {"name": "proxy", "image": status_image, "imageID": image_id, "ready": True},
    ]
    if recorded:
        raw["metadata"]["annotations"][pod_contract.INPLACE_UPDATE_STATE_ANNOTATION] = json.dumps(  # type: ignore[index]
            {SET: {"revision": "bbb", "lastContainerStatuses": {"proxy": {"imageID": "old"}}}}
        )
    return raw


NATIVE_SET = make_sidecarset(
    init_containers=[{"name": "proxy", "image": "proxy:v2", "restartPolicy": "Always"}]
)


def test_native_sidecars_are_checked_through_the_init_container_statuses() -> None:
    rolling = podview_from_dict(_native_pod("proxy:v2", "proxy:v1", "old", recorded=True))
    done = podview_from_dict(_native_pod("proxy:v2", "proxy:v2", "new", recorded=True))
    assert not pod_classification.is_state_consistent(NATIVE_SET, rolling)
    assert pod_classification.is_state_consistent(NATIVE_SET, done)


def test_a_pod_missing_a_native_sidecar_is_not_upgradable() -> None:
    state = pod_classification.classify(NATIVE_SET, outdated_pod("p"))
    assert state.kind is PodStateKind.NOT_UPGRADABLE
    assert state.blocker is not None
    assert state.blocker.field == "spec.initContainers[proxy]"


def test_sidecars_lists_native_sidecars_before_containers_and_skips_plain_init_containers() -> None:
    sidecarset = make_sidecarset(
        init_containers=[
            {"name": "setup", "image": "busybox"},
            {"name": "proxy", "image": "proxy:v2", "restartPolicy": "Always"},
        ]
    )
    found = [(s.name, s.location) for s in pod_classification.sidecars(sidecarset)]
    assert found == [("proxy", "initContainers"), (SIDECAR, "containers")]


def test_the_v1_and_v2_builders_show_what_kruise_tests_show() -> None:
    # Guards the builders the rollout tables rely on.
    assert make_pod("p").container(SIDECAR) is not None
    assert updated_pod("p").container(SIDECAR).image == V2  # type: ignore[union-attr]
    assert outdated_pod("p").container(SIDECAR).image == V1  # type: ignore[union-attr]
