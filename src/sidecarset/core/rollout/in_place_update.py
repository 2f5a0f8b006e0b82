"""What one pod's in-place update writes (behaviour.md §7.5, §8.2, §8.3): new sidecar images and
the annotations that record them, or a hot-upgrade reset.

Round planning decides *which* pods change; this module decides *how* one pod changes, so the
plan, `sidecarset plan` and the tests can show the exact patch before anything is written.

Rolling back a hot upgrade whose new twin never became ready reverts the pod: the idle twin
still runs the wanted image, so it becomes the working twin again and the failed twin gets the
empty image. Kruise changes nothing there (the other twin "already runs the new image",
behaviour.md §8.2) yet bumps the hash, leaving the pod counted as updated with its working twin
crash-looping and never ready to flip: a rollback could never recover it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import msgspec

from sidecarset.core import pod_classification, pod_contract
from sidecarset.core.injection.pod_annotations import patch_metadata
from sidecarset.core.injection.result import InjectionDenied
from sidecarset.core.model import SidecarSet
from sidecarset.core.pod_classification import Blocker, Location, Sidecar
from sidecarset.core.podview import ContainerView, InitContainerView, PodKey, PodView

__all__ = [
    "ImageChange",
    "PodConditionUpdate",
    "PodUpdate",
    "changes_images",
    "flip_update",
    "pod_update",
    "upgradable_condition_update",
    "verdicts_condition_update",
]


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
    verdicts: Mapping[str, bool] = {}
    """The SidecarSets' verdicts this update records, from which it can be derived again against
    a fresher copy of the pod (`verdicts_condition_update`)."""


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

    sidecars = pod_classification.sidecars(sidecarset)
    working = _read_working(pod, blockers) if any(s.is_hot for s in sidecars) else {}
    for sidecar in sidecars:
        change = _sidecar_change(sidecarset, sidecar, pod, working, annotations)
        if change is not None:
            images.append(change)
            if sidecar.is_hot:
                annotations[pod_contract.WORKING_HOT_UPGRADE_ANNOTATION] = (
                    pod_contract.write_working_hot_upgrade(working)
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
    the reset is `pod_classification.is_flip_ready`'s question, not this function's.
    """
    annotations = dict(pod.annotations)
    images: list[ImageChange] = []
    for sidecar in pod_classification.sidecars(sidecarset):
        if not sidecar.is_hot:
            continue
        working, idle = pod_classification.working_twin(sidecar, pod)
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
        annotations[pod_contract.version_annotation(idle)] = "0"
        annotations[pod_contract.version_alt_annotation(working)] = "0"
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
    None when the pod's condition already says exactly that."""
    return verdicts_condition_update(pod, {sidecarset_name: upgradable}, now)


def verdicts_condition_update(
    pod: PodView, verdicts: Mapping[str, bool], now: datetime
) -> PodConditionUpdate | None:
    """The SidecarSetUpgradable condition once each named SidecarSet has given its verdict;
    None when the pod's condition already says exactly that.

    Other SidecarSets' verdicts in the message are kept; an unreadable message is replaced.
    The transition time moves only when the condition's status flips.
    """
    current = pod.upgradable_condition
    merged: dict[str, bool] = {}
    if current is not None:
        try:
            merged = pod_contract.read_upgradable_message(current.message)
        except ValueError:
            merged = {}
    merged.update(verdicts)
    status, reason = pod_contract.upgradable_condition(merged)
    message = pod_contract.write_upgradable_message(merged)
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
        type=pod_contract.UPGRADABLE_CONDITION,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        verdicts=dict(verdicts),
    )


def changes_images(sidecarset: SidecarSet, pod: PodView) -> bool:
    """Whether `pod_update` would change an image of `pod`, without building the update."""
    sidecars = pod_classification.sidecars(sidecarset)
    working = _read_working(pod, []) if any(s.is_hot for s in sidecars) else {}
    scratch: dict[str, str] = {}
    return any(
        _sidecar_change(sidecarset, sidecar, pod, dict(working), scratch) is not None
        for sidecar in sidecars
    )


def _read_working(pod: PodView, blockers: list[Blocker]) -> dict[str, str]:
    try:
        return pod_contract.read_working_hot_upgrade(pod.annotations)
    except pod_contract.MalformedAnnotation as exc:
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
        if (
            pod_classification.working_twin(sidecar, pod)[0] != picked
            or current == sidecar.empty_image
        ):
            return None
        # A rollback while the working twin is the one that failed: the idle twin still runs
        # the wanted image, so it becomes the working twin again and the failed one is reset.
        working[sidecar.name] = other
        annotations[pod_contract.version_annotation(picked)] = "0"
        annotations[pod_contract.version_alt_annotation(other)] = "0"
        return ImageChange(
            container=picked,
            location=sidecar.location,
            index=index,
            image=sidecar.empty_image,
            previous=current,
        )
    working[sidecar.name] = picked
    version = sidecarset.metadata.resource_version
    annotations[pod_contract.version_annotation(picked)] = version
    annotations[pod_contract.version_alt_annotation(picked)] = pod.annotations.get(
        pod_contract.version_annotation(other), ""
    )
    annotations[pod_contract.version_alt_annotation(other)] = version
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
    first, second = pod_contract.hot_upgrade_names(sidecar.name)
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
    working, idle = pod_classification.working_twin(sidecar, pod)
    return idle, working


def _twin_ok(sidecarset: SidecarSet, pod: PodView, location: Location, name: str) -> bool:
    status = (
        pod.container_status(name) if location == "containers" else pod.init_container_status(name)
    )
    return (
        status is not None
        and status.ready
        and pod_classification.is_state_consistent(sidecarset, pod, {name})
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
        entries = pod_contract.read_upgrade_specs(pod.annotations, pod_contract.HASH_ANNOTATION)
    except pod_contract.MalformedAnnotation:
        # Kruise starts over from an empty map; refusing instead stalled the whole SidecarSet
        # on one pod's bad annotation.
        entries = {}
        repairs.append(pod_contract.HASH_ANNOTATION)
    stamp = _go_time(now)
    if _is_legacy(pod.annotations.get(pod_contract.HASH_ANNOTATION, "")):
        entries = {
            name: msgspec.structs.replace(entry, update_timestamp=stamp)
            for name, entry in entries.items()
        }
    entries[sidecarset.name] = pod_contract.UpgradeSpec(
        update_timestamp=stamp,
        hash=sidecarset.metadata.annotations.get(pod_contract.HASH_ANNOTATION, ""),
        sidecarset_name=sidecarset.name,
        sidecar_list=tuple(sorted({s.name for s in pod_classification.sidecars(sidecarset)})),
        controller_revision=revision,
    )
    annotations[pod_contract.HASH_ANNOTATION] = pod_contract.write_upgrade_specs(entries)


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
    raw = pod.annotations.get(pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION, "")
    if not _is_legacy(raw):
        return
    entries = pod_contract.read_upgrade_specs(
        pod.annotations, pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION
    )
    stamp = _go_time(now)
    annotations[pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION] = pod_contract.write_upgrade_specs(
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
        states = pod_contract.read_inplace_update_state(pod.annotations)
    except pod_contract.MalformedAnnotation:
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
        state = pod_contract.InPlaceUpdateState(
            revision=sidecarset.metadata.annotations.get(pod_contract.HASH_ANNOTATION, ""),
            update_timestamp=_go_time(now),
            last_image_ids=image_ids,
        )
    states[sidecarset.name] = state
    annotations[pod_contract.INPLACE_UPDATE_STATE_ANNOTATION] = (
        pod_contract.write_inplace_update_state(states)
    )


def _backfill_injected_list(sidecarset: SidecarSet, annotations: dict[str, str]) -> None:
    """Very old pods lack the injected-list; Kruise fills it with every SidecarSet matching the
    pod now. The SidecarSets that really injected the pod are those in its hash annotation."""
    if annotations.get(pod_contract.INJECTED_LIST_ANNOTATION, ""):
        return
    try:
        injected = set(pod_contract.read_upgrade_specs(annotations, pod_contract.HASH_ANNOTATION))
    except pod_contract.MalformedAnnotation:
        injected = set()
    annotations[pod_contract.INJECTED_LIST_ANNOTATION] = pod_contract.write_injected_list(
        injected | {sidecarset.name}
    )


def _apply_patch_pod_metadata(
    sidecarset: SidecarSet, annotations: dict[str, str], blockers: list[Blocker]
) -> None:
    """patchPodMetadata exactly as injection applies it (Retain, Overwrite, MergePatchJson)."""
    try:
        patched = patch_metadata(annotations, sidecarset)
    except InjectionDenied as exc:
        blockers.append(
            Blocker(field="spec.patchPodMetadata", message=f"{exc.error.path}: {exc.error.detail}")
        )
        return
    annotations.clear()
    annotations.update(patched)


def _changed(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in sorted(after.items()) if before.get(key) != value}
