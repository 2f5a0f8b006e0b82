"""`sidecarset plan`: every matched pod's part in the next round, explained and rendered."""

from __future__ import annotations

import json
from datetime import timedelta

from sidecarset.cli import plan
from sidecarset.core import pod_contract
from sidecarset.core.podview import PodKey, PodView
from tests.unit.podbuilders import NOW, V1, V2, failing_pod, make_pod, make_sidecarset


def explain(pods: list[PodView], **strategy: object) -> plan.Explanation:
    return plan.explain(make_sidecarset(strategy=strategy), pods, [], NOW)


def outdated(count: int, **kwargs: object) -> list[PodView]:
    return [make_pod(f"p{i}", **kwargs) for i in range(1, count + 1)]


def decisions(expl: plan.Explanation) -> dict[str, str]:
    return {d.pod.name: d.decision for d in expl.decisions}


def test_partition_and_budget_hold_the_pods_the_round_does_not_take() -> None:
    expl = explain(outdated(5), partition=2, maxUnavailable=1)
    held = decisions(expl)
    assert sorted(held.values()) == ["budget", "budget", "partition", "partition", "update"]
    [update] = expl.updates
    assert update.order == 1
    assert update.images[0].previous == V1
    assert update.images[0].image == V2
    assert expl.budget.partition == 2
    assert expl.budget.max_unavailable == 1


def test_the_canary_selector_holds_the_other_pods_as_not_selected() -> None:
    pods = [make_pod("canary", labels={"app": "sidecar", "canary": "true"}), *outdated(2)]
    expl = explain(pods, selector={"matchLabels": {"canary": "true"}}, maxUnavailable=5)
    assert decisions(expl) == {"canary": "update", "p1": "notSelected", "p2": "notSelected"}
    why = next(d.detail for d in expl.decisions if d.pod.name == "p1")
    assert why == "outside the canary updateStrategy.selector canary=true"


def test_a_pod_that_cannot_be_updated_in_place_names_the_blocking_field() -> None:
    expl = explain([make_pod("p1", without_image="older")])
    [blocked] = expl.decisions
    assert blocked.decision == "notUpgradable"
    assert blocked.field == "spec.containers"
    assert blocked.detail.startswith("spec.containers: a sidecar field other than image changed")


def test_updated_pods_and_a_paused_rollout_are_explained() -> None:
    pods = [make_pod("done", pod_hash="bbb", spec_image=V2), make_pod("waiting")]
    expl = explain(pods, paused=True)
    assert decisions(expl) == {"waiting": "paused", "done": "updated"}
    assert "sidecarset resume test-sidecarset" in expl.decisions[0].detail
    assert expl.state == "NotReady: Paused"


def test_missed_injections_say_why_the_pod_has_no_sidecars() -> None:
    uninjected = {pod_contract.INJECTED_LIST_ANNOTATION: ""}
    never = make_pod("never", annotations=uninjected)
    opted = make_pod(
        "opted",
        labels={"app": "sidecar", pod_contract.INJECT_OPT_OUT: "false"},
        annotations=uninjected,
    )
    other = make_pod("other", sidecarset="another")
    expl = explain([*outdated(1), never, opted, other])
    assert [(n.pod.name, n.reason) for n in expl.missed] == [
        ("never", plan.NOT_INJECTED),
        ("opted", plan.OPTED_OUT),
        ("other", plan.OTHERS_ONLY),
    ]
    assert "injected with another but not test-sidecarset" in expl.missed[2].detail


def test_injected_pods_outside_the_rollout_are_listed_as_not_counted() -> None:
    finished = make_pod("finished", phase="Succeeded")
    expl = explain([*outdated(1), finished])
    assert [(n.pod.name, n.reason) for n in expl.not_counted] == [("finished", plan.INACTIVE)]
    assert decisions(expl) == {"p1": "update"}


def test_the_table_shows_the_arithmetic_then_one_row_per_pod() -> None:
    text = plan.render_table(explain(outdated(5), partition="40%", maxUnavailable="20%"))
    lines = text.splitlines()
    assert (
        lines[0]
        == "SidecarSet test-sidecarset: generation 3, revision "
        + (lines[0].split("revision ")[1].split(",")[0])
        + ", 5 matched pods"
    )
    assert lines[1] == "strategy:   RollingUpdate"
    assert lines[2].startswith(
        "budget:     maxUnavailable 20% of 5 matched pods = 1 (rounded up); "
        "0 unavailable or updating now; 1 of 1 once this round's updates land"
    )
    assert lines[3] == "partition:  40% of 5 matched pods = 2 pods kept on the old sidecars"
    assert lines[4] == "next round: update 1 pod; hold 4 pods (budget 2, partition 2)"
    assert lines[5].startswith("state:      Progressing: Rolling")
    header = lines[7]
    assert header.split() == ["POD", "READY", "DECISION", "WHY"]
    assert "update #1" in lines[8]
    assert lines[8].endswith(f"test-sidecar: {V1} -> :v2")
    assert [line.split()[2] for line in lines[9:]] == ["budget", "budget", "partition", "partition"]


def test_json_output_lists_updates_and_holds_with_reasons() -> None:
    expl = explain([make_pod("p1", without_image="older"), *outdated(3)[1:]], maxUnavailable=1)
    out = json.loads(json.dumps(plan.to_dict(expl)))
    assert out["sidecarset"] == "test-sidecarset"
    assert [u["pod"] for u in out["update"]] == ["default/p2"]
    assert out["update"][0]["images"] == [{"container": "test-sidecar", "from": V1, "to": V2}]
    held = {h["pod"]: h for h in out["held"]}
    assert held["default/p1"]["reason"] == "notUpgradable"
    assert held["default/p1"]["field"] == "spec.containers"
    assert held["default/p3"]["reason"] == "budget"
    assert out["budget"] == {
        "matched": 3,
        "maxUnavailable": 1,
        "partition": 0,
        "disrupted": [],
        "used": 1,
    }


def test_selectors_print_as_kubectl_spells_them() -> None:
    ss = make_sidecarset(
        strategy={
            "selector": {
                "matchLabels": {"a": "b"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["x", "y"]},
                    {"key": "legacy", "operator": "DoesNotExist"},
                ],
            }
        }
    )
    selector = ss.spec.update_strategy.selector
    assert selector is not None
    assert plan.selector_text(selector) == "a=b,tier in (x,y),!legacy"


def test_pod_keys_render_as_namespace_slash_name() -> None:
    assert str(PodKey("ns", "p")) == "ns/p"


def test_the_failing_threshold_is_the_one_given() -> None:
    pods = [failing_pod("broken", since=NOW - timedelta(minutes=10)), *outdated(2)]
    ss = make_sidecarset(strategy={"maxUnavailable": 1})
    default = plan.explain(ss, pods, [], NOW)
    patient = plan.explain(ss, pods, [], NOW, failing_after=timedelta(hours=1))
    assert default.message.startswith("updated pods not ready for over 5m0s: default/broken")
    assert "not ready for over" not in patient.message
