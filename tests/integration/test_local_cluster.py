"""The local control plane and node simulator behave like a real cluster with kubelets."""

from __future__ import annotations

from typing import Any

from sidecarset.shell.kube.client import STRATEGIC_MERGE_PATCH, KubeClient, resource_path
from sidecarset.simulator import images
from tests.integration.conftest import SIM_NODES, deployment
from tests.integration.waiting import wait_for


def is_ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def status_of(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in pod["status"]["containerStatuses"] if s["name"] == name)


async def list_pods(kube: KubeClient, namespace: str, selector: str) -> list[dict[str, Any]]:
    body = await kube.get(resource_path("v1", "pods", namespace=namespace), labelSelector=selector)
    return list(body["items"])


async def test_simulated_nodes_are_ready(kube: KubeClient) -> None:
    nodes = (
        await kube.get(resource_path("v1", "nodes"), labelSelector="sidecarset.dev/simulated=true")
    )["items"]
    assert len(nodes) == SIM_NODES
    for node in nodes:
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready[0]["status"] == "True"
        assert not node["spec"].get("taints")


async def test_the_apiserver_reports_the_pinned_version(kube: KubeClient) -> None:
    version = await kube.get("/version")
    assert version["gitVersion"] == "v1.36.3"


async def test_a_deployment_reaches_three_running_ready_pods(
    kube: KubeClient, namespace: str
) -> None:
    await kube.create(
        resource_path("apps/v1", "deployments", namespace=namespace),
        deployment("web", 3, [{"name": "nginx", "image": "nginx:1.25"}]),
    )
    pods = await wait_for(
        lambda: list_pods(kube, namespace, "app=web"),
        lambda ps: len(ps) == 3 and all(is_ready(p) for p in ps),
        timeout=60,
        what="3 ready pods",
    )
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        assert pod["spec"]["nodeName"].startswith("sim-node-")
        assert pod["status"]["podIP"].startswith("127.")
        nginx = status_of(pod, "nginx")
        assert nginx["imageID"] == images.image_id("nginx:1.25")
        assert nginx["restartCount"] == 0
    dep = await wait_for(
        lambda: kube.get(resource_path("apps/v1", "deployments", namespace=namespace, name="web")),
        lambda d: d.get("status", {}).get("availableReplicas") == 3,
        timeout=30,
        what="deployment available",
    )
    assert dep["status"]["readyReplicas"] == 3


async def test_an_in_place_image_patch_restarts_only_that_container(
    kube: KubeClient, namespace: str
) -> None:
    pod_path = resource_path("v1", "pods", namespace=namespace, name="two")
    await kube.create(
        resource_path("v1", "pods", namespace=namespace),
        {
            "metadata": {"name": "two"},
            "spec": {
                "containers": [
                    {"name": "app", "image": "nginx:1.25"},
                    {"name": "filebeat", "image": "filebeat:7.16.2"},
                ]
            },
        },
    )
    before = await wait_for(lambda: kube.get(pod_path), is_ready, timeout=60, what="pod ready")
    await kube.patch(
        pod_path,
        {"spec": {"containers": [{"name": "filebeat", "image": "filebeat:7.16.3"}]}},
        content_type=STRATEGIC_MERGE_PATCH,
    )
    after = await wait_for(
        lambda: kube.get(pod_path),
        lambda p: is_ready(p) and status_of(p, "filebeat")["image"] == "filebeat:7.16.3",
        timeout=60,
        what="filebeat restarted with the new image",
    )
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    fb_before, fb_after = status_of(before, "filebeat"), status_of(after, "filebeat")
    assert fb_after["restartCount"] == 1
    assert fb_after["imageID"] == images.image_id("filebeat:7.16.3") != fb_before["imageID"]
    assert fb_after["containerID"] != fb_before["containerID"]
    assert fb_after["lastState"]["terminated"]["containerID"] == fb_before["containerID"]
    assert status_of(after, "app") == status_of(before, "app")
    assert status_of(after, "app")["restartCount"] == 0


async def test_a_readiness_gate_holds_the_pod_until_its_condition_is_true(
    kube: KubeClient, namespace: str
) -> None:
    gate = "example.com/load-balancer-attached"
    pod_path = resource_path("v1", "pods", namespace=namespace, name="gated")
    await kube.create(
        resource_path("v1", "pods", namespace=namespace),
        {
            "metadata": {"name": "gated"},
            "spec": {
                "containers": [{"name": "app", "image": "nginx:1.25"}],
                "readinessGates": [{"conditionType": gate}],
            },
        },
    )

    def conditions(p: dict[str, Any]) -> dict[str, str]:
        return {c["type"]: c["status"] for c in p.get("status", {}).get("conditions", [])}

    held = await wait_for(
        lambda: kube.get(pod_path),
        lambda p: conditions(p).get("ContainersReady") == "True",
        timeout=60,
        what="containers ready",
    )
    assert conditions(held)["Ready"] == "False"
    assert gate not in conditions(held)  # the simulator never writes gate conditions
    await kube.patch(
        resource_path("v1", "pods", namespace=namespace, name="gated", subresource="status"),
        {"status": {"conditions": [{"type": gate, "status": "True"}]}},
        content_type=STRATEGIC_MERGE_PATCH,
    )
    ready = await wait_for(lambda: kube.get(pod_path), is_ready, timeout=30, what="pod ready")
    assert conditions(ready)[gate] == "True"


async def test_a_scale_down_removes_pods(kube: KubeClient, namespace: str) -> None:
    deps = resource_path("apps/v1", "deployments", namespace=namespace)
    await kube.create(deps, deployment("scaled", 3, [{"name": "nginx", "image": "nginx:1.25"}]))
    await wait_for(
        lambda: list_pods(kube, namespace, "app=scaled"),
        lambda ps: len(ps) == 3 and all(is_ready(p) for p in ps),
        timeout=60,
        what="3 ready pods",
    )
    await kube.patch(
        resource_path("apps/v1", "deployments", namespace=namespace, name="scaled"),
        {"spec": {"replicas": 1}},
    )
    pods = await wait_for(
        lambda: list_pods(kube, namespace, "app=scaled"),
        lambda ps: len(ps) == 1,
        timeout=60,
        what="scale down to 1 pod",
    )
    assert not pods[0]["metadata"].get("deletionTimestamp")


async def test_a_failing_image_never_becomes_ready(kube: KubeClient, namespace: str) -> None:
    pod_path = resource_path("v1", "pods", namespace=namespace, name="broken")
    await kube.create(
        resource_path("v1", "pods", namespace=namespace),
        {
            "metadata": {"name": "broken"},
            "spec": {"containers": [{"name": "app", "image": "nginx:broken"}]},
        },
    )
    pod = await wait_for(
        lambda: kube.get(pod_path),
        lambda p: (
            status_of(p, "app")["restartCount"] >= 2
            if p.get("status", {}).get("containerStatuses")
            else False
        ),
        timeout=60,
        what="crash loop",
    )
    assert not is_ready(pod)
