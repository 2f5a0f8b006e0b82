"""In-place sidecar upgrades and status on the real control plane (issue 4)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sidecarset.core import pod_contract
from sidecarset.shell.kube.client import KubeClient, resource_path
from tests.integration import kubeobjects as k
from tests.integration.conftest import OperatorHandle, deployment
from tests.integration.waiting import wait_for
from tests.integration.watcher import sidecar_disrupted, watching

pytestmark = pytest.mark.usefixtures("operator")


def running_new(p: dict[str, Any]) -> bool:
    st = k.container_status(p, "filebeat")
    return (
        k.container(p, "filebeat")["image"] == k.NEW
        and st["image"] == k.NEW
        and (st["ready"] and k.is_ready(p))
    )


async def status_settled(kube: KubeClient, name: str) -> dict[str, Any]:
    """The SidecarSet once its status reflects its current generation."""
    return await wait_for(
        lambda: k.get_sidecarset(kube, name),
        lambda ss: ss.get("status", {}).get("observedGeneration") == ss["metadata"]["generation"],
        timeout=30,
        what="status observedGeneration",
    )


async def test_the_articles_filebeat_upgrade_happens_in_place(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets
) -> None:
    article = k.scoped(k.load("tests/fixtures/filebeat-sidecarset.yaml")[0], namespace)
    name = await sidecarsets.create(article)
    nginx = k.load("examples/logging/nginx-deployment.yaml")[0]
    nginx["spec"]["replicas"] = 1
    await k.create(kube, nginx, namespace)
    [before] = await k.ready_pods(kube, namespace, 1)
    assert k.container(before, "filebeat")["image"] == k.OLD
    await k.set_image(kube, name, k.NEW)
    [after] = await wait_for(
        lambda: k.pods(kube, namespace),
        lambda ps: len(ps) == 1 and running_new(ps[0]),
        timeout=60,
        what="filebeat running 7.16.3",
    )
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert k.container_status(after, "nginx")["restartCount"] == 0
    filebeat = k.container_status(after, "filebeat")
    assert filebeat["image"] == k.NEW
    assert filebeat["imageID"] != k.container_status(before, "filebeat")["imageID"]
    assert filebeat["restartCount"] == 1
    ss = await wait_for(
        lambda: k.get_sidecarset(kube, name),
        lambda s: s.get("status", {}).get("updatedReadyPods") == 1,
        timeout=30,
        what="status caught up",
    )
    st = ss["status"]
    assert st["matchedPods"] == st["updatedPods"] == st["updatedReadyPods"] == st["readyPods"] == 1
    assert st["observedGeneration"] == ss["metadata"]["generation"]


async def test_a_20_pod_rollout_never_exceeds_max_unavailable(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets
) -> None:
    name = await sidecarsets.create(
        k.sidecarset("budget-" + namespace[-5:], namespace, maxUnavailable="20%")
    )
    await k.create(
        kube,
        deployment(
            "app", 20, [{"name": "app", "image": "nginx:1.25"}], labels={"inject": "filebeat"}
        ),
        namespace,
    )
    before = await k.ready_pods(kube, namespace, 20)
    async with watching(kube, namespace, sidecar_disrupted("filebeat", k.NEW)) as watcher:
        await k.set_image(kube, name, k.NEW)
        await wait_for(
            lambda: k.pods(kube, namespace),
            lambda ps: len(ps) == 20 and all(running_new(p) for p in ps),
            timeout=180,
            what="all 20 pods on the new sidecar",
        )
        await wait_for(
            watcher.snapshot,
            lambda ps: len(ps) == 20 and all(running_new(p) for p in ps.values()),
            timeout=30,
            what="the watcher seeing the end",
        )
    assert watcher.max_disrupted <= 4, watcher.history
    assert watcher.max_disrupted >= 1  # it did observe the rollout
    assert not watcher.recreated
    assert not watcher.deleted
    assert {p["metadata"]["uid"] for p in before} == set(watcher.uids.values())
    # Each updated pod earns the SidecarSetUpgradable condition, as on Kruise; it is written
    # after the update, with API rate the rollout leaves spare (behaviour.md §9.3).
    marked = await wait_for(
        lambda: k.pods(kube, namespace),
        lambda ps: all(upgradable(p) is not None for p in ps),
        timeout=30,
        what="every pod's SidecarSetUpgradable condition",
    )
    for pod in marked:
        condition = upgradable(pod)
        assert condition is not None
        assert (condition["status"], json.loads(condition["message"])) == ("True", {name: True})


def upgradable(pod: dict[str, Any]) -> dict[str, Any] | None:
    conditions = pod.get("status", {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == pod_contract.UPGRADABLE_CONDITION), None)


async def test_partition_holds_back_the_last_pods_in_update_order(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets
) -> None:
    body = k.sidecarset(
        "part-" + namespace[-5:],
        namespace,
        partition=2,
        maxUnavailable=5,
        priorityStrategy={"orderPriority": [{"orderedKey": "order"}]},
    )
    name = await sidecarsets.create(body)
    await k.create_ready(
        kube, namespace, *[k.pod(f"p{i}", {"order": f"o-{i}"}) for i in range(1, 6)]
    )
    await k.set_image(kube, name, k.NEW)
    # Higher order first: p5, p4, p3 are updated; the partition keeps the last two, p2 and p1.
    await wait_for(
        lambda: k.pods(kube, namespace),
        lambda ps: sum(running_new(p) for p in ps) == 3,
        timeout=60,
        what="3 pods updated",
    )
    ss = await status_settled(kube, name)
    await wait_for(
        lambda: k.get_sidecarset(kube, name),
        lambda s: s["status"].get("updatedReadyPods") == 3,
        timeout=30,
        what="status",
    )
    assert k.images(await k.pods(kube, namespace)) == {
        "p1": k.OLD,
        "p2": k.OLD,
        "p3": k.NEW,
        "p4": k.NEW,
        "p5": k.NEW,
    }
    assert ss["status"]["matchedPods"] == 5
    await k.patch_strategy(kube, name, partition=0)
    await wait_for(
        lambda: k.pods(kube, namespace),
        lambda ps: all(running_new(p) for p in ps),
        timeout=60,
        what="all updated",
    )


async def test_the_canary_selector_updates_only_selected_pods(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets
) -> None:
    body = k.sidecarset(
        "canary-" + namespace[-5:],
        namespace,
        maxUnavailable=4,
        selector={"matchLabels": {"deploy-env": "canary"}},
    )
    name = await sidecarsets.create(body)
    await k.create_ready(
        kube,
        namespace,
        k.pod("c1", {"deploy-env": "canary"}),
        k.pod("c2", {"deploy-env": "canary"}),
        k.pod("s1", {"deploy-env": "stable"}),
        k.pod("s2"),
    )
    await k.set_image(kube, name, k.NEW)
    await wait_for(
        lambda: k.pods(kube, namespace),
        lambda ps: sum(running_new(p) for p in ps) == 2,
        timeout=60,
        what="canaries updated",
    )
    await wait_for(
        lambda: k.get_sidecarset(kube, name),
        lambda s: s["status"].get("updatedReadyPods") == 2,
        timeout=30,
        what="status",
    )
    assert k.images(await k.pods(kube, namespace)) == {
        "c1": k.NEW,
        "c2": k.NEW,
        "s1": k.OLD,
        "s2": k.OLD,
    }


async def test_paused_updates_nothing_until_resumed(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets
) -> None:
    name = await sidecarsets.create(
        k.sidecarset("paused-" + namespace[-5:], namespace, maxUnavailable=3, paused=True)
    )
    await k.create_ready(kube, namespace, k.pod("a"), k.pod("b"), k.pod("c"))
    await k.set_image(kube, name, k.NEW)
    ss = await status_settled(kube, name)
    assert ss["status"]["updatedPods"] == 0
    conditions = {c["type"]: c for c in ss["status"]["conditions"]}
    assert conditions["Progressing"]["reason"] == "Paused"
    assert k.images(await k.pods(kube, namespace)) == {"a": k.OLD, "b": k.OLD, "c": k.OLD}
    await k.patch_strategy(kube, name, paused=False)
    await wait_for(
        lambda: k.pods(kube, namespace),
        lambda ps: all(running_new(p) for p in ps),
        timeout=60,
        what="all updated",
    )


async def test_a_rollout_survives_the_operator_being_killed(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets, operator: OperatorHandle
) -> None:
    name = await sidecarsets.create(
        k.sidecarset("kill-" + namespace[-5:], namespace, maxUnavailable=2)
    )
    await k.create(
        kube,
        deployment(
            "app", 10, [{"name": "app", "image": "nginx:1.25"}], labels={"inject": "filebeat"}
        ),
        namespace,
    )
    await k.ready_pods(kube, namespace, 10)
    async with watching(kube, namespace, sidecar_disrupted("filebeat", k.NEW)) as watcher:
        await k.set_image(kube, name, k.NEW)
        await wait_for(
            lambda: k.pods(kube, namespace),
            lambda ps: any(k.container(p, "filebeat")["image"] == k.NEW for p in ps),
            timeout=30,
            what="the rollout to start",
        )
        operator.kill()
        assert not operator.running()
        operator.start()
        await wait_for(
            lambda: k.pods(kube, namespace),
            lambda ps: len(ps) == 10 and all(running_new(p) for p in ps),
            timeout=120,
            what="all 10 pods on the new sidecar",
        )
        await wait_for(
            watcher.snapshot,
            lambda ps: all(running_new(p) for p in ps.values()),
            timeout=30,
            what="the watcher seeing the end",
        )
    assert watcher.max_disrupted <= 2, watcher.history
    assert not watcher.recreated
    assert not watcher.deleted


async def test_a_broken_image_stops_within_the_budget_and_says_why(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets
) -> None:
    name = await sidecarsets.create(
        k.sidecarset("broken-" + namespace[-5:], namespace, maxUnavailable=2)
    )
    await k.create_ready(kube, namespace, *[k.pod(f"b{i}") for i in range(6)])
    broken = "docker.elastic.co/beats/filebeat:broken"
    async with watching(kube, namespace, sidecar_disrupted("filebeat", broken)) as watcher:
        await k.set_image(kube, name, broken)
        ss = await wait_for(
            lambda: k.get_sidecarset(kube, name),
            lambda s: any(
                c["type"] == "Stalled" and c["status"] == "True"
                for c in s.get("status", {}).get("conditions", [])
            ),
            timeout=90,
            what="Stalled condition",
        )
    stalled = next(c for c in ss["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "UpdatedPodsFailing"
    assert "b" in stalled["message"]
    pods = await k.pods(kube, namespace)
    on_broken = [p for p in pods if k.container(p, "filebeat")["image"] == broken]
    assert len(on_broken) == 2
    assert watcher.max_disrupted == 2
    assert ss["status"]["updatedPods"] == 2
    assert ss["status"]["updatedReadyPods"] == 0
    assert ss["status"]["matchedPods"] == 6


async def test_a_pod_with_an_unreadable_hash_annotation_is_repaired_with_an_event(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets
) -> None:
    # Kruise reads an unreadable kruise.io/sidecarset-hash as "not updated" and rewrites it on
    # the next update; we do the same and say so in an Event instead of stalling the rollout.
    name = await sidecarsets.create(k.sidecarset("repair-" + namespace[-5:], namespace))
    [before] = await k.create_ready(kube, namespace, k.pod("p"))
    path = resource_path("v1", "pods", namespace=namespace, name="p")
    await kube.patch(
        path, {"metadata": {"annotations": {pod_contract.HASH_ANNOTATION: "{not json"}}}
    )
    await k.set_image(kube, name, k.NEW)
    after = await wait_for(
        lambda: kube.get(path),
        lambda p: running_new(p) and _readable_hash(p),
        timeout=60,
        what="the pod updated with a readable hash annotation",
    )
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert list(json.loads(after["metadata"]["annotations"][pod_contract.HASH_ANNOTATION])) == [
        name
    ]
    event = await k.sidecarset_event(kube, name, "PodAnnotationRepaired", timeout=30)
    assert f"{namespace}/p" in event["message"]
    ss = await status_settled(kube, name)
    reasons = {c["type"]: c.get("reason") for c in ss["status"].get("conditions", [])}
    assert "PodsNotUpgradable" not in reasons.values(), reasons


def _readable_hash(pod: dict[str, Any]) -> bool:
    try:
        return isinstance(
            json.loads(pod["metadata"]["annotations"][pod_contract.HASH_ANNOTATION]), dict
        )
    except (KeyError, ValueError):
        return False
