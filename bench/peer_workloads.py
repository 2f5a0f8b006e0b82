"""The workloads of the peer comparison, written once for any `operators.Operator`.

- `PodCreation`: pods created one at a time through the apiserver, in batches that alternate
  (ABBA) between the operator's MutatingWebhookConfiguration deleted ("none") and registered;
  while registered, pods no SidecarSet selects ("no_match": the webhook is called and changes
  nothing), pods one SidecarSet selects ("inject1") and pods three of 100 select ("inject3");
  while deleted, also the inject3 pod as this operator's webhook returns it, sidecars already
  in ("preinjected": what the apiserver alone spends on a pod three sidecars larger, the part
  of inject3's added latency no webhook can remove). The pods carry a scheduling gate, as in
  `webhook_e2e`, whose helpers this reuses.
- `rollout`: an in-place sidecar rollout (maxUnavailable 10 %) over pods on simulated nodes,
  with `rollout`'s pod creation and progress loop; wall time, most pods unavailable at once,
  the operator's CPU seconds and peak RSS (from /proc), and its API writes per updated pod by its
  own client-side counter, with the apiserver's count of every client's writes beside it.
  With `during=True` the image is then rolled back, unmeasured otherwise, while pods that 3 of
  the 100 admission SidecarSets select are created one every 0.1 s in another namespace: the
  pod webhook's latency while a rollout saturates the write budget (kept apart from the measured
  rollout, whose writes and CPU those creations would otherwise inflate: each changes 3
  SidecarSets' counts). Every other creation is a baseline pod instead, one no webhook is called
  for: the apiserver's own latency under that same load, so that a slower webhook and a busier
  machine (a faster rollback restarts more containers a second) can be told apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Any

from bench import harness, rollout, webhook_e2e, webhook_server, workload
from bench.harness import Cluster, PodTracker
from bench.operators import WRITE_VERBS, Limit, Operator
from sidecarset.app import webhooks_config
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import KubeClient, resource_path

CREATE_NAMESPACE = "bench-peer-create"
SINGLE_LABEL = "bench.sidecarset.dev/single"
SINGLE_SIDECARSET = "bench-ss-single"
CASES = ("none", "no_match", "inject1", "inject3", "preinjected")
REGISTERED_CASES = ("inject3", "inject1", "no_match")
UNREGISTERED_CASES = ("none", "preinjected")
PERCENT = 10
DURING_INTERVAL = 0.1
"""Seconds between two pod creations while a rollout runs."""
DURING_MAX = 3000
"""At most this many pods created during one rollout (the loop is bounded in count and time)."""


def single_sidecarset() -> dict[str, Any]:
    """One SidecarSet injecting one small container into pods labelled SINGLE_LABEL=on."""
    agent = {
        "name": "single-agent",
        "image": "prom/node-exporter:v1.8.2",
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
    }
    return workload.sidecarset(SINGLE_SIDECARSET, {"matchLabels": {SINGLE_LABEL: "on"}}, [agent])


BODIES = {
    "none": workload.pod("none", {workload.WEBHOOK_LABEL: "on"}, gated=True, generate=True),
    "no_match": workload.pod("plain", {"app": "plain"}, gated=True, generate=True),
    "inject1": workload.pod("one", {SINGLE_LABEL: "on"}, gated=True, generate=True),
    "inject3": workload.pod("three", {workload.WEBHOOK_LABEL: "on"}, gated=True, generate=True),
}
PROBE = workload.pod("probe", {workload.WEBHOOK_LABEL: "on"}, gated=True)
BASELINE_NAMESPACE_LABELS = {"control-plane": "bench-baseline"}
"""Kruise calls no pod webhook in a namespace with a `control-plane` label (its
namespaceSelector); ours skips pods labelled `OPT_OUT_LABEL: "false"` (its objectSelector)."""
BASELINE_BODY = workload.pod(
    "baseline",
    {workload.WEBHOOK_LABEL: "on", webhooks_config.OPT_OUT_LABEL: "false"},
    gated=True,
    generate=True,
)
"""The inject3 pod, created where neither operator's webhook is called: the apiserver's own
latency under the same load, the floor for the injected pods created beside it."""


class PodCreation:
    """The pod-creation batches against one operator, a round at a time, so that the runner can
    interleave the rounds of two operators (each on its own control plane) in one time window."""

    def __init__(self, cluster: Cluster, operator: Operator, pids: tuple[int, ...]) -> None:
        self.cluster, self.operator, self.pids = cluster, operator, pids
        self.config = f"{harness.MUTATING_WEBHOOKS}/{operator.mutating_config}"
        self.latencies: dict[str, list[float]] = {case: [] for case in CASES}
        self._saved: dict[str, Any] = {}
        self.bodies: dict[str, dict[str, Any]] = dict(BODIES)
        self._cpu_before = 0.0
        self._writes_before = 0.0

    async def prepare(self) -> None:
        """The 100 admission SidecarSets and the single one, each path confirmed and warmed."""
        client = await self.cluster.client()
        ns = CREATE_NAMESPACE
        await harness.create_namespace(client, ns)
        await webhook_server.ensure_sidecarsets(client)
        try:
            await client.create(harness.SIDECARSETS, single_sidecarset())
        except errors.AlreadyExists:
            pass
        await _wait_injects(client, ns, PROBE, set(webhook_server.EXPECTED_SIDECARS))
        await _wait_injects(
            client, ns, workload.pod("probe1", {SINGLE_LABEL: "on"}, gated=True), {"single-agent"}
        )
        self._saved = await webhook_e2e.saved_config(client, self.config)
        self.bodies = {**BODIES, "preinjected": await as_injected(client, ns, BODIES["inject3"])}
        for body in self.bodies.values():
            await webhook_e2e.batch(client, body, 3, namespace=ns)
        self._cpu_before = harness.cpu_seconds(self.pids)
        self._writes_before = await self.operator.writes(self.cluster)

    async def round(self, r: int, per_batch: int) -> None:
        """One registered and one unregistered half, in ABBA order over the rounds."""
        client = await self.cluster.client()
        try:
            for registered in (True, False) if r % 2 == 0 else (False, True):
                await self._register(registered)
                for case in REGISTERED_CASES if registered else UNREGISTERED_CASES:
                    self.latencies[case] += await webhook_e2e.batch(
                        client, self.bodies[case], per_batch, namespace=CREATE_NAMESPACE
                    )
        finally:
            await self._register(True)

    async def _register(self, registered: bool) -> None:
        await webhook_e2e.set_registered(
            await self.cluster.client(),
            self._saved,
            registered,
            PROBE,
            config=self.config,
            namespace=CREATE_NAMESPACE,
        )

    async def finish(self) -> dict[str, Any]:
        """Latency per case (p50/p90/p99 and mean, ms), the operator's CPU and API writes since
        prepared."""
        figures: dict[str, Any] = {
            case: webhook_e2e.describe(self.latencies[case]) for case in CASES
        }
        cpu = harness.cpu_seconds(self.pids) - self._cpu_before
        figures["operator_cpu_seconds"] = round(cpu, 2)
        figures["operator_memory_mib"] = harness.memory(self.pids)
        # What the operator's controllers wrote while pods were being created (status updates
        # of the SidecarSets that count them), competing with the creations for the apiserver.
        pods = sum(len(v) for v in self.latencies.values())
        writes = await self.operator.writes(self.cluster) - self._writes_before
        figures["operator_writes_per_created_pod"] = round(writes / pods, 3) if pods else None
        await harness.delete_namespace(await self.cluster.client(), CREATE_NAMESPACE)
        return figures


SERVICE_ACCOUNT_VOLUME = "kube-api-access-"
"""The token volume the ServiceAccount admission plugin adds to every pod (name prefix)."""


async def as_injected(client: KubeClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    """`body` as the registered pod webhook returns it (a dry run), ready to be created again:
    the apiserver's own fields dropped, and the token volume the ServiceAccount plugin adds to
    every pod taken out (it would add it again)."""
    got = await webhook_e2e.dry_run(client, body, namespace)
    meta = got["metadata"]
    spec = got["spec"]
    spec["volumes"] = [
        v for v in spec.get("volumes", []) if not v["name"].startswith(SERVICE_ACCOUNT_VOLUME)
    ]
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        container["volumeMounts"] = [
            m
            for m in container.get("volumeMounts", [])
            if not m["name"].startswith(SERVICE_ACCOUNT_VOLUME)
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": meta["generateName"],
            "labels": meta.get("labels", {}),
            "annotations": meta.get("annotations", {}),
        },
        "spec": spec,
    }


async def _wait_injects(
    client: KubeClient, ns: str, probe: dict[str, Any], names: set[str]
) -> None:
    await harness.wait_until(
        lambda: webhook_e2e.dry_run_injected(
            client, probe, namespace=ns, expected=frozenset(names)
        ),
        bool,
        timeout=90,
        what=f"{', '.join(sorted(names))} injected through the apiserver",
    )


async def creations_during(
    client: KubeClient, namespace: str, baseline_namespace: str, finished: asyncio.Event
) -> tuple[list[float], list[float], int]:
    """Create a pod every `DURING_INTERVAL` s until `finished` (at most `DURING_MAX`), in turn one
    3 SidecarSets select in `namespace` and one no webhook is called for in `baseline_namespace`;
    the latencies of each kind, and how many of the first came back with all 3 sidecars."""
    paths = (
        resource_path("v1", "pods", namespace=namespace),
        resource_path("v1", "pods", namespace=baseline_namespace),
    )
    latencies: tuple[list[float], list[float]] = ([], [])
    injected = 0
    expected = set(webhook_server.EXPECTED_SIDECARS)
    for n in range(DURING_MAX):
        if finished.is_set():
            break
        baseline = n % 2
        t0 = time.perf_counter()
        created = await client.create(
            paths[baseline], BASELINE_BODY if baseline else BODIES["inject3"]
        )
        latencies[baseline].append(time.perf_counter() - t0)
        if not baseline:
            names = {c["name"] for c in created.get("spec", {}).get("containers", [])}
            injected += expected <= names
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(finished.wait(), DURING_INTERVAL)
    return latencies[0], latencies[1], injected


async def rollback_while_creating(
    cluster: Cluster,
    operator: Operator,
    tracker: PodTracker,
    pods: int,
    namespace: str,
    baseline_namespace: str,
) -> tuple[list[float], list[float], int, dict[str, float | None]]:
    """Roll the sidecar back to the old image while creating pods (see `creations_during`);
    the injected and the baseline creations' latencies, how many were injected, and the mean
    time of the pod webhook's calls meanwhile, as the apiserver and the webhook server count
    it (where the time goes: the server, or getting to and from it)."""
    client = await cluster.client()
    api_before = await cluster.apiserver_metrics()
    server_before = await operator.pod_admission_seconds(cluster)
    t1 = time.monotonic()
    await harness.set_sidecar_image(client, rollout.SIDECARSET, 0, workload.OLD_IMAGE)
    finished = asyncio.Event()
    creating = asyncio.create_task(
        creations_during(client, namespace, baseline_namespace, finished)
    )
    try:
        await rollout.follow(
            cluster, tracker, pods, t1, limit=300 + pods * 0.5, image=workload.OLD_IMAGE
        )
    finally:
        finished.set()
        latencies, baseline, injected = await creating
    api_after = await cluster.apiserver_metrics()
    server_after = await operator.pod_admission_seconds(cluster)
    call = "apiserver_admission_webhook_admission_duration_seconds"
    labels = {"operation": "CREATE", "type": "admit"}
    calls = [
        (scrape.total(f"{call}_sum", **labels), scrape.total(f"{call}_count", **labels))
        for scrape in (api_before, api_after)
    ]
    timing = {
        "webhook_call_during_rollout_mean_ms": _mean_ms(calls[0], calls[1]),
        "webhook_server_during_rollout_mean_ms": _mean_ms(server_before, server_after),
    }
    return latencies, baseline, injected, timing


def _mean_ms(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    """Mean in ms of a (sum seconds, count) pair's growth; None when nothing was counted."""
    count = after[1] - before[1]
    return round(1000 * (after[0] - before[0]) / count, 2) if count > 0 else None


async def writes_settled(
    cluster: Cluster, operator: Operator, t0: float, *, pods: int, quiet: float = 2.0
) -> tuple[float, bool]:
    """Seconds from `t0` until the operator's writes stopped (at most 2 in `quiet` seconds: its
    Lease renewals), so that writes and CPU count whatever it does after the pods are done (our
    queued pod conditions, anyone's trailing status writes), and whether they did stop: the
    wait gives up after 120 s plus 60 ms per pod (a condition per pod at 50/s is 20 ms each)."""
    limit = 120.0 + 0.06 * pods
    deadline = time.monotonic() + limit
    previous, since = await operator.writes(cluster), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(quiet)
        now = await operator.writes(cluster)
        if now - previous <= 2:
            return since - t0, True
        previous, since = now, time.monotonic()
    harness.say(f"    {operator.name}: writes still going after {limit:.0f} s; counts incomplete")
    return time.monotonic() - t0, False


def _percentiles(prefix: str, latencies: list[float]) -> dict[str, float | None]:
    """`<prefix>_p50_ms` and `<prefix>_p99_ms` of `latencies` (None when there are none)."""
    described = webhook_e2e.describe(latencies) if latencies else {}
    return {f"{prefix}_{q}_ms": described.get(f"{q}_ms") for q in ("p50", "p99")}


async def rollout_once(
    cluster: Cluster,
    operator: Operator,
    limit: Limit,
    pods: int,
    *,
    tag: str,
    during: bool = False,
) -> dict[str, Any]:
    """Start the operator fresh at `limit`, create `pods` pods, roll a new sidecar image out
    over them, stop the operator. A fresh process per rollout: its peak RSS is this rollout's."""
    nodes = max(1, math.ceil(pods / rollout.PODS_PER_NODE))
    cluster.ensure_simulator(nodes)
    client = await cluster.client()
    ns = f"bench-peer-{tag}"
    admitted_ns = f"{ns}-admit"
    baseline_ns = f"{ns}-baseline"
    pids = await operator.start(cluster, limit)
    started_cpu = harness.cpu_seconds(pids)
    try:
        await harness.create_namespace(client, ns)
        await harness.create_namespace(client, admitted_ns)
        await harness.create_namespace(client, baseline_ns, BASELINE_NAMESPACE_LABELS)
        await webhook_server.ensure_sidecarsets(client)
        await _wait_injects(client, admitted_ns, PROBE, set(webhook_server.EXPECTED_SIDECARS))
        await harness.delete_sidecarsets(client, [rollout.SIDECARSET])
        await client.create(harness.SIDECARSETS, rollout.sidecarset_body(PERCENT, ns))
        probe = workload.pod("probe", {rollout.LABEL: "on"}, node="sim-node-0")
        await harness.wait_injected(client, ns, probe, "filebeat")
        tracker = PodTracker(client, ns, "filebeat")
        await tracker.start()
        setup = time.monotonic()
        try:
            await rollout.create_ready_pods(
                cluster, tracker, ns, pods, nodes, deadline=setup + 120 + pods * 0.3
            )
            setup_seconds = time.monotonic() - setup
            await asyncio.sleep(1.0)  # let the last status events drain before the window opens
            writes_before = await operator.writes(cluster)
            api_before = await cluster.apiserver_metrics()
            cpu_before = harness.cpu_seconds(pids)
            tracker.max_not_ready = 0
            t0 = time.monotonic()
            await harness.set_sidecar_image(client, rollout.SIDECARSET, 0, workload.NEW_IMAGE)
            pods_done, status_done, _samples = await rollout.follow(
                cluster, tracker, pods, t0, limit=300 + pods * 0.5
            )
            writes_done, settled = await writes_settled(cluster, operator, t0, pods=pods)
            cpu = harness.cpu_seconds(pids) - cpu_before
            writes = await operator.writes(cluster) - writes_before
            api = rollout.apiserver_requests(api_before, await cluster.apiserver_metrics())
            latencies, baseline, injected, timing = (
                await rollback_while_creating(
                    cluster, operator, tracker, pods, admitted_ns, baseline_ns
                )
                if during
                else ([], [], 0, {})
            )
        finally:
            await tracker.stop()
        memory = harness.memory(pids)
        total_cpu = harness.cpu_seconds(pids) - started_cpu
    finally:
        # Clean up while the operator still serves its webhooks: Kruise validates pod deletes
        # (failurePolicy Fail), so with it stopped the pods could not be deleted.
        await harness.delete_sidecarsets(client, [rollout.SIDECARSET])
        await harness.delete_namespace(client, ns)
        await harness.delete_namespace(client, admitted_ns)
        await harness.delete_namespace(client, baseline_ns)
        operator.stop(cluster)
    api_writes = sum(v for k, v in api.items() if k.split()[0] in WRITE_VERBS)
    figures = {
        "pods": pods,
        "seconds_to_all_pods_updated_and_ready": round(pods_done, 2),
        "seconds_to_status_complete": round(status_done, 2),
        "seconds_to_writes_settled": round(writes_done, 2),
        "writes_settled": settled,
        "max_unavailable_allowed": math.floor(pods * PERCENT / 100),
        "max_unavailable_seen": tracker.max_not_ready,
        "operator_writes_per_pod": round(writes / pods, 3),
        "all_clients_writes_per_pod": round(api_writes / pods, 3),
        "operator_cpu_seconds": round(cpu, 2),
        "operator_cpu_ms_per_pod": round(1000 * cpu / pods, 3),
        "operator_cpu_seconds_whole_run": round(total_cpu, 2),
        "operator_peak_rss_mib": memory.get("VmHWM"),
        "operator_rss_mib": memory.get("VmRSS"),
        "setup_seconds": round(setup_seconds, 1),
        **_percentiles("create_during_rollout", latencies),
        **_percentiles("create_during_rollout_baseline", baseline),
        **timing,
        "created_during_rollout": len(latencies),
        "injected_during_rollout": injected,
    }
    harness.say(
        f"    {operator.name} @ {limit.qps:g}/{limit.burst}, {pods} pods: "
        f"{pods_done:.1f} s, max unavailable {tracker.max_not_ready}/"
        f"{figures['max_unavailable_allowed']}, CPU {cpu:.1f} s, peak RSS "
        f"{memory.get('VmHWM')} MiB, {writes / pods:.2f} writes per pod"
    )
    return figures
