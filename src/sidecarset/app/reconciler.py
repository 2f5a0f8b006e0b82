"""SidecarSetReconciler.reconcile(name): one round of one SidecarSet.

Reads the synced stores, asks the core for the round's decision (`round_decision.decide_round`:
scope, revision, plan, missed injections, status; the same function `sidecarset plan` shows) and
has the writer carry it out. The status is written after the round's writes, computed from the
same pod snapshot the plan used, so it never reports a round that was not attempted; the next
event (the pod cache catching up) refreshes it.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from sidecarset.app import event_routing, webhooks_config
from sidecarset.app.cached_objects import NamespaceView, SidecarSetEntry
from sidecarset.app.writer import Writer
from sidecarset.core import (
    model,
    pod_classification,
    pod_contract,
    revisions,
    round_decision,
    selectors,
    status,
)
from sidecarset.core.podview import PodView
from sidecarset.shell import metrics
from sidecarset.shell.controller import Result
from sidecarset.shell.store import Store

log = structlog.get_logger("sidecarset.reconciler")

# While pods are rolling, look again at least this often even without events (a pod whose
# readiness never changes sends none).
ROLLING_RESYNC = 5.0

ROLLOUT_STATES = ("matched", "updated", "ready", "updated_ready", "missed_injection")
"""The `state` label values of `sidecarset_pods`."""


ROUND_WRITE_SECONDS = 5.0


def round_write_limit(qps: float, burst: int) -> int | None:
    """Pod updates one round hands the writer: as many as the client's rate limit lets out in
    `ROUND_WRITE_SECONDS` (250 at the default 50/s), at least a burst; None without a limit.

    The writer sends a round's updates before the next round starts, so a larger round only
    builds its last updates early, from an older view of their pods: the first round of a new
    image at 10,000 pods built the 1,000 updates a 10 % budget allows, 20 s of writes at 50/s.
    The pause between two rounds (a tenth of a second or so) is small beside 5 s of writes.
    """
    if qps <= 0:
        return None
    return max(burst, int(qps * ROUND_WRITE_SECONDS))


class SidecarSetReconciler:
    def __init__(
        self,
        *,
        sidecarsets: Store[SidecarSetEntry],
        pods: Store[PodView],
        namespaces: Store[NamespaceView],
        revision_store: Store[dict[str, Any]],
        writer: Writer,
        failing_after: timedelta = status.DEFAULT_FAILING_AFTER,
        excluded_namespaces: Collection[str] = (),
        critical_pods_skipped: bool = False,
        write_limit: int | None = None,
    ) -> None:
        """`excluded_namespaces`: where the pod webhook is never called (its namespaceSelector),
        so uninjected pods there are by design, not missed; likewise system-critical pods when
        `critical_pods_skipped` (its match condition). `write_limit`: pod updates per round
        (`round_write_limit`)."""
        self._write_limit = write_limit
        self._failing_after = failing_after
        self._excluded = frozenset(excluded_namespaces)
        self._skipped_classes = (
            webhooks_config.CRITICAL_PRIORITY_CLASSES if critical_pods_skipped else ()
        )
        self._sidecarsets = sidecarsets
        self._pods = pods
        self._namespaces = namespaces
        self._revisions = revision_store
        self._writer = writer
        # Per SidecarSet: the pod judgements of its last round, reused for unchanged pods.
        self._judgements: dict[str, pod_classification.Judgements] = {}

    def pods_for(self, sidecarset: model.SidecarSet) -> list[PodView]:
        """Pods in scope: injected by this SidecarSet, in namespaces it (still) selects."""
        injected = self._pods.by_index("injected", sidecarset.metadata.name)
        return round_decision.pods_in_scope(sidecarset, injected, self._namespace_labels)

    def _namespace_labels(self, namespace: str) -> Mapping[str, str] | None:
        ns = self._namespaces.get(namespace)
        return ns.metadata.labels if ns is not None else None

    def missed_injection(self, sidecarset: model.SidecarSet) -> list[PodView]:
        """`round_decision.missed_injections` over the pods without any injection record."""
        return round_decision.missed_injections(
            sidecarset,
            self._uninjected(sidecarset),
            self._namespace_labels,
            self._excluded,
            self._skipped_classes,
        )

    def _uninjected(self, sidecarset: model.SidecarSet) -> list[PodView]:
        """The pods without any injection record that the selector could match: those with
        its required label when it has one and the pod store indexes them by label (an index
        lookup instead of every uninjected pod, each round of each SidecarSet), else all."""
        label = selectors.required_label(sidecarset.spec.selector)
        if label is not None and self._pods.has_index(event_routing.UNINJECTED_BY_LABEL):
            value = event_routing.label_index_value(*label)
            return self._pods.by_index(event_routing.UNINJECTED_BY_LABEL, value)
        return self._pods.by_index("uninjected", "true")

    async def reconcile(self, name: str) -> Result:
        entry = self._sidecarsets.get(name)
        if entry is None:
            # Deleted: pods keep their sidecars, revisions are GC'd; what we kept per
            # SidecarSet goes, so a churn of SidecarSets does not grow memory or series.
            self._judgements.pop(name, None)
            self._writer.forget(name)
            self._unexport(name)
            return Result()
        sidecarset = entry.sidecarset
        if sidecarset is None:
            log.error(
                "SidecarSet cannot be read; fix or delete it", sidecarset=name, error=entry.error
            )
            return Result()
        now = datetime.now(UTC)
        with structlog.contextvars.bound_contextvars(sidecarset=name):
            return await self._round(entry, sidecarset, now)

    async def _round(
        self, entry: SidecarSetEntry, sidecarset: model.SidecarSet, now: datetime
    ) -> Result:
        name = sidecarset.metadata.name
        started = time.perf_counter()
        decision = round_decision.decide_round(
            sidecarset,
            injected=self._pods.by_index("injected", name),
            uninjected=self._uninjected(sidecarset),
            namespace_labels=self._namespace_labels,
            revision_records=revisions.revision_records(name, self._revisions.values()),
            now=now,
            pending=self._writer.pending(),
            judgements=self._judgements.setdefault(name, pod_classification.Judgements()),
            excluded_namespaces=self._excluded,
            skipped_priority_classes=self._skipped_classes,
            failing_after=self._failing_after,
            write_limit=self._write_limit,
        )
        busy = time.perf_counter() - started
        if decision.records_revision:
            await self._writer.record_revision(
                sidecarset, decision.revision, self._revisions.values()
            )
        if decision.pruning.delete:
            await self._writer.delete_revisions(decision.pruning.delete)

        plan = decision.plan
        for warning in plan.warnings:
            log.warning("strategy value unreadable", detail=warning)
        for condition in plan.conditions:
            await self._writer.set_condition(condition)
        if plan.blocked:
            fields = sorted({b.field for b in plan.blocked.values() if b.field})
            await self._writer.event(
                sidecarset,
                "NotUpgradablePods",
                f"{len(plan.blocked)} pod(s) cannot be updated in place"
                + (f" (changed: {', '.join(fields)})" if fields else "")
                + "; they keep the old sidecars until recreated",
                warning=True,
                now=now,
            )
        updated = await self._writer.update_pods(name, (*plan.flip, *plan.update))
        repaired = sorted(str(u.pod) for u in plan.update if u.repairs)
        if repaired:
            await self._writer.event(
                sidecarset,
                "PodAnnotationRepaired",
                f"{len(repaired)} pod(s) had an unreadable {pod_contract.HASH_ANNOTATION}"
                " annotation; "
                "it is rewritten with this SidecarSet's entry (other SidecarSets record theirs "
                f"again): {', '.join(repaired[:5])}",
                warning=True,
                now=now,
            )
        if plan.update:
            log.info(
                "round applied",
                updating=len(plan.update),
                written=updated,
                flips=len(plan.flip),
                held=len(plan.held),
            )

        log.debug(
            "round planned",
            update=len(plan.update),
            held=len(plan.held),
            disrupted=len(plan.budget.disrupted),
        )
        missed = decision.missed
        if missed:
            await self._writer.event(
                sidecarset,
                "MissedInjection",
                f"{len(missed)} selected pod(s) were created without this SidecarSet's sidecars "
                f"(admitted while the webhook was unreachable): "
                f"{', '.join(sorted(str(p.key) for p in missed)[:5])}; recreate them to inject",
                warning=True,
                now=now,
            )
        new_status = decision.status
        deferred = await self._writer.status(sidecarset, entry.raw.get("status") or {}, new_status)
        self._export(sidecarset, new_status, missed=len(missed))

        requeue = plan.requeue_after.total_seconds() if plan.requeue_after is not None else None
        rolling = new_status.updated_pods < new_status.matched_pods or (
            new_status.updated_ready_pods < new_status.updated_pods
        )
        if rolling and not sidecarset.spec.update_strategy.paused:
            requeue = min(requeue or ROLLING_RESYNC, ROLLING_RESYNC)
        if deferred is not None:
            requeue = min(requeue or deferred, deferred)
        return Result(requeue_after=requeue, busy_seconds=busy)

    def _unexport(self, name: str) -> None:
        for state in ROLLOUT_STATES:
            try:
                metrics.ROLLOUT_PODS.remove(name, state)
            except KeyError:
                pass  # never exported (deleted before its first round finished)

    def _export(
        self, sidecarset: model.SidecarSet, st: model.SidecarSetStatus, *, missed: int
    ) -> None:
        name = sidecarset.metadata.name
        for state, value in (
            ("matched", st.matched_pods),
            ("updated", st.updated_pods),
            ("ready", st.ready_pods),
            ("updated_ready", st.updated_ready_pods or 0),
            ("missed_injection", missed),
        ):
            metrics.ROLLOUT_PODS.labels(sidecarset=name, state=state).set(value)
