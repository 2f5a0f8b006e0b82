"""One rollout round: which matched pods get new sidecar images now, and why every other waits.

`plan_round` decides (behaviour.md §7.1-§7.4, §8.3); `pod_update` and `flip_update` say how
one pod changes (§7.5, §8.2, §8.3). The reconciler applies a `RoundPlan` with conditional writes,
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

Rolling back a hot upgrade whose new twin never became ready reverts the pod: the idle twin
still runs the wanted image, so it becomes the working twin again and the failed twin gets the
empty image. Kruise changes nothing there (the other twin "already runs the new image",
behaviour.md §8.2) yet bumps the hash, leaving the pod counted as updated with its working twin
crash-looping and never ready to flip: a rollback could never recover it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import msgspec

from sidecarset.core import candidates, injection, ordering, selectors, wire
from sidecarset.core.candidates import Blocker, Location, PodState, PodStateKind, Sidecar
from sidecarset.core.errors import FieldError
from sidecarset.core.model import IntOrString, SidecarSet
from sidecarset.core.podview import ContainerView, InitContainerView, PodKey, PodView

__all__ = [
    "PENDING_WRITE_RECHECK",
    "PROGRESS_RECHECK",
    "Budget",
    "Hold",
    "ImageChange",
    "PodConditionUpdate",
    "PodUpdate",
    "RoundPlan",
    "flip_update",
    "matched_pods",
    "max_unavailable_count",
    "partition_count",
    "plan_round",
    "pod_update",
    "upgradable_condition_update",
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


class ImageChange(msgspec.Struct, frozen=True, kw_only=True):
    """Set the image of one pod container. `index` is its position in `location` of the pod."""

    container: str
    location: Location
    index: int
    image: str
    previous: str


class PodConditionUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """A pod status condition to write (status subresource, strategic merge by `type`)."""

    pod: PodKey
    type: str
    status: str
    reason: str
    message: str
    last_transition_time: datetime


class PodUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """The exact mutation of one pod, to be written conditionally on `resource_version`.

    `annotations` holds only keys whose value changes. `condition` is the SidecarSetUpgradable
    condition to write once the pod update has succeeded. When `blockers` is non-empty the
    update must not be applied: the pod cannot be updated as the SidecarSet asks.
    """

    pod: PodKey
    uid: str
    resource_version: str
    images: tuple[ImageChange, ...] = ()
    annotations: Mapping[str, str] = {}
    condition: PodConditionUpdate | None = None
    blockers: tuple[Blocker, ...] = ()
    repairs: tuple[str, ...] = ()
    """Annotation keys whose unreadable value this update replaces (written afresh with only
    this SidecarSet's entry, as Kruise does; the others record theirs again on their rounds)."""


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
    matched: tuple[candidates.Judged, ...] = ()
    """Every matched pod with its key and state, sorted by key: what the status counts."""

    @property
    def updated_keys(self) -> tuple[PodKey, ...]:
        return tuple(u.pod for u in self.update)


# --- the round --------------------------------------------------------------------------------


def matched_pods(
    sidecarset: SidecarSet,
    pods: Sequence[PodView],
    judgements: candidates.Judgements | None = None,
) -> tuple[PodView, ...]:
    """The pods this SidecarSet rolls and counts (behaviour.md §3.2), sorted by namespace/name."""
    judged = (judgements or candidates.Judgements()).judge(sidecarset, pods)
    return tuple(pod for _, pod, _ in judged)


def plan_round(
    sidecarset: SidecarSet,
    pods: Sequence[PodView],
    now: datetime,
    *,
    latest_revision: str | None = None,
    pending: Collection[PodKey] = (),
    judgements: candidates.Judgements | None = None,
) -> RoundPlan:
    """Choose this round's pods; never grows the disrupted count past `maxUnavailable`.

    `pods` are the pods the SidecarSet's selector and namespace scope select (matching, §3.2, is
    applied here). `pending` are pods with a write of ours not yet visible in `pods`: they are
    held `inFlight` and count as disrupted. `latest_revision` is recorded in the pods' hash
    entries (default: `status.latestRevision`). `judgements`, kept by the caller from round to
    round, spares judging again the pods that did not change (the result is the same).
    """
    memo = judgements or candidates.Judgements()
    judged = memo.judge(sidecarset, pods)
    states = {key: state for key, _, state in judged}
    strategy = sidecarset.spec.update_strategy
    total = len(judged)
    warnings: list[str] = []
    max_unavailable = max_unavailable_count(strategy.max_unavailable, total)
    if max_unavailable is None:
        warnings.append(_bad_value("maxUnavailable", strategy.max_unavailable, "updating none"))
        max_unavailable = 0
    partition = partition_count(strategy.partition, total)
    if partition is None:
        warnings.append(_bad_value("partition", strategy.partition, "holding every pod"))
        partition = total

    # One pass over the matched pods: a settled SidecarSet with thousands of pods spends its
    # round here.
    pending_keys = set(pending) & states.keys() if pending else set()
    disrupted = set(pending_keys)
    blocked: dict[PodKey, Blocker] = {}
    held: dict[PodKey, Hold] = {}
    outdated: list[candidates.Judged] = []
    for item in judged:
        key, _, state = item
        if state.kind is PodStateKind.UPDATED:
            held[key] = Hold.UPDATED
            if not (state.consistent and state.ready):
                disrupted.add(key)
        else:
            outdated.append(item)
            if state.kind is PodStateKind.IN_FLIGHT or state.hot_upgrade_pending:
                disrupted.add(key)
        if state.blocker is not None:
            blocked[key] = state.blocker

    def finish(
        updates: Sequence[PodUpdate] = (),
        flips: Sequence[PodUpdate] = (),
        conditions: Sequence[PodConditionUpdate] = (),
        used: int | None = None,
    ) -> RoundPlan:
        return RoundPlan(
            update=tuple(updates),
            flip=tuple(flips),
            held=held,
            blocked=blocked,
            states=states,
            conditions=tuple(conditions),
            budget=Budget(
                matched=total,
                max_unavailable=max_unavailable,
                partition=partition,
                disrupted=tuple(sorted(disrupted)),
                used=len(disrupted) if used is None else used,
            ),
            requeue_after=_requeue_after(held, pending_keys, updates, flips),
            warnings=tuple(warnings),
            matched=judged,
        )

    if strategy.is_not_update or strategy.paused:
        reason = Hold.NOT_UPDATE if strategy.is_not_update else Hold.PAUSED
        held.update((key, reason) for key, _, _ in outdated)
        return finish()

    if not outdated and not any(sidecar.is_hot for sidecar in candidates.sidecars(sidecarset)):
        return finish()  # settled: nothing to update, and only a hot upgrade can flip
    matched = tuple(pod for _, pod, _ in judged)
    flips = _flips(sidecarset, matched, now, pending_keys)
    flipping = {flip.pod for flip in flips}
    held.update((key, Hold.IN_FLIGHT) for key in flipping)
    waiting: list[PodView] = []
    not_upgradable: list[PodKey] = []
    for key, pod, state in outdated:
        if not _is_selected(sidecarset, pod):
            held[key] = Hold.NOT_SELECTED
        elif key in pending_keys or key in flipping:
            held[key] = Hold.IN_FLIGHT
        elif state.kind is PodStateKind.NOT_UPGRADABLE:
            held[key] = Hold.NOT_UPGRADABLE
            not_upgradable.append(key)
        elif state.kind is PodStateKind.IN_FLIGHT:
            held[key] = Hold.IN_FLIGHT
        else:
            waiting.append(pod)

    ordered = ordering.order(waiting, strategy, matched, memo.sort_keys)
    cut = max(0, len(ordered) - partition)
    held.update((pod.key, Hold.PARTITION) for pod in ordered[cut:])

    updates: list[PodUpdate] = []
    used = len(disrupted)
    for pod in ordered[:cut]:
        key = pod.key
        if (
            used >= max_unavailable
            and key not in disrupted
            and (not states[key].available or _changes_images(sidecarset, pod))
        ):
            # Costs a unit: skip building the update (most of a round's time once the budget
            # is spent on a large rollout); its blockers are reported once the budget reaches it.
            held[key] = Hold.BUDGET
            continue
        update = pod_update(sidecarset, pod, now, latest_revision=latest_revision)
        if update.blockers:
            held[key] = Hold.NOT_UPGRADABLE
            blocked[key] = update.blockers[0]
            not_upgradable.append(key)
            continue
        free = key in disrupted or (not update.images and states[key].available)
        cost = 0 if free else 1
        if used + cost > max_unavailable:
            held[key] = Hold.BUDGET
            continue
        used += cost
        updates.append(update)

    by_key = {key: pod for key, pod, _ in outdated} if not_upgradable else {}
    conditions = [
        condition
        for key in sorted(not_upgradable)
        if (condition := upgradable_condition_update(by_key[key], sidecarset.name, False, now))
        is not None
    ]
    return finish(updates, flips, conditions, used)


def _is_disrupted(state: PodState) -> bool:
    if state.updated:
        return not state.available
    return state.kind is PodStateKind.IN_FLIGHT or state.hot_upgrade_pending


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
    if not any(sidecar.is_hot for sidecar in candidates.sidecars(sidecarset)):
        return flips  # only a hot upgrade can be flip-ready
    for pod in matched:
        if pod.key in pending or not candidates.is_flip_ready(sidecarset, pod):
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
    waiting = Hold.BUDGET in holds or Hold.IN_FLIGHT in holds
    if updates or flips or waiting:
        return PROGRESS_RECHECK
    return None


# --- partition and maxUnavailable arithmetic (behaviour.md §7.4) -------------------------------

_PERCENT = re.compile(r"^([0-9]+)%$")


def _scaled(value: IntOrString, total: int) -> tuple[int, bool] | None:
    """(count, was_percent), percentages rounded up; None for an unreadable value."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return (value, False) if value >= 0 else None
    match = _PERCENT.match(value)
    if match is None:
        return None
    percent = int(match.group(1))
    return (percent * total + 99) // 100, True


def partition_count(partition: IntOrString | None, matched: int) -> int | None:
    """How many waiting pods to keep on the old version (Kruise CalculatePartitionReplicas).

    An int as is; a percentage of `matched` rounded up, except that a percentage other than
    exactly "100%" that rounds up to all pods (with more than one) keeps one pod fewer, so
    "99%" of 5 pods is 4; clamped to [0, matched]. Unset is 0; None for an unreadable value.
    """
    if partition is None:
        return 0
    scaled = _scaled(partition, matched)
    if scaled is None:
        return None
    count, percent = scaled
    if percent and matched > 1 and count == matched and partition != "100%":
        count = matched - 1
    return max(0, min(count, matched))


def max_unavailable_count(max_unavailable: IntOrString | None, matched: int) -> int | None:
    """The unavailability budget: an int as is, or a percentage of `matched` rounded up (so 5% of
    5 pods is 1). Unset is 1; None for an unreadable value."""
    if max_unavailable is None:
        return 1
    scaled = _scaled(max_unavailable, matched)
    return None if scaled is None else scaled[0]


def _bad_value(field: str, value: object, consequence: str) -> str:
    error = FieldError.invalid(
        f"spec.updateStrategy.{field}",
        value,
        f'must be a non-negative integer or a percentage such as "20%"; {consequence}',
    )
    return str(error)


# --- one pod's mutation (behaviour.md §7.5, §8.2, §8.3) -----------------------------------------


def pod_update(
    sidecarset: SidecarSet,
    pod: PodView,
    now: datetime,
    *,
    latest_revision: str | None = None,
) -> PodUpdate:
    """The in-place update of one pod to the SidecarSet's current sidecars.

    Images: each cold sidecar (native sidecars included) whose pod image differs gets the new
    image; for a hot sidecar, the twin picked by `_twin_to_upgrade` gets it unless the other twin
    already runs it, and the working-twin and version annotations move as Kruise moves them
    (behaviour.md §8.2). When the other twin already runs it but is the idle one (a rollback of a
    failed hot upgrade), the pod is reverted instead: the other twin works again and the picked
    one is reset to the empty image, with the version annotations a reset writes (§8.3). Nothing
    but images changes in the containers.

    Annotations: this SidecarSet's hash entry is bumped (timestamp `now`, `controllerRevision` =
    `latest_revision` or `status.latestRevision`); legacy hash-without-image values are rewritten
    in the current form; the in-place-update-state entry records the imageIDs of the changed
    containers, with its revision and timestamp refreshed on every update (Kruise keeps the first
    ones forever, behaviour.md §12.16), and is left alone when no image changes; a missing
    injected-list is backfilled from the SidecarSets the hash annotation names; then
    `patchPodMetadata` applies.
    An unreadable hash annotation is written afresh with this SidecarSet's entry (`repairs`), as
    Kruise does. A patch that cannot be applied (MergePatchJson into a non-JSON value) or another
    unreadable annotation we must rewrite becomes a blocker instead of an exception.
    """
    annotations = dict(pod.annotations)
    blockers: list[Blocker] = []
    repairs: list[str] = []
    images: list[ImageChange] = []

    sidecars = candidates.sidecars(sidecarset)
    working = _read_working(pod, blockers) if any(s.is_hot for s in sidecars) else {}
    for sidecar in sidecars:
        change = _sidecar_change(sidecarset, sidecar, pod, working, annotations)
        if change is not None:
            images.append(change)
            if sidecar.is_hot:
                annotations[wire.WORKING_HOT_UPGRADE_ANNOTATION] = wire.write_working_hot_upgrade(
                    working
                )

    revision = sidecarset.status.latest_revision if latest_revision is None else latest_revision
    _bump_hash(sidecarset, pod, annotations, now, revision, repairs)
    _upgrade_legacy_without_image(pod, annotations, now)
    if images:
        _record_image_ids(sidecarset, pod, annotations, images, now, keep_revision=False)
    _backfill_injected_list(sidecarset, annotations)
    _apply_patch_pod_metadata(sidecarset, annotations, blockers)

    return PodUpdate(
        pod=pod.key,
        uid=pod.metadata.uid,
        resource_version=pod.metadata.resource_version,
        images=tuple(images),
        annotations=_changed(pod.annotations, annotations),
        condition=upgradable_condition_update(pod, sidecarset.name, True, now),
        blockers=tuple(blockers),
        repairs=tuple(repairs),
    )


def flip_update(sidecarset: SidecarSet, pod: PodView, now: datetime) -> PodUpdate | None:
    """The hot-upgrade reset of one pod (behaviour.md §8.3); None when no idle twin needs it.

    Each hot sidecar's idle twin gets the empty image, `version.../<idle>` becomes "0" and
    `versionalt.../<working>` becomes "0"; the imageIDs of the reset twins are recorded so their
    restart can be detected. The hash annotation is not touched. Whether the pod is ready for
    the reset is `candidates.is_flip_ready`'s question, not this function's.
    """
    annotations = dict(pod.annotations)
    images: list[ImageChange] = []
    for sidecar in candidates.sidecars(sidecarset):
        if not sidecar.is_hot:
            continue
        working, idle = candidates.working_twin(sidecar, pod)
        index, current = _find(pod, sidecar.location, idle)
        if current is None or current == sidecar.empty_image:
            continue
        images.append(
            ImageChange(
                container=idle,
                location=sidecar.location,
                index=index,
                image=sidecar.empty_image,
                previous=current,
            )
        )
        annotations[wire.version_annotation(idle)] = "0"
        annotations[wire.version_alt_annotation(working)] = "0"
    if not images:
        return None
    _record_image_ids(sidecarset, pod, annotations, images, now, keep_revision=True)
    return PodUpdate(
        pod=pod.key,
        uid=pod.metadata.uid,
        resource_version=pod.metadata.resource_version,
        images=tuple(images),
        annotations=_changed(pod.annotations, annotations),
    )


def upgradable_condition_update(
    pod: PodView, sidecarset_name: str, upgradable: bool, now: datetime
) -> PodConditionUpdate | None:
    """The SidecarSetUpgradable condition once this SidecarSet says `upgradable` (behaviour §9.3);
    None when the pod's condition already says exactly that.

    Other SidecarSets' verdicts in the message are kept; an unreadable message is replaced.
    The transition time moves only when the condition's status flips.
    """
    current = pod.upgradable_condition
    verdicts: dict[str, bool] = {}
    if current is not None:
        try:
            verdicts = wire.read_upgradable_message(current.message)
        except ValueError:
            verdicts = {}
    verdicts[sidecarset_name] = upgradable
    status, reason = wire.upgradable_condition(verdicts)
    message = wire.write_upgradable_message(verdicts)
    if current is not None and (current.status, current.reason, current.message) == (
        status,
        reason,
        message,
    ):
        return None
    since = now
    if current is not None and current.status == status and current.last_transition_time:
        since = current.last_transition_time
    return PodConditionUpdate(
        pod=pod.key,
        type=wire.UPGRADABLE_CONDITION,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
    )


def _changes_images(sidecarset: SidecarSet, pod: PodView) -> bool:
    """Whether `pod_update` would change an image of `pod`, without building the update."""
    sidecars = candidates.sidecars(sidecarset)
    working = _read_working(pod, []) if any(s.is_hot for s in sidecars) else {}
    scratch: dict[str, str] = {}
    return any(
        _sidecar_change(sidecarset, sidecar, pod, dict(working), scratch) is not None
        for sidecar in sidecars
    )


def _read_working(pod: PodView, blockers: list[Blocker]) -> dict[str, str]:
    try:
        return wire.read_working_hot_upgrade(pod.annotations)
    except wire.MalformedAnnotation as exc:
        blockers.append(Blocker(field=exc.error.path, message=exc.error.detail))
        return {}


def _sidecar_change(
    sidecarset: SidecarSet,
    sidecar: Sidecar,
    pod: PodView,
    working: dict[str, str],
    annotations: dict[str, str],
) -> ImageChange | None:
    new_image = sidecar.spec.image
    if not sidecar.is_hot:
        index, current = _find(pod, sidecar.location, sidecar.name)
        if current is None or current == new_image:
            return None
        return ImageChange(
            container=sidecar.name,
            location=sidecar.location,
            index=index,
            image=new_image,
            previous=current,
        )
    picked, other = _twin_to_upgrade(sidecarset, sidecar, pod)
    index, current = _find(pod, sidecar.location, picked)
    _, other_image = _find(pod, sidecar.location, other)
    if current is None or other_image is None:
        return None
    if other_image == new_image:
        if candidates.working_twin(sidecar, pod)[0] != picked or current == sidecar.empty_image:
            return None
        # A rollback while the working twin is the one that failed: the idle twin still runs
        # the wanted image, so it becomes the working twin again and the failed one is reset.
        working[sidecar.name] = other
        annotations[wire.version_annotation(picked)] = "0"
        annotations[wire.version_alt_annotation(other)] = "0"
        return ImageChange(
            container=picked,
            location=sidecar.location,
            index=index,
            image=sidecar.empty_image,
            previous=current,
        )
    working[sidecar.name] = picked
    version = sidecarset.metadata.resource_version
    annotations[wire.version_annotation(picked)] = version
    annotations[wire.version_alt_annotation(picked)] = pod.annotations.get(
        wire.version_annotation(other), ""
    )
    annotations[wire.version_alt_annotation(other)] = version
    return ImageChange(
        container=picked,
        location=sidecar.location,
        index=index,
        image=new_image,
        previous=current,
    )


def _twin_to_upgrade(sidecarset: SidecarSet, sidecar: Sidecar, pod: PodView) -> tuple[str, str]:
    """(twin to overwrite, the other twin), behaviour.md §8.2: the one with the empty image (S-1
    checked first); else the only one that is not Ready and consistent; else the idle one."""
    first, second = wire.hot_upgrade_names(sidecar.name)
    _, first_image = _find(pod, sidecar.location, first)
    _, second_image = _find(pod, sidecar.location, second)
    if first_image == sidecar.empty_image:
        return first, second
    if second_image == sidecar.empty_image:
        return second, first
    first_ok = _twin_ok(sidecarset, pod, sidecar.location, first)
    second_ok = _twin_ok(sidecarset, pod, sidecar.location, second)
    if first_ok and not second_ok:
        return second, first
    if second_ok and not first_ok:
        return first, second
    working, idle = candidates.working_twin(sidecar, pod)
    return idle, working


def _twin_ok(sidecarset: SidecarSet, pod: PodView, location: Location, name: str) -> bool:
    status = (
        pod.container_status(name) if location == "containers" else pod.init_container_status(name)
    )
    return (
        status is not None
        and status.ready
        and candidates.is_state_consistent(sidecarset, pod, {name})
    )


def _find(pod: PodView, location: Location, name: str) -> tuple[int, str | None]:
    containers: Sequence[ContainerView | InitContainerView] = (
        pod.spec.containers if location == "containers" else pod.spec.init_containers
    )
    for index, container in enumerate(containers):
        if container.name == name:
            return index, container.image
    return -1, None


def _go_time(now: datetime) -> str:
    """`now` as metav1.Time serialises: UTC, whole seconds, `Z` (a naive `now` is taken as UTC)."""
    aware = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bump_hash(
    sidecarset: SidecarSet,
    pod: PodView,
    annotations: dict[str, str],
    now: datetime,
    revision: str,
    repairs: list[str],
) -> None:
    try:
        entries = wire.read_upgrade_specs(pod.annotations, wire.HASH_ANNOTATION)
    except wire.MalformedAnnotation:
        # Kruise starts over from an empty map; refusing instead stalled the whole SidecarSet
        # on one pod's bad annotation.
        entries = {}
        repairs.append(wire.HASH_ANNOTATION)
    stamp = _go_time(now)
    if _is_legacy(pod.annotations.get(wire.HASH_ANNOTATION, "")):
        entries = {
            name: msgspec.structs.replace(entry, update_timestamp=stamp)
            for name, entry in entries.items()
        }
    entries[sidecarset.name] = wire.UpgradeSpec(
        update_timestamp=stamp,
        hash=sidecarset.metadata.annotations.get(wire.HASH_ANNOTATION, ""),
        sidecarset_name=sidecarset.name,
        sidecar_list=tuple(sorted({s.name for s in candidates.sidecars(sidecarset)})),
        controller_revision=revision,
    )
    annotations[wire.HASH_ANNOTATION] = wire.write_upgrade_specs(entries)


def _is_legacy(raw: str) -> bool:
    """The pre-1.0 `{"<set>": "<hash>"}` form of a hash annotation."""
    try:
        decoded = json.loads(raw) if raw else None
    except ValueError:
        return False
    return (
        isinstance(decoded, dict)
        and bool(decoded)
        and all(isinstance(v, str) for v in decoded.values())
    )


def _upgrade_legacy_without_image(pod: PodView, annotations: dict[str, str], now: datetime) -> None:
    raw = pod.annotations.get(wire.HASH_WITHOUT_IMAGE_ANNOTATION, "")
    if not _is_legacy(raw):
        return
    entries = wire.read_upgrade_specs(pod.annotations, wire.HASH_WITHOUT_IMAGE_ANNOTATION)
    stamp = _go_time(now)
    annotations[wire.HASH_WITHOUT_IMAGE_ANNOTATION] = wire.write_upgrade_specs(
        {name: msgspec.structs.replace(e, update_timestamp=stamp) for name, e in entries.items()}
    )


def _record_image_ids(
    sidecarset: SidecarSet,
    pod: PodView,
    annotations: dict[str, str],
    changes: Sequence[ImageChange],
    now: datetime,
    *,
    keep_revision: bool,
) -> None:
    try:
        states = wire.read_inplace_update_state(pod.annotations)
    except wire.MalformedAnnotation:
        # Kruise starts over from an empty map when the value cannot be read; so do we.
        states = {}
    previous = states.get(sidecarset.name)
    image_ids = dict(previous.last_image_ids or {}) if previous is not None else {}
    for change in changes:
        status = (
            pod.container_status(change.container)
            if change.location == "containers"
            else pod.init_container_status(change.container)
        )
        image_ids[change.container] = status.image_id if status is not None else ""
    if keep_revision and previous is not None:
        state = msgspec.structs.replace(previous, last_image_ids=image_ids)
    else:
        state = wire.InPlaceUpdateState(
            revision=sidecarset.metadata.annotations.get(wire.HASH_ANNOTATION, ""),
            update_timestamp=_go_time(now),
            last_image_ids=image_ids,
        )
    states[sidecarset.name] = state
    annotations[wire.INPLACE_UPDATE_STATE_ANNOTATION] = wire.write_inplace_update_state(states)


def _backfill_injected_list(sidecarset: SidecarSet, annotations: dict[str, str]) -> None:
    """Very old pods lack the injected-list; Kruise fills it with every SidecarSet matching the
    pod now. The SidecarSets that really injected the pod are those in its hash annotation."""
    if annotations.get(wire.INJECTED_LIST_ANNOTATION, ""):
        return
    try:
        injected = set(wire.read_upgrade_specs(annotations, wire.HASH_ANNOTATION))
    except wire.MalformedAnnotation:
        injected = set()
    annotations[wire.INJECTED_LIST_ANNOTATION] = wire.write_injected_list(
        injected | {sidecarset.name}
    )


def _apply_patch_pod_metadata(
    sidecarset: SidecarSet, annotations: dict[str, str], blockers: list[Blocker]
) -> None:
    """patchPodMetadata exactly as injection applies it (Retain, Overwrite, MergePatchJson)."""
    try:
        patched = injection.patch_metadata(annotations, sidecarset)
    except injection.InjectionDenied as exc:
        blockers.append(
            Blocker(field="spec.patchPodMetadata", message=f"{exc.error.path}: {exc.error.detail}")
        )
        return
    annotations.clear()
    annotations.update(patched)


def _changed(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in sorted(after.items()) if before.get(key) != value}
