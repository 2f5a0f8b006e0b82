"""The controller part of the operator: event mapping, the work queue, workers, the Lease.

Only the Lease holder runs reconciles; every replica keeps its caches warm, so a successor takes
over within the lease duration without a cold start. Losing the lease cancels the workers at
once and ends the process (`LeadershipLost` propagates out of `run_controller`'s task, and
`app.run` exits non-zero), as controller-runtime does: the pod restarts with cold caches and a
fresh writer, judgement and queue, so nothing decided under the lost term (pending writes,
de-duplicated events, backoffs) carries into a later one. Two replicas never patch pods at the
same time.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog

from sidecarset.app import event_routing, webhooks_config
from sidecarset.app.reconciler import SidecarSetReconciler, round_write_limit
from sidecarset.app.writer import Writer
from sidecarset.core.podview import PodView
from sidecarset.shell import metrics
from sidecarset.shell.controller import Controller
from sidecarset.shell.leader import LeaderElector
from sidecarset.shell.workqueue import WorkQueue

if TYPE_CHECKING:
    from sidecarset.app.run import Operator

log = structlog.get_logger("sidecarset.controller")

POD_EVENT_BATCH = 0.1
POD_EVENT_BATCH_FACTOR = 10.0
"""Pod events are gathered so that one SidecarSet is reconciled at most once per 0.1 s, or per
10 times its last round's duration if longer (`Controller.watch`). A round is work over all of a
SidecarSet's pods: one round per pod event during a burst of pod creations or a rollout spent
CPU that grew with the pod count on rounds that mostly found nothing new. So rounds take at most
a tenth of the process's time while pod events stream in, whatever the pod count (0.4 s apart at
10,000 pods, 0.1 s at a few hundred), and a pod turning ready after a quiet spell is acted on at
once: a rollout waiting on its budget moves on without waiting out a fixed window (a fixed 0.5 s
window was half of every round of a 200-pod rollout). The webhooks do not wait for rounds at
all: they are served from their own thread (`shell.threaded_server`)."""
CONDITION_EVENT_BATCH = 10.0
"""Pod updates of nothing but the `SidecarSetUpgradable` condition (our own, written after each
pod update) bring at most one round per SidecarSet in this many seconds
(`event_routing.upgradable_condition_keys`). They trail a QPS-bound rollout by as long as its
pod updates took, and one round each, over every pod, was nearly half of a 10,000-pod rollout's
CPU (59 -> 32 s without them, one run each). Such a round finds nothing to do; it lets go of
the old pod objects the previous round judged."""


def _injected_index(pod: PodView) -> list[str]:
    return sorted(event_routing.injected_names(pod))


def _uninjected_index(pod: PodView) -> list[str]:
    return [] if event_routing.injected_names(pod) else ["true"]


def _uninjected_label_index(pod: PodView) -> list[str]:
    """Pods without any injection record, filed under each of their `key=value` labels: the
    missed-injection scan of a SidecarSet whose selector requires a label reads only these."""
    if event_routing.injected_names(pod):
        return []
    return [event_routing.label_index_value(key, value) for key, value in pod.labels.items()]


async def run_controller(operator: Operator, tg: asyncio.TaskGroup) -> asyncio.Task[None]:
    """Start the controller (under the Lease if enabled); returns once it is started, with the
    task to cancel to stop it (cancelling it releases the Lease)."""
    assert operator.pods is not None
    pods = operator.pods.store
    pods.add_index("injected", _injected_index)
    pods.add_index("uninjected", _uninjected_index)
    pods.add_index(event_routing.UNINJECTED_BY_LABEL, _uninjected_label_index)
    writer = Writer(
        operator.client, pods, namespace=operator.settings.namespace, now=operator.clock.now
    )
    reconciler = SidecarSetReconciler(
        sidecarsets=operator.sidecarsets.store,
        pods=pods,
        namespaces=operator.namespaces.store,
        revision_store=operator.revisions.store,
        writer=writer,
        failing_after=timedelta(seconds=operator.settings.failing_after),
        excluded_namespaces=webhooks_config.excluded_namespaces(
            operator.settings.namespace, operator.settings.excluded_namespaces
        ),
        critical_pods_skipped=operator.settings.skip_critical_pods,
        write_limit=round_write_limit(operator.settings.qps, operator.settings.burst),
    )
    queue: WorkQueue[str] = WorkQueue("sidecarsets", clock=operator.clock)
    controller: Controller[str] = Controller(
        "sidecarset",
        reconciler.reconcile,
        queue,
        clock=operator.clock,
        workers=operator.settings.workers,
        observe_duration=metrics.RECONCILE_DURATION.observe,
    )
    sidecarsets = operator.sidecarsets.store
    await controller.watch(sidecarsets, event_routing.sidecarset_keys)
    await controller.watch(
        pods,
        event_routing.pod_keys(sidecarsets),
        batch_seconds=POD_EVENT_BATCH,
        batch_factor=POD_EVENT_BATCH_FACTOR,
    )
    await controller.watch(
        pods,
        event_routing.upgradable_condition_keys(sidecarsets),
        batch_seconds=CONDITION_EVENT_BATCH,
    )
    await controller.watch(operator.namespaces.store, event_routing.namespace_keys(sidecarsets))
    await controller.watch(operator.revisions.store, event_routing.revision_keys)

    async def run() -> None:
        """The controller's workers, and the writer's queued pod conditions beside them."""
        conditions = asyncio.create_task(writer.write_queued_conditions(), name="conditions")
        try:
            await controller.run()
        finally:
            conditions.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await conditions

    async def lead() -> None:
        if not operator.settings.leader_election:
            metrics.LEADER.set(1)
            await run()
            return
        elector = LeaderElector(
            operator.client,
            namespace=operator.settings.namespace,
            name=operator.settings.lease_name,
            clock=operator.clock,
            lease_duration=operator.settings.lease_duration,
            renew_deadline=operator.settings.lease_duration * 2 / 3,
            retry_period=operator.settings.lease_duration * 2 / 15,
            # As a kubelet renews its node Lease: 3.75 s for the default 15 s, where client-go
            # renews every retry period (2 s). The deadline and the failed renewals' retries are
            # client-go's, so losing the Lease is noticed as soon.
            renew_interval=operator.settings.lease_duration / 4,
        )
        try:
            async with elector.leading():
                metrics.LEADER.set(1)
                log.info("leading; controller started", identity=elector.identity)
                await run()
        finally:
            metrics.LEADER.set(0)

    tg.create_task(export_depth(queue), name="queue-depth")
    return tg.create_task(lead(), name="controller")


async def export_depth(queue: WorkQueue[str], interval: float = 2.0) -> None:
    """Keep `sidecarset_workqueue_depth` at the keys ready for a worker, as client-go's
    workqueue depth counts them: a key waiting out a requeue delay or a backoff is not work
    waiting for a worker, and counting those showed a busy queue on an idle controller."""
    while True:
        metrics.QUEUE_DEPTH.set(len(queue))
        await asyncio.sleep(interval)
