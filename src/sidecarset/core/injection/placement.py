"""Where injected containers, volumes and pull secrets go in the pod (Kruise's
mergeSidecarContainers), and applying an `Injection` to a pod.

Positions matter: the JSON patch addresses list indexes, and a sidecar that shares the name of
a pod container replaces it in place. Init containers (native sidecars included) are placed in
name order, containers in SidecarSet then declaration order.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

from sidecarset.core.injection.pod_json import name_of, objects, text
from sidecarset.core.injection.result import InjectedContainer, Injection, Placement
from sidecarset.core.injection.sidecar_container import BuiltSidecarSet, Candidate
from sidecarset.core.model import JsonObject, SidecarSet

__all__ = ["apply_injection", "place", "volumes_and_secrets"]


def place(
    pod_items: object,
    candidates: Sequence[Candidate],
    warnings: list[str],
    field: str,
) -> tuple[InjectedContainer, ...]:
    """Kruise's mergeSidecarContainers: same name replaces in place, else before or after.

    `pod_items` is the pod's list as received (indexes count every entry); not a list means none.
    """
    items = pod_items if isinstance(pod_items, list) else []
    pod_index = {name_of(item): i for i, item in enumerate(items) if isinstance(item, Mapping)}
    before: list[Candidate] = []
    after: list[Candidate] = []
    in_place: dict[int, Candidate] = {}
    seen: set[str] = set()
    for candidate in candidates:
        name = text(candidate.body.get("name"))
        if name in seen:
            warnings.append(
                f"SidecarSet {candidate.sidecarset}: {field} {name!r} is injected by an earlier"
                " SidecarSet already; skipped"
            )
            continue
        seen.add(name)
        if name in pod_index:
            in_place[pod_index[name]] = candidate
        elif candidate.placement is Placement.BEFORE_APP:
            before.append(candidate)
        else:
            after.append(candidate)
    placed = [
        InjectedContainer(
            sidecarset=c.sidecarset, body=c.body, placement=Placement.BEFORE_APP, index=i
        )
        for i, c in enumerate(before)
    ]
    placed += [
        InjectedContainer(
            sidecarset=c.sidecarset,
            body=c.body,
            placement=Placement.IN_PLACE,
            index=len(before) + i,
        )
        for i, c in sorted(in_place.items())
    ]
    offset = len(before) + len(items)
    placed += [
        InjectedContainer(
            sidecarset=c.sidecarset, body=c.body, placement=Placement.AFTER_APP, index=offset + i
        )
        for i, c in enumerate(after)
    ]
    return tuple(placed)


def volumes_and_secrets(
    pending: Sequence[SidecarSet], built: Mapping[str, BuiltSidecarSet], spec: Mapping[str, object]
) -> tuple[tuple[JsonObject, ...], tuple[str, ...], tuple[int, ...]]:
    """Volumes and pull-secret names to append (the pod's own win, then the first SidecarSet),
    and the indexes of the pod's repeated pull secrets. Pull secrets become one set of names,
    the pod's first in their order, as Kruise merges them."""
    volumes: list[JsonObject] = []
    volume_names = {name_of(v) for v in objects(spec.get("volumes"))}
    secrets: list[str] = []
    secret_names: set[str] = set()
    duplicates: list[int] = []
    own = spec.get("imagePullSecrets")
    for index, secret in enumerate(own if isinstance(own, list) else []):
        if not isinstance(secret, Mapping):
            continue
        if name_of(secret) in secret_names:
            duplicates.append(index)
        secret_names.add(name_of(secret))
    for sidecarset in pending:
        for volume in built[sidecarset.name].volumes:
            if name_of(volume) not in volume_names:
                volumes.append(volume)
                volume_names.add(name_of(volume))
        for pull in sidecarset.spec.image_pull_secrets:
            if pull.name and pull.name not in secret_names:
                secrets.append(pull.name)
                secret_names.add(pull.name)
    return tuple(volumes), tuple(secrets), tuple(duplicates)


def _merged_list(current: object, placed: Sequence[InjectedContainer]) -> list[object]:
    items: list[object] = list(current) if isinstance(current, list) else []
    before = [c.body for c in placed if c.placement is Placement.BEFORE_APP]
    for item in placed:
        if item.placement is Placement.IN_PLACE:
            items[item.index - len(before)] = item.body
    after = [c.body for c in placed if c.placement is Placement.AFTER_APP]
    return [*before, *items, *after]


def apply_injection(pod: Mapping[str, object], injection: Injection) -> dict[str, object]:
    """The pod with the injection applied (a deep copy; `pod` is not modified).

    Applying `patches.for_injection(injection)` to the same pod gives the same result.
    """
    result: dict[str, object] = copy.deepcopy(dict(pod))
    if (
        injection.containers
        or injection.init_containers
        or injection.volumes
        or (injection.image_pull_secrets)
    ):
        spec_value = result.get("spec")
        spec: dict[str, object] = spec_value if isinstance(spec_value, dict) else {}
        result["spec"] = spec
        if injection.init_containers:
            spec["initContainers"] = _merged_list(
                spec.get("initContainers"), copy.deepcopy(injection.init_containers)
            )
        if injection.containers:
            spec["containers"] = _merged_list(
                spec.get("containers"), copy.deepcopy(injection.containers)
            )
        if injection.volumes:
            current = spec.get("volumes")
            existing = list(current) if isinstance(current, list) else []
            spec["volumes"] = existing + copy.deepcopy(list(injection.volumes))
        if injection.image_pull_secrets or injection.duplicate_pull_secrets:
            current = spec.get("imagePullSecrets")
            existing = list(current) if isinstance(current, list) else []
            dropped = set(injection.duplicate_pull_secrets)
            existing = [s for i, s in enumerate(existing) if i not in dropped]
            spec["imagePullSecrets"] = existing + [
                {"name": n} for n in injection.image_pull_secrets
            ]
    if injection.annotations:
        meta_value = result.get("metadata")
        metadata: dict[str, object] = meta_value if isinstance(meta_value, dict) else {}
        result["metadata"] = metadata
        current_annotations = metadata.get("annotations")
        merged = dict(current_annotations) if isinstance(current_annotations, dict) else {}
        merged.update(injection.annotations)
        metadata["annotations"] = merged
    return result
