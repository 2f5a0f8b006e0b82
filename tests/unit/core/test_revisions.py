"""revisions: revision data, names, reuse/renumber/create and history pruning (behaviour.md §10)."""

from __future__ import annotations

import json

import pytest

from sidecarset.core import hashing, pod_contract, revisions
from sidecarset.core.model import SidecarSet
from sidecarset.core.revisions import RevisionAction, RevisionRecord
from tests.unit.podbuilders import SET, hash_entries, make_pod, make_sidecarset, sidecar_spec


def _version(n: int, **kwargs: object) -> SidecarSet:
    return make_sidecarset(containers=[sidecar_spec(image=f"img:v{n}")], **kwargs)  # type: ignore[arg-type]


def _apply(
    sidecarset: SidecarSet, history: tuple[RevisionRecord, ...], pods: list[object] | None = None
) -> tuple[revisions.RevisionDecision, tuple[RevisionRecord, ...]]:
    decision = revisions.decide_revision(sidecarset, history, collision_count=0)
    after = revisions.history_after(history, decision)
    pruning = revisions.revisions_to_prune(sidecarset, after, pods or [])  # type: ignore[arg-type]
    return decision, tuple(r for r in after if r.name not in pruning.delete)


def test_revision_data_holds_the_five_injection_fields_with_absent_ones_as_null() -> None:
    sidecarset = make_sidecarset(
        patch_pod_metadata=[{"annotations": {"a": "<b>"}, "patchPolicy": "Retain"}],
        volumes=[{"name": "v", "emptyDir": {}}],
    )
    assert revisions.revision_data(sidecarset) == (
        '{"spec":{"$patch":"replace","containers":[{"image":"test-image:v2","name":"test-sidecar",'
        '"resources":{},"shareVolumePolicy":{},"upgradeStrategy":{}}],"imagePullSecrets":null,'
        '"initContainers":null,"patchPodMetadata":[{"annotations":{"a":"\\u003cb\\u003e"},'
        '"patchPolicy":"Retain"}],"volumes":[{"emptyDir":{},"name":"v"}]}}'
    )


def test_revision_hash_is_fnv1_32_of_the_data_and_the_collision_count_safe_encoded() -> None:
    # FNV-1 32 of "a" is 0x050c5d7e = 84696446 (the published test vector).
    assert revisions.revision_hash("a", None) == hashing.safe_encode("84696446")
    assert revisions.revision_hash("a", 0) != revisions.revision_hash("a", None)
    assert revisions.revision_hash("a", 0) != revisions.revision_hash("a", 1)


def test_revision_names_are_the_sidecarset_name_and_the_hash() -> None:
    assert revisions.revision_name("filebeat", "abc") == "filebeat-abc"
    assert revisions.revision_name("x" * 300, "abc") == "x" * 223 + "-abc"


def test_revision_labels_carry_the_sidecarset_labels_name_and_custom_version() -> None:
    sidecarset = make_sidecarset(labels={"team": "a", pod_contract.CUSTOM_VERSION_LABEL: "v7"})
    assert revisions.revision_labels(sidecarset) == {
        "team": "a",
        pod_contract.CUSTOM_VERSION_LABEL: "v7",
        pod_contract.SIDECARSET_NAME_LABEL: SET,
    }


def test_the_first_revision_is_created_as_number_one() -> None:
    decision = revisions.decide_revision(_version(1), (), collision_count=0)
    assert decision.action is RevisionAction.CREATE
    assert decision.revision == 1
    assert decision.name == revisions.revision_name(
        SET, revisions.revision_hash(revisions.revision_data(_version(1)), 0)
    )
    assert decision.annotations[pod_contract.HASH_ANNOTATION] == "bbb"


def test_an_unchanged_spec_reuses_the_newest_revision() -> None:
    _, history = _apply(_version(1), ())
    decision = revisions.decide_revision(_version(1), history, collision_count=0)
    assert decision.action is RevisionAction.REUSE
    assert decision.name == history[-1].name


def test_revisions_compare_by_json_not_bytes() -> None:
    data = revisions.revision_data(_version(1))
    reordered = json.dumps(json.loads(data), indent=2, sort_keys=False)
    history = (RevisionRecord(name="kruise-made", revision=4, data=reordered),)
    decision = revisions.decide_revision(_version(1), history, collision_count=0)
    assert (decision.action, decision.name) == (RevisionAction.REUSE, "kruise-made")


def test_a_name_taken_by_other_data_raises_the_collision_count() -> None:
    data = revisions.revision_data(_version(1))
    taken = revisions.revision_name(SET, revisions.revision_hash(data, 0))
    history = (RevisionRecord(name=taken, revision=1, data='{"spec":{}}'),)
    decision = revisions.decide_revision(_version(1), history, collision_count=0)
    assert decision.action is RevisionAction.CREATE
    assert decision.collision_count == 1
    assert decision.name == revisions.revision_name(SET, revisions.revision_hash(data, 1))
    assert decision.revision == 2


def test_fourteen_edits_keep_the_last_ten_revisions_and_a_rollback_renumbers_in_place() -> None:
    history: tuple[RevisionRecord, ...] = ()
    names = {}
    for n in range(1, 16):
        decision, history = _apply(_version(n), history)
        names[n] = decision.name
    assert [r.revision for r in history] == list(range(6, 16))

    decision, history = _apply(_version(12), history)
    assert (decision.action, decision.name, decision.revision) == (
        RevisionAction.RENUMBER,
        names[12],
        16,
    )
    assert [r.revision for r in history] == [6, 7, 8, 9, 10, 11, 13, 14, 15, 16]
    assert history[-1].name == names[12]


def test_revisions_in_use_by_pods_are_kept_and_the_excess_is_reported() -> None:
    history = tuple(
        RevisionRecord(name=f"r{n}", revision=n, data=f'{{"n":{n}}}') for n in range(1, 5)
    )
    pod = make_pod("p", annotations={pod_contract.HASH_ANNOTATION: _hash_with_revision("r1")})
    pruning = revisions.revisions_to_prune(
        make_sidecarset(revision_history_limit=2), history, [pod]
    )
    assert pruning.delete == ("r2", "r3")
    assert pruning.over_limit == 0
    tight = revisions.revisions_to_prune(make_sidecarset(revision_history_limit=1), history, [pod])
    assert tight.delete == ("r2", "r3")
    assert tight.over_limit == 1


def test_the_history_limit_is_at_least_one_and_the_newest_is_never_deleted() -> None:
    history = tuple(RevisionRecord(name=f"r{n}", revision=n, data="{}") for n in range(1, 4))
    pruning = revisions.revisions_to_prune(make_sidecarset(revision_history_limit=0), history, [])
    assert pruning.delete == ("r1", "r2")


def test_pinned_revisions_are_in_use() -> None:
    history = (
        RevisionRecord(
            name="r1", revision=1, data="{}", labels={pod_contract.CUSTOM_VERSION_LABEL: "c"}
        ),
        RevisionRecord(
            name="r2", revision=2, data="{}", labels={pod_contract.CUSTOM_VERSION_LABEL: "c"}
        ),
        RevisionRecord(name="r3", revision=3, data="{}"),
    )
    by_name = make_sidecarset(injection_strategy={"revision": {"revisionName": "r1"}})
    by_version = make_sidecarset(injection_strategy={"revision": {"customVersion": "c"}})
    assert revisions.revisions_in_use(by_name, history, []) == {"r1"}
    assert revisions.revisions_in_use(by_version, history, []) == {"r2"}


def _hash_with_revision(revision: str) -> str:
    entries = json.loads(hash_entries({SET: "aaa"}))
    entries[SET]["controllerRevision"] = revision
    return json.dumps(entries)


@pytest.mark.parametrize(
    ("existing_label", "expected"),
    [
        pytest.param(None, "v2", id="unlabelled"),
        pytest.param("v1", "v2", id="relabelled"),
        pytest.param("v2", None, id="already-labelled"),
    ],
)
def test_the_current_revision_gets_the_custom_version_label(
    existing_label: str | None, expected: str | None
) -> None:
    sidecarset = _version(1, labels={pod_contract.CUSTOM_VERSION_LABEL: "v2"})
    labels = {pod_contract.CUSTOM_VERSION_LABEL: existing_label} if existing_label else {}
    history = (
        RevisionRecord(
            name="r1", revision=1, data=revisions.revision_data(sidecarset), labels=labels
        ),
    )
    decision = revisions.decide_revision(sidecarset, history, collision_count=0)
    assert decision.custom_version_label == expected


def test_a_created_revision_is_labelled_at_creation() -> None:
    sidecarset = _version(1, labels={pod_contract.CUSTOM_VERSION_LABEL: "v2"})
    decision = revisions.decide_revision(sidecarset, (), collision_count=0)
    assert decision.labels[pod_contract.CUSTOM_VERSION_LABEL] == "v2"
    assert decision.custom_version_label is None
