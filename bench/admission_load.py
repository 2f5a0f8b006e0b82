"""Benchmark 5: the pod webhook's latency while a rollout saturates the controller's write budget.

A rollout writes pods through the operator's client, which is rate-limited (`--qps 50`,
`--burst 100`, the defaults). An admission that had to call the API (a namespace not yet in
the cache, with a SidecarSet that has a namespaceSelector) went through that same client, so it
queued behind the rollout's writes. It now goes through the admission client: no client-side
limit, its own connections, a 2 s timeout.

The benchmark runs the pod webhook's handler in process (`PodInjector.handle`, what the
operator's own latency histogram times) on reviews whose namespace is never in the cache, so
every review makes that one API call: the worst case of the path. First for 5 s with no
writes (the baseline), then twice while every pod of the namespace (2,000; 300 with --quick) is
patched once through a client limited as the operator's is, 20 at a time (the writer's
concurrency): first with the handler given that same client (the wiring before), then given a
client of its own (the wiring now). Reviews are sent one after another, 20 ms
apart, for as long as the writes last (bounded). A review that fails or takes longer than the
webhook's 5 s timeout counts in the percentiles as taking 5 s; their number is printed beside
every p99.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from bench import harness, workload
from bench.harness import Cluster, ms, percentile
from sidecarset.app import cached_objects
from sidecarset.app.inject_webhook import PodInjector
from sidecarset.app.webhooks_config import TIMEOUT_SECONDS
from sidecarset.core import defaults
from sidecarset.shell import admission, logs
from sidecarset.shell.kube.client import KubeClient, resource_path
from sidecarset.shell.store import Store

NAME = "admission_load"
OPT_IN = True
"""Run only with `--only admission_load` (`make bench ONLY=admission_load`): 2,000 pod writes."""
NAMESPACE = "bench-admission"
QPS, BURST, WRITERS = 50.0, 100, 20
REVIEW_GAP = 0.02
MAX_SECONDS = 120.0
IDLE_SECONDS = 5.0


async def _idle(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


def _sidecarset() -> cached_objects.SidecarSetEntry:
    body = {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "SidecarSet",
        "metadata": {"name": "bench-scoped"},
        "spec": {
            "selector": {"matchLabels": {"app": "bench"}},
            "namespaceSelector": {"matchLabels": {"sidecarset.dev/bench": "true"}},
            "containers": [{"name": "shipper", "image": "shipper:1"}],
        },
    }
    return cached_objects.entry(defaults.apply_defaults(body))


async def _injector(client: KubeClient) -> PodInjector:
    sidecarsets: Store[cached_objects.SidecarSetEntry] = Store("sidecarsets")
    entry = _sidecarset()
    await sidecarsets.replace({entry.name: entry})
    namespaces: Store[cached_objects.NamespaceView] = Store("namespaces")
    await namespaces.replace({})  # every review misses: the lookup is made every time
    return PodInjector(
        sidecarsets=sidecarsets,
        namespaces=namespaces,
        revisions=Store("revisions"),
        client=client,
        now=lambda: datetime.now(UTC),
    )


async def _write_load(client: KubeClient, names: list[str]) -> float:
    """Patch every pod once through `client`, `WRITERS` at a time; the seconds it took."""
    queue = list(names)
    started = time.monotonic()
    deadline = started + MAX_SECONDS

    async def writer() -> None:
        while queue and time.monotonic() < deadline:
            name = queue.pop()
            path = resource_path("v1", "pods", namespace=NAMESPACE, name=name)
            stamp = str(time.time())
            await client.patch(path, {"metadata": {"annotations": {"bench/written": stamp}}})

    await asyncio.gather(*(writer() for _ in range(WRITERS)))
    return time.monotonic() - started


async def _reviews_during(injector: PodInjector, load: asyncio.Task[float]) -> dict[str, Any]:
    pod = workload.pod("review", {})
    pod["metadata"]["namespace"] = NAMESPACE
    latencies: list[float] = []
    failures = 0
    deadline = time.monotonic() + MAX_SECONDS
    n = 0
    while not load.done() and time.monotonic() < deadline:
        n += 1
        sent = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": f"review-{n}",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "CREATE",
                "namespace": NAMESPACE,
                "object": pod,
            },
        }
        request = admission.decode(json.dumps(sent).encode())
        t0 = time.perf_counter()
        try:
            response = await asyncio.wait_for(injector.handle(request), TIMEOUT_SECONDS)
            ok = response.allowed and bool(response.patch)
        except TimeoutError:
            ok = False
        took = time.perf_counter() - t0
        if ok:
            latencies.append(took)
        else:
            failures += 1
            latencies.append(float(TIMEOUT_SECONDS))
        await asyncio.sleep(REVIEW_GAP)
    return {
        "reviews": len(latencies),
        "failed_or_timed_out": failures,
        "p50_ms": ms(percentile(latencies, 50), 1),
        "p99_ms": ms(percentile(latencies, 99), 1),
        "max_ms": ms(max(latencies, default=float("nan")), 1),
    }


async def run(cluster: Cluster, quick: bool) -> dict[str, Any]:
    logs.configure("warning")  # the handler logs every injection at debug level
    pods = 300 if quick else 2000
    admin = await cluster.client()
    await harness.create_namespace(admin, NAMESPACE)
    names = [f"load-{i}" for i in range(pods)]
    path = resource_path("v1", "pods", namespace=NAMESPACE)

    def creator(name: str) -> Callable[[], Awaitable[object]]:
        return lambda: admin.create(path, workload.pod(name, {"load": "true"}, gated=True))

    created = await harness.bulk(
        (creator(name) for name in names),
        concurrency=20,
        deadline=time.monotonic() + 600,
    )
    harness.say(f"  {created.done} pods created ({created.failed} failed)")
    kubeconfig = str(cluster.plane.kubeconfig)
    figures: dict[str, Any] = {}
    phases = (
        ("no_writes", False, False),
        ("shared_client_before", True, True),
        ("admission_client_now", False, True),
    )
    try:
        for label, shared, writing in phases:
            limited = await KubeClient.from_kubeconfig(kubeconfig, qps=QPS, burst=BURST)
            own = await KubeClient.from_kubeconfig(kubeconfig, qps=0)
            async with limited, own:
                injector = await _injector(limited if shared else own)
                load = asyncio.create_task(
                    _write_load(limited, names) if writing else _idle(IDLE_SECONDS)
                )
                result = await _reviews_during(injector, load)
                result["write_seconds"] = round(await load, 1) if writing else 0.0
            figures[label] = result
            harness.say(
                f"  {label}: {pods if writing else 0} pod writes in {result['write_seconds']} s; "
                f"{result['reviews']} reviews, p50 {result['p50_ms']} ms, "
                f"p99 {result['p99_ms']} ms ({result['failed_or_timed_out']} failed or timed "
                f"out, counted at {TIMEOUT_SECONDS} s), max {result['max_ms']} ms"
            )
    finally:
        await harness.delete_namespace(admin, NAMESPACE)
    return {
        "params": {
            "pods_written": pods,
            "qps": QPS,
            "burst": BURST,
            "writers": WRITERS,
            "review_gap_s": REVIEW_GAP,
        },
        "figures": figures,
        "notes": [
            "every review misses the namespace cache and makes the one API call the pod "
            "webhook may make; failures and timeouts count in the percentiles at 5 s"
        ],
    }
