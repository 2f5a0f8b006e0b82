"""Benchmark 6: the missed-injection scan at 10,000 pods x 20 SidecarSets.

Every round of every SidecarSet looks for selected pods that carry no injection record (admitted
while the webhook was unreachable). It used to read every such pod of the cluster, each round;
with 20 SidecarSets rolling (a round every 5 s each) that was the whole cache's uninjected pods,
20 times over, on the loop that also answers the webhook. It now reads, for a SidecarSet whose
selector requires a label, only the uninjected pods carrying that label (a pod-store index).

No cluster is needed: the benchmark fills the controller's own pod store (with its own indexes)
with 10,000 pods (1,000 with --quick): half of them injected by one of 20 SidecarSets (each
selecting `app=svc-<i>`), a tenth selected but never injected, the rest belonging to 50 other
apps no SidecarSet selects; and
times one scan per SidecarSet through the reconciler, reading every uninjected pod (the way
before) and through the label index (now). Both must find the same pods.
"""

from __future__ import annotations

import time
from typing import Any

from bench import harness
from bench.harness import Cluster, ms, percentile
from sidecarset.app.cached_objects import NamespaceView, SidecarSetEntry
from sidecarset.app.controller import (
    _injected_index,
    _uninjected_index,
    _uninjected_label_index,
)
from sidecarset.app.event_routing import UNINJECTED_BY_LABEL
from sidecarset.app.reconciler import SidecarSetReconciler
from sidecarset.app.writer import Writer
from sidecarset.core import pod_contract
from sidecarset.core.model import SidecarSet, parse_sidecarset
from sidecarset.core.podview import PodView, podview_from_dict
from sidecarset.shell.store import Store

NAME = "missed_scan"
OPT_IN = True
"""Run with `--only missed_scan`; it needs no cluster but the runner starts one anyway."""
SIDECARSETS = 20
REPEAT = 5


def _sidecarset(i: int) -> SidecarSet:
    return parse_sidecarset(
        {
            "metadata": {"name": f"set-{i}", "creationTimestamp": "2025-01-01T00:00:00Z"},
            "spec": {
                "selector": {"matchLabels": {"app": f"svc-{i}"}},
                "containers": [{"name": "shipper", "image": "shipper:1"}],
            },
        }
    )


def _pod(n: int) -> PodView:
    """Even: injected by `set-<n % 20>`; n % 10 == 1: selected but never injected (missed);
    other odd: an app no SidecarSet selects."""
    injected = n % 2 == 0
    selected = injected or n % 10 == 1
    app = f"svc-{n % SIDECARSETS}" if selected else f"other-{n % 50}"
    annotations = (
        {pod_contract.INJECTED_LIST_ANNOTATION: f"set-{n % SIDECARSETS}"} if injected else {}
    )
    return podview_from_dict(
        {
            "metadata": {
                "name": f"pod-{n}",
                "namespace": f"ns-{n % 100}",
                "creationTimestamp": "2025-01-01T01:00:00Z",
                "labels": {"app": app, "pod-template-hash": f"h{n % 7}", "tier": "web"},
                "annotations": annotations,
            },
            "spec": {"containers": [{"name": "app", "image": "app:1"}]},
            "status": {"phase": "Running"},
        }
    )


async def _reconciler(pods: list[PodView], indexed: bool) -> SidecarSetReconciler:
    store: Store[PodView] = Store("pods")
    store.add_index("injected", _injected_index)
    store.add_index("uninjected", _uninjected_index)
    if indexed:
        store.add_index(UNINJECTED_BY_LABEL, _uninjected_label_index)
    await store.replace({f"{p.namespace}/{p.name}": p for p in pods})
    namespaces: Store[NamespaceView] = Store("namespaces")
    await namespaces.replace({})
    return SidecarSetReconciler(
        sidecarsets=Store[SidecarSetEntry]("sidecarsets"),
        pods=store,
        namespaces=namespaces,
        revision_store=Store[dict[str, Any]]("revisions"),
        writer=Writer(None, store, namespace="bench"),  # type: ignore[arg-type]  # never writes
    )


def _time_scans(
    reconciler: SidecarSetReconciler, sets: list[SidecarSet]
) -> tuple[list[float], list[list[str]]]:
    """Seconds of one scan per SidecarSet, `REPEAT` times; and what the last pass found."""
    passes: list[float] = []
    found: list[list[str]] = []
    for _ in range(REPEAT):
        found = []
        t0 = time.perf_counter()
        for sidecarset in sets:
            found.append(sorted(str(p.key) for p in reconciler.missed_injection(sidecarset)))
        passes.append(time.perf_counter() - t0)
    return passes, found


async def run(cluster: Cluster, quick: bool) -> dict[str, Any]:
    del cluster  # in-memory only
    count = 1_000 if quick else 10_000
    pods = [_pod(n) for n in range(count)]
    sets = [_sidecarset(i) for i in range(SIDECARSETS)]
    figures: dict[str, Any] = {}
    results = {}
    for label, indexed in (("every_uninjected_pod_before", False), ("label_index_now", True)):
        reconciler = await _reconciler(pods, indexed)
        passes, found = _time_scans(reconciler, sets)
        results[label] = found
        figures[label] = {
            "ms_per_20_scans_p50": ms(percentile(passes, 50), 2),
            "ms_per_20_scans_max": ms(max(passes), 2),
        }
        harness.say(
            f"  {label}: one scan per SidecarSet ({SIDECARSETS}) over {count} pods: "
            f"p50 {figures[label]['ms_per_20_scans_p50']} ms, "
            f"max {figures[label]['ms_per_20_scans_max']} ms ({REPEAT} passes)"
        )
    same = results["every_uninjected_pod_before"] == results["label_index_now"]
    figures["same_pods_found"] = same
    figures["missed_found"] = sum(len(found) for found in results["label_index_now"])
    if not same:
        raise AssertionError("the indexed scan found other pods than the full scan")
    return {
        "params": {"pods": count, "sidecarsets": SIDECARSETS, "passes": REPEAT},
        "figures": figures,
    }
