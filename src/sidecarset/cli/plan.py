"""`sidecarset plan NAME`: what the controller's next round would do, and why for every pod.

Fetches the SidecarSet, every pod (paginated), the namespaces, its revisions and the namespaces
the pod webhook never sees, and runs the controller's own round decision on them
(`round_decision.decide_round`: scope, revision, plan, missed injections, status). The output
keeps the plan's reasons unchanged: the pods the round updates (in update order, with their
image changes), the hold reason of every other matched pod, the budget arithmetic, and the pods
the selector matches that never got the sidecars. Read-only: nothing is written.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
import typer

from sidecarset.app import webhooks_config
from sidecarset.cli import render
from sidecarset.cli.connection import CONTROLLER_REVISIONS, Cluster, connect
from sidecarset.cli.errors import CliError
from sidecarset.cli.options import (
    OPERATOR_NAMESPACE,
    ContextOption,
    KubeconfigOption,
    OperatorNamespaceOption,
    Output,
    OutputOption,
    SidecarSetArgument,
    resolve,
)
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
from sidecarset.core.errors import ModelError
from sidecarset.core.model import IntOrString, LabelSelector
from sidecarset.core.podview import PodKey, PodView
from sidecarset.core.rollout.round_plan import Hold
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import resource_path

UPDATE = "update"

# Held pods are listed in this order: what blocks a rollout first, what is settled last.
_HOLD_ORDER: tuple[Hold, ...] = (
    Hold.NOT_UPGRADABLE,
    Hold.BUDGET,
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

_EXAMPLES = 5


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
    """Updates in update order, then held pods by hold reason (`_HOLD_ORDER`) and name."""
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
    held = sorted(plan.held.items(), key=lambda item: (_HOLD_ORDER.index(item[1]), item[0]))
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
                f"partition {_spec(strategy.partition)} keeps the last {budget.partition} "
                "waiting pods in update order on the old sidecars"
            )
        case Hold.BUDGET:
            return (
                f"maxUnavailable is {budget.max_unavailable} and {budget.used} pods are "
                "unavailable once this round's updates land"
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


def _spec(value: IntOrString | None) -> str:
    return "unset" if value is None else str(value)


# --- rendering --------------------------------------------------------------------------------


def _pods(count: int) -> str:
    return f"{count} pod" if count == 1 else f"{count} pods"


def _examples(keys: Sequence[PodKey]) -> str:
    shown = ", ".join(str(k) for k in keys[:_EXAMPLES])
    more = len(keys) - _EXAMPLES
    return shown + (f" (+{more} more)" if more > 0 else "")


def _budget_lines(expl: Explanation) -> list[str]:
    strategy, budget = expl.strategy, expl.budget
    spec = strategy.max_unavailable
    if spec is None:
        allowed = f"maxUnavailable unset = {budget.max_unavailable}"
    elif isinstance(spec, str):
        allowed = (
            f"maxUnavailable {spec} of {budget.matched} matched pods = "
            f"{budget.max_unavailable} (rounded up)"
        )
    else:
        allowed = f"maxUnavailable {spec}"
    before = len(budget.disrupted)
    disrupted = f"{before} unavailable or updating now"
    if budget.disrupted:
        disrupted += f" ({_examples(budget.disrupted)})"
    lines = [
        f"budget:     {allowed}; {disrupted}; {budget.used} of {budget.max_unavailable} "
        f"once this round's updates land"
    ]
    if strategy.partition not in (None, 0, "0%"):
        lines.append(
            f"partition:  {strategy.partition} of {budget.matched} matched pods = "
            f"{budget.partition} pods kept on the old sidecars"
        )
    return lines


def _strategy_line(strategy: model.SidecarSetUpdateStrategy) -> str:
    parts = [strategy.type or "RollingUpdate"]
    if strategy.paused:
        parts.append("paused")
    if strategy.selector is not None:
        parts.append(f"canary selector {selector_text(strategy.selector)}")
    return "strategy:   " + ", ".join(parts)


def render_table(expl: Explanation) -> str:
    """The plan for people: a header with the arithmetic, then one row per pod."""
    counts = Counter(d.decision for d in expl.decisions if d.decision != UPDATE)
    held = ", ".join(f"{h.value} {counts[h.value]}" for h in _HOLD_ORDER if counts[h.value])
    lines = [
        f"SidecarSet {expl.name}: generation {expl.generation}, revision {expl.revision}, "
        f"{expl.budget.matched} matched pods",
        _strategy_line(expl.strategy),
        *_budget_lines(expl),
        f"next round: update {_pods(len(expl.updates))}; hold "
        f"{_pods(len(expl.decisions) - len(expl.updates))}" + (f" ({held})" if held else ""),
        f"state:      {expl.state}" + (f" - {expl.message}" if expl.message else ""),
    ]
    lines += [f"warning:    {w}" for w in expl.warnings]
    if expl.decisions:
        lines += [
            "",
            render.table(
                ("POD", "READY", "DECISION", "WHY"),
                (
                    (
                        d.pod,
                        d.available,
                        f"update #{d.order}" if d.decision == UPDATE else d.decision,
                        d.detail,
                    )
                    for d in expl.decisions
                ),
            ),
        ]
    if expl.missed:
        lines += [
            "",
            f"MISSED INJECTION ({len(expl.missed)}): the selector matches these pods, but "
            "they do not have the sidecars",
            render.table(
                ("POD", "REASON", "DETAIL"), ((n.pod, n.reason, n.detail) for n in expl.missed)
            ),
        ]
    if expl.not_counted:
        lines += [
            "",
            f"NOT COUNTED ({len(expl.not_counted)}): injected, but outside the rollout",
            render.table(
                ("POD", "REASON", "DETAIL"),
                ((n.pod, n.reason, n.detail) for n in expl.not_counted),
            ),
        ]
    return "\n".join(lines)


def to_dict(expl: Explanation) -> dict[str, Any]:
    """The plan for scripts (`-o json|yaml`)."""
    strategy = expl.strategy
    budget = expl.budget
    return {
        "sidecarset": expl.name,
        "generation": expl.generation,
        "revision": expl.revision,
        "strategy": {
            "type": strategy.type or "RollingUpdate",
            "paused": strategy.paused,
            "maxUnavailable": strategy.max_unavailable,
            "partition": strategy.partition,
            "selector": selector_text(strategy.selector) if strategy.selector else None,
        },
        "budget": {
            "matched": budget.matched,
            "maxUnavailable": budget.max_unavailable,
            "partition": budget.partition,
            "disrupted": [str(k) for k in budget.disrupted],
            "used": budget.used,
        },
        "update": [
            {
                "pod": str(d.pod),
                "order": d.order,
                "ready": d.available,
                "images": [
                    {"container": c.container, "from": c.previous, "to": c.image} for c in d.images
                ],
            }
            for d in expl.updates
        ],
        "held": [
            {
                "pod": str(d.pod),
                "reason": d.decision,
                "ready": d.available,
                "detail": d.detail,
                **({"field": d.field} if d.field else {}),
            }
            for d in expl.decisions
            if d.decision != UPDATE
        ],
        "missedInjection": [
            {"pod": str(n.pod), "reason": n.reason, "detail": n.detail} for n in expl.missed
        ],
        "notCounted": [
            {"pod": str(n.pod), "reason": n.reason, "detail": n.detail} for n in expl.not_counted
        ],
        "state": {"summary": expl.state, "message": expl.message},
        "warnings": list(expl.warnings),
    }


# --- gathering --------------------------------------------------------------------------------


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


async def webhook_scope(
    cluster: Cluster, operator_namespace: str
) -> tuple[list[str], tuple[str, ...]]:
    """What the registered pod webhook is never called for, as the controller skips it: the
    namespaces its namespaceSelector excludes, and the priority classes its match condition
    skips. The operator's defaults when it cannot be read."""
    path = resource_path(
        "admissionregistration.k8s.io/v1",
        "mutatingwebhookconfigurations",
        name=webhooks_config.MUTATING_NAME,
    )
    defaults = webhooks_config.excluded_namespaces(operator_namespace)
    try:
        found = await cluster.client.get(path)
    except errors.ApiError:
        return defaults, webhooks_config.CRITICAL_PRIORITY_CLASSES
    excluded: set[str] = set()
    skipped: tuple[str, ...] = ()
    for hook in found.get("webhooks") or []:
        for requirement in (hook.get("namespaceSelector") or {}).get("matchExpressions") or []:
            if (
                requirement.get("key") == webhooks_config.NAMESPACE_NAME_LABEL
                and requirement.get("operator") == "NotIn"
            ):
                excluded.update(str(v) for v in requirement.get("values") or [])
        conditions = [c.get("name") for c in hook.get("matchConditions") or []]
        if webhooks_config.SKIP_CRITICAL_CONDITION["name"] in conditions:
            skipped = webhooks_config.CRITICAL_PRIORITY_CLASSES
    return sorted(excluded) or defaults, skipped


async def _revisions(
    cluster: Cluster, name: str, namespace: str
) -> tuple[list[dict[str, Any]], list[str]]:
    path = resource_path(*CONTROLLER_REVISIONS, namespace=namespace)
    try:
        found = await cluster.list_objects(
            path, label_selector=f"{pod_contract.SIDECARSET_NAME_LABEL}={name}"
        )
    except (errors.Forbidden, errors.NotFound) as err:
        return [], [
            f"cannot read the revisions in namespace {namespace!r} ({err.message}); the "
            "revision name is computed from the spec"
        ]
    except errors.ApiError as err:
        raise cluster.failure(f"list ControllerRevisions in {namespace!r}", err) from err
    return found, []


async def _namespace_labels(cluster: Cluster) -> dict[str, dict[str, str]]:
    listed = await cluster.call(
        "list namespaces", lambda: cluster.list_objects(resource_path("v1", "namespaces"))
    )
    return {str(ns["metadata"]["name"]): dict(ns["metadata"].get("labels") or {}) for ns in listed}


async def gather_and_explain(
    cluster: Cluster,
    name: str,
    operator_namespace: str,
    failing_after: timedelta = status.DEFAULT_FAILING_AFTER,
) -> Explanation:
    raw = await cluster.sidecarset(name)
    try:
        sidecarset = model.parse_sidecarset(raw)
    except ModelError as err:
        raise CliError(
            f"SidecarSet {name!r} cannot be read ({err}); the controller does not roll it either"
        ) from err
    pods = await cluster.pods()
    labels = await _namespace_labels(cluster) if sidecarset.spec.namespace_selector else {}
    stored, warnings = await _revisions(cluster, name, operator_namespace)
    excluded, skipped = await webhook_scope(cluster, operator_namespace)
    return explain(
        sidecarset,
        pods,
        stored,
        datetime.now(UTC),
        namespace_labels=labels,
        excluded_namespaces=excluded,
        skipped_priority_classes=skipped,
        warnings=warnings,
        failing_after=failing_after,
    )


def plan(
    ctx: typer.Context,
    name: SidecarSetArgument,
    operator_namespace: OperatorNamespaceOption = OPERATOR_NAMESPACE,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    output: OutputOption = None,
    failing_after: Annotated[
        float,
        typer.Option(
            help="Seconds an updated pod may stay unavailable before the rollout counts as "
            "Stalled: give the operator's own --failing-after, so both judge alike.",
            min=0,
        ),
    ] = status.DEFAULT_FAILING_AFTER.total_seconds(),
) -> None:
    """Show what the controller's next rollout round would do, and why, for every pod.

    Runs the controller's own planner on the live pods: the pods the next round updates, in
    order, with their image changes; for every other matched pod the reason it waits (updated,
    paused, notSelected: outside the canary selector, partition, budget: maxUnavailable spent,
    notUpgradable: with the field that blocks it, inFlight, notUpdate); the budget arithmetic;
    and the pods the selector matches that never got the sidecars (missed injection). Reads
    only; pods the controller has just written and not yet seen are not known here.

    \b
    Examples:
      sidecarset plan filebeat
      sidecarset plan filebeat -o json | jq '.held[] | select(.reason == "notUpgradable")'
      kubectl sidecarset plan filebeat --context prod
    """
    target = resolve(ctx, kubeconfig=kubeconfig, context=context, output=output)

    async def main() -> Explanation:
        async with connect(target) as cluster:
            return await gather_and_explain(
                cluster, name, operator_namespace, timedelta(seconds=failing_after)
            )

    expl = asyncio.run(main())
    if target.output is Output.TABLE:
        typer.echo(render_table(expl))
    else:
        typer.echo(render.dump(to_dict(expl), target.output))
