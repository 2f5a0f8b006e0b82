"""The operator as users run it (issue 13): its image, built by `make image`, installed with the
Helm chart on the real node (two replicas on the pod network, the chart's defaults); the
apiserver calls the webhooks at the Service's endpoints (pod IPs on the node's bridge), the
pods reach the apiserver through the node's relay. Then `helm upgrade` to a second image tag
while pods are created at about 20 per second and a SidecarSet rollout runs across it.

The values set are the ones a user of such a cluster sets: the locally built image (never
pulled), where the pods run (a nodeSelector and a toleration: the test cluster's real node is
tainted), and KUBERNETES_SERVICE_HOST/PORT (no kube-proxy routes the `kubernetes` Service).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio

from sidecarset.app import webhooks_config
from sidecarset.devcluster.components import OPERATOR
from sidecarset.devcluster.controlplane import ControlPlane
from sidecarset.devcluster.nodeconfig import NODE_NAME, REAL_NODE_TOLERATION
from sidecarset.devcluster.realnode import RealNode
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import KubeClient, resource_path
from tests.integration import chart
from tests.integration import kubeobjects as k
from tests.integration import realnode as rn
from tests.integration.conftest import OperatorHandle, deployment, temporary_namespace
from tests.integration.test_image import SECOND_TAG, TAG, archive, build
from tests.integration.test_real_node import APP, SIDECAR
from tests.integration.test_real_node import sidecarset as real_node_sidecarset
from tests.integration.waiting import wait_for
from tests.integration.watcher import Pod, sidecar_disrupted, watching

pytestmark = pytest.mark.timeout(1800)  # a cold image build takes minutes

RELEASE = "sidecarset"
NAMESPACE = "sidecarset-chart"
OPERATOR_SELECTOR = "app.kubernetes.io/name=sidecarset"

LOAD_RATE = 20.0  # pod creations per second
LOAD_LIMIT = 3000  # at most this many pods
LOAD_SECONDS = 150.0  # and for at most this long
ROLLOUT_PODS, MAX_UNAVAILABLE = 8, 2
# The agents' readiness probe, tolerant of a busy machine: with the default 1 s timeout and one
# failure allowed, the exec probes of pods the operator never touched failed while 20 pods/s
# were being created (the watcher counted 6 unavailable); a restarted container still starts
# unready until its first success.
PROBE = {**rn.READY_PROBE, "timeoutSeconds": 5, "failureThreshold": 5}


def import_image(node: RealNode, tag: str) -> None:
    done = subprocess.run(
        [
            str(node.layout.binaries / "ctr"),
            "--address",
            str(node.layout.socket),
            "-n",
            "k8s.io",
            "images",
            "import",
            str(archive(tag)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@dataclass
class Release:
    plane: ControlPlane
    values: dict[str, Any]

    def helm(self, verb: str, *extra: str, **values: Any) -> str:
        args = [verb, RELEASE, str(chart.CHART), "--namespace", NAMESPACE]
        for key, value in {**self.values, **values}.items():
            args += ["--set-json", f"{key}={json.dumps(value)}"]
        return chart.helm(*args, *extra, "--kubeconfig", str(self.plane.kubeconfig))


def user_values(node: RealNode) -> dict[str, Any]:
    host, port = node.api_address()
    return {
        "image.tag": TAG,
        "image.pullPolicy": "Never",
        "nodeSelector": {"kubernetes.io/hostname": NODE_NAME},
        "tolerations": [REAL_NODE_TOLERATION],
        "env": [
            {"name": "KUBERNETES_SERVICE_HOST", "value": host},
            {"name": "KUBERNETES_SERVICE_PORT", "value": str(port)},
        ],
    }


async def delete_webhook_configurations(kube: KubeClient) -> None:
    for plural, name in (
        ("mutatingwebhookconfigurations", webhooks_config.MUTATING_NAME),
        ("validatingwebhookconfigurations", webhooks_config.VALIDATING_NAME),
    ):
        with contextlib.suppress(errors.NotFound):
            await kube.delete(resource_path("admissionregistration.k8s.io/v1", plural, name=name))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def release(
    control_plane: ControlPlane, real_node: RealNode, operator: OperatorHandle, kube: KubeClient
) -> AsyncIterator[Release]:
    """The chart installed on the real node in place of the session's operator process.

    Both tags are built by `make image` (seconds when its layers are cached) and imported."""
    for tag in (TAG, SECOND_TAG):
        await asyncio.to_thread(build, tag)
        await asyncio.to_thread(import_image, real_node, tag)
    await asyncio.to_thread(control_plane.down, names=[OPERATOR], progress=lambda _m: None)
    await delete_webhook_configurations(kube)  # the process registered them with a URL
    installed = Release(control_plane, user_values(real_node))
    try:
        await asyncio.to_thread(
            installed.helm,
            "install",
            "--create-namespace",
            # The session's operator process installed the CRD and pointed its conversion
            # webhook at itself by URL; the operator pods point it at their Service at start.
            "--skip-crds",
            "--wait",
            "--timeout",
            "240s",
        )
        yield installed
    finally:
        await asyncio.to_thread(
            chart.helm,
            "uninstall",
            RELEASE,
            "--namespace",
            NAMESPACE,
            "--wait",
            "--kubeconfig",
            str(control_plane.kubeconfig),
        )
        with contextlib.suppress(errors.NotFound):
            await kube.delete(resource_path("v1", "namespaces", name=NAMESPACE))
        await asyncio.to_thread(operator.start)


async def operator_pods(kube: KubeClient) -> list[Pod]:
    return await k.pods(kube, NAMESPACE, OPERATOR_SELECTOR)


def sidecarset(
    name: str, namespace: str, *, max_unavailable: int = MAX_UNAVAILABLE
) -> dict[str, Any]:
    # The sidecar's shell ignores SIGTERM: each in-place update waits the 3 s grace period,
    # so the rollout lasts long enough to span the operator's upgrade.
    sidecar = rn.agent(
        SIDECAR,
        command=["/bin/sh", "-c", "trap '' TERM; testagent serve --ready-delay 1s & wait"],
        args=[],
        readinessProbe=PROBE,
    )
    body: dict[str, Any] = real_node_sidecarset(
        name, namespace, sidecar, maxUnavailable=max_unavailable
    )
    return body


def app_pods(replicas: int) -> dict[str, Any]:
    return deployment(
        APP,
        replicas,
        [rn.agent(APP, readinessProbe=PROBE)],
        labels={"inject": SIDECAR},
        **rn.on_real_node({"terminationGracePeriodSeconds": 3}),
    )


async def test_the_chart_runs_the_operator_as_pods_that_inject_through_its_service(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets, release: Release
) -> None:
    pods = await operator_pods(kube)
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["nodeName"] == NODE_NAME
        assert k.is_ready(pod)
        assert pod["status"]["podIP"].startswith("10.244.")  # the pod network, not the host's
    registered = await kube.get(
        resource_path(
            "admissionregistration.k8s.io/v1",
            "mutatingwebhookconfigurations",
            name=webhooks_config.MUTATING_NAME,
        )
    )
    assert registered["webhooks"][0]["clientConfig"]["service"]["namespace"] == NAMESPACE
    await sidecarsets.create(sidecarset(f"chart-{namespace[-5:]}", namespace))
    await k.create(kube, rn.pod("p0", {"inject": SIDECAR}, [rn.agent(APP)]), namespace)
    [p] = await k.ready_pods(kube, namespace, 1, timeout=120)
    assert [c["name"] for c in p["spec"]["containers"]] == [SIDECAR, APP]


@dataclass
class Load:
    """Creates pods at `LOAD_RATE` per second until stopped (bounded in count and time).

    Each is bound to a node that does not exist (`nodeName`): admitted through the webhook like
    any pod, never run. A creation the apiserver refuses counts as refused, with its reason.
    """

    kube: KubeClient
    namespace: str
    created: int = 0
    refused: list[str] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        pending: set[asyncio.Task[None]] = set()
        started = time.monotonic()
        for n in range(LOAD_LIMIT):
            if stop.is_set() or time.monotonic() - started > LOAD_SECONDS:
                break
            task = asyncio.create_task(self._create(n))
            pending.add(task)
            task.add_done_callback(pending.discard)
            next_at = started + (n + 1) / LOAD_RATE
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
        if pending:
            await asyncio.wait(pending)

    async def _create(self, n: int) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"load-{n}"},
            "spec": {
                "nodeName": "no-such-node",
                "containers": [rn.container("app", rn.AGENT_V1)],
            },
        }
        try:
            await k.create(self.kube, body, self.namespace)
            self.created += 1
        except errors.ApiError as err:
            self.refused.append(str(err)[:300])

    @property
    def total(self) -> int:
        return self.created + len(self.refused)


async def test_helm_upgrade_under_pod_creation_load_refuses_none_and_the_rollout_holds(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    sidecarsets: k.SidecarSets,
    release: Release,
) -> None:
    name = await sidecarsets.create(sidecarset(f"upgrade-{namespace[-5:]}", namespace))
    await k.create(kube, app_pods(ROLLOUT_PODS), namespace)
    await k.ready_pods(kube, namespace, ROLLOUT_PODS, timeout=240)
    old_pods = {p["metadata"]["name"] for p in await operator_pods(kube)}
    invariants = {
        "app never restarted": lambda p: all(
            s.get("restartCount", 0) == 0 for n, s in rn.statuses(p).items() if n == APP
        )
    }
    load_ns = f"chart-load-{uuid.uuid4().hex[:5]}"
    client = await KubeClient.from_kubeconfig(str(control_plane.kubeconfig), qps=0)
    async with client, temporary_namespace(client, load_ns) as load_namespace:
        load = Load(client, load_namespace)
        stop = asyncio.Event()
        async with watching(
            kube, namespace, sidecar_disrupted(SIDECAR, rn.AGENT_V2), invariants
        ) as watcher:
            creating = asyncio.create_task(load.run(stop))
            started = time.monotonic()
            await asyncio.sleep(2)
            upgrading = asyncio.create_task(
                asyncio.to_thread(
                    release.helm,
                    "upgrade",
                    "--wait",
                    "--timeout",
                    "240s",
                    **{"image.tag": SECOND_TAG},
                )
            )
            # The rollout starts when the first old replica begins to stop: the controller's
            # Lease changes hands while it runs.
            await wait_for(
                lambda: kube.get(resource_path("v1", "pods", namespace=NAMESPACE)),
                lambda body: any(
                    p["metadata"]["name"] in old_pods and p["metadata"].get("deletionTimestamp")
                    for p in body["items"]
                ),
                timeout=180,
                what="an old operator replica terminating",
            )
            await k.set_image(kube, name, rn.AGENT_V2)
            await upgrading
            upgraded = time.monotonic() - started
            rolled_at_upgrade = sum(
                1 for p in watcher.pods.values() if rn.statuses(p)[SIDECAR]["image"] == rn.AGENT_V2
            )
            new = await wait_for(
                lambda: operator_pods(kube),
                lambda ps: (
                    len(ps) == 2
                    and all(k.is_ready(p) for p in ps)
                    and all(p["spec"]["containers"][0]["image"].endswith(SECOND_TAG) for p in ps)
                ),
                timeout=120,
                what="both operator pods on the second tag, ready",
            )
            # The old replicas serve through their preStop sleep and drain: keep creating
            # until they are gone.
            await wait_for(
                lambda: kube.get(resource_path("v1", "pods", namespace=NAMESPACE)),
                lambda body: not old_pods & {p["metadata"]["name"] for p in body["items"]},
                timeout=120,
                what="the old operator replicas gone",
            )
            replaced = time.monotonic() - started
            await asyncio.sleep(2)
            stop.set()
            await creating
            await wait_for(
                lambda: k.pods(kube, namespace),
                lambda ps: (
                    len(ps) == ROLLOUT_PODS
                    and all(
                        rn.statuses(p)[SIDECAR]["image"] == rn.AGENT_V2
                        and rn.statuses(p)[SIDECAR]["ready"]
                        and k.is_ready(p)
                        for p in ps
                    )
                ),
                timeout=240,
                what=f"{ROLLOUT_PODS} pods rolled to {rn.AGENT_V2}",
            )
        rollout_done = time.monotonic() - started
    print(
        f"\nhelm upgrade {TAG} -> {SECOND_TAG} (2 replicas, pod network, default drainSeconds): "
        f"returned at {upgraded:.0f}s, old replicas gone at {replaced:.0f}s; "
        f"{LOAD_RATE:g} pod creations/s: {len(load.refused)} refused of {load.total}; "
        f"rollout of {ROLLOUT_PODS} pods, started as the first old replica stopped: "
        f"{rolled_at_upgrade} rolled when `helm upgrade` returned, all at {rollout_done:.0f}s, "
        f"at most {watcher.max_disrupted} unavailable (maxUnavailable {MAX_UNAVAILABLE})"
    )
    assert load.refused == [], load.refused[:5]
    assert load.total >= LOAD_RATE * replaced * 0.8  # the load really ran through the upgrade
    assert not old_pods & {p["metadata"]["name"] for p in new}
    watcher.assert_nothing_lost(range(1, MAX_UNAVAILABLE + 1))


async def test_with_its_own_process_the_webhook_injects_and_the_controller_rolls(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets, release: Release
) -> None:
    """`helm upgrade --set webhook.ownProcess=true`: every operator pod runs a `webhook` and a
    `controller` container; pods are injected through the Service and a new sidecar image is
    rolled in place by the controller containers."""
    await asyncio.to_thread(
        release.helm, "upgrade", "--wait", "--timeout", "240s", **{"webhook.ownProcess": True}
    )
    pods = await wait_for(
        lambda: operator_pods(kube),
        lambda ps: len(ps) == 2 and all(len(p["spec"]["containers"]) == 2 for p in ps),
        timeout=120,
        what="both operator pods split into two containers",
    )
    for pod in pods:
        assert k.is_ready(pod)
        assert [c["name"] for c in pod["spec"]["containers"]] == ["webhook", "controller"]
        assert all(s["ready"] for s in pod["status"]["containerStatuses"])
    name = await sidecarsets.create(
        sidecarset(f"split-{namespace[-5:]}", namespace, max_unavailable=1)
    )
    await k.create(kube, app_pods(2), namespace)
    injected = await k.ready_pods(kube, namespace, 2, timeout=180)
    for pod in injected:
        assert [c["name"] for c in pod["spec"]["containers"]] == [SIDECAR, APP]
    await k.set_image(kube, name, rn.AGENT_V2)
    rolled = await wait_for(
        lambda: k.pods(kube, namespace),
        lambda ps: (
            len(ps) == 2
            and all(rn.statuses(p)[SIDECAR]["image"] == rn.AGENT_V2 and k.is_ready(p) for p in ps)
        ),
        timeout=180,
        what=f"2 pods rolled to {rn.AGENT_V2} by the controller containers",
    )
    assert {p["metadata"]["uid"] for p in rolled} == {p["metadata"]["uid"] for p in injected}
    for pod in rolled:
        assert rn.statuses(pod)[APP].get("restartCount", 0) == 0
