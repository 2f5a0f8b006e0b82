"""The SidecarSet status a round reports: Kruise's counters plus Ready/Progressing/Stalled.

`compute_status` runs after `rollout.plan_round` (behaviour.md §12.5) so the conditions can say
why the rollout waits, but the counters describe the pods as observed, not as they will be once the
round's writes land: a pod updated this round counts as updated in the next round's status,
which the write itself triggers. Projecting the writes would report containers as running an
image the kubelet has not started yet.

Conditions (metav1.Condition; `lastTransitionTime` moves only when a status flips):

| state (reason)              | Ready | Progressing | Stalled |
|-----------------------------|-------|-------------|---------|
| RolloutComplete             | True* | False       | False   |
| Rolling                     | False | True        | False   |
| WaitingForUnavailableBudget | False | True        | False   |
| Paused                      | False | False       | False   |
| NotUpdate                   | True* | False       | False   |
| PodsNotUpgradable           | False | False       | True    |
| UpdatedPodsFailing          | False | False       | True    |

\\* Ready is True only when every matched pod is also available, else False with reason
`PodsNotReady`. "Complete" means nothing is left that this SidecarSet would update: pods held
back by partition or outside the canary selector are held on purpose.

InjectionMissed is separate from the rollout: True (reason `PodsWithoutSidecars`, the message
naming example pods) while pods this SidecarSet selects run without its sidecars although they
were created after it, i.e. admitted without the webhook (failurePolicy Ignore while it was
unreachable, or a webhook configuration removed). It appears the first time such a pod is seen
and then stays, False with reason `AllInjected` once none is left.

UpdatedPodsFailing ("broken new image"): some updated pods have been unavailable for longer than
`failing_after` since they were updated (or last became not ready), and either the budget is
spent by them (`maxUnavailable` reached) or no other pod is left to update. The message names
example pods.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sidecarset.core import pod_contract
from sidecarset.core.model import Condition, SidecarSet, SidecarSetStatus
from sidecarset.core.pod_classification import PodStateKind
from sidecarset.core.podview import PodKey, PodView
from sidecarset.core.rollout.round_plan import Hold, RoundPlan

__all__ = [
    "ALL_INJECTED",
    "DEFAULT_FAILING_AFTER",
    "INJECTION_MISSED",
    "NOT_UPDATE",
    "PAUSED",
    "PODS_NOT_READY",
    "PODS_NOT_UPGRADABLE",
    "PODS_WITHOUT_SIDECARS",
    "PROGRESSING",
    "READY",
    "ROLLING",
    "ROLLOUT_COMPLETE",
    "STALLED",
    "UPDATED_PODS_FAILING",
    "WAITING_FOR_BUDGET",
    "compute_status",
    "merge_conditions",
]

READY = "Ready"
PROGRESSING = "Progressing"
STALLED = "Stalled"
INJECTION_MISSED = "InjectionMissed"
PODS_WITHOUT_SIDECARS = "PodsWithoutSidecars"
ALL_INJECTED = "AllInjected"

ROLLOUT_COMPLETE = "RolloutComplete"
ROLLING = "Rolling"
WAITING_FOR_BUDGET = "WaitingForUnavailableBudget"
PAUSED = "Paused"
NOT_UPDATE = "NotUpdate"
PODS_NOT_UPGRADABLE = "PodsNotUpgradable"
UPDATED_PODS_FAILING = "UpdatedPodsFailing"
PODS_NOT_READY = "PodsNotReady"

DEFAULT_FAILING_AFTER = timedelta(minutes=5)
"""How long an updated pod may stay unavailable before the rollout is called failing: long
enough for an image pull and a slow readiness probe, short enough to page before a workday ends."""

_EXAMPLES = 3


def compute_status(
    sidecarset: SidecarSet,
    plan: RoundPlan,
    *,
    latest_revision: str,
    collision_count: int,
    now: datetime,
    previous_conditions: Sequence[Condition] = (),
    failing_after: timedelta = DEFAULT_FAILING_AFTER,
    missed_injection: Sequence[PodKey] | None = None,
) -> SidecarSetStatus:
    """The status to write for this round, counted over the pods `plan` matched (§9.1).

    Conditions of other types found in `previous_conditions` are kept as they are, after ours.
    `missed_injection` are the selected pods admitted without our sidecars (InjectionMissed);
    None when the caller did not look, which keeps a previous InjectionMissed condition
    unchanged.
    """
    matched = plan.matched
    updated = ready = updated_ready = 0
    settling: list[tuple[PodKey, PodView]] = []
    for key, pod, state in matched:
        available = state.consistent and state.ready
        if state.kind is PodStateKind.UPDATED:
            updated += 1
            if available:
                updated_ready += 1
            else:
                settling.append((key, pod))
        if available:
            ready += 1

    failing = _failing(sidecarset, settling, now, failing_after)
    reason, message = _state(sidecarset, plan, updated, settling, failing, failing_after)
    generation = sidecarset.metadata.generation
    done = reason in (ROLLOUT_COMPLETE, NOT_UPDATE)
    ready_reason, ready_message = reason, message
    if done and ready < len(matched):
        not_ready = len(matched) - ready
        ready_reason = PODS_NOT_READY
        ready_message = f"{not_ready} of {len(matched)} matched pods are not ready; {message}"
    progressing = reason in (ROLLING, WAITING_FOR_BUDGET)
    stalled = reason in (PODS_NOT_UPGRADABLE, UPDATED_PODS_FAILING)
    ours: tuple[Condition, ...] = (
        _condition(
            READY,
            ready_reason in (ROLLOUT_COMPLETE, NOT_UPDATE),
            ready_reason,
            ready_message,
            generation,
        ),
        _condition(PROGRESSING, progressing, reason, message, generation),
        _condition(STALLED, stalled, reason, message, generation),
    )
    had_missed = any(c.type == INJECTION_MISSED for c in previous_conditions)
    if missed_injection is not None and (missed_injection or had_missed):
        ours += (_missed_condition(missed_injection, generation),)
    return SidecarSetStatus(
        observed_generation=generation,
        matched_pods=len(matched),
        updated_pods=updated,
        ready_pods=ready,
        updated_ready_pods=updated_ready,
        latest_revision=latest_revision,
        collision_count=collision_count,
        conditions=merge_conditions(previous_conditions, ours, now),
    )


def merge_conditions(
    previous: Sequence[Condition], current: Sequence[Condition], now: datetime
) -> tuple[Condition, ...]:
    """`current` with transition times carried over from `previous` where the status is
    unchanged (else `now`), followed by the previous conditions of other types."""
    by_type = {c.type: c for c in previous}
    merged = []
    for condition in current:
        before = by_type.get(condition.type)
        since = now
        if before is not None and before.status == condition.status:
            since = before.last_transition_time or now
        merged.append(_with_time(condition, since))
    own = {c.type for c in current}
    return tuple(merged) + tuple(c for c in previous if c.type not in own)


def _with_time(condition: Condition, since: datetime) -> Condition:
    return Condition(
        type=condition.type,
        status=condition.status,
        observed_generation=condition.observed_generation,
        last_transition_time=since,
        reason=condition.reason,
        message=condition.message,
    )


def _condition(type_: str, true: bool, reason: str, message: str, generation: int) -> Condition:
    return Condition(
        type=type_,
        status="True" if true else "False",
        observed_generation=generation,
        reason=reason,
        message=message,
    )


def _missed_condition(missed: Sequence[PodKey], generation: int) -> Condition:
    if not missed:
        return _condition(
            INJECTION_MISSED,
            False,
            ALL_INJECTED,
            "every selected pod created after this SidecarSet has its sidecars",
            generation,
        )
    return _condition(
        INJECTION_MISSED,
        True,
        PODS_WITHOUT_SIDECARS,
        f"{len(missed)} selected pods were created without this SidecarSet's sidecars "
        f"(admitted while the webhook was unreachable): {_examples(missed)}; "
        "recreate them to inject",
        generation,
    )


def _state(
    sidecarset: SidecarSet,
    plan: RoundPlan,
    updated: int,
    settling: Sequence[tuple[PodKey, PodView]],
    failing: Sequence[PodKey],
    failing_after: timedelta,
) -> tuple[str, str]:
    strategy = sidecarset.spec.update_strategy
    holds = Counter(plan.held.values())
    matched = len(plan.matched)
    progress = f"{updated} of {matched} matched pods updated"
    budget = plan.budget
    spent = budget.used >= budget.max_unavailable
    left = holds[Hold.BUDGET] + holds[Hold.IN_FLIGHT] + holds[Hold.NEXT_ROUND] + len(plan.update)

    if strategy.is_not_update:
        return (
            NOT_UPDATE,
            f"updateStrategy.type is NotUpdate: running pods keep their sidecars; {progress}",
        )
    if strategy.paused and holds[Hold.PAUSED]:
        return PAUSED, f"updateStrategy.paused is true: {holds[Hold.PAUSED]} pods wait; {progress}"
    if failing and not plan.update and (spent or left == 0):
        return UPDATED_PODS_FAILING, (
            f"updated pods not ready for over {_duration(failing_after)}: "
            f"{_examples(failing)}; maxUnavailable {budget.max_unavailable} "
            f"({budget.used} unavailable) blocks the rest; {progress}"
        )
    if plan.update or plan.flip:
        flips = f", resetting {len(plan.flip)} hot upgrades" if plan.flip else ""
        return ROLLING, f"{progress}; updating {len(plan.update)} pods this round{flips}"
    if holds[Hold.BUDGET]:
        return WAITING_FOR_BUDGET, (
            f"{holds[Hold.BUDGET]} pods wait for maxUnavailable: {budget.used} of "
            f"{budget.max_unavailable} allowed pods unavailable; {progress}"
        )
    if holds[Hold.IN_FLIGHT] or settling:
        return ROLLING, f"{progress}; waiting for updated sidecars to start"
    if holds[Hold.NOT_UPGRADABLE]:
        keys = sorted(k for k, h in plan.held.items() if h is Hold.NOT_UPGRADABLE)
        blocker = plan.blocked.get(keys[0])
        why = f"{blocker.field}: {blocker.message}" if blocker is not None else "unknown"
        return PODS_NOT_UPGRADABLE, (
            f"{len(keys)} pods cannot be updated in place ({_examples(keys)}): {why}; {progress}"
        )
    kept = holds[Hold.PARTITION] + holds[Hold.NOT_SELECTED]
    suffix = f"; {kept} kept back by partition or selector" if kept else ""
    return ROLLOUT_COMPLETE, f"{progress}{suffix}"


def _failing(
    sidecarset: SidecarSet,
    settling: Sequence[tuple[PodKey, PodView]],
    now: datetime,
    failing_after: timedelta,
) -> list[PodKey]:
    """Of the updated pods not yet available, those unavailable for longer than allowed."""
    deadline = _aware(now) - failing_after
    failing = []
    for key, pod in settling:
        since = _unavailable_since(sidecarset, pod)
        if since is not None and since <= deadline:
            failing.append(key)
    return failing


def _unavailable_since(sidecarset: SidecarSet, pod: PodView) -> datetime | None:
    """The later of our last update of the pod and its Ready condition's last transition;
    None when neither is known (such a pod is never called failing)."""
    times: list[datetime] = []
    try:
        entry = pod_contract.read_upgrade_spec(
            pod.annotations, pod_contract.HASH_ANNOTATION, sidecarset.name
        )
    except pod_contract.MalformedAnnotation:
        entry = None
    if entry is not None and entry.update_timestamp:
        times.append(_update_time(entry.update_timestamp))
    ready = pod.ready_condition
    if ready is not None and ready.last_transition_time is not None:
        times.append(_aware(ready.last_transition_time))
    return max(times, default=None)


# Every round reads the update time of every updated pod not yet ready (up to the whole budget):
# `strptime` was 4 % of a 2,000-pod rollout's CPU. Pods updated in the same second share the text.
@functools.lru_cache(maxsize=4096)
def _update_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _examples(keys: Sequence[PodKey]) -> str:
    shown = ", ".join(str(k) for k in sorted(keys)[:_EXAMPLES])
    more = len(keys) - _EXAMPLES
    return f"{shown} (+{more} more)" if more > 0 else shown


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"
