"""SidecarSet apps.kruise.io/v1alpha1 <-> v1beta1, on plain JSON objects, losslessly.

OpenKruise 1.9 serves both versions and stores v1beta1. The two differ in two places only:

- v1alpha1 `spec.namespace: X` has no v1beta1 field; v1beta1 says the same thing with
  `spec.namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: X}}` (every Namespace
  carries that label with its own name).
- v1alpha1 keeps the custom version in the label `apps.kruise.io/sidecarset-custom-version`;
  v1beta1 has `spec.customVersion`.

Everything else, status included, is the same JSON in both versions, so it is passed through
untouched (our CRD gives both versions the same status schema, `conditions` included).

Upstream's conversion loses information: a v1alpha1 object with `namespace` comes back with a
`namespaceSelector` instead, and a label on a v1beta1 object is overwritten by its
`customVersion`. Here what the target version cannot express is kept in an annotation under the
reserved prefix `conversion.sidecarset.kruise.io/`, and taken back out on the way back:

- `NAMESPACE_ANNOTATION` (on v1beta1 objects): `{"namespace": X}` as JSON, plus the original
  `namespaceSelector` when the v1alpha1 object had both (which validation refuses, but stored
  objects may predate validation). Converting back restores `namespace` only while the selector
  is still the one derived from it: a v1beta1 edit of `namespaceSelector` wins, and the stale
  annotation then stays where it is.
- `CUSTOM_VERSION_LABEL_ANNOTATION` (on v1alpha1 objects): the value of a custom-version label
  found on a v1beta1 object, where the label means nothing; converting back restores the label.

With those rules both round trips are the identity for every object the API server can hold
(labels and annotations maps are never empty there: the API drops empty ones) that does not
set the reserved annotations itself: `to_v1alpha1(to_v1beta1(a)) == a` and
`to_v1beta1(to_v1alpha1(b)) == b`. Conversion only changes `apiVersion`, `spec` and the labels and
annotations, the only metadata a conversion webhook may change.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any, Final

from sidecarset.core import pod_contract

__all__ = [
    "API_GROUP",
    "CUSTOM_VERSION_LABEL_ANNOTATION",
    "NAMESPACE_ANNOTATION",
    "RESERVED_ANNOTATION_PREFIX",
    "V1ALPHA1",
    "V1BETA1",
    "VERSIONS",
    "ConversionError",
    "convert",
    "to_internal",
    "to_v1alpha1",
    "to_v1beta1",
]

API_GROUP: Final = "apps.kruise.io"
V1ALPHA1: Final = "apps.kruise.io/v1alpha1"
V1BETA1: Final = "apps.kruise.io/v1beta1"
VERSIONS: Final = (V1ALPHA1, V1BETA1)
"""The served versions. v1beta1 is the storage version, as in OpenKruise 1.9."""

RESERVED_ANNOTATION_PREFIX: Final = "conversion.sidecarset.kruise.io/"
NAMESPACE_ANNOTATION: Final = RESERVED_ANNOTATION_PREFIX + "v1alpha1-namespace"
CUSTOM_VERSION_LABEL_ANNOTATION: Final = RESERVED_ANNOTATION_PREFIX + "v1beta1-custom-version-label"

_KIND: Final = "SidecarSet"
_ABSENT: Final = object()

JsonDict = dict[str, Any]


class ConversionError(ValueError):
    """The object cannot be converted; the message says which part and why.

    `field` is the path of the offending value (`spec.customVersion`), "" for the whole object.
    """

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


def convert(obj: Mapping[str, Any], api_version: str) -> JsonDict:
    """`obj` (a SidecarSet of either served version) as `api_version`; a deep copy.

    Raises `ConversionError` for another kind, an unknown version on either side, or an object
    whose metadata or spec is not a JSON object where the conversion must write.
    """
    if api_version not in VERSIONS:
        raise ConversionError(
            f"cannot convert to {api_version!r}: SidecarSet is served as {' and '.join(VERSIONS)}"
        )
    source = obj.get("apiVersion")
    if obj.get("kind") != _KIND:
        raise ConversionError(f"not a SidecarSet: kind {obj.get('kind')!r}")
    if source not in VERSIONS:
        raise ConversionError(
            f"unknown SidecarSet apiVersion {source!r}; expected one of {', '.join(VERSIONS)}"
        )
    if source == api_version:
        return copy.deepcopy(dict(obj))
    return to_v1beta1(obj) if api_version == V1BETA1 else to_v1alpha1(obj)


def to_internal(obj: Mapping[str, Any]) -> JsonDict:
    """The form every decision reads: v1alpha1 (it can say all v1beta1 can), as a deep copy.

    Validation, defaulting, hashing, injection and status see the same object whichever version
    it was written in. Anything that is not a v1beta1 SidecarSet is returned as it is (copied):
    parsing reports what is wrong with it.
    """
    if obj.get("apiVersion") == V1BETA1 and obj.get("kind", _KIND) == _KIND:
        return to_v1alpha1(obj)
    return copy.deepcopy(dict(obj))


def to_v1beta1(obj: Mapping[str, Any]) -> JsonDict:
    """A v1alpha1 SidecarSet as v1beta1 (see the module docstring for what moves where)."""
    out = copy.deepcopy(dict(obj))
    out["apiVersion"] = V1BETA1
    spec = out.get("spec")
    if isinstance(spec, dict) and "namespace" in spec:
        namespace = spec.pop("namespace")
        record: JsonDict = {"namespace": namespace}
        if "namespaceSelector" in spec:
            record["namespaceSelector"] = spec["namespaceSelector"]
        derived = _derived_selector(namespace)
        if derived is not _ABSENT:
            spec["namespaceSelector"] = derived
        _put(out, "annotations", NAMESPACE_ANNOTATION, _dump(record))
    labels = _map(out, "labels")
    if labels is not None and pod_contract.CUSTOM_VERSION_LABEL in labels:
        version = _pop(out, "labels", pod_contract.CUSTOM_VERSION_LABEL)
        _spec(out)["customVersion"] = version
    annotations = _map(out, "annotations")
    if annotations is not None and CUSTOM_VERSION_LABEL_ANNOTATION in annotations:
        _put(
            out,
            "labels",
            pod_contract.CUSTOM_VERSION_LABEL,
            _pop(out, "annotations", CUSTOM_VERSION_LABEL_ANNOTATION),
        )
    return out


def to_v1alpha1(obj: Mapping[str, Any]) -> JsonDict:
    """A v1beta1 SidecarSet as v1alpha1 (see the module docstring for what moves where)."""
    out = copy.deepcopy(dict(obj))
    out["apiVersion"] = V1ALPHA1
    labels = _map(out, "labels")
    if labels is not None and pod_contract.CUSTOM_VERSION_LABEL in labels:
        stray = _pop(out, "labels", pod_contract.CUSTOM_VERSION_LABEL)
        _put(out, "annotations", CUSTOM_VERSION_LABEL_ANNOTATION, stray)
    spec = out.get("spec")
    if isinstance(spec, dict) and "customVersion" in spec:
        version = spec.pop("customVersion")
        if not isinstance(version, str):
            raise ConversionError(
                f"spec.customVersion must be a string to become a label, not {version!r}",
                "spec.customVersion",
            )
        if not spec:
            del out["spec"]  # created by to_v1beta1 for the label alone
        _put(out, "labels", pod_contract.CUSTOM_VERSION_LABEL, version)
    annotations = _map(out, "annotations")
    if annotations is not None and NAMESPACE_ANNOTATION in annotations:
        _restore_namespace(out, annotations[NAMESPACE_ANNOTATION])
    return out


def _restore_namespace(out: JsonDict, recorded: object) -> None:
    """Put back v1alpha1 `namespace` if the annotation is ours and the selector still its own."""
    try:
        record = json.loads(recorded) if isinstance(recorded, str) else None
    except ValueError:
        return
    if not isinstance(record, dict) or "namespace" not in record:
        return
    spec = out.get("spec")
    if not isinstance(spec, dict):
        return
    namespace = record["namespace"]
    original = record.get("namespaceSelector", _ABSENT)
    derived = _derived_selector(namespace)
    expected = original if derived is _ABSENT else derived
    if spec.get("namespaceSelector", _ABSENT) != expected:
        return  # edited through v1beta1 since: the selector wins, the annotation stays
    spec["namespace"] = namespace
    if original is _ABSENT:
        spec.pop("namespaceSelector", None)
    else:
        spec["namespaceSelector"] = original
    _pop(out, "annotations", NAMESPACE_ANNOTATION)


def _derived_selector(namespace: object) -> object:
    """The v1beta1 selector meaning `namespace: X`; `_ABSENT` when it means nothing ("")."""
    if isinstance(namespace, str) and namespace:
        return {"matchLabels": {pod_contract.NAMESPACE_NAME_LABEL: namespace}}
    return _ABSENT


def _dump(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _metadata(out: JsonDict) -> JsonDict:
    metadata = out.setdefault("metadata", {})
    if not isinstance(metadata, dict):
        raise ConversionError("metadata must be a JSON object", "metadata")
    return metadata


def _spec(out: JsonDict) -> JsonDict:
    spec = out.setdefault("spec", {})
    if not isinstance(spec, dict):
        raise ConversionError("spec must be a JSON object", "spec")
    return spec


def _map(out: JsonDict, which: str) -> dict[str, Any] | None:
    metadata = out.get("metadata")
    found = metadata.get(which) if isinstance(metadata, dict) else None
    return found if isinstance(found, dict) else None


def _put(out: JsonDict, which: str, key: str, value: object) -> None:
    metadata = _metadata(out)
    target = metadata.setdefault(which, {})
    if target is None:
        target = metadata[which] = {}
    if not isinstance(target, dict):
        raise ConversionError(f"metadata.{which} must be a JSON object", f"metadata.{which}")
    target[key] = value


def _pop(out: JsonDict, which: str, key: str) -> object:
    """Remove `key` from metadata.<which>; an emptied map goes too (the API drops empty maps)."""
    metadata = _metadata(out)
    target = metadata[which]
    value = target.pop(key)
    if not target:
        del metadata[which]
    return value
