"""The controller's own metrics and per-SidecarSet memory: the queue depth counts ready keys,
and a deleted SidecarSet leaves no series and no de-duplication entries behind."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import REGISTRY

from sidecarset.app.cached_objects import NamespaceView, SidecarSetEntry
from sidecarset.app.controller import _injected_index, _uninjected_index, export_depth
from sidecarset.app.reconciler import ROLLOUT_STATES, SidecarSetReconciler
from sidecarset.app.writer import Writer
from sidecarset.core.model import parse_sidecarset
from sidecarset.core.podview import PodView
from sidecarset.shell import metrics
from sidecarset.shell.clock import RealClock
from sidecarset.shell.controller import Controller, Result
from sidecarset.shell.store import Store
from sidecarset.shell.workqueue import WorkQueue
from tests.unit.private_loop import run


def depth() -> float | None:
    return REGISTRY.get_sample_value("sidecarset_workqueue_depth")


def test_the_queue_depth_counts_ready_keys_not_delayed_ones() -> None:
    async def go() -> tuple[float | None, float | None]:
        queue: WorkQueue[str] = WorkQueue("depth", clock=RealClock())
        queue.add_after("backing-off", 60)
        task = asyncio.create_task(export_depth(queue, interval=0.01))
        await asyncio.sleep(0.05)
        delayed_only = depth()
        queue.add("ready")
        await asyncio.sleep(0.05)
        task.cancel()
        queue.shutdown()
        return delayed_only, depth()

    delayed_only, with_ready = run(go())

    assert delayed_only == 0
    assert with_ready == 1


def test_reconciling_a_deleted_sidecarset_drops_its_series_and_sent_events() -> None:
    async def go() -> tuple[list[str], Writer]:
        pods: Store[PodView] = Store("pods")
        pods.add_index("injected", _injected_index)
        pods.add_index("uninjected", _uninjected_index)
        await pods.replace({})
        sidecarsets: Store[SidecarSetEntry] = Store("sidecarsets")
        await sidecarsets.replace({})
        namespaces: Store[NamespaceView] = Store("namespaces")
        await namespaces.replace({})
        writer = Writer(None, pods, namespace="ops")  # type: ignore[arg-type]
        reconciler = SidecarSetReconciler(
            sidecarsets=sidecarsets,
            pods=pods,
            namespaces=namespaces,
            revision_store=Store[dict[str, Any]]("revisions"),
            writer=writer,
        )
        gone = parse_sidecarset(
            {"metadata": {"name": "gone"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
        )
        for state in ROLLOUT_STATES:
            metrics.ROLLOUT_PODS.labels(sidecarset="gone", state=state).set(3)
        writer._events_sent[("gone", "MissedInjection")] = "1 pod"
        writer._status_written["gone"] = 1.0
        await reconciler.reconcile(gone.name)
        left = [
            state
            for state in ROLLOUT_STATES
            if REGISTRY.get_sample_value("sidecarset_pods", {"sidecarset": "gone", "state": state})
            is not None
        ]
        return left, writer

    left, writer = run(go())

    assert left == []
    assert writer._events_sent == {}
    assert writer._status_written == {}


def test_every_reconcile_error_kind_is_exported_from_the_start() -> None:
    for kind in ("conflict", "terminal", "error"):
        value = REGISTRY.get_sample_value("sidecarset_reconcile_errors_total", {"kind": kind})
        assert value is not None, kind


def test_a_failing_reconcile_increments_the_error_counter() -> None:
    async def failing(_key: str) -> Result:
        raise RuntimeError("boom")

    async def go() -> None:
        queue: WorkQueue[str] = WorkQueue("fail", clock=RealClock())
        controller: Controller[str] = Controller("fail", failing, queue, clock=RealClock())
        await controller.process("x")
        queue.shutdown()

    labels = {"kind": "error"}
    before = REGISTRY.get_sample_value("sidecarset_reconcile_errors_total", labels) or 0.0
    run(go())

    assert REGISTRY.get_sample_value("sidecarset_reconcile_errors_total", labels) == before + 1
