"""Kruise's pod-side wire contract: annotation, label, env and condition keys, and JSON formats.

Everything a pod carries for SidecarSets (behaviour.md §4.4, §7.5, §8.1, §9.3) is named here, with
typed readers that accept the current and legacy forms and writers that emit exactly what Kruise's
Go code emits (compact JSON, struct fields in Go declaration order, map keys sorted, `<`, `>` and
`&` escaped). Injection, the rollout writer and status read and write pods only through this module.

Our own addition is the per-pod opt-out `sidecarset.kruise.io/inject: "false"` (`INJECT_OPT_OUT`):
a pod carrying it as an annotation, or as a label (the way Istio users spell
`sidecar.istio.io/inject`), is never injected by any SidecarSet and gets no metadata patches. The
value is compared case-insensitively; any value other than "false" means "no opinion".
"""

from __future__ import annotations

import functools
import json
import re
import types
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

import msgspec

from sidecarset.core.errors import FieldError

__all__ = [
    "ALL_UPGRADABLE_REASON",
    "BASE_ANNOTATION",
    "CANARY_ANNOTATION",
    "CUSTOM_VERSION_LABEL",
    "HASH_ANNOTATION",
    "HASH_WITHOUT_IMAGE_ANNOTATION",
    "HOT_UPGRADE_SUFFIXES",
    "INJECTED_ENV",
    "INJECTED_LIST_ANNOTATION",
    "INJECT_OPT_OUT",
    "INPLACE_UPDATE_STATE_ANNOTATION",
    "NAMESPACE_NAME_LABEL",
    "NOT_UPGRADABLE_REASON",
    "SIDECARSET_NAME_LABEL",
    "UPGRADABLE_CONDITION",
    "VERSION_ALT_ANNOTATION_PREFIX",
    "VERSION_ALT_ENV",
    "VERSION_ANNOTATION_PREFIX",
    "VERSION_ENV",
    "WORKING_HOT_UPGRADE_ANNOTATION",
    "InPlaceUpdateState",
    "MalformedAnnotation",
    "UpgradeSpec",
    "annotation_path",
    "dump_json",
    "hot_upgrade_names",
    "is_canary",
    "is_injection_opted_out",
    "normalize_timestamp",
    "read_injected_list",
    "read_inplace_update_state",
    "read_upgradable_message",
    "read_upgrade_specs",
    "read_working_hot_upgrade",
    "upgradable_condition",
    "version_alt_annotation",
    "version_alt_field_path",
    "version_annotation",
    "version_field_path",
    "write_injected_list",
    "write_inplace_update_state",
    "write_upgradable_message",
    "write_upgrade_specs",
    "write_working_hot_upgrade",
]

# --- keys -------------------------------------------------------------------------------------

HASH_ANNOTATION = "kruise.io/sidecarset-hash"
"""On the SidecarSet: hash of its containers. On a pod: per-SidecarSet `UpgradeSpec` JSON map."""
HASH_WITHOUT_IMAGE_ANNOTATION = "kruise.io/sidecarset-hash-without-image"
"""The same as `HASH_ANNOTATION`, with every image blanked before hashing."""
INJECTED_LIST_ANNOTATION = "kruise.io/sidecarset-injected-list"
"""Pod annotation: comma-joined names of the SidecarSets injected into the pod (sorted)."""
WORKING_HOT_UPGRADE_ANNOTATION = "kruise.io/sidecarset-working-hotupgrade-container"
"""Pod annotation: JSON map sidecar name -> the twin (`S-1`/`S-2`) currently working."""
VERSION_ANNOTATION_PREFIX = "version.sidecarset.kruise.io/"
"""Prefix of the per-twin version annotation (`version.sidecarset.kruise.io/S-1`)."""
VERSION_ALT_ANNOTATION_PREFIX = "versionalt.sidecarset.kruise.io/"
"""Prefix of the twin's version annotation (Kruise's proposal says `version_alt.`; code wins)."""
INPLACE_UPDATE_STATE_ANNOTATION = "kruise.io/sidecarset-inplace-update-state"
"""Pod annotation written by the controller: imageIDs before an in-place update (behaviour §7.5)."""

UPGRADABLE_CONDITION = "SidecarSetUpgradable"
"""Pod condition type; its message is a JSON map SidecarSet name -> bool (behaviour.md §9.3)."""
ALL_UPGRADABLE_REASON = "AllSidecarsetUpgradable"
NOT_UPGRADABLE_REASON = "UpdateImmutableField"

INJECTED_ENV = "IS_INJECTED"
"""Env var set to "true" in every injected (init) container: the marker of a sidecar."""
VERSION_ENV = "SIDECARSET_VERSION"
VERSION_ALT_ENV = "SIDECARSET_VERSION_ALT"

HOT_UPGRADE_SUFFIXES = ("-1", "-2")
"""A HotUpgrade sidecar `S` runs as the twins `S-1` (working at injection) and `S-2` (idle)."""

SIDECARSET_NAME_LABEL = "kruise.io/sidecarset-name"
"""ControllerRevision label naming the SidecarSet a revision belongs to."""
CUSTOM_VERSION_LABEL = "apps.kruise.io/sidecarset-custom-version"
"""SidecarSet (v1alpha1) and ControllerRevision label carrying the custom version."""
CANARY_ANNOTATION = "apps.kruise.io/sidecarset-canary"
"""SidecarSet annotation; exactly "true" (with a base) makes it a canary of `BASE_ANNOTATION`."""
BASE_ANNOTATION = "apps.kruise.io/sidecarset-base"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
"""The label every Namespace carries with its own name (v1alpha1 `namespace` converts to it)."""

INJECT_OPT_OUT = "sidecarset.kruise.io/inject"
"""Ours, not Kruise's: a pod annotation or label; "false" keeps every SidecarSet out of the pod."""


def annotation_path(key: str) -> str:
    """The field path users see for a pod annotation: `metadata.annotations[<key>]`."""
    return f"metadata.annotations[{key}]"


class MalformedAnnotation(ValueError):
    """A pod annotation we must read holds a value of the wrong shape.

    Carries the `FieldError` naming the annotation; pod admission turns it into a denial.
    """

    def __init__(self, key: str, value: str, detail: str) -> None:
        shown = value if len(value) <= 200 else value[:200] + "..."
        self.annotation = key
        self.error = FieldError.invalid(annotation_path(key), shown, detail)
        super().__init__(str(self.error))


# --- Go-compatible JSON -----------------------------------------------------------------------

_HTML_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_HTML_CHARS = re.compile("[<>&\u2028\u2029]")
_GO_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
"""Made once: `json.dumps` with any non-default option builds a new encoder per call, which was
a third of the time spent building a round's pod updates (three annotations each)."""


def dump_json(value: object) -> str:
    """Serialise like Go's `json.Marshal`: compact, UTF-8, HTML-sensitive characters escaped.

    Dict keys are written in the order given: callers sort map keys (Go sorts maps) and give
    struct fields in Go declaration order. Escaping outside strings is impossible in valid JSON,
    so a textual replacement is exact.
    """
    text = _GO_JSON.encode(value)
    return _HTML_CHARS.sub(lambda m: _HTML_ESCAPES[m.group(0)], text)


_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)


def normalize_timestamp(text: str) -> str:
    """An RFC 3339 timestamp as Go's metav1.Time writes it: UTC, whole seconds, `Z`.

    Raises ValueError for anything Go's `time.Parse(time.RFC3339, ...)` would reject.
    """
    match = _RFC3339.match(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    zone = match.group(8)
    offset = "+00:00" if zone in ("Z", "z") else zone
    try:
        parsed = datetime.fromisoformat(
            f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{offset}"
        ).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}") from None
    return (
        f"{parsed.year:04d}-{parsed.month:02d}-{parsed.day:02d}"
        f"T{parsed.hour:02d}:{parsed.minute:02d}:{parsed.second:02d}Z"
    )


_ZERO_TIME = "0001-01-01T00:00:00Z"
"""Go's zero time: metav1.Time writes it as `null`."""


def _read_timestamp(value: str) -> str | None:
    normalized = normalize_timestamp(value)
    return None if normalized == _ZERO_TIME else normalized


def _sorted_map(items: Mapping[str, object]) -> dict[str, object]:
    return {k: items[k] for k in sorted(items)}


# --- sidecarset-hash and sidecarset-hash-without-image ----------------------------------------


class UpgradeSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One SidecarSet's entry in a pod's hash annotation (Kruise `SidecarSetUpgradeSpec`).

    `update_timestamp` and `sidecar_list` are None where Go wrote `null`: entries upgraded from
    the legacy `{"<set>": "<hash>"}` form have neither. `controller_revision` is empty in the
    hash-without-image annotation and in legacy entries (Go omits it when empty).
    """

    update_timestamp: str | None = None
    hash: str = ""
    sidecarset_name: str = ""
    sidecar_list: tuple[str, ...] | None = None
    controller_revision: str = ""

    def to_wire(self) -> dict[str, object]:
        body: dict[str, object] = {
            "updateTimestamp": self.update_timestamp,
            "hash": self.hash,
            "sidecarSetName": self.sidecarset_name,
            "sidecarList": None if self.sidecar_list is None else list(self.sidecar_list),
        }
        if self.controller_revision:
            body["controllerRevision"] = self.controller_revision
        return body


def read_upgrade_specs(annotations: Mapping[str, str], key: str) -> dict[str, UpgradeSpec]:
    """Parse `HASH_ANNOTATION` or `HASH_WITHOUT_IMAGE_ANNOTATION` from pod annotations.

    Reads the current object form and the legacy `{"<set>": "<hash>"}` string form (whose entries
    get the set name and nothing else, as Kruise upgrades them). A missing or empty annotation is
    an empty map. Timestamps are normalised the way Go re-serialises them. Raises
    `MalformedAnnotation` for anything else, as Kruise's webhook fails admission. The returned
    dict is the caller's own.
    """
    raw = annotations.get(key, "")
    if raw == "":
        return {}
    return dict(_decode_upgrade_specs(key, raw))


def read_upgrade_spec(annotations: Mapping[str, str], key: str, name: str) -> UpgradeSpec | None:
    """One SidecarSet's entry of `read_upgrade_specs(annotations, key)`, without copying the
    map (judging a pod asks for one entry, for every pod of the first round after an edit)."""
    raw = annotations.get(key, "")
    if raw == "":
        return None
    return _decode_upgrade_specs(key, raw).get(name)


_EMPTY_SPECS: Mapping[str, UpgradeSpec] = types.MappingProxyType({})


# Rollout planning and status read the annotations of every matched pod in every round, and
# decoding (JSON, then timestamp normalisation) was most of a round's time; the text changes only
# when the pod is written, so decoded values are kept by text, read-only (callers that change
# the map get a copy). The size covers both annotations of 16k pods (about 10 MB if every text
# differs); beyond that it degrades to decoding as before.
@functools.lru_cache(maxsize=32768)
def _decode_upgrade_specs(key: str, raw: str) -> Mapping[str, UpgradeSpec]:
    try:
        decoded = json.loads(raw)
    except ValueError as exc:
        raise MalformedAnnotation(key, raw, f"not valid JSON: {exc}") from None
    if decoded is None:
        return _EMPTY_SPECS
    if not isinstance(decoded, dict):
        raise MalformedAnnotation(key, raw, "must be a JSON object keyed by SidecarSet name")
    entries = _decode_current_entries(decoded)
    if entries is not None:
        return types.MappingProxyType(entries)
    if all(v is None or isinstance(v, str) for v in decoded.values()):
        return types.MappingProxyType(
            {
                name: UpgradeSpec(hash=value or "", sidecarset_name=name)
                for name, value in decoded.items()
            }
        )
    raise MalformedAnnotation(
        key,
        raw,
        "each value must be an object with updateTimestamp, hash, sidecarSetName, sidecarList,"
        " controllerRevision (or, in the legacy form, a hash string)",
    )


def _decode_current_entries(decoded: Mapping[str, object]) -> dict[str, UpgradeSpec] | None:
    entries: dict[str, UpgradeSpec] = {}
    for name, value in decoded.items():
        if value is None:
            entries[name] = UpgradeSpec()
            continue
        if not isinstance(value, dict):
            return None
        entry = _decode_entry(value)
        if entry is None:
            return None
        entries[name] = entry
    return entries


def _decode_entry(value: Mapping[str, object]) -> UpgradeSpec | None:
    timestamp = value.get("updateTimestamp")
    hash_ = value.get("hash")
    name = value.get("sidecarSetName")
    sidecars = value.get("sidecarList")
    revision = value.get("controllerRevision")
    if not all(v is None or isinstance(v, str) for v in (timestamp, hash_, name, revision)):
        return None
    if sidecars is not None and not (
        isinstance(sidecars, list) and all(isinstance(s, str) for s in sidecars)
    ):
        return None
    normalized: str | None = None
    if isinstance(timestamp, str):
        try:
            normalized = _read_timestamp(timestamp)
        except ValueError:
            return None
    return UpgradeSpec(
        update_timestamp=normalized,
        hash=hash_ if isinstance(hash_, str) else "",
        sidecarset_name=name if isinstance(name, str) else "",
        sidecar_list=None if sidecars is None else tuple(str(s) for s in sidecars),
        controller_revision=revision if isinstance(revision, str) else "",
    )


def write_upgrade_specs(entries: Mapping[str, UpgradeSpec]) -> str:
    """The annotation value Kruise writes: a JSON map sorted by SidecarSet name."""
    return dump_json({name: entries[name].to_wire() for name in sorted(entries)})


# --- sidecarset-injected-list -----------------------------------------------------------------


def read_injected_list(annotations: Mapping[str, str]) -> frozenset[str]:
    """The SidecarSet names in `INJECTED_LIST_ANNOTATION`; empty items (`a,,b`) are ignored."""
    return _injected_names(annotations.get(INJECTED_LIST_ANNOTATION, ""))


@functools.lru_cache(maxsize=4096)
def _injected_names(raw: str) -> frozenset[str]:
    # Pods of one workload carry the same list: split once per distinct text.
    return frozenset(name for name in raw.split(",") if name)


def write_injected_list(names: Iterable[str]) -> str:
    """Sorted and comma-joined, as Kruise's webhook writes it."""
    return ",".join(sorted({name for name in names if name}))


# --- hot upgrade ------------------------------------------------------------------------------


def hot_upgrade_names(sidecar: str) -> tuple[str, str]:
    """The twin container names of a HotUpgrade sidecar: (`S-1`, `S-2`)."""
    return sidecar + HOT_UPGRADE_SUFFIXES[0], sidecar + HOT_UPGRADE_SUFFIXES[1]


def version_annotation(container: str) -> str:
    return VERSION_ANNOTATION_PREFIX + container


def version_alt_annotation(container: str) -> str:
    return VERSION_ALT_ANNOTATION_PREFIX + container


def version_field_path(container: str) -> str:
    """The downward-API fieldPath behind `SIDECARSET_VERSION` of a twin."""
    return f"metadata.annotations['{version_annotation(container)}']"


def version_alt_field_path(container: str) -> str:
    """The downward-API fieldPath behind `SIDECARSET_VERSION_ALT` of a twin."""
    return f"metadata.annotations['{version_alt_annotation(container)}']"


def read_working_hot_upgrade(annotations: Mapping[str, str]) -> dict[str, str]:
    """`WORKING_HOT_UPGRADE_ANNOTATION` as sidecar name -> working twin name.

    Missing means empty. Kruise logs and ignores an unparsable value; we raise
    `MalformedAnnotation` so the caller decides (admission denies, the controller may skip).
    """
    key = WORKING_HOT_UPGRADE_ANNOTATION
    raw = annotations.get(key)
    if raw is None:
        return {}
    try:
        decoded = json.loads(raw)
    except ValueError as exc:
        raise MalformedAnnotation(key, raw, f"not valid JSON: {exc}") from None
    if decoded is None:
        return {}
    if not isinstance(decoded, dict) or not all(
        v is None or isinstance(v, str) for v in decoded.values()
    ):
        raise MalformedAnnotation(key, raw, "must be a JSON object of strings")
    return {str(k): v or "" for k, v in decoded.items()}


def write_working_hot_upgrade(working: Mapping[str, str]) -> str:
    return dump_json(_sorted_map(working))


# --- sidecarset-inplace-update-state ----------------------------------------------------------


class InPlaceUpdateState(msgspec.Struct, frozen=True, kw_only=True):
    """One SidecarSet's entry in `INPLACE_UPDATE_STATE_ANNOTATION` (Kruise `InPlaceUpdateState`).

    `last_image_ids` maps a container to the status imageID it had before the update ("" when
    unknown, written as `{}` like Go's omitempty); None where Go wrote `null`.
    """

    revision: str = ""
    update_timestamp: str | None = None
    last_image_ids: Mapping[str, str] | None = None

    def to_wire(self) -> dict[str, object]:
        statuses: dict[str, object] | None = None
        if self.last_image_ids is not None:
            statuses = {
                name: ({"imageID": image_id} if image_id else {})
                for name, image_id in sorted(self.last_image_ids.items())
            }
        return {
            "revision": self.revision,
            "updateTimestamp": self.update_timestamp,
            "lastContainerStatuses": statuses,
        }


def read_inplace_update_state(annotations: Mapping[str, str]) -> dict[str, InPlaceUpdateState]:
    """Parse `INPLACE_UPDATE_STATE_ANNOTATION`; missing or empty is an empty map.

    Fields of Kruise's InPlaceUpdateState that SidecarSets never write are ignored. Raises
    `MalformedAnnotation` when the value is not of that shape.
    """
    key = INPLACE_UPDATE_STATE_ANNOTATION
    raw = annotations.get(key, "")
    if raw == "":
        return {}
    try:
        decoded = json.loads(raw)
    except ValueError as exc:
        raise MalformedAnnotation(key, raw, f"not valid JSON: {exc}") from None
    if decoded is None:
        return {}
    if not isinstance(decoded, dict):
        raise MalformedAnnotation(key, raw, "must be a JSON object keyed by SidecarSet name")
    states: dict[str, InPlaceUpdateState] = {}
    for name, value in decoded.items():
        if value is None:
            states[name] = InPlaceUpdateState()
            continue
        state = _decode_state(value)
        if state is None:
            raise MalformedAnnotation(
                key,
                raw,
                f"entry {name!r} must be {{revision, updateTimestamp, lastContainerStatuses}}",
            )
        states[name] = state
    return states


def _decode_state(value: object) -> InPlaceUpdateState | None:
    if not isinstance(value, dict):
        return None
    revision = value.get("revision")
    timestamp = value.get("updateTimestamp")
    statuses = value.get("lastContainerStatuses")
    if not (revision is None or isinstance(revision, str)):
        return None
    normalized: str | None = None
    if timestamp is not None:
        if not isinstance(timestamp, str):
            return None
        try:
            normalized = _read_timestamp(timestamp)
        except ValueError:
            return None
    image_ids: dict[str, str] | None = None
    if statuses is not None:
        if not isinstance(statuses, dict):
            return None
        image_ids = {}
        for container, status in statuses.items():
            if status is None:
                image_ids[container] = ""
                continue
            if not isinstance(status, dict):
                return None
            image_id = status.get("imageID")
            if not (image_id is None or isinstance(image_id, str)):
                return None
            image_ids[container] = image_id or ""
    return InPlaceUpdateState(
        revision=revision or "", update_timestamp=normalized, last_image_ids=image_ids
    )


def write_inplace_update_state(states: Mapping[str, InPlaceUpdateState]) -> str:
    return dump_json({name: states[name].to_wire() for name in sorted(states)})


# --- SidecarSetUpgradable condition -----------------------------------------------------------


def read_upgradable_message(message: str) -> dict[str, bool]:
    """The SidecarSet name -> upgradable map in the condition message ("" means empty).

    Kruise compares each value with `false`, so a non-boolean value counts as upgradable; it is
    read as True. Raises ValueError on a message that is not a JSON object (Kruise errors too).
    """
    if message == "":
        return {}
    decoded = json.loads(message)
    if decoded is None:
        return {}
    if not isinstance(decoded, dict):
        raise ValueError(f"{UPGRADABLE_CONDITION} message is not a JSON object: {message!r}")
    return {str(name): value is not False for name, value in decoded.items()}


def write_upgradable_message(upgradable: Mapping[str, bool]) -> str:
    return dump_json({name: bool(upgradable[name]) for name in sorted(upgradable)})


def upgradable_condition(upgradable: Mapping[str, bool]) -> tuple[str, str]:
    """The condition (status, reason) for a message map: True only when every set says true."""
    if all(upgradable.values()):
        return "True", ALL_UPGRADABLE_REASON
    return "False", NOT_UPGRADABLE_REASON


# --- SidecarSet and pod metadata predicates ---------------------------------------------------


def is_canary(annotations: Mapping[str, str]) -> str | None:
    """The base SidecarSet's name if these SidecarSet annotations make it a canary, else None.

    Canary means `CANARY_ANNOTATION` is exactly "true" and `BASE_ANNOTATION` is non-empty.
    """
    base = annotations.get(BASE_ANNOTATION, "")
    if annotations.get(CANARY_ANNOTATION) == "true" and base:
        return base
    return None


def is_injection_opted_out(labels: Mapping[str, str], annotations: Mapping[str, str]) -> bool:
    """True when the pod says `sidecarset.kruise.io/inject: "false"` as annotation or label."""
    return any(
        source.get(INJECT_OPT_OUT, "").strip().lower() == "false"
        for source in (annotations, labels)
    )
