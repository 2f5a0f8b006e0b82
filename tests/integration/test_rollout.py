"""In-place sidecar upgrades and status on the real control plane (issue 4)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from sidecarset.shell.kube.client import JSON_PATCH, KubeClient, resource_path
from tests.integration import kubeobjects as k
from tests.integration.conftest import OperatorHandle, deployment
from tests.integration.waiting import wait_for
from tests.integration.watcher import sidecar_disrupted, watching

pytestmark = pytest.mark.usefixtures("operator")

OLD = "docker.elastic.co/beats/filebeat:7.16.2"
NEW = "docker.elastic.co/beats/filebeat:7.16.3"


def sidecarset(
    name: str, namespace: str, *, pod_selector: dict[str, str] | None = None, **strategy: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "SidecarSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": pod_selector or {"inject": "filebeat"}},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "containers": [{"name": "filebeat", "image": OLD}],
            "updateStrategy": strategy,
        },
    }


def pod(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"inject": "filebeat", **(labels or {})}},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
    }


async def set_image(kube: KubeClient, name: str, image: str) -> None:
    """Change only the image (a merge patch would replace the whole containers list)."""
    await kube.patch(
        resource_path("apps.kruise.io/v1alpha1", "sidecarsets", name=name),
        [{"op": "replace", "path": "/spec/containers/0/image", "value": image}],
        content_type=JSON_PATCH,
    )


async def patch_strategy(kube: KubeClient, name: str, **strategy: Any) -> None:
    await kube.patch(
        resource_path("apps.kruise.io/v1alpha1", "sidecarsets", name=name),
        {"spec": {"updateStrategy": strategy}},
    )


def images(pods: list[dict[str, Any]]) -> dict[str, str]:
    return {p["metadata"]["name"]: k.container(p, "filebeat")["image"] for p in pods}


def running_new(p: dict[str, Any]) -> bool:
    st = k.container_status(p, "filebeat")
    return (
        k.container(p, "filebeat")["image"] == NEW
        and st["image"] == NEW
        and (st["ready"] and k.is_ready(p))
    )


async def ready_pods(kube: KubeClient, namespace: str, count: int) -> list[dict[str, Any]]:
    return await wait_for(
        lambda: k.pods(kube, namespace),
        lambda ps: len(ps) == count and all(k.is_ready(p) for p in ps),
        timeout=90,
        what=f"{count} ready pods",
    )


async def status_settled(kube: KubeClient, name: str) -> dict[str, Any]:
    """The SidecarSet once its status reflects its current generation."""
    return await wait_for(
        lambda: k.get_sidecarset(kube, name),
        lambda ss: ss.get("status", {}).get("observedGeneration") == ss["metadata"]["generation"],
        timeout=30,
        what="status observedGeneration",
    )


class Scenario:
    def __init__(self, kube: KubeClient, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace
        self.created: list[str] = []

    async def sidecarset(self, body: dict[str, Any]) -> str:
        await k.create(self.kube, body)
        self.created.append(body["metadata"]["name"])
        return str(body["metadata"]["name"])

    async def pods(self, *pods: dict[str, Any]) -> list[dict[str, Any]]:
        for p in pods:
            await k.create(self.kube, p, self.namespace)
        return await ready_pods(self.kube, self.namespace, len(pods))


@pytest_asyncio.fixture(loop_scope="session")
async def scenario(kube: KubeClient, namespace: str) -> AsyncIterator[Scenario]:
    s = Scenario(kube, namespace)
    yield s
    for name in s.created:
        await k.delete_sidecarset(kube, name)


async def test_the_articles_filebeat_upgrade_happens_in_place(
    kube: KubeClient, namespace: str, scenario: Scenario
) -> None:
    article = k.scoped(k.load("tests/fixtures/filebeat-sidecarset.yaml")[0], namespace)
    name = await scenario.sidecarset(article)
    nginx = k.load("examples/logging/nginx-deployment.yaml")[0]
    nginx["spec"]["replicas"] = 1
    await k.create(kube, nginx, namespace)
    [before] = await ready_pods(kube, namespace, 1)
    assert k.container(before, "filebeat")["image"] == OLD
    await set_image(kube, name, NEW)
    [after] = await wait_for(
        lambda: k.pods(kube, namespace),
        lambda ps: len(ps) == 1 and running_new(ps[0]),
        timeout=60,
        what="filebeat running 7.16.3",
    )
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert k.container_status(after, "nginx")["restartCount"] == 0
    filebeat = k.container_status(after, "filebeat")
    assert filebeat["image"] == NEW
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
    kube: KubeClient, namespace: str, scenario: Scenario
) -> None:
    name = await scenario.sidecarset(
        sidecarset("budget-" + namespace[-5:], namespace, maxUnavailable="20%")
    )
    await k.create(
        kube,
        deployment(
            "app", 20, [{"name": "app", "image": "nginx:1.25"}], labels={"inject": "filebeat"}
        ),
        namespace,
    )
    before = await ready_pods(kube, namespace, 20)
    async with watching(kube, namespace, sidecar_disrupted("filebeat", NEW)) as watcher:
        await set_image(kube, name, NEW)
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


async def test_partition_holds_back_the_last_pods_in_update_order(
    kube: KubeClient, namespace: str, scenario: Scenario
) -> None:
    body = sidecarset(
        "part-" + namespace[-5:],
        namespace,
        partition=2,
        maxUnavailable=5,
        priorityStrategy={"orderPriority": [{"orderedKey": "order"}]},
    )
    name = await scenario.sidecarset(body)
    await scenario.pods(*[pod(f"p{i}", {"order": f"o-{i}"}) for i in range(1, 6)])
    await set_image(kube, name, NEW)
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
    assert images(await k.pods(kube, namespace)) == {
        "p1": OLD,
        "p2": OLD,
        "p3": NEW,
        "p4": NEW,
        "p5": NEW,
    }
    assert ss["status"]["matchedPods"] == 5
    await patch_strategy(kube, name, partition=0)
    await wait_for(
        lambda: k.pods(kube, namespace),
        lambda ps: all(running_new(p) for p in ps),
        timeout=60,
        what="all updated",
    )


async def test_the_canary_selector_updates_only_selected_pods(
    kube: KubeClient, namespace: str, scenario: Scenario
) -> None:
    body = sidecarset(
        "canary-" + namespace[-5:],
        namespace,
        maxUnavailable=4,
        selector={"matchLabels": {"deploy-env": "canary"}},
    )
    name = await scenario.sidecarset(body)
    await scenario.pods(
        pod("c1", {"deploy-env": "canary"}),
        pod("c2", {"deploy-env": "canary"}),
        pod("s1", {"deploy-env": "stable"}),
        pod("s2"),
    )
    await set_image(kube, name, NEW)
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
    assert images(await k.pods(kube, namespace)) == {"c1": NEW, "c2": NEW, "s1": OLD, "s2": OLD}


async def test_paused_updates_nothing_until_resumed(
    kube: KubeClient, namespace: str, scenario: Scenario
) -> None:
    name = await scenario.sidecarset(
        sidecarset("paused-" + namespace[-5:], namespace, maxUnavailable=3, paused=True)
    )
    await scenario.pods(pod("a"), pod("b"), pod("c"))
    await set_image(kube, name, NEW)
    ss = await status_settled(kube, name)
    assert ss["status"]["updatedPods"] == 0
    conditions = {c["type"]: c for c in ss["status"]["conditions"]}
    assert conditions["Progressing"]["reason"] == "Paused"
    assert images(await k.pods(kube, namespace)) == {"a": OLD, "b": OLD, "c": OLD}
    await patch_strategy(kube, name, paused=False)
    await wait_for(
        lambda: k.pods(kube, namespace),
        lambda ps: all(running_new(p) for p in ps),
        timeout=60,
        what="all updated",
    )


async def test_a_rollout_survives_the_operator_being_killed(
    kube: KubeClient, namespace: str, scenario: Scenario, operator: OperatorHandle
) -> None:
    name = await scenario.sidecarset(
        sidecarset("kill-" + namespace[-5:], namespace, maxUnavailable=2)
    )
    await k.create(
        kube,
        deployment(
            "app", 10, [{"name": "app", "image": "nginx:1.25"}], labels={"inject": "filebeat"}
        ),
        namespace,
    )
    await ready_pods(kube, namespace, 10)
    async with watching(kube, namespace, sidecar_disrupted("filebeat", NEW)) as watcher:
        await set_image(kube, name, NEW)
        await wait_for(
            lambda: k.pods(kube, namespace),
            lambda ps: any(k.container(p, "filebeat")["image"] == NEW for p in ps),
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
    kube: KubeClient, namespace: str, scenario: Scenario
) -> None:
    name = await scenario.sidecarset(
        sidecarset("broken-" + namespace[-5:], namespace, maxUnavailable=2)
    )
    await scenario.pods(*[pod(f"b{i}") for i in range(6)])
    broken = "docker.elastic.co/beats/filebeat:broken"
    async with watching(kube, namespace, sidecar_disrupted("filebeat", broken)) as watcher:
        await set_image(kube, name, broken)
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
