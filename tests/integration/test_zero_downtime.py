"""Zero-downtime sidecar upgrades on the real control plane (issue 5).

Hot upgrade (twin containers `S-1`/`S-2`) and native sidecars (init containers with
`restartPolicy: Always`) rolled in place. An independent watcher checks every pod event: a hot
sidecar always has a ready twin running a real image, app containers never restart, no pod is
recreated, and the rollout never has more than `maxUnavailable` pods disrupted at once.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from sidecarset.core import pod_contract
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import KubeClient
from tests.integration import kubeobjects as k
from tests.integration.conftest import OperatorHandle, deployment
from tests.integration.waiting import wait_for
from tests.integration.watcher import Pod, watching

pytestmark = pytest.mark.usefixtures("operator")

PROXY = "proxy"
TWINS = pod_contract.hot_upgrade_names(PROXY)
V1 = "docker.io/openkruise/hotupgrade-sample:sidecarv1"
V2 = "docker.io/openkruise/hotupgrade-sample:sidecarv2"
EMPTY = "docker.io/openkruise/hotupgrade-sample:empty"
BROKEN = "docker.io/openkruise/hotupgrade-sample:broken"  # the simulator crash-loops it

AGENT = "log-agent"
AGENT_V1 = "docker.io/fluent/fluent-bit:3.0.7"
AGENT_V2 = "docker.io/fluent/fluent-bit:3.1.4"

APP = "app"
APP_IMAGE = "nginx:1.25"
ROLLOUT_TIMEOUT = 180


# --- objects -----------------------------------------------------------------------------------


def hot_sidecarset(name: str, namespace: str, **strategy: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "SidecarSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"inject": PROXY}},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "containers": [
                {
                    "name": PROXY,
                    "image": V1,
                    "upgradeStrategy": {"upgradeType": "HotUpgrade", "hotUpgradeEmptyImage": EMPTY},
                }
            ],
            "updateStrategy": strategy,
        },
    }


def native_sidecarset(name: str, namespace: str, **strategy: Any) -> dict[str, Any]:
    """A native sidecar and no other container; `updateStrategy.type` left to its default."""
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "SidecarSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"inject": AGENT}},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "initContainers": [{"name": AGENT, "image": AGENT_V1, "restartPolicy": "Always"}],
            "updateStrategy": strategy,
        },
    }


def pod(name: str, inject: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"inject": inject, **(labels or {})}},
        "spec": {"containers": [{"name": APP, "image": APP_IMAGE}]},
    }


def app_deployment(inject: str, replicas: int) -> dict[str, Any]:
    return deployment(
        "app", replicas, [{"name": APP, "image": APP_IMAGE}], labels={"inject": inject}
    )


async def status_counts(kube: KubeClient, name: str, expected: int) -> dict[str, Any]:
    """The SidecarSet status once matched, updated and updatedReady all equal `expected`."""
    ss = await wait_for(
        lambda: k.get_sidecarset(kube, name),
        lambda s: all(
            s.get("status", {}).get(f) == expected
            for f in ("matchedPods", "updatedPods", "updatedReadyPods", "readyPods")
        ),
        timeout=60,
        what=f"status counting {expected} updated and ready pods",
    )
    return dict(ss["status"])


# --- reading pods ------------------------------------------------------------------------------


def spec_images(p: Pod) -> dict[str, str]:
    spec = p["spec"]
    return {
        c["name"]: c["image"] for c in spec.get("containers", []) + spec.get("initContainers", [])
    }


def statuses(p: Pod) -> dict[str, dict[str, Any]]:
    st = p.get("status", {})
    return {
        s["name"]: s for s in st.get("containerStatuses", []) + st.get("initContainerStatuses", [])
    }


def serving_twins(p: Pod) -> list[str]:
    """Twins the kubelet reports ready and running a real (non-empty) image."""
    return [
        name
        for name, s in statuses(p).items()
        if name in TWINS and s.get("ready") and s.get("image") != EMPTY
    ]


def has_a_serving_twin(p: Pod) -> bool:
    return bool(serving_twins(p))


def app_never_restarted(p: Pod) -> bool:
    return all(s.get("restartCount", 0) == 0 for n, s in statuses(p).items() if n == APP)


def hot_upgrade_disrupted(p: Pod) -> bool:
    """Mid hot upgrade (both twins hold a real image), a twin not yet running its spec image
    ready, or the pod not Ready: what maxUnavailable bounds."""
    images, st = spec_images(p), statuses(p)
    both_real = all(images.get(t) not in (None, EMPTY) for t in TWINS)
    settling = any(
        st.get(t, {}).get("image") != images.get(t) or not st.get(t, {}).get("ready") for t in TWINS
    )
    return both_real or settling or not k.is_ready(p)


def native_disrupted(p: Pod) -> bool:
    """The native sidecar not running its spec image ready, or the pod not Ready."""
    st = statuses(p).get(AGENT, {})
    return st.get("image") != spec_images(p).get(AGENT) or not st.get("ready") or not k.is_ready(p)


@dataclass
class ReadinessLog:
    """Wraps a `disrupted` predicate to also time every pod's Ready condition as the watcher
    sees it (event arrival times, so durations are upper bounds). Measures; asserts nothing."""

    disrupted: Callable[[Pod], bool]
    started: float = field(default_factory=time.monotonic)
    not_ready_since: dict[str, float] = field(default_factory=dict)
    dips: list[float] = field(default_factory=list)
    """Seconds each Ready=False spell lasted, once it ended."""

    def __call__(self, p: Pod) -> bool:
        name, now = p["metadata"]["name"], time.monotonic()
        if not k.is_ready(p):
            self.not_ready_since.setdefault(name, now)
        elif name in self.not_ready_since:
            self.dips.append(now - self.not_ready_since.pop(name))
        return self.disrupted(p)

    def record(self, record_property: Callable[[str, object], None], watcher: Any) -> None:
        record_property("rollout_seconds", round(time.monotonic() - self.started, 1))
        record_property("pod_events", watcher.events)
        record_property("max_disrupted", watcher.max_disrupted)
        record_property("pod_not_ready_spells", len(self.dips))
        record_property("longest_not_ready_seconds", round(max(self.dips, default=0.0), 2))


def twin_images(p: Pod) -> tuple[str, str]:
    images = spec_images(p)
    return images[TWINS[0]], images[TWINS[1]]


def hot_upgraded(p: Pod) -> bool:
    """One twin runs V2 ready, the other the empty image (ready), and the pod is Ready."""
    st = statuses(p)
    return (
        sorted(twin_images(p)) == sorted((V2, EMPTY))
        and all(st.get(t, {}).get("image") == spec_images(p)[t] for t in TWINS)
        and all(st.get(t, {}).get("ready") for t in TWINS)
        and k.is_ready(p)
    )


def untouched(p: Pod) -> bool:
    annotations = p["metadata"].get("annotations", {})
    working = json.loads(annotations.get(pod_contract.WORKING_HOT_UPGRADE_ANNOTATION, "{}"))
    return twin_images(p) == (V1, EMPTY) and working == {PROXY: TWINS[0]}


def env_value_from(container: dict[str, Any], name: str) -> str:
    [var] = [e for e in container.get("env", []) if e["name"] == name]
    return str(var["valueFrom"]["fieldRef"]["fieldPath"])


# --- hot upgrade -------------------------------------------------------------------------------


async def test_a_hot_upgrade_keeps_a_ready_twin_serving_in_every_pod_at_every_moment(
    kube: KubeClient,
    namespace: str,
    sidecarsets: k.SidecarSets,
    record_property: Callable[[str, object], None],
) -> None:
    name = await sidecarsets.create(
        hot_sidecarset("hot-" + namespace[-5:], namespace, maxUnavailable=3)
    )
    await k.create(kube, app_deployment(PROXY, 10), namespace)
    before = await k.ready_pods(kube, namespace, 10)

    for p in before:
        annotations = p["metadata"]["annotations"]
        assert twin_images(p) == (V1, EMPTY)
        assert json.loads(annotations[pod_contract.WORKING_HOT_UPGRADE_ANNOTATION]) == {
            PROXY: TWINS[0]
        }
        assert {key: annotations[key] for key in annotations if "sidecarset.kruise.io/" in key} == {
            pod_contract.version_annotation(TWINS[0]): "1",
            pod_contract.version_alt_annotation(TWINS[0]): "0",
            pod_contract.version_annotation(TWINS[1]): "0",
            pod_contract.version_alt_annotation(TWINS[1]): "1",
        }
        hashes = pod_contract.read_upgrade_specs(annotations, pod_contract.HASH_ANNOTATION)
        assert hashes[name].sidecar_list == (PROXY,)
        for twin in TWINS:
            body = k.container(p, twin)
            assert env_value_from(
                body, pod_contract.VERSION_ENV
            ) == pod_contract.version_field_path(twin)
            assert env_value_from(
                body, pod_contract.VERSION_ALT_ENV
            ) == pod_contract.version_alt_field_path(twin)
        assert serving_twins(p) == [TWINS[0]]

    invariants = {"a ready twin runs a real image": has_a_serving_twin, "app": app_never_restarted}
    readiness = ReadinessLog(hot_upgrade_disrupted)
    async with watching(kube, namespace, readiness, invariants) as watcher:
        await k.set_image(kube, name, V2)
        await wait_for(
            watcher.snapshot,
            lambda ps: len(ps) == 10 and all(hot_upgraded(p) for p in ps.values()),
            timeout=ROLLOUT_TIMEOUT,
            what="every pod on V2 with the old twin reset to the empty image",
        )
    readiness.record(record_property, watcher)

    watcher.assert_nothing_lost(range(1, 4))
    assert {p["metadata"]["uid"] for p in before} == set(watcher.uids.values())

    ss = await k.get_sidecarset(kube, name)
    version = ss["metadata"]["resourceVersion"]
    for p in await k.pods(kube, namespace):
        annotations = p["metadata"]["annotations"]
        [new] = [t for t in TWINS if spec_images(p)[t] == V2]
        [old] = [t for t in TWINS if t != new]
        assert spec_images(p)[old] == EMPTY
        assert json.loads(annotations[pod_contract.WORKING_HOT_UPGRADE_ANNOTATION]) == {PROXY: new}
        assert annotations[pod_contract.version_annotation(old)] == "0"
        assert annotations[pod_contract.version_alt_annotation(new)] == "0"
        new_version = annotations[pod_contract.version_annotation(new)]
        assert new_version == annotations[pod_contract.version_alt_annotation(old)]
        assert 1 < int(new_version) <= int(version)
        assert statuses(p)[APP]["restartCount"] == 0
        assert statuses(p)[new]["image"] == V2
        assert statuses(p)[new]["ready"]

    counts = await status_counts(kube, name, 10)
    assert counts["updatedPods"] == counts["matchedPods"] == counts["updatedReadyPods"] == 10


async def test_a_failed_hot_upgrade_keeps_the_old_twin_serving_and_rolls_back(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets
) -> None:
    name = await sidecarsets.create(
        hot_sidecarset("hot-broken-" + namespace[-5:], namespace, maxUnavailable=2)
    )
    for i in range(4):
        await k.create(kube, pod(f"p{i}", PROXY), namespace)
    before = await k.ready_pods(kube, namespace, 4)
    invariants = {"a ready twin runs a real image": has_a_serving_twin, "app": app_never_restarted}
    async with watching(kube, namespace, hot_upgrade_disrupted, invariants) as watcher:
        await k.set_image(kube, name, BROKEN)
        failing = await wait_for(
            lambda: k.pods(kube, namespace),
            lambda ps: (
                sum(
                    statuses(p)[TWINS[1]].get("restartCount", 0) >= 2
                    and spec_images(p)[TWINS[1]] == BROKEN
                    for p in ps
                )
                == 2
            ),
            timeout=ROLLOUT_TIMEOUT,
            what="two pods crash-looping the broken twin",
        )
        assert sum(untouched(p) for p in failing) == 2  # maxUnavailable 2 stops the rest
        await k.set_image(kube, name, V1)
        await wait_for(
            watcher.snapshot,
            lambda ps: len(ps) == 4 and all(untouched(p) and k.is_ready(p) for p in ps.values()),
            timeout=ROLLOUT_TIMEOUT,
            what="every pod back on V1 in the first twin, the second twin empty",
        )
    watcher.assert_nothing_lost(range(2, 3))
    assert {p["metadata"]["uid"] for p in before} == set(watcher.uids.values())
    await status_counts(kube, name, 4)


async def test_a_hot_upgrade_survives_the_operator_being_killed_mid_flight(
    kube: KubeClient,
    namespace: str,
    sidecarsets: k.SidecarSets,
    operator: OperatorHandle,
) -> None:
    name = await sidecarsets.create(
        hot_sidecarset("hot-kill-" + namespace[-5:], namespace, maxUnavailable=2)
    )
    await k.create(kube, app_deployment(PROXY, 6), namespace)
    before = await k.ready_pods(kube, namespace, 6)
    invariants = {"a ready twin runs a real image": has_a_serving_twin, "app": app_never_restarted}
    async with watching(kube, namespace, hot_upgrade_disrupted, invariants) as watcher:
        await k.set_image(kube, name, V2)
        await wait_for(
            watcher.snapshot,
            lambda ps: any(V2 in twin_images(p) for p in ps.values()),
            timeout=60,
            what="the hot upgrade to start",
        )
        operator.kill()
        assert not operator.running()
        operator.start()
        await wait_for(
            watcher.snapshot,
            lambda ps: len(ps) == 6 and all(hot_upgraded(p) for p in ps.values()),
            timeout=ROLLOUT_TIMEOUT,
            what="every pod hot-upgraded after the restart",
        )
    watcher.assert_nothing_lost(range(1, 3))
    assert {p["metadata"]["uid"] for p in before} == set(watcher.uids.values())
    await status_counts(kube, name, 6)


async def test_a_native_sidecar_can_be_hot_upgraded_too(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets
) -> None:
    body = hot_sidecarset("hot-native-" + namespace[-5:], namespace, maxUnavailable=2)
    body["spec"]["initContainers"] = [
        {**body["spec"].pop("containers")[0], "restartPolicy": "Always"}
    ]
    name = await sidecarsets.create(body)
    for i in range(4):
        await k.create(kube, pod(f"p{i}", PROXY), namespace)
    before = await k.ready_pods(kube, namespace, 4)
    for p in before:
        assert [c["name"] for c in p["spec"]["initContainers"]] == list(TWINS)
        assert untouched(p)
    invariants = {"a ready twin runs a real image": has_a_serving_twin, "app": app_never_restarted}
    async with watching(kube, namespace, hot_upgrade_disrupted, invariants) as watcher:
        await k.set_image(kube, name, V2, field="initContainers")
        await wait_for(
            watcher.snapshot,
            lambda ps: len(ps) == 4 and all(hot_upgraded(p) for p in ps.values()),
            timeout=ROLLOUT_TIMEOUT,
            what="every pod on V2 with the old native twin reset to the empty image",
        )
    watcher.assert_nothing_lost(range(1, 3))
    assert {p["metadata"]["uid"] for p in before} == set(watcher.uids.values())
    await status_counts(kube, name, 4)


async def test_a_paused_hot_upgrade_touches_no_twin_until_resumed(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets
) -> None:
    name = await sidecarsets.create(
        hot_sidecarset("hot-paused-" + namespace[-5:], namespace, maxUnavailable=3, paused=True)
    )
    for i in range(3):
        await k.create(kube, pod(f"p{i}", PROXY), namespace)
    await k.ready_pods(kube, namespace, 3)
    await k.set_image(kube, name, V2)
    ss = await wait_for(
        lambda: k.get_sidecarset(kube, name),
        lambda s: (
            s.get("status", {}).get("observedGeneration") == s["metadata"]["generation"]
            and any(c["reason"] == "Paused" for c in s["status"].get("conditions", []))
        ),
        timeout=60,
        what="the paused status",
    )
    assert ss["status"]["updatedPods"] == 0
    assert all(untouched(p) for p in await k.pods(kube, namespace))
    await k.patch_strategy(kube, name, paused=False)
    await wait_for(
        lambda: k.pods(kube, namespace),
        lambda ps: all(hot_upgraded(p) for p in ps),
        timeout=ROLLOUT_TIMEOUT,
        what="all pods hot-upgraded after resuming",
    )


async def test_a_hot_upgrade_leaves_pods_outside_the_canary_selector_alone(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets
) -> None:
    name = await sidecarsets.create(
        hot_sidecarset(
            "hot-canary-" + namespace[-5:],
            namespace,
            maxUnavailable=5,
            selector={"matchLabels": {"deploy-env": "canary"}},
        )
    )
    for p in (
        pod("c1", PROXY, {"deploy-env": "canary"}),
        pod("c2", PROXY, {"deploy-env": "canary"}),
        pod("s1", PROXY),
        pod("s2", PROXY, {"deploy-env": "stable"}),
    ):
        await k.create(kube, p, namespace)
    await k.ready_pods(kube, namespace, 4)
    await k.set_image(kube, name, V2)
    await wait_for(
        lambda: k.get_sidecarset(kube, name),
        lambda s: s.get("status", {}).get("updatedReadyPods") == 2,
        timeout=ROLLOUT_TIMEOUT,
        what="status counting 2 updated ready pods",
    )
    pods = await wait_for(
        lambda: k.pods(kube, namespace),
        lambda ps: sum(hot_upgraded(p) for p in ps) == 2,
        timeout=60,
        what="both canaries hot-upgraded",
    )
    assert {p["metadata"]["name"] for p in pods if hot_upgraded(p)} == {"c1", "c2"}
    assert {p["metadata"]["name"] for p in pods if untouched(p)} == {"s1", "s2"}


async def test_a_hot_upgrade_partition_keeps_the_last_pods_on_the_old_twin(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets
) -> None:
    name = await sidecarsets.create(
        hot_sidecarset(
            "hot-part-" + namespace[-5:],
            namespace,
            maxUnavailable=5,
            partition=2,
            priorityStrategy={"orderPriority": [{"orderedKey": "order"}]},
        )
    )
    for i in range(1, 6):
        await k.create(kube, pod(f"p{i}", PROXY, {"order": f"o-{i}"}), namespace)
    await k.ready_pods(kube, namespace, 5)
    await k.set_image(kube, name, V2)
    await wait_for(
        lambda: k.get_sidecarset(kube, name),
        lambda s: s.get("status", {}).get("updatedReadyPods") == 3,
        timeout=ROLLOUT_TIMEOUT,
        what="status counting 3 updated ready pods",
    )
    pods = await wait_for(
        lambda: k.pods(kube, namespace),
        lambda ps: sum(hot_upgraded(p) for p in ps) == 3,
        timeout=60,
        what="three pods hot-upgraded",
    )
    # Higher order first: p5, p4 and p3 are updated; the partition keeps p2 and p1.
    assert {p["metadata"]["name"] for p in pods if hot_upgraded(p)} == {"p3", "p4", "p5"}
    assert {p["metadata"]["name"] for p in pods if untouched(p)} == {"p1", "p2"}
    await k.patch_strategy(kube, name, partition=0)
    await wait_for(
        lambda: k.pods(kube, namespace),
        lambda ps: all(hot_upgraded(p) for p in ps),
        timeout=ROLLOUT_TIMEOUT,
        what="all pods hot-upgraded once the partition is lifted",
    )


def _hot_container(body: dict[str, Any]) -> dict[str, Any]:
    return dict(body["spec"]["containers"][0])


def _hot_native(body: dict[str, Any]) -> dict[str, Any]:
    container = body["spec"].pop("containers")[0]
    body["spec"]["initContainers"] = [{**container, "restartPolicy": "Always"}]
    return dict(body["spec"]["initContainers"][0])


@pytest.mark.parametrize(
    ("place", "empty_image"),
    [
        pytest.param(_hot_container, None, id="missing"),
        pytest.param(_hot_container, "", id="empty"),
        pytest.param(_hot_container, V1, id="equal-to-image"),
        pytest.param(_hot_native, None, id="native-missing"),
    ],
)
async def test_a_hot_upgrade_without_a_distinct_empty_image_is_rejected_at_admission(
    kube: KubeClient,
    namespace: str,
    place: Callable[[dict[str, Any]], dict[str, Any]],
    empty_image: str | None,
) -> None:
    body = copy.deepcopy(hot_sidecarset("hot-invalid-" + namespace[-5:], namespace))
    container = place(body)
    strategy: dict[str, str] = {"upgradeType": "HotUpgrade"}
    if empty_image is not None:
        strategy["hotUpgradeEmptyImage"] = empty_image
    container["upgradeStrategy"] = strategy
    field = "containers" if body["spec"].get("containers") else "initContainers"
    body["spec"][field] = [container]
    with pytest.raises(errors.ApiError) as raised:
        await k.create(kube, body)
    assert raised.value.status in (400, 403, 422), raised.value
    path = f"spec.{field}[0].upgradeStrategy.hotUpgradeEmptyImage"
    assert path in raised.value.message, raised.value.message


# --- native sidecars ---------------------------------------------------------------------------


async def test_native_sidecars_roll_in_place_within_max_unavailable(
    kube: KubeClient,
    namespace: str,
    sidecarsets: k.SidecarSets,
    record_property: Callable[[str, object], None],
) -> None:
    name = await sidecarsets.create(
        native_sidecarset("native-" + namespace[-5:], namespace, maxUnavailable=2)
    )
    ss = await k.get_sidecarset(kube, name)
    assert ss["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    await k.create(kube, app_deployment(AGENT, 10), namespace)
    before = await k.ready_pods(kube, namespace, 10)
    for p in before:
        [agent] = p["spec"]["initContainers"]
        assert (agent["name"], agent["image"], agent["restartPolicy"]) == (
            AGENT,
            AGENT_V1,
            "Always",
        )
        assert statuses(p)[AGENT]["ready"]
        assert statuses(p)[AGENT]["restartCount"] == 0
    old_ids = {p["metadata"]["uid"]: statuses(p)[AGENT]["imageID"] for p in before}

    readiness = ReadinessLog(native_disrupted)
    async with watching(kube, namespace, readiness, {"app": app_never_restarted}) as watcher:
        await k.set_image(kube, name, AGENT_V2, field="initContainers")
        await wait_for(
            watcher.snapshot,
            lambda ps: (
                len(ps) == 10
                and all(
                    spec_images(p)[AGENT] == AGENT_V2 and not native_disrupted(p)
                    for p in ps.values()
                )
            ),
            timeout=ROLLOUT_TIMEOUT,
            what="every pod running the new native sidecar",
        )

    readiness.record(record_property, watcher)

    watcher.assert_nothing_lost(range(1, 3))
    after = await k.pods(kube, namespace)
    assert {p["metadata"]["uid"] for p in after} == set(old_ids)
    for p in after:
        agent = statuses(p)[AGENT]
        assert agent["image"] == AGENT_V2
        assert agent["restartCount"] == 1
        assert agent["imageID"] != old_ids[p["metadata"]["uid"]]
        assert statuses(p)[APP]["restartCount"] == 0
    await status_counts(kube, name, 10)
