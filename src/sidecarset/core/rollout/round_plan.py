"""One rollout round: which matched pods get new sidecar images now, and why every other waits.

`plan_round` decides (behaviour.md §7.1-§7.4, §8.3); how each chosen pod changes is
`in_place_update`'s business. The reconciler applies a `RoundPlan` with conditional writes,
`plan` prints it, and tests assert on it. Nothing here reads a clock or the API: `now` is a
parameter.

The unavailability budget, stricter than Kruise on purpose (behaviour.md §12.2):

* A matched pod is *disrupted* when it is updated but not available (not state consistent, not
  Ready, or its hot upgrade awaits the reset), or when it is in the middle of an update: a
  sidecar is still being rolled by the kubelet, a hot upgrade awaits its reset, or a write of
  ours has not yet shown up in `pods` (`pending`).
* Taking a pod costs one unit of `maxUnavailable`, unless it is already disrupted (the count does
  not grow) or the update changes no image of an available pod (no container restarts).
  Not-ready candidates are still taken, first (the default order puts them in front, and they
  are down already), but they pay like any other: Kruise updates them for free, without limit.
* So, counted over `pods`, the disrupted pods after the round never exceed
  `max(maxUnavailable, disrupted before the round)`: at no moment are more than maxUnavailable
  pods updating or updated-but-not-ready because of this controller.
* The walk does not stop at the first pod that doesn't fit: later pods that cost nothing are
  still taken (how a pod stuck mid hot upgrade gets a fixed image while the budget is spent).
* `maxUnavailable: 0` means no pod may be disrupted: only free updates happen.

Hot-upgrade resets (flips) no longer end the round (behaviour.md §12.15): a flipped pod is already
disrupted, is held `inFlight` for this round, and other pods proceed within the budget.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

import msgspec

from sidecarset.core import ordering, pod_classification, selectors
from sidecarset.core.model import SidecarSet, SidecarSetUpdateStrategy
from sidecarset.core.pod_classification import Blocker, PodState, PodStateKind
from sidecarset.core.podview import PodKey, PodView
from sidecarset.core.rollout.budget import bad_value, max_unavailable_count, partition_count
from sidecarset.core.rollout.in_place_update import (
    PodConditionUpdate,
    PodUpdate,
    changes_images,
    flip_update,
    pod_update,
    upgradable_condition_update,
)

__all__ = [
    "PENDING_WRITE_RECHECK",
    "PROGRESS_RECHECK",
    "Budget",
    "Hold",
    "RoundPlan",
    "matched_pods",
    "plan_round",
]

PENDING_WRITE_RECHECK = timedelta(seconds=1)
"""Requeue delay while a write of ours is not yet visible in the pods we were given (Kruise: 1s)."""

PROGRESS_RECHECK = timedelta(seconds=10)
"""Requeue delay while pods wait for the budget or for the kubelet. Pod events normally trigger
the next round sooner; this is the safety net should one be missed."""


class Hold(StrEnum):
    """Why a matched pod is not updated this round."""

    UPDATED = "updated"
    """Already on the SidecarSet's current hash."""
    PAUSED = "paused"
    """`updateStrategy.paused`."""
    NOT_SELECTED = "notSelected"
    """Outside the canary `updateStrategy.selector`."""
    PARTITION = "partition"
    """Among the last `partition` waiting pods, kept on the old version."""
    BUDGET = "budget"
    """`maxUnavailable` is spent."""
    NOT_UPGRADABLE = "notUpgradable"
    """The change cannot be applied in place; `RoundPlan.blocked` names the field."""
    IN_FLIGHT = "inFlight"
    """A previous update or hot-upgrade reset of this pod has not finished (or is made now)."""
    NOT_UPDATE = "notUpdate"
    """`updateStrategy.type: NotUpdate`."""
    NEXT_ROUND = "nextRound"
    """Next in update order, but this round already has as many updates as the writer sends
    before the next round (`plan_round`'s `write_limit`)."""


class Budget(msgspec.Struct, frozen=True, kw_only=True):
    """The arithmetic behind a round, for `plan` output and status messages."""

    matched: int
    max_unavailable: int
    partition: int
    disrupted: tuple[PodKey, ...]
    """Disrupted pods before the round, sorted."""
    used: int
    """Disrupted pods once this round's updates land (counted as the module docstring says)."""


class RoundPlan(msgspec.Struct, frozen=True, kw_only=True):
    """This round's writes and the reason every other matched pod waits.

    Every matched pod is in exactly one of `update` and `held`; pods in `flip` are held
    `inFlight`. `update` is in update order. `blocked` gives the field that blocks every matched
    pod that cannot be updated in place, whatever its hold (a paused rollout still reports
    them); a pod whose update would fail to apply is reported once the budget reaches it.
    `states` is every matched pod's classification. `conditions` are SidecarSetUpgradable=False
    writes for pods held `notUpgradable` whose condition does not say so yet. `warnings` name
    strategy fields that could not be read (and the safe value used instead).
    """

    update: tuple[PodUpdate, ...]
    flip: tuple[PodUpdate, ...]
    held: Mapping[PodKey, Hold]
    blocked: Mapping[PodKey, Blocker]
    states: Mapping[PodKey, PodState]
    conditions: tuple[PodConditionUpdate, ...]
    budget: Budget
    requeue_after: timedelta | None
    warnings: tuple[str, ...] = ()
    matched: tuple[pod_classification.Judged, ...] = ()
    """Every matched pod with its key and state, sorted by key: what the status counts."""

    @property
    def updated_keys(self) -> tuple[PodKey, ...]:
        return tuple(u.pod for u in self.update)


# --- the round --------------------------------------------------------------------------------


def matched_pods(
    sidecarset: SidecarSet,
    pods: Sequence[PodView],
    judgements: pod_classification.Judgements | None = None,
) -> tuple[PodView, ...]:
    """The pods this SidecarSet rolls and counts (behaviour.md §3.2), sorted by namespace/name."""
    judged = (judgements or pod_classification.Judgements()).judge(sidecarset, pods)
    return tuple(pod for _, pod, _ in judged)


def plan_round(
    sidecarset: SidecarSet,
    pods: Sequence[PodView],
    now: datetime,
    *,
    latest_revision: str | None = None,
    pending: Collection[PodKey] = (),
    judgements: pod_classification.Judgements | None = None,
    write_limit: int | None = None,
) -> RoundPlan:
    """Choose this round's pods; never grows the disrupted count past `maxUnavailable`.

    `pods` are the pods the SidecarSet's selector and namespace scope select (matching, §3.2, is
    applied here). `pending` are pods with a write of ours not yet visible in `pods`: they are
    held `inFlight` and count as disrupted. `latest_revision` is recorded in the pods' hash
    entries (default: `status.latestRevision`). `judgements`, kept by the caller from round to
    round, spares judging again the pods that did not change (the result is the same).

    `write_limit`: at most this many updates; the walk stops there and the candidates after it
    are held `nextRound` (their updates are not built). A round's updates are sent before the
    next round starts, so updates beyond what the writer sends meanwhile would only be built
    early (0.1 ms each: a tenth of a second for the 1,000 a 10 % budget allows at 10,000 pods)
    and sent from an older view of their pods. None: every update the budget allows.
    """
    memo = judgements or pod_classification.Judgements()
    judged = memo.judge(sidecarset, pods)
    strategy = sidecarset.spec.update_strategy
    tally = _sort_out(judged, pending)
    _limits(strategy, tally)

    if strategy.is_not_update or strategy.paused:
        reason = Hold.NOT_UPDATE if strategy.is_not_update else Hold.PAUSED
        tally.held.update((key, reason) for key, _, _ in tally.outdated)
        return _plan(tally)

    if not tally.outdated and not any(s.is_hot for s in pod_classification.sidecars(sidecarset)):
        return _plan(tally)  # settled: nothing to update, and only a hot upgrade can flip
    matched = tuple(pod for _, pod, _ in judged)
    flips = _flips(sidecarset, matched, now, tally.pending)
    flipping = {flip.pod for flip in flips}
    tally.held.update((key, Hold.IN_FLIGHT) for key in flipping)
    waiting, not_upgradable = _hold_outdated(sidecarset, tally, flipping)

    ordered = ordering.order(waiting, strategy, matched, memo.sort_keys)
    cut = max(0, len(ordered) - tally.partition)
    tally.held.update((pod.key, Hold.PARTITION) for pod in ordered[cut:])
    updates, used = _spend_budget(
        sidecarset, ordered[:cut], tally, not_upgradable, now, latest_revision, write_limit
    )

    by_key = {key: pod for key, pod, _ in tally.outdated} if not_upgradable else {}
    conditions = [
        condition
        for key in sorted(not_upgradable)
        if (condition := upgradable_condition_update(by_key[key], sidecarset.name, False, now))
        is not None
    ]
    return _plan(tally, updates, flips, conditions, used)


@dataclass
class _Tally:
    """The round's working state: every matched pod's state and hold so far, the disrupted
    pods, and the limits. Steps of `plan_round` fill it in; `_plan` turns it into the answer."""

    judged: tuple[pod_classification.Judged, ...]
    states: dict[PodKey, PodState]
    pending: set[PodKey]
    disrupted: set[PodKey]
    blocked: dict[PodKey, Blocker] = field(default_factory=dict)
    held: dict[PodKey, Hold] = field(default_factory=dict)
    outdated: list[pod_classification.Judged] = field(default_factory=list)
    max_unavailable: int = 0
    partition: int = 0
    warnings: list[str] = field(default_factory=list)


def _sort_out(judged: tuple[pod_classification.Judged, ...], pending: Collection[PodKey]) -> _Tally:
    """One pass over the matched pods (a settled SidecarSet with thousands of pods spends its
    round here): updated pods are held, disrupted ones counted, blockers noted."""
    states = {key: state for key, _, state in judged}
    pending_keys = set(pending) & states.keys() if pending else set()
    tally = _Tally(judged=judged, states=states, pending=pending_keys, disrupted=set(pending_keys))
    for item in judged:
        key, _, state = item
        if state.kind is PodStateKind.UPDATED:
            tally.held[key] = Hold.UPDATED
            if not (state.consistent and state.ready):
                tally.disrupted.add(key)
        else:
            tally.outdated.append(item)
            if state.kind is PodStateKind.IN_FLIGHT or state.hot_upgrade_pending:
                tally.disrupted.add(key)
        if state.blocker is not None:
            tally.blocked[key] = state.blocker
    return tally


def _limits(strategy: SidecarSetUpdateStrategy, tally: _Tally) -> None:
    """maxUnavailable and partition as pod counts; an unreadable one is warned about and
    replaced by the safe value (update none, hold every pod)."""
    total = len(tally.judged)
    max_unavailable = max_unavailable_count(strategy.max_unavailable, total)
    if max_unavailable is None:
        tally.warnings.append(
            bad_value("maxUnavailable", strategy.max_unavailable, "updating none")
        )
        max_unavailable = 0
    partition = partition_count(strategy.partition, total)
    if partition is None:
        tally.warnings.append(bad_value("partition", strategy.partition, "holding every pod"))
        partition = total
    tally.max_unavailable = max_unavailable
    tally.partition = partition


def _hold_outdated(
    sidecarset: SidecarSet, tally: _Tally, flipping: Collection[PodKey]
) -> tuple[list[PodView], list[PodKey]]:
    """Hold the outdated pods that cannot be updated now, each with its reason; return those
    waiting for an update, and the keys of those that cannot be updated in place."""
    waiting: list[PodView] = []
    not_upgradable: list[PodKey] = []
    for key, pod, state in tally.outdated:
        if not _is_selected(sidecarset, pod):
            tally.held[key] = Hold.NOT_SELECTED
        elif key in tally.pending or key in flipping:
            tally.held[key] = Hold.IN_FLIGHT
        elif state.kind is PodStateKind.NOT_UPGRADABLE:
            tally.held[key] = Hold.NOT_UPGRADABLE
            not_upgradable.append(key)
        elif state.kind is PodStateKind.IN_FLIGHT:
            tally.held[key] = Hold.IN_FLIGHT
        else:
            waiting.append(pod)
    return waiting, not_upgradable


def _spend_budget(
    sidecarset: SidecarSet,
    candidates_in_order: Sequence[PodView],
    tally: _Tally,
    not_upgradable: list[PodKey],
    now: datetime,
    latest_revision: str | None,
    write_limit: int | None,
) -> tuple[list[PodUpdate], int]:
    """Walk the candidates in update order, taking each pod whose cost fits the budget (the
    module docstring says what costs), up to `write_limit` updates; return the updates and the
    disrupted count after them."""
    updates: list[PodUpdate] = []
    used = len(tally.disrupted)
    states = tally.states
    for pod in candidates_in_order:
        key = pod.key
        if (
            used >= tally.max_unavailable
            and key not in tally.disrupted
            and (not states[key].available or changes_images(sidecarset, pod))
        ):
            # Costs a unit: skip building the update (most of a round's time once the budget
            # is spent on a large rollout); its blockers are reported once the budget reaches it.
            tally.held[key] = Hold.BUDGET
            continue
        if write_limit is not None and len(updates) >= write_limit:
            tally.held[key] = Hold.NEXT_ROUND  # not built either: taken in a later round
            continue
        update = pod_update(sidecarset, pod, now, latest_revision=latest_revision)
        if update.blockers:
            tally.held[key] = Hold.NOT_UPGRADABLE
            tally.blocked[key] = update.blockers[0]
            not_upgradable.append(key)
            continue
        free = key in tally.disrupted or (not update.images and states[key].available)
        cost = 0 if free else 1
        if used + cost > tally.max_unavailable:
            tally.held[key] = Hold.BUDGET
            continue
        used += cost
        updates.append(update)
    return updates, used


def _plan(
    tally: _Tally,
    updates: Sequence[PodUpdate] = (),
    flips: Sequence[PodUpdate] = (),
    conditions: Sequence[PodConditionUpdate] = (),
    used: int | None = None,
) -> RoundPlan:
    """The answer: every hold, the writes, and the budget as counted over the matched pods."""
    return RoundPlan(
        update=tuple(updates),
        flip=tuple(flips),
        held=tally.held,
        blocked=tally.blocked,
        states=tally.states,
        conditions=tuple(conditions),
        budget=Budget(
            matched=len(tally.judged),
            max_unavailable=tally.max_unavailable,
            partition=tally.partition,
            disrupted=tuple(sorted(tally.disrupted)),
            used=len(tally.disrupted) if used is None else used,
        ),
        requeue_after=_requeue_after(tally.held, tally.pending, updates, flips),
        warnings=tuple(tally.warnings),
        matched=tally.judged,
    )


def _is_selected(sidecarset: SidecarSet, pod: PodView) -> bool:
    selector = sidecarset.spec.update_strategy.selector
    if selector is None:
        return True
    # Kruise: an invalid canary selector selects nothing.
    return selectors.matches_or_false(selector, pod.labels)


def _flips(
    sidecarset: SidecarSet,
    matched: Sequence[PodView],
    now: datetime,
    pending: Collection[PodKey],
) -> list[PodUpdate]:
    flips: list[PodUpdate] = []
    if not any(sidecar.is_hot for sidecar in pod_classification.sidecars(sidecarset)):
        return flips  # only a hot upgrade can be flip-ready
    for pod in matched:
        if pod.key in pending or not pod_classification.is_flip_ready(sidecarset, pod):
            continue
        flip = flip_update(sidecarset, pod, now)
        if flip is not None and not flip.blockers:
            flips.append(flip)
    return flips


def _requeue_after(
    held: Mapping[PodKey, Hold],
    pending: Collection[PodKey],
    updates: Sequence[PodUpdate],
    flips: Sequence[PodUpdate],
) -> timedelta | None:
    if pending:
        return PENDING_WRITE_RECHECK
    holds = set(held.values())
    waiting = bool(holds & {Hold.BUDGET, Hold.IN_FLIGHT, Hold.NEXT_ROUND})
    if updates or flips or waiting:
        return PROGRESS_RECHECK
    return None
