"""One round of one SidecarSet, decided whole: the pods it sees, its revision, the plan, the
missed injections and the status to write.

The reconciler carries the decision out; `sidecarset plan` shows it. Both call `decide_round`,
so what `plan` prints is what the controller does (they used to write the pipeline out twice,
and the copies drifted: `plan` counted pods in excluded namespaces as missed injections). The
status is decided before the round's writes, from the same pod snapshot as the plan: it never
depends on how the writes went, and the next round (the cache catching up) refreshes it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sidecarset.core import (
    model,
    pod_classification,
    pod_contract,
    revisions,
    rollout,
    selectors,
    status,
)
from sidecarset.core.podview import PodKey, PodView

NamespaceLabels = Callable[[str], Mapping[str, str] | None]
"""A namespace's labels, or None when the namespace is not known (read as no labels)."""


@dataclass(frozen=True)
class RoundDecision:
    pods: tuple[PodView, ...]
    """Pods in scope: injected by this SidecarSet, in namespaces it (still) selects."""
    revision: revisions.RevisionDecision
    pruning: revisions.Pruning
    plan: rollout.RoundPlan
    missed: tuple[PodView, ...]
    """Active selected pods created after the SidecarSet without any injection record."""
    status: model.SidecarSetStatus

    @property
    def records_revision(self) -> bool:
        """A revision must be created, renumbered or labelled this round."""
        return (
            self.revision.action is not revisions.RevisionAction.REUSE
            or self.revision.custom_version_label is not None
        )


def namespace_in_scope(
    sidecarset: model.SidecarSet, namespace: str, labels: Mapping[str, str] | None
) -> bool:
    """`spec.namespace` and `spec.namespaceSelector` allow pods of `namespace`."""
    spec = sidecarset.spec
    if spec.namespace and spec.namespace != namespace:
        return False
    if spec.namespace_selector is None:
        return True
    return selectors.matches_or_false(spec.namespace_selector, labels or {})


def pods_in_scope(
    sidecarset: model.SidecarSet, injected: Iterable[PodView], namespace_labels: NamespaceLabels
) -> list[PodView]:
    """Of the pods injected by this SidecarSet, those in namespaces it (still) selects."""
    in_scope: dict[str, bool] = {}  # per namespace: pods share a few
    scoped = []
    for pod in injected:
        namespace = pod.namespace
        if namespace not in in_scope:
            in_scope[namespace] = namespace_in_scope(
                sidecarset, namespace, namespace_labels(namespace)
            )
        if in_scope[namespace]:
            scoped.append(pod)
    return scoped


def missed_injections(
    sidecarset: model.SidecarSet,
    uninjected: Iterable[PodView],
    namespace_labels: NamespaceLabels,
    excluded_namespaces: Collection[str] = (),
    skipped_priority_classes: Collection[str] = (),
) -> list[PodView]:
    """Of the pods without any injection record, the active ones the SidecarSet selects that
    were created after it (admitted while the webhook was unreachable under failurePolicy
    Ignore): reported, never silently dropped.

    Not counted: pods that opted out, pods the webhook never sees (in `excluded_namespaces`, or
    of a priority class in `skipped_priority_classes`, its match condition), and pods older
    than the SidecarSet (no webhook could have injected them). Creation times have second
    precision, so a pod created in the SidecarSet's own second is not counted.
    """
    missed: list[PodView] = []
    if sidecarset.spec.selector is None:
        return missed
    born = sidecarset.metadata.creation_timestamp
    for pod in uninjected:
        if not pod.is_active or pod_contract.is_injection_opted_out(pod.labels, pod.annotations):
            continue
        if pod.namespace in excluded_namespaces:
            continue
        if pod.spec.priority_class_name in skipped_priority_classes:
            continue
        created = pod.metadata.creation_timestamp
        if born is not None and created is not None and created <= born:
            continue
        if selectors.matches_or_false(sidecarset.spec.selector, pod.labels) and (
            namespace_in_scope(sidecarset, pod.namespace, namespace_labels(pod.namespace))
        ):
            missed.append(pod)
    return missed


def decide_round(
    sidecarset: model.SidecarSet,
    *,
    injected: Iterable[PodView],
    uninjected: Iterable[PodView],
    namespace_labels: NamespaceLabels,
    revision_records: Sequence[revisions.RevisionRecord],
    now: datetime,
    pending: Collection[PodKey] = (),
    judgements: pod_classification.Judgements | None = None,
    excluded_namespaces: Collection[str] = (),
    skipped_priority_classes: Collection[str] = (),
    failing_after: timedelta = status.DEFAULT_FAILING_AFTER,
    write_limit: int | None = None,
) -> RoundDecision:
    """Scope -> revision -> plan -> missed injections -> status, for one round.

    `injected`: pods whose injected-list names this SidecarSet; `uninjected`: pods with no
    injection record at all (both may hold more: they are filtered here). `revision_records`:
    this SidecarSet's ControllerRevisions. `pending`: pods with a write of the caller's not yet
    visible (an outside observer passes none).
    """
    pods = tuple(pods_in_scope(sidecarset, injected, namespace_labels))
    previous = sidecarset.status
    revision = revisions.decide_revision(
        sidecarset, revision_records, collision_count=previous.collision_count or 0
    )
    history = revisions.history_after(revision_records, revision)
    pruning = revisions.revisions_to_prune(sidecarset, history, pods)
    plan = rollout.plan_round(
        sidecarset,
        pods,
        now,
        latest_revision=revision.name,
        pending=pending,
        judgements=judgements,
        write_limit=write_limit,
    )
    missed = tuple(
        missed_injections(
            sidecarset, uninjected, namespace_labels, excluded_namespaces, skipped_priority_classes
        )
    )
    new_status = status.compute_status(
        sidecarset,
        plan,
        latest_revision=revision.name,
        collision_count=revision.collision_count,
        now=now,
        previous_conditions=previous.conditions,
        failing_after=failing_after,
        missed_injection=[p.key for p in missed],
    )
    return RoundDecision(
        pods=pods,
        revision=revision,
        pruning=pruning,
        plan=plan,
        missed=missed,
        status=new_status,
    )
