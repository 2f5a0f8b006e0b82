"""Resolve `injectionStrategy.revision` to the historic SidecarSet a pod gets (behaviour.md §4.6).

Reads ControllerRevisions from the informer's store (the operator namespace), never the API:
admission stays in memory. A reference that does not resolve is a `RevisionLookupFailed` value,
which `injection.choose_revision` turns into a clear denial.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from sidecarset.core import model, wire
from sidecarset.core.errors import ModelError
from sidecarset.core.injection import RevisionLookupFailed

_RESTORED_FIELDS = (
    "volumes",
    "containers",
    "initContainers",
    "imagePullSecrets",
    "patchPodMetadata",
)


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
        if (rev.get("metadata", {}).get("labels") or {}).get(wire.SIDECARSET_NAME_LABEL)
        == live.metadata.name
        and (rev.get("metadata", {}).get("labels") or {}).get(wire.CUSTOM_VERSION_LABEL)
        == pinned.custom_version
    ]
    if not candidates:
        return RevisionLookupFailed(
            reason=f"no ControllerRevision of SidecarSet {live.metadata.name!r} carries custom "
            f"version {pinned.custom_version!r} (injectionStrategy.revision.customVersion)"
        )
    return max(candidates, key=lambda rev: int(rev.get("revision") or 0))


def restore(live_raw: dict[str, Any], revision: dict[str, Any]) -> model.SidecarSet:
    """The live SidecarSet with the revision's injectable fields, hashes and name."""
    restored = copy.deepcopy(live_raw)
    data = revision.get("data") or {}
    spec_patch = data.get("spec") or {} if isinstance(data, dict) else {}
    spec = restored.setdefault("spec", {})
    for key in _RESTORED_FIELDS:
        value = spec_patch.get(key)
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    annotations = restored.setdefault("metadata", {}).setdefault("annotations", {})
    for key in (wire.HASH_ANNOTATION, wire.HASH_WITHOUT_IMAGE_ANNOTATION):
        value = (revision.get("metadata", {}).get("annotations") or {}).get(key)
        if value:
            annotations[key] = value
    restored.setdefault("status", {})["latestRevision"] = revision["metadata"]["name"]
    return model.parse_sidecarset(restored)


def historic(
    live_raw: dict[str, Any], live: model.SidecarSet, revisions: Iterable[dict[str, Any]]
) -> model.SidecarSet | RevisionLookupFailed | None:
    found = find_revision(live, revisions)
    if found is None or isinstance(found, RevisionLookupFailed):
        return found
    try:
        return restore(live_raw, found)
    except (ModelError, KeyError, TypeError) as err:
        name = found.get("metadata", {}).get("name")
        return RevisionLookupFailed(reason=f"ControllerRevision {name!r} is unreadable: {err}")
