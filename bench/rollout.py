"""Benchmark 3: an in-place sidecar rollout over many pods on simulated nodes.

Pods (bound straight to simulated nodes: the scheduler is not what is measured) get a sidecar from
one SidecarSet with `maxUnavailable: 10%` (25% with --quick); once all are Running and Ready and
the SidecarSet's status says so, its image is changed. Measured until every pod runs the new image
and is Ready again, and the status has caught up:

- wall time, and progress over time (pods on the new image, ready on it, unavailable);
- the most pods ever unavailable at once (from a watch; must stay within 10%);
- API requests the operator sent, per updated pod, by verb and resource (the operator's own
  `sidecarset_api_requests_total`), and the apiserver's count of all requests in the window;
- operator CPU seconds per 1,000 updated pods (/proc/<pid>/stat).

The node simulator restarts a changed container in place and reports it ready 0.5 s later.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from typing import Any

from bench import harness, workload
from bench.harness import Cluster, PodTracker
from sidecarset.shell.kube.client import resource_path

NAME = "rollout"
NAMESPACE = "bench-rollout"
SIDECARSET = "bench-rollout"
LABEL = "bench.sidecarset.dev/rollout"
PODS_PER_NODE = 500
TARGET_WRITES_PER_POD = 3.0
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")
RECONCILE = "sidecarset_reconcile_duration_seconds"


def sidecarset_body(max_unavailable: int, namespace: str = NAMESPACE) -> dict[str, Any]:
    container = {
        "name": "filebeat",
        "image": workload.OLD_IMAGE,
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        "volumeMounts": [{"name": "log", "mountPath": "/var/log"}],
    }
    body = workload.sidecarset(
        SIDECARSET,
        {"matchLabels": {LABEL: "on"}},
        [container],
        volumes=[{"name": "log", "emptyDir": {}}],
        strategy={"maxUnavailable": f"{max_unavailable}%"},
    )
    return workload.scoped(body, namespace)


async def sidecarset_status(cluster: Cluster) -> dict[str, Any]:
    client = await cluster.client()
    got = await client.get(f"{harness.SIDECARSETS}/{SIDECARSET}")
    return dict(got.get("status") or {})


def operator_requests(before: harness.Scrape, after: harness.Scrape) -> dict[str, float]:
    keys = ("verb", "resource")
    a = after.by_labels("sidecarset_api_requests_total", keys)
    b = before.by_labels("sidecarset_api_requests_total", keys)
    return {k: v - b.get(k, 0.0) for k, v in sorted(a.items()) if v - b.get(k, 0.0) > 0}


def apiserver_requests(before: harness.Scrape, after: harness.Scrape) -> dict[str, float]:
    keys = ("verb", "resource", "subresource")
    a = after.by_labels("apiserver_request_total", keys)
    b = before.by_labels("apiserver_request_total", keys)
    return {k: v - b.get(k, 0.0) for k, v in sorted(a.items()) if v - b.get(k, 0.0) > 0}


async def create_ready_pods(
    cluster: Cluster,
    tracker: PodTracker,
    namespace: str,
    pods: int,
    nodes: int,
    *,
    deadline: float,
) -> harness.Bulk:
    """Create `pods` pods bound round-robin to the simulated nodes; return once all run the
    old sidecar, Ready, and the SidecarSet's status counts them all."""
    client = await cluster.client()
    path = resource_path("v1", "pods", namespace=namespace)
    bodies = [
        workload.pod(f"app-{i:05d}", {LABEL: "on"}, node=f"sim-node-{i % nodes}")
        for i in range(pods)
    ]
    created = await harness.bulk(
        [functools.partial(client.create, path, body) for body in bodies],
        concurrency=16,
        deadline=deadline,
    )
    harness.say(f"  created {created.done} pods in {created.seconds:.1f} s")
    if created.failed:
        raise RuntimeError(f"pod creation failed: {created.summary()}")
    await tracker.wait(
        lambda t: (
            len(t.pods) == pods
            and t.count(lambda p: p.ready and p.status_image == workload.OLD_IMAGE) == pods
        ),
        timeout=deadline - time.monotonic(),
        what=f"{pods} pods ready with the old sidecar",
    )
    await harness.wait_until(
        lambda: sidecarset_status(cluster),
        lambda st: st.get("matchedPods") == pods and st.get("updatedReadyPods") == pods,
        timeout=60,
        what="SidecarSet status settled",
    )
    return created


async def follow(
    cluster: Cluster,
    tracker: PodTracker,
    pods: int,
    t0: float,
    *,
    limit: float,
    image: str = workload.NEW_IMAGE,
) -> tuple[float, float, list[list[float]]]:
    """Sample progress every 0.25 s from `t0` (the image change) until every pod runs `image`
    and is Ready, then until the SidecarSet's status says so; at most `limit` seconds.
    Returns (seconds to pods done, seconds to status done, samples)."""
    samples: list[list[float]] = []
    deadline = limit + t0

    def done(t: PodTracker) -> bool:
        return t.count(lambda p: p.ready and p.status_image == image) == pods

    while not done(tracker):
        tracker.check()
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"rollout not finished in {limit:.0f} s; last progress {samples[-1:]}, "
                f"SidecarSet status {await sidecarset_status(cluster)}"
            )
        samples.append(
            [
                round(time.monotonic() - t0, 2),
                tracker.count(lambda p: p.spec_image == image),
                tracker.count(lambda p: p.ready and p.status_image == image),
                tracker.not_ready(),
            ]
        )
        await asyncio.sleep(0.25)
    pods_done = time.monotonic() - t0
    samples.append([round(pods_done, 2), pods, pods, tracker.not_ready()])
    await harness.wait_until(
        lambda: sidecarset_status(cluster),
        lambda st: st.get("updatedReadyPods") == pods,
        timeout=60,
        interval=0.1,
        what="status reports the rollout done",
    )
    return pods_done, time.monotonic() - t0, samples


async def run(cluster: Cluster, quick: bool) -> dict[str, Any]:
    pods = 40 if quick else 2000
    # Quick: 4 rounds instead of 10, so the whole quick run stays under a minute.
    percent = 25 if quick else 10
    nodes = max(1, math.ceil(pods / PODS_PER_NODE))
    client = await cluster.client()
    cluster.ensure_simulator(nodes)
    cluster.ensure_operator()
    await harness.create_namespace(client, NAMESPACE)
    await harness.delete_sidecarsets(client, [SIDECARSET])
    await client.create(harness.SIDECARSETS, sidecarset_body(percent))
    probe = workload.pod("probe", {LABEL: "on"}, node="sim-node-0")
    await harness.wait_injected(client, NAMESPACE, probe, "filebeat")

    tracker = PodTracker(client, NAMESPACE, "filebeat")
    await tracker.start()
    setup_start = time.monotonic()
    created = await create_ready_pods(
        cluster, tracker, NAMESPACE, pods, nodes, deadline=setup_start + (60 if quick else 600)
    )
    ready_at = time.monotonic()
    harness.say(f"  {pods} pods ready; rolling out the new image")

    operator = cluster.ensure_operator()
    await asyncio.sleep(1.0)  # let the last status events drain before the window opens
    op_before, api_before = await cluster.operator_metrics(), await cluster.apiserver_metrics()
    cpu_before = harness.cpu_seconds(operator.pid)
    sim_pid = cluster.pid("node-simulator")
    sim_before = harness.cpu_seconds(sim_pid) if sim_pid else 0.0
    tracker.max_not_ready = 0
    t0 = time.monotonic()
    await harness.set_sidecar_image(client, SIDECARSET, 0, workload.NEW_IMAGE)

    pods_done, status_done, samples = await follow(
        cluster, tracker, pods, t0, limit=90 if quick else 1800
    )
    await asyncio.sleep(1.0)
    cpu = harness.cpu_seconds(operator.pid) - cpu_before
    sim_cpu = (harness.cpu_seconds(sim_pid) - sim_before) if sim_pid else None
    op_after, api_after = await cluster.operator_metrics(), await cluster.apiserver_metrics()
    await tracker.stop()

    by_kind = operator_requests(op_before, op_after)
    writes = sum(v for k, v in by_kind.items() if k.split()[0] in WRITE_VERBS)
    reads = sum(v for k, v in by_kind.items() if k.split()[0] not in WRITE_VERBS)
    pod_updates = op_after.by_label("sidecarset_pod_updates_total", "result")
    updates_before = op_before.by_label("sidecarset_pod_updates_total", "result")
    updates = {k: v - updates_before.get(k, 0.0) for k, v in pod_updates.items()}
    api = apiserver_requests(api_before, api_after)
    max_unavailable = math.floor(pods * percent / 100)
    figures = {
        "pods": pods,
        "nodes": nodes,
        "seconds_to_all_pods_updated_and_ready": round(pods_done, 2),
        "seconds_to_status_complete": round(status_done, 2),
        "pods_per_second": round(pods / pods_done, 1),
        "max_unavailable_allowed": max_unavailable,
        "max_unavailable_seen": tracker.max_not_ready,
        "operator_writes_per_pod": round(writes / pods, 3),
        # Lease renewals are per second, not per pod (one every 2 s while leading).
        "operator_writes_per_pod_without_lease": round(
            (writes - by_kind.get("PUT leases", 0.0)) / pods, 3
        ),
        "operator_reads_per_pod": round(reads / pods, 3),
        "operator_requests": by_kind,
        "pod_updates_by_result": updates,
        "reconciles": op_after.total(f"{RECONCILE}_count") - op_before.total(f"{RECONCILE}_count"),
        "reconcile_seconds": round(
            op_after.total(f"{RECONCILE}_sum") - op_before.total(f"{RECONCILE}_sum"), 2
        ),
        "operator_cpu_seconds": round(cpu, 2),
        "operator_cpu_seconds_per_1000_pods": round(1000 * cpu / pods, 2),
        "simulator_cpu_seconds": round(sim_cpu, 2) if sim_cpu is not None else None,
        "apiserver_requests": api,
        "setup_seconds": {
            "create_pods": round(created.seconds, 1),
            "until_all_ready": round(ready_at - setup_start, 1),
        },
    }
    harness.say(
        f"  {pods} pods updated and ready in {pods_done:.1f} s (status {status_done:.1f} s), "
        f"max unavailable {tracker.max_not_ready}/{max_unavailable}"
    )
    harness.say(
        f"  operator: {writes / pods:.2f} writes and {reads / pods:.2f} reads per pod "
        f"{by_kind}; CPU {cpu:.1f} s ({1000 * cpu / pods:.1f} s per 1,000 pods)"
    )
    targets = [
        harness.target(
            "operator API writes per updated pod",
            round(writes / pods, 3),
            TARGET_WRITES_PER_POD,
            "writes",
        ),
        harness.target("pods unavailable at once", tracker.max_not_ready, max_unavailable, "pods"),
    ]
    harness.print_targets(targets)
    await harness.delete_sidecarsets(client, [SIDECARSET])
    await harness.delete_namespace(client, NAMESPACE)
    return {
        "params": {
            "pods": pods,
            "max_unavailable": f"{percent}%",
            "simulated_nodes": nodes,
            "simulator_delays_s": {"start": 0.2, "ready": 0.3},
            "operator_qps": 50,
        },
        "figures": figures,
        "targets": targets,
        "series": {
            "progress": {
                "columns": ["seconds", "spec_updated", "ready_on_new", "not_ready"],
                "rows": samples,
            }
        },
        "notes": [
            "Unavailable = pods whose Ready condition is False, counted from a watch on every "
            "event; the operator's budget counts the same pods.",
            "The operator runs with its production defaults, including its client-side limit "
            "of 50 requests/s (burst 100), which bounds how fast a rollout can write.",
        ],
    }
