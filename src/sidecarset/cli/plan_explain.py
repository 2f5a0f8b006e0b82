"""What `sidecarset plan` explains, and the explaining itself: pure, over what was fetched.

`explain` runs the controller's own round decision (`round_decision.decide_round`) on the
SidecarSet, pods and revisions, and keeps its reasons: the pods to update in order with their
image changes, why every other matched pod waits, and the pods the selector matches that never
got this SidecarSet. No I/O, so it is tested on plain data; `plan` fetches, `plan_output` prints.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec

from sidecarset.cli.status import summary
from sidecarset.core import (
    model,
    pod_contract,
    revisions,
    rollout,
    round_decision,
    selectors,
    status,
)
from sidecarset.core.model import IntOrString, LabelSelector
from sidecarset.core.podview import PodKey, PodView
from sidecarset.core.rollout.round_plan import Hold

UPDATE = "update"

# Held pods are listed in this order: what blocks a rollout first, what is settled last.
HOLD_ORDER: tuple[Hold, ...] = (
    Hold.NOT_UPGRADABLE,
    Hold.BUDGET,
    Hold.NEXT_ROUND,
    Hold.IN_FLIGHT,
    Hold.PAUSED,
    Hold.NOT_UPDATE,
    Hold.NOT_SELECTED,
    Hold.PARTITION,
    Hold.UPDATED,
)

NOT_INJECTED = "notInjected"
OPTED_OUT = "optedOut"
OTHERS_ONLY = "otherSidecarSetsOnly"
INACTIVE = "inactive"
INCONSISTENT = "sidecarMissing"

EXAMPLES = 5


# --- what is explained ------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageChange:
    container: str
    previous: str
    image: str


@dataclass(frozen=True)
class PodDecision:
    """One matched pod: `update` (with its 1-based `order`) or the hold reason, explained."""

    pod: PodKey
    decision: str
    detail: str
    available: bool
    order: int | None = None
    field: str | None = None
    images: tuple[ImageChange, ...] = ()


@dataclass(frozen=True)
class PodNote:
    """A pod outside the round: never injected, or injected but not counted."""

    pod: PodKey
    reason: str
    detail: str


@dataclass(frozen=True)
class Explanation:
    name: str
    generation: int
    revision: str
    strategy: model.SidecarSetUpdateStrategy
    budget: rollout.Budget
    decisions: tuple[PodDecision, ...]
    """Updates in update order, then held pods by hold reason (`HOLD_ORDER`) and name."""
    missed: tuple[PodNote, ...]
    not_counted: tuple[PodNote, ...]
    state: str
    message: str
    warnings: tuple[str, ...] = ()

    @property
    def updates(self) -> tuple[PodDecision, ...]:
        return tuple(d for d in self.decisions if d.decision == UPDATE)


def explain(
    sidecarset: model.SidecarSet,
    pods: Sequence[PodView],
    revision_objects: Sequence[dict[str, Any]],
    now: datetime,
    *,
    namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
    excluded_namespaces: Collection[str] = (),
    skipped_priority_classes: Collection[str] = (),
    warnings: Sequence[str] = (),
    failing_after: timedelta = status.DEFAULT_FAILING_AFTER,
) -> Explanation:
    """Decide the next round as the controller does and explain every pod's part in it.

    `pods`: every pod of the cluster; `namespace_labels`: each namespace's labels (needed only
    for a namespaceSelector); `excluded_namespaces`: where the pod webhook is never called. The
    controller also holds pods with a write of its own not yet visible (`inFlight`); an outside
    observer cannot know them, so this plan assumes there are none.
    """
    ss = sidecarset
    labels = namespace_labels or {}
    injected = [p for p in pods if ss.name in pod_contract.read_injected_list(p.annotations)]
    uninjected = [p for p in pods if not pod_contract.read_injected_list(p.annotations)]
    decision = round_decision.decide_round(
        ss,
        injected=injected,
        uninjected=uninjected,
        namespace_labels=labels.get,
        revision_records=revisions.revision_records(ss.name, revision_objects),
        now=now,
        excluded_namespaces=excluded_namespaces,
        skipped_priority_classes=skipped_priority_classes,
        failing_after=failing_after,
    )
    plan = decision.plan
    computed = decision.status
    scoped = decision.pods
    state, message = summary(msgspec.to_builtins(computed.conditions))
    by_key = {key: pod for key, pod, _ in plan.matched}

    decisions = [
        PodDecision(
            pod=update.pod,
            decision=UPDATE,
            order=position,
            detail=_update_detail(update),
            available=plan.states[update.pod].available,
            images=tuple(ImageChange(c.container, c.previous, c.image) for c in update.images),
        )
        for position, update in enumerate(plan.update, start=1)
    ]
    flipping = {flip.pod for flip in plan.flip}
    held = sorted(plan.held.items(), key=lambda item: (HOLD_ORDER.index(item[1]), item[0]))
    for key, hold in held:
        blocker = plan.blocked.get(key) if hold is Hold.NOT_UPGRADABLE else None
        decisions.append(
            PodDecision(
                pod=key,
                decision=hold.value,
                detail=_why(ss, hold, by_key[key], plan, flipping=key in flipping),
                available=plan.states[key].available,
                field=blocker.field if blocker is not None else None,
            )
        )

    counted = by_key.keys()
    not_counted = tuple(
        _not_counted(pod) for pod in sorted(scoped, key=lambda p: p.key) if pod.key not in counted
    )
    missed = [PodNote(pod.key, NOT_INJECTED, _missed_detail()) for pod in decision.missed]
    seen = {p.key for p in scoped} | {p.key for p in decision.missed}
    missed += [
        _uninjected(pod, ss.name)
        for pod in _selected_without_this(ss, pods, labels, excluded_namespaces)
        if pod.key not in seen
    ]
    return Explanation(
        name=ss.name,
        generation=ss.metadata.generation,
        revision=decision.revision.name,
        strategy=ss.spec.update_strategy,
        budget=plan.budget,
        decisions=tuple(decisions),
        missed=tuple(sorted(missed, key=lambda note: note.pod)),
        not_counted=not_counted,
        state=state,
        message=message,
        warnings=(*warnings, *plan.warnings),
    )


def _update_detail(update: rollout.PodUpdate) -> str:
    repair = f"; rewrites its unreadable {', '.join(update.repairs)}" if update.repairs else ""
    if not update.images:
        return "records the current revision (no image changes, no restarts)" + repair
    return (
        "; ".join(
            f"{c.container}: {c.previous} -> {_new_image(c.previous, c.image)}"
            for c in update.images
        )
        + repair
    )


def _new_image(previous: str, image: str) -> str:
    """The new image, shortened to `:tag` when only the tag changes."""
    repo, sep, tag = image.rpartition(":")
    old_repo, old_sep, _ = previous.rpartition(":")
    if sep and old_sep and repo == old_repo and "/" not in tag and "@" not in image:
        return f":{tag}"
    return image


def _why(
    ss: model.SidecarSet, hold: Hold, pod: PodView, plan: rollout.RoundPlan, *, flipping: bool
) -> str:
    strategy = ss.spec.update_strategy
    budget = plan.budget
    state = plan.states[pod.key]
    match hold:
        case Hold.UPDATED:
            revision = _pod_revision(ss.name, pod)
            text = "on the current sidecars" + (f" (revision {revision})" if revision else "")
            return text if state.available else text + "; not ready yet"
        case Hold.PAUSED:
            return f"updateStrategy.paused is true; continue with `sidecarset resume {ss.name}`"
        case Hold.NOT_UPDATE:
            return "updateStrategy.type is NotUpdate: only new pods get the current sidecars"
        case Hold.NOT_SELECTED:
            shown = selector_text(strategy.selector) if strategy.selector else "-"
            return f"outside the canary updateStrategy.selector {shown}"
        case Hold.PARTITION:
            return (
                f"partition {spec_text(strategy.partition)} keeps the last {budget.partition} "
                "waiting pods in update order on the old sidecars"
            )
        case Hold.BUDGET:
            return (
                f"maxUnavailable is {budget.max_unavailable} and {budget.used} pods are "
                "unavailable once this round's updates land"
            )
        case Hold.NEXT_ROUND:
            return (
                f"fits maxUnavailable; this round already sends {len(plan.update)} updates, "
                "as many as the writer sends before the next round"
            )
        case Hold.NOT_UPGRADABLE:
            blocker = plan.blocked.get(pod.key)
            if blocker is None:
                return "cannot be updated in place"
            return f"{blocker.field}: {blocker.message}"
        case Hold.IN_FLIGHT:
            if flipping:
                return "this round resets its hot-upgrade twin (the round's other write)"
            if state.in_flight:
                return f"{', '.join(state.in_flight)} is still starting its updated image"
            if state.hot_upgrade_pending:
                return "its hot upgrade waits for the idle twin's reset"
            return "an earlier update of this pod has not finished"


def _pod_revision(name: str, pod: PodView) -> str:
    try:
        entry = pod_contract.read_upgrade_specs(pod.annotations, pod_contract.HASH_ANNOTATION).get(
            name
        )
    except pod_contract.MalformedAnnotation:
        return ""
    return entry.controller_revision if entry is not None else ""


def _missed_detail() -> str:
    return (
        "no sidecars: created while the webhook was unreachable or before the SidecarSet "
        "selected it; recreate the pod to inject it"
    )


def _uninjected(pod: PodView, name: str) -> PodNote:
    if pod_contract.is_injection_opted_out(pod.labels, pod.annotations):
        return PodNote(
            pod.key, OPTED_OUT, f"the pod opts out with {pod_contract.INJECT_OPT_OUT}=false"
        )
    others = ", ".join(sorted(_injected_names(pod))) or "-"
    return PodNote(
        pod.key,
        OTHERS_ONLY,
        f"injected with {others} but not {name}: created before {name} selected it; "
        "recreate the pod to inject it",
    )


def _not_counted(pod: PodView) -> PodNote:
    if not pod.is_active:
        return PodNote(pod.key, INACTIVE, "finished or being deleted")
    return PodNote(
        pod.key,
        INCONSISTENT,
        "a sidecar container of this SidecarSet is missing from the pod (injected with "
        "another upgrade type or an older spec); left alone until recreated",
    )


def _injected_names(pod: PodView) -> list[str]:
    return sorted(pod_contract.read_injected_list(pod.annotations))


def _selected_without_this(
    sidecarset: model.SidecarSet,
    pods: Sequence[PodView],
    labels: Mapping[str, Mapping[str, str]],
    excluded: Collection[str],
) -> list[PodView]:
    """Active pods the selector matches in scope that lack this SidecarSet (opted out, or
    injected with other SidecarSets only); not missed injections, but worth showing."""
    selector = sidecarset.spec.selector
    if selector is None or selector.is_empty:
        return []
    return [
        pod
        for pod in pods
        if pod.is_active
        and pod.namespace not in excluded
        and sidecarset.name not in pod_contract.read_injected_list(pod.annotations)
        and selectors.matches_or_false(selector, pod.labels)
        and round_decision.namespace_in_scope(sidecarset, pod.namespace, labels.get(pod.namespace))
    ]


def selector_text(selector: LabelSelector) -> str:
    """kubectl's spelling: `a=b,tier in (x,y),!legacy`."""
    parts = [f"{k}={v}" for k, v in sorted(selector.match_labels.items())]
    for req in selector.match_expressions:
        values = ",".join(req.values)
        match req.operator:
            case "In":
                parts.append(f"{req.key} in ({values})")
            case "NotIn":
                parts.append(f"{req.key} notin ({values})")
            case "Exists":
                parts.append(req.key)
            case "DoesNotExist":
                parts.append(f"!{req.key}")
            case _:
                parts.append(f"{req.key} {req.operator} ({values})")
    return ",".join(parts) or "<everything>"


def spec_text(value: IntOrString | None) -> str:
    return "unset" if value is None else str(value)


# --- rendering --------------------------------------------------------------------------------
