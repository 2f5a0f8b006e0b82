"""Round-to-round memos: they change how long a round takes, never what it decides."""

from __future__ import annotations

import msgspec
import pytest

from sidecarset.core import model, pod_classification, pod_contract, rollout, selectors, status
from sidecarset.core.model import LabelSelector
from sidecarset.core.podview import PodView
from tests.unit.podbuilders import (
    NOW,
    kruise_factory_pods,
    make_sidecarset,
    outdated_pod,
    sidecar_spec,
)


def _status(sidecarset: model.SidecarSet, pods: list[PodView], plan: rollout.RoundPlan) -> object:
    return status.compute_status(sidecarset, plan, latest_revision="r", collision_count=0, now=NOW)


def _pods_read(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the pods whose containers are read from now on (their facts made)."""
    read: list[str] = []
    facts = pod_classification._pod_facts

    def counting(ss: model.SidecarSet, pod: PodView) -> pod_classification._Facts:
        read.append(pod.name)
        return facts(ss, pod)

    monkeypatch.setattr(pod_classification, "_pod_facts", counting)
    return read


def test_a_plan_with_judgements_equals_the_plan_without() -> None:
    sidecarset = make_sidecarset(strategy={"maxUnavailable": 3})
    pods = kruise_factory_pods(20, 8, 6)
    judgements = pod_classification.Judgements()
    first = rollout.plan_round(sidecarset, pods, NOW, judgements=judgements)
    again = rollout.plan_round(sidecarset, pods, NOW, judgements=judgements)
    plain = rollout.plan_round(sidecarset, pods, NOW)
    assert first == again == plain
    assert _status(sidecarset, pods, again) == _status(sidecarset, pods, plain)


def test_unchanged_pods_are_not_judged_again(monkeypatch: pytest.MonkeyPatch) -> None:
    sidecarset = make_sidecarset()
    pods = kruise_factory_pods(5, 2, 1)
    judgements = pod_classification.Judgements()
    judgements.judge(sidecarset, pods)
    judged = _pods_read(monkeypatch)
    changed = outdated_pod("pod-4", ready=False)
    judgements.judge(sidecarset, [*pods[:4], changed])
    assert judged == ["pod-4"]


def test_a_status_write_does_not_cost_a_judgement(monkeypatch: pytest.MonkeyPatch) -> None:
    sidecarset = make_sidecarset()
    pods = kruise_factory_pods(3, 1, 1)
    judgements = pod_classification.Judgements()
    judgements.judge(sidecarset, pods)
    monkeypatch.setattr(pod_classification, "_pod_facts", lambda *_: pytest.fail("judged again"))
    monkeypatch.setattr(pod_classification, "_judge_with", lambda *_: pytest.fail("judged again"))
    written = msgspec.structs.replace(
        sidecarset, status=msgspec.structs.replace(sidecarset.status, matched_pods=3)
    )
    assert len(judgements.judge(written, pods)) == 3


def test_another_sidecarset_object_is_judged_afresh() -> None:
    pods = kruise_factory_pods(4, 2, 2)
    judgements = pod_classification.Judgements()
    updated_before = [s.updated for _, _, s in judgements.judge(make_sidecarset(), pods)]
    changed = make_sidecarset(hash_="a-new-hash")
    updated_after = [s.updated for _, _, s in judgements.judge(changed, pods)]
    assert updated_before == [True, True, False, False]
    assert updated_after == [False, False, False, False]


@pytest.mark.parametrize(
    ("edit", "facts_kept"),
    [
        pytest.param({"image": "sidecar:v3"}, True, id="image-only"),
        pytest.param(
            {"image": "sidecar:v3", "env": [{"name": "A", "value": "1"}]}, False, id="env"
        ),
    ],
)
def test_an_image_edit_keeps_each_pods_facts_and_judges_the_hash_again(
    monkeypatch: pytest.MonkeyPatch, edit: dict[str, object], facts_kept: bool
) -> None:
    """The first round after an image edit (a new hash) reads no container of any pod again;
    any other edit does. Either way the answer is `classify`'s."""
    pods = kruise_factory_pods(6, 3, 2)
    judgements = pod_classification.Judgements()
    judgements.judge(make_sidecarset(), pods)
    edited = make_sidecarset(
        hash_="a-new-hash",
        hash_without_image="without-aaa" if facts_kept else "without-bbb",
        containers=[sidecar_spec(**edit)],  # type: ignore[arg-type]
    )
    read_again = _pods_read(monkeypatch)
    judged = judgements.judge(edited, pods)
    assert read_again == ([] if facts_kept else sorted(p.name for p in pods))
    expected = [
        (pod.key, pod, pod_classification.classify(edited, pod))
        for pod in sorted(pods, key=lambda p: p.key)
        if pod_classification.is_matched(edited, pod)
    ]
    assert list(judged) == expected
    assert all(not state.updated for _, _, state in judged)


def test_read_upgrade_specs_gives_each_caller_its_own_map() -> None:
    annotations = {
        pod_contract.HASH_ANNOTATION: '{"s":{"updateTimestamp":"2025-01-01T00:00:00Z","hash":"h",'
        '"sidecarSetName":"s","sidecarList":["c"]}}'
    }
    first = pod_contract.read_upgrade_specs(annotations, pod_contract.HASH_ANNOTATION)
    first["other"] = pod_contract.UpgradeSpec(hash="x")
    assert set(pod_contract.read_upgrade_specs(annotations, pod_contract.HASH_ANNOTATION)) == {"s"}


def test_a_malformed_annotation_fails_every_time() -> None:
    annotations = {pod_contract.HASH_ANNOTATION: "{not json"}
    for _ in range(2):
        with pytest.raises(pod_contract.MalformedAnnotation):
            pod_contract.read_upgrade_specs(annotations, pod_contract.HASH_ANNOTATION)


def test_copy_json_copies_deeply() -> None:
    body: dict[str, object] = {"env": [{"name": "A", "value": "1"}], "n": 1.5, "on": True}
    copied = model.copy_json(body)
    assert copied == body
    env = copied["env"]
    assert isinstance(env, list)
    env[0]["value"] = "2"
    assert body["env"] == [{"name": "A", "value": "1"}]


def test_a_selector_compiles_the_same_from_its_memo() -> None:
    selector = LabelSelector(match_labels={"app": "web"})
    first = selectors.compile_selector(selector)
    assert selectors.compile_selector(selector) is first
    assert selectors.compile_selector(LabelSelector(match_labels={"app": "web"})) == first
    assert selectors.matches(selector, {"app": "web"}) is True
    assert selectors.matches(selector, {"app": "db"}) is False


def test_judged_pods_come_sorted_and_follow_removals() -> None:
    sidecarset = make_sidecarset()
    pods = kruise_factory_pods(4, 2, 2)
    judgements = pod_classification.Judgements()
    first = judgements.judge(sidecarset, list(reversed(pods)))
    assert [key for key, _, _ in first] == sorted(pod.key for pod in pods)
    assert judgements.judge(sidecarset, pods) == first
    assert [pod.name for _, pod, _ in judgements.judge(sidecarset, pods[1:])] == [
        pod.name for pod in sorted(pods[1:], key=lambda p: p.key)
    ]
    assert judgements.judge(make_sidecarset(hash_="another"), []) == ()
