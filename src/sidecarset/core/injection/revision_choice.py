"""Which version of a SidecarSet a new pod gets (behaviour.md §4.5, §4.6): the live one, or the
historic one `injectionStrategy.revision` pins, restored from its ControllerRevision.

The ControllerRevisions are passed in (the webhook reads them from its informer's store, the CLI
from files), so admission stays in memory and this stays pure. A pinned revision that does not
resolve is a `RevisionLookupFailed` value, which `choose_revision` turns into a clear denial, as
Kruise fails the pod.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from sidecarset.core import model, pod_contract, selectors
from sidecarset.core.errors import ModelError
from sidecarset.core.model import RevisionPolicy, SidecarSet

__all__ = [
    "RevisionChoiceError",
    "RevisionLookupFailed",
    "choose_revision",
    "find_revision",
    "resolve_pinned_revision",
    "restore_revision",
    "wants_pinned_revision",
]

# The spec fields a ControllerRevision holds: what a pinned injection and a rollback restore.
RESTORED_FIELDS = (
    "volumes",
    "containers",
    "initContainers",
    "imagePullSecrets",
    "patchPodMetadata",
)
"""The spec fields a ControllerRevision holds; the rest of the SidecarSet stays live."""


class RevisionLookupFailed(msgspec.Struct, frozen=True, kw_only=True):
    """The pinned ControllerRevision could not be resolved; `reason` says why (for the message)."""

    reason: str


class RevisionChoiceError(RuntimeError):
    """No revision can be chosen: the pinned one is unavailable, or the strategy is unreadable.

    Kruise fails pod creation in this case (the webhook's failurePolicy is Fail).
    """

    def __init__(self, sidecarset: str, detail: str) -> None:
        super().__init__(f"SidecarSet {sidecarset}: cannot choose the revision to inject: {detail}")
        self.sidecarset = sidecarset


def wants_pinned_revision(sidecarset: SidecarSet) -> bool:
    """True when `injectionStrategy.revision` names a revision (the caller must resolve it)."""
    revision = sidecarset.spec.injection_strategy.revision
    return revision is not None and (
        revision.revision_name is not None or revision.custom_version is not None
    )


_PERCENT = re.compile(r"^(.*)%$", re.DOTALL)


def choose_revision(
    live: SidecarSet,
    historic: SidecarSet | RevisionLookupFailed | None,
    *,
    pod_labels: Mapping[str, str],
    draw: float,
) -> SidecarSet:
    """The SidecarSet version a new pod gets (behaviour.md §4.5): `live` or the pinned `historic`.

    `historic` is the resolved revision when `wants_pinned_revision(live)`, else ignored; as
    Kruise restores it (behaviour.md §4.6), it carries the revision's hash annotations and
    `status.latestRevision` = the revision name, which injection records in the pod.
    `draw` is uniform in [0, 1): with `policy: Partial` and a percent partition p, the pod gets
    the historic revision when `draw < p` (Kruise uses `<=`, which makes "0%" not quite zero).
    Raises `RevisionChoiceError` when the pinned revision is unavailable, as Kruise fails the
    pod; or when the update selector or partition cannot be read.
    """
    if not wants_pinned_revision(live):
        return live
    if historic is None or isinstance(historic, RevisionLookupFailed):
        reason = "revision was not resolved" if historic is None else historic.reason
        raise RevisionChoiceError(live.name, reason)
    strategy = live.spec.update_strategy
    if strategy.paused:
        return historic
    revision = live.spec.injection_strategy.revision
    assert revision is not None
    if revision.policy != RevisionPolicy.PARTIAL:
        return historic
    if strategy.selector is not None:
        selected = selectors.matches(strategy.selector, pod_labels)
        if selected is None:
            raise RevisionChoiceError(live.name, "updateStrategy.selector is invalid")
        if not selected:
            return historic
    partition = strategy.partition
    if partition is None or isinstance(partition, int):
        return live
    match = _PERCENT.match(partition)
    try:
        percent = float(match.group(1)) if match is not None else math.nan
    except ValueError:
        percent = math.nan
    if math.isnan(percent):
        raise RevisionChoiceError(
            live.name, f"updateStrategy.partition {partition!r} is not a percentage"
        )
    return historic if draw < percent / 100 else live


# --- resolving the pinned revision (behaviour.md §4.6) -----------------------------------------


def find_revision(
    live: model.SidecarSet, revisions: Iterable[dict[str, Any]]
) -> dict[str, Any] | RevisionLookupFailed | None:
    """The pinned revision object, a lookup failure, or None when nothing is pinned."""
    strategy = live.spec.injection_strategy
    pinned = strategy.revision if strategy is not None else None
    if pinned is None or (pinned.revision_name is None and pinned.custom_version is None):
        return None
    if pinned.revision_name:
        for rev in revisions:
            if rev.get("metadata", {}).get("name") == pinned.revision_name:
                return rev
        return RevisionLookupFailed(
            reason=f"ControllerRevision {pinned.revision_name!r} "
            "(injectionStrategy.revision.revisionName) not found"
        )
    candidates = [
        rev
        for rev in revisions
        if (rev.get("metadata", {}).get("labels") or {}).get(pod_contract.SIDECARSET_NAME_LABEL)
        == live.metadata.name
        and (rev.get("metadata", {}).get("labels") or {}).get(pod_contract.CUSTOM_VERSION_LABEL)
        == pinned.custom_version
    ]
    if not candidates:
        return RevisionLookupFailed(
            reason=f"no ControllerRevision of SidecarSet {live.metadata.name!r} carries custom "
            f"version {pinned.custom_version!r} (injectionStrategy.revision.customVersion)"
        )
    return max(candidates, key=lambda rev: int(rev.get("revision") or 0))


def restore_revision(live_raw: dict[str, Any], revision: dict[str, Any]) -> model.SidecarSet:
    """The live SidecarSet with the revision's injectable fields, hashes and name."""
    restored = copy.deepcopy(live_raw)
    data = revision.get("data") or {}
    spec_patch = data.get("spec") or {} if isinstance(data, dict) else {}
    spec = restored.setdefault("spec", {})
    for key in RESTORED_FIELDS:
        value = spec_patch.get(key)
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    annotations = restored.setdefault("metadata", {}).setdefault("annotations", {})
    for key in (pod_contract.HASH_ANNOTATION, pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION):
        value = (revision.get("metadata", {}).get("annotations") or {}).get(key)
        if value:
            annotations[key] = value
    restored.setdefault("status", {})["latestRevision"] = revision["metadata"]["name"]
    return model.parse_sidecarset(restored)


def resolve_pinned_revision(
    live_raw: dict[str, Any], live: model.SidecarSet, revisions: Iterable[dict[str, Any]]
) -> model.SidecarSet | RevisionLookupFailed | None:
    """The historic SidecarSet `choose_revision` needs: None when nothing is pinned, a failure
    when the revision is missing or cannot be read (never an exception)."""
    found = find_revision(live, revisions)
    if found is None or isinstance(found, RevisionLookupFailed):
        return found
    try:
        return restore_revision(live_raw, found)
    except (ModelError, KeyError, TypeError) as err:
        name = found.get("metadata", {}).get("name")
        return RevisionLookupFailed(reason=f"ControllerRevision {name!r} is unreadable: {err}")
