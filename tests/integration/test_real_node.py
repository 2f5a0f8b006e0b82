"""The headline claims on a real kubelet and containerd: nothing here is simulated.

Each test pins its pods to the real node (`real-node-0`) and runs locally built images. An
independent watcher checks every pod event, as in the simulated rollout tests: the disruption
budget (which on a real node includes the grace period of a container being killed), no pod
recreated, app containers never restarted.
"""

from __future__ import annotations

from typing import Any

import pytest

from sidecarset.core import pod_contract
from sidecarset.devcluster.realnode import RealNode
from sidecarset.shell.kube.client import KubeClient, resource_path
from tests.integration import kubeobjects as k
from tests.integration import realnode as rn
from tests.integration.conftest import deployment
from tests.integration.waiting import wait_for
from tests.integration.watcher import Pod, sidecar_disrupted, watching

pytestmark = pytest.mark.usefixtures("operator", "real_node")

SIDECAR = "agent"
APP = "app"
ROLLOUT_TIMEOUT = 240


def sidecarset(name: str, namespace: str, sidecar: dict[str, Any], **strategy: Any) -> Any:
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "SidecarSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"inject": SIDECAR}},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "containers": [sidecar],
            "updateStrategy": strategy,
        },
    }


def app_pods(replicas: int, **pod_spec: Any) -> dict[str, Any]:
    return deployment(
        "app", replicas, [rn.agent(APP)], labels={"inject": SIDECAR}, **rn.on_real_node(pod_spec)
    )


def app_never_restarted(p: Pod) -> bool:
    return all(s.get("restartCount", 0) == 0 for n, s in rn.statuses(p).items() if n == APP)


async def rolled(kube: KubeClient, namespace: str, count: int, image: str) -> list[Pod]:
    return await wait_for(
        lambda: k.pods(kube, namespace),
        lambda ps: (
            len(ps) == count
            and all(
                rn.statuses(p)[SIDECAR]["image"] == image
                and rn.statuses(p)[SIDECAR]["ready"]
                and k.is_ready(p)
                for p in ps
            )
        ),
        timeout=ROLLOUT_TIMEOUT,
        what=f"{count} pods running {image} ready",
    )


async def test_injected_sidecars_really_run_in_containerd(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets
) -> None:
    await sidecarsets.create(
        sidecarset("real-inject-" + namespace[-5:], namespace, rn.agent(SIDECAR))
    )
    await k.create(kube, rn.pod("p0", {"inject": SIDECAR}, [rn.agent(APP)]), namespace)
    [p] = await k.ready_pods(kube, namespace, 1, timeout=120)
    assert [c["name"] for c in p["spec"]["containers"]] == [SIDECAR, APP]  # BeforeAppContainer
    assert p["spec"]["nodeName"] == "real-node-0"
    for name, status in rn.statuses(p).items():
        assert status["containerID"].startswith("containerd://"), name
        assert status["imageID"].startswith("sha256:") or "@sha256:" in status["imageID"], name
        assert status["state"].get("running"), name
    # The kubelet serves the container's own output: the agent really ran.
    log = await kube.raw(
        "GET",
        resource_path("v1", "pods", namespace=namespace, name="p0") + "/log",
        params={"container": SIDECAR},
    )
    assert b"testagent" in log


async def test_an_in_place_rollout_of_10_pods_holds_max_unavailable_through_real_restarts(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets
) -> None:
    # The sidecar's shell ignores SIGTERM, like the article's `sh` entrypoints: the kubelet
    # waits the whole grace period (3 s) before the new image starts, and the watcher counts
    # that time against maxUnavailable.
    sidecar = rn.agent(
        SIDECAR,
        command=["/bin/sh", "-c", "trap '' TERM; testagent serve --ready-delay 1s & wait"],
        args=[],
    )
    name = await sidecarsets.create(
        sidecarset("real-roll-" + namespace[-5:], namespace, sidecar, maxUnavailable=3)
    )
    await k.create(kube, app_pods(10, terminationGracePeriodSeconds=3), namespace)
    before = await k.ready_pods(kube, namespace, 10, timeout=180)
    images_before = {p["metadata"]["name"]: rn.statuses(p)[SIDECAR]["imageID"] for p in before}
    invariants = {"app never restarted": app_never_restarted}
    async with watching(
        kube, namespace, sidecar_disrupted(SIDECAR, rn.AGENT_V2), invariants
    ) as watcher:
        await k.set_image(kube, name, rn.AGENT_V2)
        await rolled(kube, namespace, 10, rn.AGENT_V2)
    watcher.assert_nothing_lost(range(1, 4))
    # The kubelet fills lastState from the old container in the runtime, on a later status
    # sync than the one that reports the new container ready: wait for it on every pod.
    after = await wait_for(
        lambda: k.pods(kube, namespace),
        lambda ps: all("terminated" in rn.statuses(p)[SIDECAR].get("lastState", {}) for p in ps),
        timeout=60,
        what="every pod's sidecar lastState.terminated",
    )
    for p in after:
        st = rn.statuses(p)
        assert st[SIDECAR]["restartCount"] == 1
        assert st[SIDECAR]["imageID"] != images_before[p["metadata"]["name"]]
        assert st[APP]["restartCount"] == 0
        # The old container was really killed after the grace period, not asked nicely.
        assert st[SIDECAR]["lastState"]["terminated"]["exitCode"] == 137
    assert {p["metadata"]["uid"] for p in before} == {p["metadata"]["uid"] for p in after}


async def test_a_native_sidecar_is_upgraded_in_place_on_a_real_kubelet(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets
) -> None:
    body = sidecarset("real-native-" + namespace[-5:], namespace, rn.agent("unused"))
    body["spec"]["containers"] = []
    body["spec"]["initContainers"] = [rn.agent(SIDECAR, restartPolicy="Always")]
    name = await sidecarsets.create(body)
    await k.create(kube, app_pods(3), namespace)
    before = await k.ready_pods(kube, namespace, 3, timeout=120)
    for p in before:
        assert [c["name"] for c in p["spec"]["initContainers"]] == [SIDECAR]
    async with watching(
        kube,
        namespace,
        sidecar_disrupted(SIDECAR, rn.AGENT_V2),
        {"app never restarted": app_never_restarted},
    ) as watcher:
        await k.set_image(kube, name, rn.AGENT_V2, field="initContainers")
        after = await rolled(kube, namespace, 3, rn.AGENT_V2)
    watcher.assert_nothing_lost(range(1, 2))
    for p in after:
        assert rn.statuses(p)[SIDECAR]["restartCount"] == 1
        assert rn.statuses(p)[APP]["restartCount"] == 0
    assert {p["metadata"]["uid"] for p in before} == {p["metadata"]["uid"] for p in after}


async def test_a_real_crash_loop_stops_the_rollout_within_budget_as_stalled(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets
) -> None:
    name = await sidecarsets.create(
        sidecarset("real-broken-" + namespace[-5:], namespace, rn.agent(SIDECAR), maxUnavailable=2)
    )
    await k.create(kube, app_pods(6), namespace)
    await k.ready_pods(kube, namespace, 6, timeout=120)
    async with watching(
        kube,
        namespace,
        sidecar_disrupted(SIDECAR, rn.AGENT_BROKEN),
        {"app never restarted": app_never_restarted},
    ) as watcher:
        await k.set_image(kube, name, rn.AGENT_BROKEN)
        ss = await wait_for(
            lambda: k.get_sidecarset(kube, name),
            lambda s: any(
                c["type"] == "Stalled" and c["status"] == "True"
                for c in s.get("status", {}).get("conditions", [])
            ),
            timeout=ROLLOUT_TIMEOUT,
            what="the Stalled condition",
        )
        pods = await k.pods(kube, namespace)
    stalled = next(c for c in ss["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "UpdatedPodsFailing"
    broken = [p for p in pods if k.container(p, SIDECAR)["image"] == rn.AGENT_BROKEN]
    assert len(broken) == 2
    assert all(rn.statuses(p)[SIDECAR]["restartCount"] >= 1 for p in broken)
    watcher.assert_nothing_lost(range(2, 3))


HOT = "proxy"
TWINS = pod_contract.hot_upgrade_names(HOT)


def serving_twins(p: Pod) -> list[str]:
    return [
        n
        for n, s in rn.statuses(p).items()
        if n in TWINS and s.get("ready") and s.get("image") != rn.AGENT_EMPTY
    ]


def hot_upgraded(p: Pod) -> bool:
    images = {c["name"]: c["image"] for c in p["spec"]["containers"]}
    st = rn.statuses(p)
    return (
        sorted(images[t] for t in TWINS) == sorted((rn.AGENT_V2, rn.AGENT_EMPTY))
        and all(st[t]["image"] == images[t] and st[t]["ready"] for t in TWINS)
        and k.is_ready(p)
    )


async def test_a_hot_upgrade_keeps_a_ready_twin_with_real_probes_and_hooks(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets
) -> None:
    proxy = rn.agent(
        HOT,
        upgradeStrategy={"upgradeType": "HotUpgrade", "hotUpgradeEmptyImage": rn.AGENT_EMPTY},
        lifecycle={"postStart": {"exec": {"command": ["testagent", "poststart"]}}},
    )
    body = sidecarset("real-hot-" + namespace[-5:], namespace, proxy, maxUnavailable=2)
    body["spec"]["selector"] = {"matchLabels": {"inject": HOT}}
    name = await sidecarsets.create(body)
    deploy = app_pods(4)
    deploy["spec"]["template"]["metadata"]["labels"]["inject"] = HOT
    await k.create(kube, deploy, namespace)
    before = await k.ready_pods(kube, namespace, 4, timeout=120)
    assert all(serving_twins(p) == [TWINS[0]] for p in before)

    def disrupted(p: Pod) -> bool:
        """Mid hot upgrade (both twins hold a real image) or a twin not yet ready on its
        spec image: what maxUnavailable bounds."""
        images = {c["name"]: c["image"] for c in p["spec"]["containers"]}
        st = rn.statuses(p)
        both_real = all(images.get(t) != rn.AGENT_EMPTY for t in TWINS)
        settling = any(
            st.get(t, {}).get("image") != images.get(t) or not st.get(t, {}).get("ready")
            for t in TWINS
        )
        return both_real or settling or not k.is_ready(p)

    invariants = {
        "a ready twin runs a real image": lambda p: bool(serving_twins(p)),
        "app never restarted": app_never_restarted,
    }
    async with watching(kube, namespace, disrupted, invariants) as watcher:
        await k.set_image(kube, name, rn.AGENT_V2)
        await wait_for(
            watcher.snapshot,
            lambda ps: len(ps) == 4 and all(hot_upgraded(p) for p in ps.values()),
            timeout=ROLLOUT_TIMEOUT,
            what="every pod serving V2 with the other twin on the empty image",
        )
    watcher.assert_nothing_lost(range(1, 3))
    assert {p["metadata"]["uid"] for p in before} == set(watcher.uids.values())


async def test_the_node_runs_pods_on_its_own_bridge_only(
    kube: KubeClient, namespace: str, real_node: RealNode
) -> None:
    await k.create(kube, rn.pod("net", {"app": "net"}, [rn.agent(APP)]), namespace)
    [p] = await k.ready_pods(kube, namespace, 1, timeout=120)
    prefix = real_node.layout.pod_subnet.rsplit(".", 2)[0]
    assert p["status"]["podIP"].startswith(prefix + ".")
    assert p["status"]["hostIP"] == "127.0.0.1"
    assert p["spec"]["nodeName"] == "real-node-0"
