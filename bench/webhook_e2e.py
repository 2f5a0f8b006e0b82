"""Benchmark 2: what the pod webhook adds to pod creation through kube-apiserver.

Pods matched by 3 SidecarSets among 100 are created one at a time (the latency a ReplicaSet
controller sees per pod), in batches that alternate between the webhook registered and not
registered, in the same run (ABBA order), so drift in the machine's load hits both sides alike.
"Not registered" means the MutatingWebhookConfiguration is deleted; it is re-created from the
saved body, and each switch is confirmed with server-side dry-run creates (injected or not)
before a batch starts. The pods carry a scheduling gate, so neither the scheduler nor the node
simulator adds work; the operator's controller still sees every pod, as it would in a cluster.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench import harness, webhook_server, workload
from bench.harness import Cluster, ms, percentile
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import KubeClient, resource_path

NAME = "webhook_e2e"
NAMESPACE = "bench-e2e"
CONFIG = f"{harness.MUTATING_WEBHOOKS}/sidecarset-mutating"
TARGET_OVERHEAD = 0.10
APISERVER_WEBHOOK = "apiserver_admission_webhook_admission_duration_seconds"
OPERATOR_WEBHOOK = "sidecarset_webhook_request_duration_seconds"


async def dry_run(client: KubeClient, body: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The pod `body` as the apiserver would create it (admission webhooks included)."""
    return await client.request(
        "POST",
        resource_path("v1", "pods", namespace=namespace),
        params={"dryRun": "All"},
        body=body,
    )


async def dry_run_injected(
    client: KubeClient,
    body: dict[str, Any],
    *,
    namespace: str = NAMESPACE,
    expected: frozenset[str] = frozenset(webhook_server.EXPECTED_SIDECARS),
) -> bool:
    got = await dry_run(client, body, namespace)
    names = {c["name"] for c in got["spec"]["containers"]}
    return names >= expected


async def set_registered(
    client: KubeClient,
    saved: dict[str, Any],
    registered: bool,
    probe: dict[str, Any],
    *,
    config: str = CONFIG,
    namespace: str = NAMESPACE,
) -> None:
    """Register (re-create from `saved`) or unregister (delete) the MutatingWebhookConfiguration
    at `config`, then wait until a dry run of `probe` shows the apiserver acts on it."""
    if registered:
        try:
            await client.create(harness.MUTATING_WEBHOOKS, saved)
        except errors.AlreadyExists:
            pass
    else:
        try:
            await client.delete(config)
        except errors.NotFound:
            pass
    # The apiserver picks configuration changes up from its informer a moment later.
    await harness.wait_until(
        lambda: dry_run_injected(client, probe, namespace=namespace),
        lambda injected: injected == registered,
        timeout=30,
        interval=0.05,
        what=f"webhook {'registered' if registered else 'unregistered'}",
    )


async def batch(
    client: KubeClient, body: dict[str, Any], count: int, *, namespace: str = NAMESPACE
) -> list[float]:
    path = resource_path("v1", "pods", namespace=namespace)
    latencies = []
    for _ in range(count):
        t0 = time.perf_counter()
        await client.create(path, body)
        latencies.append(time.perf_counter() - t0)
    return latencies


async def saved_config(client: KubeClient, config: str) -> dict[str, Any]:
    """The configuration as it can be created again after a delete."""
    saved = await client.get(config)
    for key in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"):
        saved["metadata"].pop(key, None)
    return saved


def describe(latencies: list[float]) -> dict[str, Any]:
    return {
        "pods": len(latencies),
        "mean_ms": ms(statistics.fmean(latencies)),
        "p50_ms": ms(percentile(latencies, 50)),
        "p90_ms": ms(percentile(latencies, 90)),
        "p99_ms": ms(percentile(latencies, 99)),
    }


async def run(cluster: Cluster, quick: bool) -> dict[str, Any]:
    client = await cluster.client()
    cluster.ensure_operator()
    await harness.create_namespace(client, NAMESPACE)
    await webhook_server.ensure_sidecarsets(client)
    body = workload.pod("e2e", {workload.WEBHOOK_LABEL: "on"}, gated=True, generate=True)
    probe = workload.pod("probe", {workload.WEBHOOK_LABEL: "on"}, gated=True)
    await harness.wait_until(
        lambda: dry_run_injected(client, probe),
        bool,
        timeout=60,
        what="3 sidecars injected through the apiserver",
    )
    saved = await saved_config(client, CONFIG)

    rounds, per_batch = (2, 10) if quick else (10, 40)
    results: dict[bool, list[float]] = {True: [], False: []}
    batches: list[dict[str, Any]] = []
    # Warm both paths (connections, caches) before counting.
    await batch(client, body, 5)
    api_before, op_before = await cluster.apiserver_metrics(), await cluster.operator_metrics()
    # A third kind of batch, while registered: pods no SidecarSet selects. The webhook is called
    # and answers "allowed" without a patch: the cost of the call alone, without the larger pod
    # and the controller's work that an injection brings.
    unmatched = workload.pod("plain", {"app": "plain"}, gated=True, generate=True)
    plain: list[float] = []
    try:
        for r in range(rounds):
            order = (True, False) if r % 2 == 0 else (False, True)
            for registered in order:
                await set_registered(client, saved, registered, probe)
                got = await batch(client, body, per_batch)
                results[registered] += got
                batches.append({"round": r, "webhook": registered, **describe(got)})
                if registered:
                    got = await batch(client, unmatched, per_batch)
                    plain += got
                    batches.append({"round": r, "webhook": "no match", **describe(got)})
    finally:
        await set_registered(client, saved, True, probe)

    api_after, op_after = await cluster.apiserver_metrics(), await cluster.operator_metrics()
    webhook_call = harness.bucket_delta(
        api_after.buckets(APISERVER_WEBHOOK, name=webhook_server.POD_WEBHOOK, type="admit"),
        api_before.buckets(APISERVER_WEBHOOK, name=webhook_server.POD_WEBHOOK, type="admit"),
    )
    handler = harness.bucket_delta(
        op_after.buckets(OPERATOR_WEBHOOK, webhook="mutate-pod"),
        op_before.buckets(OPERATOR_WEBHOOK, webhook="mutate-pod"),
    )
    with_hook, without = describe(results[True]), describe(results[False])
    no_match = describe(plain)
    overhead_p50 = with_hook["p50_ms"] / without["p50_ms"] - 1
    overhead_mean = with_hook["mean_ms"] / without["mean_ms"] - 1
    harness.say(
        f"  without webhook: p50 {without['p50_ms']:.2f} ms, mean {without['mean_ms']:.2f} ms; "
        f"with: p50 {with_hook['p50_ms']:.2f} ms, mean {with_hook['mean_ms']:.2f} ms"
    )
    harness.say(
        f"  webhook called, no SidecarSet selects the pod: p50 {no_match['p50_ms']:.2f} ms "
        f"({no_match['p50_ms'] - without['p50_ms']:+.2f} ms)"
    )
    harness.say(
        "  the webhook call as the apiserver times it: p50 "
        f"{ms(harness.histogram_quantile(webhook_call, 0.5))} ms; the operator's handler: p50 "
        f"{ms(harness.histogram_quantile(handler, 0.5))} ms"
    )
    harness.say(
        f"  overhead: {100 * overhead_p50:+.1f}% (p50), {100 * overhead_mean:+.1f}% (mean), "
        f"{with_hook['p50_ms'] - without['p50_ms']:+.2f} ms per pod (p50)"
    )
    targets = [
        harness.target(
            "pod creation overhead of the webhook (p50)",
            round(100 * overhead_p50, 1),
            100 * TARGET_OVERHEAD,
            "%",
        )
    ]
    harness.print_targets(targets)
    await harness.delete_namespace(client, NAMESPACE)
    return {
        "params": {"rounds": rounds, "pods_per_batch": per_batch, "concurrency": 1},
        "figures": {
            "with_webhook": with_hook,
            "without_webhook": without,
            "webhook_no_match": no_match,
            "added_ms_p50_no_match": round(no_match["p50_ms"] - without["p50_ms"], 3),
            "overhead_p50_percent": round(100 * overhead_p50, 1),
            "overhead_mean_percent": round(100 * overhead_mean, 1),
            "added_ms_p50": round(with_hook["p50_ms"] - without["p50_ms"], 3),
            "apiserver_webhook_call_p50_ms": ms(harness.histogram_quantile(webhook_call, 0.5)),
            "apiserver_webhook_call_p99_ms": ms(harness.histogram_quantile(webhook_call, 0.99)),
            "operator_handler_p50_ms": ms(harness.histogram_quantile(handler, 0.5)),
            "operator_handler_p99_ms": ms(harness.histogram_quantile(handler, 0.99)),
            "batches": batches,
        },
        "targets": targets,
        "notes": [
            "Sequential POSTs from one client (admin, exempt from API Priority and Fairness); "
            "pods gated from scheduling. 'without' = MutatingWebhookConfiguration deleted.",
            "With the webhook the stored pod is larger (3 sidecars, a volume, annotations), so "
            "part of the overhead is the apiserver and etcd storing and the operator's informer "
            "decoding a bigger object: what a user pays for injection, not only the HTTP call.",
        ],
    }
