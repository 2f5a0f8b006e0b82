"""Benchmark 4: the operator with 1,000, 5,000 and 10,000 pods in its cache.

The pods are created directly (not through Deployments), many at once, and bound to Node objects
that nothing drives: no node simulator runs here. To create 10,000 pods in minutes on two shared
cores, they are created while the operator is stopped and its webhook unregistered, already
injected: the benchmark runs the operator's own `core.injection` on each pod against the
SidecarSet as stored (defaulted by the operator's webhook, with its hash annotations), so every
pod carries exactly the sidecar and annotations the webhook would have given it (the webhook
path itself is measured by webhook_e2e). Each pod's status is then written once, as a kubelet
would (Running, Ready, every container on its spec image). One SidecarSet selects all pods. At
each size the operator is started and measured:

- time from process start to "caches synced" (its log) and to ready (its ready file; webhooks
  registered again);
- RSS (VmRSS) once its first reconcile of the SidecarSet is done, and peak RSS (VmHWM);
- `sidecarset_reconcile_duration_seconds`: the rounds after the start (every pod judged) and a
  few later ones (label touches: full rounds over all pods, judgements kept, no pod to update);
- one full decision in this process: the pods decoded with the operator's own PodView codec,
  then `rollout.plan_round` + `status.compute_status` timed, for the settled SidecarSet and for
  the same SidecarSet with a new image (every pod a candidate, 10% chosen to update), each both
  cold (every pod judged: the first round after a start or an edit) and warm (the judgements of
  unchanged pods kept from the previous round, as the operator does).
"""

from __future__ import annotations

import functools
import gc
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import msgspec

from bench import harness, workload
from bench.harness import Cluster
from sidecarset.app import cached_objects, reconciler
from sidecarset.app.settings import OperatorSettings
from sidecarset.core import (
    defaults,
    injection,
    model,
    pod_classification,
    pod_contract,
    rollout,
    status,
)
from sidecarset.core.podview import PodView
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import STRATEGIC_MERGE_PATCH, KubeClient, resource_path
from sidecarset.simulator import agent

NAME = "scale"
NAMESPACE = "bench-scale"
SIDECARSET = "bench-scale"
LABEL = "bench.sidecarset.dev/scale"
NODES = [f"bench-node-{i}" for i in range(10)]
TARGET_RSS_MIB, TARGET_DECISION_MS, TARGET_SYNCED_S = 150.0, 50.0, 10.0
RECONCILE = "sidecarset_reconcile_duration_seconds"
WRITE_LIMIT = reconciler.round_write_limit(OperatorSettings().qps, OperatorSettings().burst)
"""The operator's limit on one round's updates at its default rate limit, as it plans."""


async def register_nodes(client: KubeClient) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for name in NODES:
        try:
            await client.create(resource_path("v1", "nodes"), agent.node_manifest(name))
        except errors.AlreadyExists:
            pass
        await client.patch(
            resource_path("v1", "nodes", name=name, subresource="status"),
            agent.node_status(now),
            content_type=STRATEGIC_MERGE_PATCH,
        )


def injected_pod(sidecarset: model.SidecarSet, i: int, now: str) -> dict[str, Any]:
    """Pod `i` as the webhook would have admitted it (the operator's core injection)."""
    body = workload.pod(f"app-{i:05d}", {LABEL: "on"}, node=NODES[i % len(NODES)])
    body["metadata"]["namespace"] = NAMESPACE
    result = injection.inject(
        body,
        [sidecarset],
        {pod_contract.NAMESPACE_NAME_LABEL: NAMESPACE},
        now=now,
        request_namespace=NAMESPACE,
    )
    assert result.injected == (SIDECARSET,), result
    return injection.apply_injection(body, result)


async def make_pod(client: KubeClient, body: dict[str, Any]) -> None:
    """Create one pod and report it running, as its kubelet would."""
    created = await client.create(resource_path("v1", "pods", namespace=NAMESPACE), body)
    await client.patch(
        resource_path(
            "v1",
            "pods",
            namespace=NAMESPACE,
            name=created["metadata"]["name"],
            subresource="status",
        ),
        workload.running_status(created),
    )


async def settled(client: KubeClient, pods: int) -> dict[str, Any]:
    async def probe() -> dict[str, Any]:
        got = await client.get(f"{harness.SIDECARSETS}/{SIDECARSET}")
        return dict(got.get("status") or {})

    return dict(
        await harness.wait_until(
            probe,
            lambda st: st.get("matchedPods") == pods and st.get("updatedReadyPods") == pods,
            timeout=180,
            interval=0.25,
            what=f"SidecarSet status with {pods} pods",
        )
    )


async def reconcile_count(cluster: Cluster) -> float:
    return (await cluster.operator_metrics()).total(f"{RECONCILE}_count")


async def touch_and_wait(cluster: Cluster, client: KubeClient, tick: int) -> None:
    """One more reconcile: a label change wakes the SidecarSet's round, and (unlike a spec or
    annotation change) leaves its pods' judgements valid, as between the rounds of a rollout."""
    before = await reconcile_count(cluster)
    await client.patch(
        f"{harness.SIDECARSETS}/{SIDECARSET}",
        {"metadata": {"labels": {"bench.sidecarset.dev/tick": str(tick)}}},
    )
    await harness.wait_until(
        lambda: reconcile_count(cluster),
        lambda count: count > before,
        timeout=60,
        interval=0.05,
        what="a reconcile after the touch",
    )


async def decision_times(client: KubeClient, repeats: int) -> dict[str, Any]:
    """Decode the pods with the operator's codec and time the pure decision in this process."""
    pods: list[PodView] = []
    decode = 0.0
    async for page in client.list_pages(resource_path("v1", "pods", namespace=NAMESPACE)):
        t0 = time.perf_counter()
        pods.extend(cached_objects.POD_CODEC.decode_list(page).items)
        decode += time.perf_counter() - t0
    raw = await client.get(f"{harness.SIDECARSETS}/{SIDECARSET}")
    settled_set = model.parse_sidecarset(raw)
    changed_raw = msgspec.json.decode(msgspec.json.encode(raw))
    changed_raw["spec"]["containers"][0]["image"] = workload.NEW_IMAGE
    # What the defaulting webhook does to an edit: new hash annotations.
    changed_set = model.parse_sidecarset(defaults.apply_defaults(changed_raw))
    latest = str((raw.get("status") or {}).get("latestRevision") or "")
    # As the operator does once its caches are synced: what exists now stays out of the cyclic
    # collector's full passes, which would otherwise land inside the timed rounds.
    gc.freeze()
    found: dict[str, Any] = {"pods": len(pods), "decode_ms": harness.ms(decode, 1)}
    for label, sidecarset in (("settled", settled_set), ("new_image", changed_set)):
        found[label] = {
            # First round for this SidecarSet object: every pod judged (after a start or an edit).
            "cold": _timed(sidecarset, pods, latest, repeats, reuse=False),
            # Later rounds: the operator keeps each pod's judgement while the pod is unchanged.
            "warm": _timed(sidecarset, pods, latest, repeats, reuse=True),
        }
    # The first round after an edit of the image, as the operator has it: the judgements of the
    # settled rounds before the edit kept (each pod's facts; only its hash is compared again).
    found["new_image"]["after_edit"] = _timed(
        changed_set, pods, latest, repeats, reuse=False, before=settled_set
    )
    return found


def _timed(
    sidecarset: model.SidecarSet,
    pods: list[PodView],
    latest: str,
    repeats: int,
    *,
    reuse: bool,
    before: model.SidecarSet | None = None,
) -> dict[str, Any]:
    """Median times of `repeats` rounds: `reuse` keeps the judgements from round to round;
    `before`: each round follows one of this SidecarSet with the same judgements (an edit)."""
    plan_times, status_times, updates = [], [], 0
    judgements = pod_classification.Judgements()
    if reuse:
        rollout.plan_round(sidecarset, pods, datetime.now(UTC), judgements=judgements)
    for _ in range(repeats):
        if not reuse:
            judgements = pod_classification.Judgements()
        if before is not None:
            rollout.plan_round(before, pods, datetime.now(UTC), judgements=judgements)
        gc.collect()  # a collection owed to the setup must not land inside a timed round
        now = datetime.now(UTC)
        t0 = time.perf_counter()
        plan = rollout.plan_round(
            sidecarset,
            pods,
            now,
            latest_revision=latest or None,
            judgements=judgements,
            write_limit=WRITE_LIMIT,
        )
        t1 = time.perf_counter()
        status.compute_status(
            sidecarset,
            plan,
            latest_revision=latest,
            collision_count=0,
            now=now,
        )
        t2 = time.perf_counter()
        plan_times.append(t1 - t0)
        status_times.append(t2 - t1)
        updates = len(plan.update)
    totals = [p + s for p, s in zip(plan_times, status_times, strict=True)]
    return {
        "plan_round_ms": harness.ms(statistics.median(plan_times), 2),
        "compute_status_ms": harness.ms(statistics.median(status_times), 2),
        "total_ms_median": harness.ms(statistics.median(totals), 2),
        "total_ms_min": harness.ms(min(totals), 2),
        "pods_to_update": updates,
    }


async def measure(cluster: Cluster, client: KubeClient, pods: int, quick: bool) -> dict[str, Any]:
    cluster.stop_operator()
    operator = cluster.start_operator()
    ready_s = operator.ready_at - operator.spawned_at
    synced = operator.log_events("caches synced")
    synced_s = harness.parse_time(synced[0]["timestamp"]) - operator.spawned_at if synced else None
    cpu_at_ready = harness.cpu_seconds(operator.pid)
    rss_at_ready = harness.memory(operator.pid)
    await harness.wait_until(
        lambda: reconcile_count(cluster), lambda c: c >= 1, timeout=60, what="first reconcile"
    )
    await settled(client, pods)
    first = await cluster.operator_metrics()
    first_rounds = first.total(f"{RECONCILE}_count")
    first_seconds = first.total(f"{RECONCILE}_sum")
    rss_after_first = harness.memory(operator.pid)
    before = await cluster.operator_metrics()
    touches = 2 if quick else 5
    for tick in range(touches):
        await touch_and_wait(cluster, client, tick)
    after = await cluster.operator_metrics()
    hist = harness.bucket_delta(after.buckets(RECONCILE), before.buckets(RECONCILE))
    count = after.total(f"{RECONCILE}_count") - before.total(f"{RECONCILE}_count")
    total = after.total(f"{RECONCILE}_sum") - before.total(f"{RECONCILE}_sum")
    rss_end = harness.memory(operator.pid)
    decision = await decision_times(client, 3 if quick else 5)
    cold = max(d["cold"]["total_ms_median"] for d in (decision["settled"], decision["new_image"]))
    warm = decision["settled"]["warm"]["total_ms_median"]
    result = {
        "pods": pods,
        "seconds_to_caches_synced": round(synced_s, 2) if synced_s is not None else None,
        "seconds_to_ready": round(ready_s, 2),
        "operator_cpu_seconds_to_ready": round(cpu_at_ready, 2),
        "rss_mib_at_ready": rss_at_ready.get("VmRSS"),
        "rss_mib_after_first_reconcile": rss_after_first.get("VmRSS"),
        "rss_mib_end": rss_end.get("VmRSS"),
        "peak_rss_mib": rss_end.get("VmHWM"),
        # Rounds until the status was settled after the start: every pod judged (cold).
        "first_rounds": first_rounds,
        "first_rounds_mean_ms": harness.ms(first_seconds / first_rounds, 1)
        if first_rounds
        else None,
        "reconciles_timed": count,
        "reconcile_mean_ms": harness.ms(total / count, 1) if count else None,
        "reconcile_p50_ms": harness.ms(harness.histogram_quantile(hist, 0.5), 1),
        "reconcile_p99_ms": harness.ms(harness.histogram_quantile(hist, 0.99), 1),
        "reconcile_buckets": [[le, c] for le, c in hist],
        "decision": decision,
        "decision_ms_settled_warm": warm,
        "decision_ms_cold_worst": cold,
        "decision_ms_after_image_edit": decision["new_image"]["after_edit"]["total_ms_median"],
    }
    harness.say(
        f"  {pods:>6} pods: synced {result['seconds_to_caches_synced']} s, ready "
        f"{result['seconds_to_ready']} s, RSS {result['rss_mib_end']} MiB (peak "
        f"{result['peak_rss_mib']}), reconcile mean {result['reconcile_mean_ms']} ms, "
        f"decision settled {decision['settled']['warm']['total_ms_median']} ms warm / "
        f"{decision['settled']['cold']['total_ms_median']} ms cold, new image "
        f"{decision['new_image']['warm']['total_ms_median']} ms warm / "
        f"{decision['new_image']['cold']['total_ms_median']} ms cold / "
        f"{decision['new_image']['after_edit']['total_ms_median']} ms after the edit "
        f"(decode {decision['decode_ms']} ms)"
    )
    return result


async def run(cluster: Cluster, quick: bool) -> dict[str, Any]:
    sizes = [200] if quick else [1000, 5000, 10000]
    client = await cluster.client()
    cluster.stop_simulator()  # this benchmark reports pod status itself
    cluster.ensure_operator()
    await harness.delete_sidecarsets(
        client, [b["metadata"]["name"] for b in workload.admission_sidecarsets(100)]
    )
    await register_nodes(client)
    await harness.create_namespace(client, NAMESPACE)
    body = workload.scoped(
        workload.sidecarset(
            SIDECARSET,
            {"matchLabels": {LABEL: "on"}},
            [
                {
                    "name": "filebeat",
                    "image": workload.OLD_IMAGE,
                    "volumeMounts": [{"name": "log", "mountPath": "/var/log"}],
                }
            ],
            volumes=[{"name": "log", "emptyDir": {}}],
            strategy={"maxUnavailable": "10%"},
        ),
        NAMESPACE,
    )
    await harness.delete_sidecarsets(client, [SIDECARSET])
    await client.create(harness.SIDECARSETS, body)
    probe = workload.pod("probe", {LABEL: "on"}, node=NODES[0])
    await harness.wait_injected(client, NAMESPACE, probe, "filebeat")

    stored = await client.get(f"{harness.SIDECARSETS}/{SIDECARSET}")
    sidecarset = model.parse_sidecarset(stored)
    steps = []
    created = 0
    for size in sizes:
        # The operator is down while pods are created (its webhook unregistered, or pod creation
        # would fail): creation runs at the apiserver's pace, and the start is then measured.
        cluster.stop_operator()
        try:
            await client.delete(f"{harness.MUTATING_WEBHOOKS}/sidecarset-mutating")
        except errors.NotFound:
            pass
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        bodies = [injected_pod(sidecarset, i, now) for i in range(created, size)]
        deadline = time.monotonic() + (60 if quick else 1200)
        made = await harness.bulk(
            [functools.partial(make_pod, client, body) for body in bodies],
            concurrency=32,
            deadline=deadline,
        )
        if made.failed:
            raise RuntimeError(f"pod creation failed: {made.summary()}")
        harness.say(
            f"  created {made.done} pods in {made.seconds:.1f} s "
            f"({made.done / made.seconds:.0f}/s, create + status each)"
        )
        del bodies  # 10,000 pod dicts would slow this process's garbage collector below
        created = size
        step = await measure(cluster, client, size, quick)
        step["create_pods_per_second"] = round(made.done / made.seconds, 1)
        steps.append(step)
    cluster.ensure_operator()

    last = steps[-1]
    targets = [
        harness.target(
            f"operator RSS at {last['pods']} pods", last["rss_mib_end"], TARGET_RSS_MIB, "MiB"
        ),
        harness.target(
            f"one full decision at {last['pods']} pods, steady state (warm)",
            last["decision_ms_settled_warm"],
            TARGET_DECISION_MS,
            "ms",
        ),
        harness.target(
            f"one full decision at {last['pods']} pods, first round after a start or an edit",
            last["decision_ms_cold_worst"],
            TARGET_DECISION_MS,
            "ms",
        ),
        harness.target(
            f"start to caches synced at {last['pods']} pods",
            last["seconds_to_caches_synced"],
            TARGET_SYNCED_S,
            "s",
        ),
    ]
    harness.print_targets(targets)
    await harness.delete_sidecarsets(client, [SIDECARSET])
    await harness.delete_namespace(client, NAMESPACE)
    for name in NODES:
        try:
            await client.delete(resource_path("v1", "nodes", name=name))
        except errors.ApiError:
            pass  # best effort: the cluster is thrown away at the end of the run
    return {
        "params": {"sizes": sizes, "nodes": len(NODES), "simulator": False},
        "figures": {"steps": steps},
        "targets": targets,
        "notes": [
            "No node simulator: each pod's status is written once by the benchmark (Running, "
            "Ready, every container on its spec image), so the figures are the operator's alone.",
            "decision = rollout.plan_round + status.compute_status in the benchmark process on "
            "PodViews decoded with the operator's codec (median of repeats), with the operator's "
            f"write limit ({WRITE_LIMIT} updates per round); 'new_image' has every pod a "
            "candidate: 'cold' is a start in the middle of a rollout (every pod judged), "
            "'after_edit' the first round after the image edit with the judgements of the "
            "settled rounds kept, as the operator keeps them.",
            "Reconcile durations are the operator's own histogram over annotation touches of the "
            "SidecarSet after its first round: full rounds over all pods, status unchanged.",
        ],
    }
