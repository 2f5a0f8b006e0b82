"""SidecarSet revision history as data (behaviour.md §10): what a revision holds, its name, which
revision is current after a spec change, and which old revisions may be deleted.

The reconciler lists the SidecarSet's ControllerRevisions, turns them into `RevisionRecord`s,
calls `decide_revision` and then `revisions_to_prune`, and executes the answers; injection
resolves pinned revisions from the same records.

Naming follows Kubernetes' ControllerRevision scheme as Kruise uses it: the 32-bit FNV-1 hash of
the revision data followed by the decimal collision count, printed in decimal and passed
through `rand.SafeEncodeString`, appended to the SidecarSet name (cut to 223 characters). The
data is `{"spec":{"$patch":"replace","containers":…,"imagePullSecrets":…,"initContainers":…,
"patchPodMetadata":…,"volumes":…}}` with absent or empty fields as `null`, containers encoded
through Kruise's Go struct table (`hashing.container_encoding`) and every object's keys sorted,
as Go re-marshals it. Names therefore equal Kruise's wherever our encoding of the volumes and
patches is byte-identical to Go's; they need not be, because revisions are compared by their
decoded JSON, never by name or bytes (Kruise compares bytes), so revisions Kruise created are
recognised and reused.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

import msgspec

from sidecarset.core import hashing, pod_classification, pod_contract
from sidecarset.core.model import SidecarContainer, SidecarSet
from sidecarset.core.podview import PodView

__all__ = [
    "DEFAULT_HISTORY_LIMIT",
    "Pruning",
    "RevisionAction",
    "RevisionDecision",
    "RevisionRecord",
    "decide_revision",
    "history_after",
    "revision_annotations",
    "revision_data",
    "revision_hash",
    "revision_labels",
    "revision_name",
    "revision_records",
    "revisions_in_use",
    "revisions_to_prune",
    "same_data",
]

DEFAULT_HISTORY_LIMIT = 10
"""`revisionHistoryLimit` when unset (Kruise's default)."""

_NAME_PREFIX_MAX = 223
"""Kubernetes ControllerRevisionName keeps names within 253 bytes."""

_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193


class RevisionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A stored ControllerRevision of one SidecarSet: name, `.revision`, raw data, labels."""

    name: str
    revision: int
    data: str
    labels: Mapping[str, str] = {}


def revision_records(name: str, objects: Iterable[Mapping[str, Any]]) -> list[RevisionRecord]:
    """The ControllerRevision objects (as the API returns them) that belong to SidecarSet `name`,
    as records; the data is kept as sorted-key JSON, compared decoded by `same_data`."""
    records = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        if labels.get(pod_contract.SIDECARSET_NAME_LABEL) != name:
            continue
        records.append(
            RevisionRecord(
                name=str(meta.get("name", "")),
                revision=int(obj.get("revision") or 0),
                data=json.dumps(obj.get("data"), sort_keys=True),
                labels=dict(labels),
            )
        )
    return records


class RevisionAction(StrEnum):
    REUSE = "reuse"
    """The newest revision already holds this spec: nothing to write."""
    RENUMBER = "renumber"
    """An older revision holds this spec (a rollback): set its `.revision` to the next number."""
    CREATE = "create"
    """No revision holds this spec: create one."""


class RevisionDecision(msgspec.Struct, frozen=True, kw_only=True):
    """Which revision is current for the SidecarSet's spec, and what to write for it.

    `name` is the current revision (status.latestRevision). For CREATE, `data`, `labels` and
    `annotations` are the new object's; `collision_count` is what status.collisionCount must
    become (raised past names already taken by other data). `custom_version_label` is set when
    the current revision must be labelled with the SidecarSet's custom version.
    """

    action: RevisionAction
    name: str
    revision: int
    collision_count: int
    data: str
    labels: Mapping[str, str] = {}
    annotations: Mapping[str, str] = {}
    custom_version_label: str | None = None


class Pruning(msgspec.Struct, frozen=True, kw_only=True):
    """Revisions to delete, oldest first, and how many over the limit remain (all in use)."""

    delete: tuple[str, ...]
    over_limit: int


def revision_data(sidecarset: SidecarSet) -> str:
    """The revision data of the SidecarSet's current spec (see the module docstring)."""
    spec = sidecarset.spec
    body: dict[str, object] = {
        "$patch": "replace",
        "containers": _containers(spec.containers),
        "imagePullSecrets": [{"name": s.name} if s.name else {} for s in spec.image_pull_secrets]
        or None,
        "initContainers": _containers(spec.init_containers),
        "patchPodMetadata": [_patch(p.annotations, p.patch_policy) for p in spec.patch_pod_metadata]
        or None,
        "volumes": [v.body for v in spec.volumes] or None,
    }
    return hashing.go_json({"spec": body})


def _containers(containers: Sequence[SidecarContainer]) -> list[object] | None:
    if not containers:
        return None
    return [json.loads(hashing.container_encoding(c.body)) for c in containers]


def _patch(annotations: Mapping[str, str], policy: str) -> dict[str, object]:
    patch: dict[str, object] = {}
    if annotations:
        patch["annotations"] = dict(annotations)
    if policy:
        patch["patchPolicy"] = policy
    return patch


def revision_hash(data: str, collision_count: int | None) -> str:
    """Kubernetes HashControllerRevision: FNV-1 (32 bit) of the data, then of the decimal
    collision count when given, printed in decimal and safe-encoded."""
    value = _FNV32_OFFSET
    payload = data.encode("utf-8")
    if collision_count is not None:
        payload += str(collision_count).encode("ascii")
    for byte in payload:
        value = (value * _FNV32_PRIME) & 0xFFFFFFFF
        value ^= byte
    return hashing.safe_encode(str(value))


def revision_name(sidecarset_name: str, hash_: str) -> str:
    """`<name>-<hash>`, the name cut to 223 characters as Kubernetes does."""
    return f"{sidecarset_name[:_NAME_PREFIX_MAX]}-{hash_}"


def revision_labels(sidecarset: SidecarSet) -> dict[str, str]:
    """The SidecarSet's labels, `kruise.io/sidecarset-name`, and the custom version if set."""
    labels = dict(sidecarset.metadata.labels)
    labels[pod_contract.SIDECARSET_NAME_LABEL] = sidecarset.name
    if sidecarset.custom_version:
        labels[pod_contract.CUSTOM_VERSION_LABEL] = sidecarset.custom_version
    return labels


def revision_annotations(sidecarset: SidecarSet) -> dict[str, str]:
    """A copy of every SidecarSet annotation (so the hash annotations travel with the data)."""
    return dict(sidecarset.metadata.annotations)


def same_data(a: str, b: str) -> bool:
    """Two revision data documents hold the same JSON (key order and spacing aside)."""
    if a == b:
        return True
    try:
        return bool(json.loads(a) == json.loads(b))
    except ValueError:
        return False


def decide_revision(
    sidecarset: SidecarSet, existing: Sequence[RevisionRecord], *, collision_count: int
) -> RevisionDecision:
    """Reuse the newest revision if it holds this spec; else renumber the newest older one that
    does (rollback: it keeps its name); else create one numbered after the newest.

    A new name that an existing revision with other data already has raises the collision count
    until the name is free. Should the API still answer AlreadyExists (a revision outside
    `existing`), add that object to `existing` and decide again.
    """
    data = revision_data(sidecarset)
    history = sorted(existing, key=lambda r: r.revision)
    next_number = history[-1].revision + 1 if history else 1
    equal = [r for r in history if same_data(r.data, data)]
    custom = sidecarset.custom_version

    def label_for(record: RevisionRecord) -> str | None:
        if custom and record.labels.get(pod_contract.CUSTOM_VERSION_LABEL) != custom:
            return custom
        return None

    if equal and equal[-1] is history[-1]:
        current = history[-1]
        return RevisionDecision(
            action=RevisionAction.REUSE,
            name=current.name,
            revision=current.revision,
            collision_count=collision_count,
            data=current.data,
            custom_version_label=label_for(current),
        )
    if equal:
        current = equal[-1]
        return RevisionDecision(
            action=RevisionAction.RENUMBER,
            name=current.name,
            revision=next_number,
            collision_count=collision_count,
            data=current.data,
            custom_version_label=label_for(current),
        )
    taken = {r.name for r in existing}
    count = collision_count
    name = revision_name(sidecarset.name, revision_hash(data, count))
    while name in taken:
        count += 1
        name = revision_name(sidecarset.name, revision_hash(data, count))
    return RevisionDecision(
        action=RevisionAction.CREATE,
        name=name,
        revision=next_number,
        collision_count=count,
        data=data,
        labels=revision_labels(sidecarset),
        annotations=revision_annotations(sidecarset),
    )


def history_after(
    existing: Sequence[RevisionRecord], decision: RevisionDecision
) -> tuple[RevisionRecord, ...]:
    """The revision list once the decision is applied, oldest first (the current one last)."""
    history = sorted(existing, key=lambda r: r.revision)
    if decision.action is RevisionAction.REUSE:
        return tuple(history)
    others = [r for r in history if r.name != decision.name]
    previous = next((r for r in history if r.name == decision.name), None)
    labels = dict(previous.labels) if previous is not None else dict(decision.labels)
    if decision.custom_version_label:
        labels[pod_contract.CUSTOM_VERSION_LABEL] = decision.custom_version_label
    current = RevisionRecord(
        name=decision.name, revision=decision.revision, data=decision.data, labels=labels
    )
    return (*others, current)


def revisions_in_use(
    sidecarset: SidecarSet, history: Sequence[RevisionRecord], pods: Sequence[PodView]
) -> frozenset[str]:
    """Revisions that must be kept: recorded in a matched pod's hash entry, named by
    `injectionStrategy.revision.revisionName`, or the newest carrying its `customVersion`."""
    in_use: set[str] = set()
    for pod in pods:
        if not pod_classification.is_matched(sidecarset, pod):
            continue
        try:
            entry = pod_contract.read_upgrade_specs(
                pod.annotations, pod_contract.HASH_ANNOTATION
            ).get(sidecarset.name)
        except pod_contract.MalformedAnnotation:
            continue
        if entry is not None and entry.controller_revision:
            in_use.add(entry.controller_revision)
    pinned = sidecarset.spec.injection_strategy.revision
    if pinned is not None:
        if pinned.revision_name is not None:
            in_use.add(pinned.revision_name)
        if pinned.custom_version is not None:
            labelled = [
                r
                for r in sorted(history, key=lambda r: r.revision)
                if r.labels.get(pod_contract.CUSTOM_VERSION_LABEL) == pinned.custom_version
            ]
            if labelled:
                in_use.add(labelled[-1].name)
    return frozenset(in_use)


def revisions_to_prune(
    sidecarset: SidecarSet, history: Sequence[RevisionRecord], pods: Sequence[PodView]
) -> Pruning:
    """Old revisions to delete so at most `max(1, revisionHistoryLimit)` (default 10) remain.

    `history` is the list after the round's decision (`history_after`). Deletes oldest first,
    never the newest, and never one in use (`revisions_in_use`); when that is not enough,
    `over_limit` says by how much the history still exceeds the limit.
    """
    limit = sidecarset.spec.revision_history_limit
    limit = DEFAULT_HISTORY_LIMIT if limit is None else max(1, limit)
    ordered = sorted(history, key=lambda r: r.revision)
    excess = len(ordered) - limit
    if excess <= 0:
        return Pruning(delete=(), over_limit=0)
    in_use = revisions_in_use(sidecarset, ordered, pods)
    delete: list[str] = []
    for record in ordered[:-1]:
        if len(delete) == excess:
            break
        if record.name not in in_use:
            delete.append(record.name)
    return Pruning(delete=tuple(delete), over_limit=excess - len(delete))
