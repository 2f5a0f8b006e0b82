"""RFC 7386 JSON merge patch with the output Kruise produces (Go's evanphx/json-patch).

`patchPodMetadata` with policy MergePatchJson merges a SidecarSet's annotation value into the
pod's. The pod keeps the merged text, so to stay byte-compatible with pods Kruise patched (and
with what users compare against), the merge reproduces Go's output rather than Python's json:
keys of touched objects sorted, untouched sub-objects kept as they were, number literals kept.
"""

from __future__ import annotations

import json

import msgspec

from sidecarset.core import pod_contract

__all__ = ["MergePatchError", "merge_patch"]


class _JsonNumber(msgspec.Struct, frozen=True):
    """A JSON number kept as its literal text, so a merge patch never rewrites `1.0` as `1`."""

    text: str


class MergePatchError(ValueError):
    """Where Go's MergePatch fails: a value is not JSON, or the document or patch is null."""


def _reject_constant(name: str) -> object:
    raise MergePatchError(f"{name} is not JSON")


def _load_json(text: str) -> object:
    try:
        return json.loads(
            text,
            parse_int=_JsonNumber,
            parse_float=_JsonNumber,
            parse_constant=_reject_constant,
        )
    except ValueError as exc:
        raise MergePatchError(str(exc)) from None


def _dump_json(value: object) -> str:
    if isinstance(value, _JsonNumber):
        return value.text
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(f"{pod_contract.dump_json(k)}:{_dump_json(v)}" for k, v in value.items())
            + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(_dump_json(v) for v in value) + "]"
    return pod_contract.dump_json(value)


def _prune_nulls(value: object) -> object:
    """evanphx/json-patch pruneNulls: drop null members of objects, recursively (sorted keys)."""
    if isinstance(value, dict):
        return {k: _prune_nulls(value[k]) for k in sorted(value) if value[k] is not None}
    if isinstance(value, list):
        return [None if v is None else _prune_nulls(v) for v in value]
    return value


def _merge_value(current: object, patch: object) -> object:
    if not isinstance(current, dict):
        return _prune_nulls(patch)
    if not isinstance(patch, dict):
        return patch
    return _merge_objects(current, patch)


def _merge_objects(doc: dict[str, object], patch: dict[str, object]) -> dict[str, object]:
    merged = dict(doc)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif merged.get(key) is None:
            merged[key] = _prune_nulls(value)
        else:
            merged[key] = _merge_value(merged[key], value)
    return {k: merged[k] for k in sorted(merged)}


def merge_patch(document: str, patch: str) -> str:
    """RFC 7386 merge as Kruise's evanphx/json-patch `MergePatch` does it, output included.

    Objects the merge touches come out with sorted keys (Go marshals them from maps); untouched
    sub-objects keep their order; number literals are kept. Raises `MergePatchError` where Go
    errors.
    """
    doc = _load_json(document)
    change = _load_json(patch)
    if doc is None:
        raise MergePatchError("the current value is null")
    if change is None:
        raise MergePatchError("the patch is null")
    if isinstance(change, dict):
        merged = _merge_objects(doc, change) if isinstance(doc, dict) else _prune_nulls(change)
        return _dump_json(merged)
    if isinstance(change, list):
        return _dump_json(_prune_nulls(change))
    raise MergePatchError("the patch is neither an object nor an array")
