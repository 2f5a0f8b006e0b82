"""SidecarSetReconciler.reconcile(name): one round of one SidecarSet.

Reads the synced stores, asks the core for decisions (revision, round plan, status) and has the
writer carry them out. Status is computed after the round's writes (spec 11.7) from the same pod
snapshot the plan used, so it never reports a round that was not attempted; the next event
(the pod cache catching up) refreshes it.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from sidecarset.app.projections import NamespaceView, SidecarSetEntry
from sidecarset.app.writer import Writer
from sidecarset.core import candidates, model, revisions, rollout, selectors, status, wire
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


def revision_records(
    name: str, objects: Sequence[dict[str, Any]]
) -> list[revisions.RevisionRecord]:
    records = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        if labels.get(wire.SIDECARSET_NAME_LABEL) != name:
            continue
        records.append(
            revisions.RevisionRecord(
                name=str(meta.get("name", "")),
                revision=int(obj.get("revision") or 0),
                data=json.dumps(obj.get("data"), sort_keys=True),
                labels=dict(labels),
            )
        )
    return records


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
    ) -> None:
        """`excluded_namespaces`: where the pod webhook is never called (its namespaceSelector),
        so uninjected pods there are by design, not missed."""
        self._failing_after = failing_after
        self._excluded = frozenset(excluded_namespaces)
        self._sidecarsets = sidecarsets
        self._pods = pods
        self._namespaces = namespaces
        self._revisions = revision_store
        self._writer = writer
        # Per SidecarSet: the pod judgements of its last round, reused for unchanged pods.
        self._judgements: dict[str, candidates.Judgements] = {}

    def pods_for(self, sidecarset: model.SidecarSet) -> list[PodView]:
        """Pods in scope: injected by this SidecarSet, in namespaces it (still) selects."""
        name = sidecarset.metadata.name
        in_scope: dict[str, bool] = {}  # per namespace: pods share a few
        scoped = []
        for pod in self._pods.by_index("injected", name):
            namespace = pod.namespace
            if namespace not in in_scope:
                in_scope[namespace] = self._namespace_in_scope(sidecarset, namespace)
            if in_scope[namespace]:
                scoped.append(pod)
        return scoped

    def _namespace_in_scope(self, sidecarset: model.SidecarSet, namespace: str) -> bool:
        if sidecarset.spec.namespace and sidecarset.spec.namespace != namespace:
            return False
        ns_selector = sidecarset.spec.namespace_selector
        if ns_selector is None:
            return True
        ns = self._namespaces.get(namespace)
        labels = dict(ns.metadata.labels) if ns is not None else {}
        return selectors.matches_or_false(ns_selector, labels)

    def missed_injection(self, sidecarset: model.SidecarSet) -> list[PodView]:
        """Active pods its selector matches that carry no injection record at all although they
        were created after the SidecarSet (admitted while the webhook was unreachable under
        failurePolicy Ignore): reported, never silently dropped.

        Not counted: pods that opted out, pods in namespaces the webhook never sees, and pods
        older than the SidecarSet (no webhook could have injected them). Creation times have
        second precision, so a pod created in the SidecarSet's own second is not counted.
        """
        missed: list[PodView] = []
        if sidecarset.spec.selector is None:
            return missed
        born = sidecarset.metadata.creation_timestamp
        for pod in self._pods.by_index("uninjected", "true"):
            if not pod.is_active or wire.is_injection_opted_out(pod.labels, pod.annotations):
                continue
            if pod.namespace in self._excluded:
                continue
            created = pod.metadata.creation_timestamp
            if born is not None and created is not None and created <= born:
                continue
            if selectors.matches_or_false(sidecarset.spec.selector, pod.labels) and (
                self._namespace_in_scope(sidecarset, pod.namespace)
            ):
                missed.append(pod)
        return missed

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
        pods = self.pods_for(sidecarset)
        existing = revision_records(sidecarset.metadata.name, self._revisions.values())
        previous_status = sidecarset.status
        decision = revisions.decide_revision(
            sidecarset, existing, collision_count=previous_status.collision_count or 0
        )
        if decision.action is not revisions.RevisionAction.REUSE or (
            decision.custom_version_label is not None
        ):
            await self._writer.record_revision(sidecarset, decision, self._revisions.values())
        history = revisions.history_after(existing, decision)
        pruning = revisions.revisions_to_prune(sidecarset, history, pods)
        if pruning.delete:
            await self._writer.delete_revisions(pruning.delete)

        judgements = self._judgements.setdefault(sidecarset.name, candidates.Judgements())
        plan = rollout.plan_round(
            sidecarset,
            pods,
            now,
            latest_revision=decision.name,
            pending=self._writer.pending(),
            judgements=judgements,
        )
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
        updated = await self._writer.update_pods(
            sidecarset.metadata.name, (*plan.flip, *plan.update)
        )
        repaired = sorted(str(u.pod) for u in plan.update if u.repairs)
        if repaired:
            await self._writer.event(
                sidecarset,
                "PodAnnotationRepaired",
                f"{len(repaired)} pod(s) had an unreadable {wire.HASH_ANNOTATION} annotation; "
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
        missed = self.missed_injection(sidecarset)
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
        new_status = status.compute_status(
            sidecarset,
            plan,
            latest_revision=decision.name,
            collision_count=decision.collision_count,
            now=now,
            previous_conditions=previous_status.conditions,
            failing_after=self._failing_after,
            missed_injection=[p.key for p in missed],
        )
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
        return Result(requeue_after=requeue)

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
