"""RFC 6902 JSON patches for the pod webhook, built directly from an `Injection`.

The operations `add` and `replace`: containers and init containers are inserted at their final
index (or replace the same-named container in place), volumes and pull secrets are appended,
annotations set one by one. The one `remove` drops a pull secret that repeats an earlier name of
the pod's own (Kruise merges pull secrets as a set). Missing arrays and maps are created by one
`add` of the whole value. Applying `for_injection(injection)` to the pod `injection` was computed
for gives exactly `injection.apply_injection(pod, injection)`.
"""

from __future__ import annotations

from collections.abc import Sequence

from sidecarset.core.injection.result import InjectedContainer, Injection, Placement
from sidecarset.core.model import JsonObject, copy_json

__all__ = ["JsonPatchOp", "escape_pointer", "for_injection"]

JsonPatchOp = dict[str, object]
"""One RFC 6902 operation: `{"op": "add", "path": "/spec/containers/0", "value": {...}}`."""


def escape_pointer(token: str) -> str:
    """One RFC 6901 reference token: `~` -> `~0`, `/` -> `~1` (in that order)."""
    return token.replace("~", "~0").replace("/", "~1")


def _add(path: str, value: object) -> JsonPatchOp:
    return {"op": "add", "path": path, "value": value}


def _replace(path: str, value: object) -> JsonPatchOp:
    return {"op": "replace", "path": path, "value": value}


def _container_ops(
    path: str, length: int | None, placed: Sequence[InjectedContainer]
) -> list[JsonPatchOp]:
    if not placed:
        return []
    if length is None:
        # No list in the pod (absent or null): nothing to replace, so create it whole.
        return [_add(path, [copy_json(c.body) for c in placed])]
    before = [c for c in placed if c.placement is Placement.BEFORE_APP]
    in_place = [c for c in placed if c.placement is Placement.IN_PLACE]
    after = [c for c in placed if c.placement is Placement.AFTER_APP]
    # Inserting the leading sidecars in ascending final index first puts every pod container at
    # its final index too, so the in-place replacements and appends can use final indexes.
    ops = [_add(f"{path}/{c.index}", copy_json(c.body)) for c in before]
    ops += [_replace(f"{path}/{c.index}", copy_json(c.body)) for c in in_place]
    ops += [_add(f"{path}/-", copy_json(c.body)) for c in after]
    return ops


def _append_ops(path: str, length: int | None, values: Sequence[object]) -> list[JsonPatchOp]:
    if not values:
        return []
    if length is None:
        return [_add(path, copy_json(list(values)))]
    return [_add(f"{path}/-", copy_json(v)) for v in values]


def for_injection(injection: Injection) -> list[JsonPatchOp]:
    """The JSON patch that applies `injection` to the pod it was computed for."""
    shape = injection.shape
    spec_ops: list[JsonPatchOp] = []
    spec_ops += _container_ops(
        "/spec/initContainers", shape.init_containers, injection.init_containers
    )
    spec_ops += _container_ops("/spec/containers", shape.containers, injection.containers)
    spec_ops += _append_ops("/spec/volumes", shape.volumes, injection.volumes)
    secrets: list[JsonObject] = [{"name": name} for name in injection.image_pull_secrets]
    # Repeated names go first, from the highest index, so each index is still the pod's own.
    spec_ops += [
        {"op": "remove", "path": f"/spec/imagePullSecrets/{index}"}
        for index in sorted(injection.duplicate_pull_secrets, reverse=True)
    ]
    spec_ops += _append_ops("/spec/imagePullSecrets", shape.image_pull_secrets, secrets)
    ops: list[JsonPatchOp] = []
    if spec_ops and not shape.has_spec:
        ops.append(_add("/spec", {}))
    ops += spec_ops

    if injection.annotations:
        if not shape.has_metadata:
            ops.append(_add("/metadata", {}))
        if not shape.has_annotations:
            ops.append(_add("/metadata/annotations", dict(sorted(injection.annotations.items()))))
        else:
            overwritten = set(injection.overwritten_annotations)
            for key in sorted(injection.annotations):
                path = f"/metadata/annotations/{escape_pointer(key)}"
                value = injection.annotations[key]
                ops.append(_replace(path, value) if key in overwritten else _add(path, value))
    return ops
