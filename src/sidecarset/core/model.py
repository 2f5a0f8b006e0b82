"""The SidecarSet API object as frozen msgspec values, in its internal (v1alpha1) form.

Every spec field of the Kruise type is here with its wire name. Containers, init containers and
volumes are schemaless in the CRD, so each carries its JSON body verbatim (`body`, what gets
injected into pods) next to a typed view of the fields our decisions read. Strategy strings stay
strings: Kruise accepts unknown `updateStrategy.type` values, and validation, not decoding, reports
unsupported enum values with their field path. Used by every other core module.

v1beta1 objects are parsed through `conversion.to_internal`, so every decision reads the same
model whichever version a SidecarSet was written in: `spec.namespace` holds a namespace recorded
by the conversion, the custom version is the v1alpha1 label (`custom_version`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import TypeAlias, TypeVar, cast

import msgspec

from sidecarset.core import conversion, pod_contract
from sidecarset.core.errors import FieldError, ModelError

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "KIND",
    "Condition",
    "EnvVar",
    "IntOrString",
    "JsonObject",
    "LabelSelector",
    "LabelSelectorRequirement",
    "LocalObjectReference",
    "ObjectFieldSelector",
    "ObjectMeta",
    "PatchPolicy",
    "PodInjectPolicy",
    "ResourceExprValues",
    "ResourcesExpr",
    "ResourcesPolicy",
    "RevisionPolicy",
    "ScatterTerm",
    "SelectorOperator",
    "ShareVolumePolicy",
    "ShareVolumePolicyType",
    "SidecarContainer",
    "SidecarContainerUpgradeStrategy",
    "SidecarSet",
    "SidecarSetInjectRevision",
    "SidecarSetInjectionStrategy",
    "SidecarSetPatchPodMetadata",
    "SidecarSetSpec",
    "SidecarSetStatus",
    "SidecarSetUpdateStrategy",
    "SourceContainerNameSource",
    "TargetContainersMode",
    "TransferEnvVar",
    "UpdatePriorityOrderTerm",
    "UpdatePriorityStrategy",
    "UpdatePriorityWeightTerm",
    "UpdateStrategyType",
    "UpgradeType",
    "Volume",
    "VolumeDevice",
    "VolumeMount",
    "copy_json",
    "parse_sidecarset",
]

API_GROUP = "apps.kruise.io"
API_VERSION = "apps.kruise.io/v1alpha1"
KIND = "SidecarSet"

JsonObject: TypeAlias = dict[str, object]
"""A JSON object carried verbatim (a schemaless container or volume body). Treat as read-only."""

_Json = TypeVar("_Json")
_JSON_ENCODER = msgspec.json.Encoder()
_JSON_DECODER = msgspec.json.Decoder()


def copy_json(value: _Json) -> _Json:
    """A deep copy of a decoded JSON value (str-keyed dicts, lists, strings, numbers, bools).

    An encode/decode round trip in msgspec's C code: about ten times faster than
    `copy.deepcopy`, which also tracks shared references and cycles that JSON cannot have. The
    pod webhook copies every injected container and volume body with it. Only for data decoded
    from JSON (or YAML of the same shapes): a tuple would come back a list, a NaN null.
    """
    return cast(_Json, _JSON_DECODER.decode(_JSON_ENCODER.encode(value)))


IntOrString: TypeAlias = int | str
"""Kubernetes intstr.IntOrString: an absolute count, or a percentage string such as `"20%"`."""


class UpdateStrategyType(StrEnum):
    ROLLING_UPDATE = "RollingUpdate"
    NOT_UPDATE = "NotUpdate"


class PodInjectPolicy(StrEnum):
    BEFORE_APP_CONTAINER = "BeforeAppContainer"
    AFTER_APP_CONTAINER = "AfterAppContainer"


class UpgradeType(StrEnum):
    COLD_UPGRADE = "ColdUpgrade"
    HOT_UPGRADE = "HotUpgrade"


class ShareVolumePolicyType(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"


class PatchPolicy(StrEnum):
    RETAIN = "Retain"
    OVERWRITE = "Overwrite"
    MERGE_PATCH_JSON = "MergePatchJson"


class RevisionPolicy(StrEnum):
    ALWAYS = "Always"
    PARTIAL = "Partial"


class TargetContainersMode(StrEnum):
    SUM = "sum"
    MAX = "max"


class SelectorOperator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


# --- metadata ---------------------------------------------------------------------------------


class ObjectMeta(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The slice of metav1.ObjectMeta that SidecarSet decisions read."""

    name: str = ""
    uid: str = ""
    generation: int = 0
    resource_version: str = ""
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None


class LabelSelectorRequirement(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    key: str = ""
    operator: str = ""
    values: tuple[str, ...] = ()


class LabelSelector(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """metav1.LabelSelector. Compile it with `selectors.compile_selector` before matching."""

    match_labels: dict[str, str] = {}
    match_expressions: tuple[LabelSelectorRequirement, ...] = ()

    @property
    def is_empty(self) -> bool:
        """True when it has no requirement at all (Kruise: such a selector matches nothing)."""
        return not self.match_labels and not self.match_expressions


class LocalObjectReference(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    name: str = ""


class ObjectFieldSelector(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    api_version: str = ""
    field_path: str = ""


# --- sidecar containers (typed views over verbatim bodies) -----------------------------------


class EnvVar(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    name: str = ""
    value: str | None = None
    value_from: JsonObject | None = None


class VolumeMount(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    name: str = ""
    mount_path: str = ""
    read_only: bool = False
    recursive_read_only: str | None = None
    sub_path: str = ""
    sub_path_expr: str = ""
    mount_propagation: str | None = None


class VolumeDevice(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    name: str = ""
    device_path: str = ""


class SidecarContainerUpgradeStrategy(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    upgrade_type: str = ""
    hot_upgrade_empty_image: str = ""


class ShareVolumePolicy(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    type: str = ""


class SourceContainerNameSource(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    field_ref: ObjectFieldSelector | None = None


class TransferEnvVar(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    source_container_name: str = ""
    source_container_name_from: SourceContainerNameSource | None = None
    env_name: str = ""
    env_names: tuple[str, ...] = ()


class ResourceExprValues(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Expressions such as `max(cpu*50%, 50m)` for the two supported resources."""

    cpu: str = ""
    memory: str = ""


class ResourcesExpr(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    limits: ResourceExprValues | None = None
    requests: ResourceExprValues | None = None


class ResourcesPolicy(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    target_containers_mode: str = ""
    target_containers_name_regex: str = ""
    resources_expr: ResourcesExpr = ResourcesExpr()


class SidecarContainer(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A sidecar (init) container: the typed fields decisions read, plus the verbatim `body`.

    `body` is the container as the SidecarSet spells it (after defaulting, if the object was
    defaulted; JSON nulls dropped), including every corev1.Container field not typed here. It is
    what injection copies into pods; copy it before changing anything. It is not a wire field:
    encoding the model would write it under `$body`, so never send a model back to the API.
    """

    name: str = ""
    """Container name; unique among all sidecars a pod can get."""
    image: str = ""
    """The sidecar image. Changing it (and nothing else) upgrades running pods in place."""
    restart_policy: str | None = None
    """`Always` on an init container makes it a native sidecar (Kubernetes 1.29+)."""
    env: tuple[EnvVar, ...] = ()
    volume_mounts: tuple[VolumeMount, ...] = ()
    volume_devices: tuple[VolumeDevice, ...] = ()
    pod_inject_policy: str = ""
    """`BeforeAppContainer` (default for containers) or `AfterAppContainer` (default for
    init containers)."""
    upgrade_strategy: SidecarContainerUpgradeStrategy = SidecarContainerUpgradeStrategy()
    """`upgradeType: ColdUpgrade` (default, restart in place) or `HotUpgrade` with
    `hotUpgradeEmptyImage` (two alternating containers, never both down)."""
    share_volume_policy: ShareVolumePolicy = ShareVolumePolicy()
    """`type: enabled` mounts every volume the pod's app containers mount."""
    share_volume_device_policy: ShareVolumePolicy | None = None
    """`type: enabled` also shares the app containers' volume devices."""
    transfer_env: tuple[TransferEnvVar, ...] = ()
    """Copy env vars from an app container (named, or named by a pod label/annotation)."""
    resources_policy: ResourcesPolicy | None = None
    """Compute the sidecar's resources from the app containers' at injection, e.g.
    `max(cpu*50%, 50m)`."""
    body: JsonObject = msgspec.field(default_factory=dict, name="$body")

    @property
    def is_native_sidecar(self) -> bool:
        """An init container with `restartPolicy: Always` (a Kubernetes native sidecar)."""
        return self.restart_policy == "Always"

    @property
    def is_hot_upgrade(self) -> bool:
        return self.upgrade_strategy.upgrade_type == UpgradeType.HOT_UPGRADE


class Volume(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A corev1.Volume: its name, and the verbatim `body` injected into pods."""

    name: str = ""
    body: JsonObject = msgspec.field(default_factory=dict, name="$body")


# --- strategies -------------------------------------------------------------------------------


class UpdatePriorityWeightTerm(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    weight: int = 0
    match_selector: LabelSelector = LabelSelector()


class UpdatePriorityOrderTerm(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    ordered_key: str = ""


class UpdatePriorityStrategy(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    order_priority: tuple[UpdatePriorityOrderTerm, ...] = ()
    weight_priority: tuple[UpdatePriorityWeightTerm, ...] = ()


class ScatterTerm(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    key: str = ""
    value: str = ""


class SidecarSetUpdateStrategy(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """How running pods get new sidecar images. `None` partition/maxUnavailable mean "not set"."""

    type: str = ""
    """`RollingUpdate` (default) or `NotUpdate` (inject only, never touch running pods)."""
    paused: bool = False
    """Stop in-place updates; status is still kept current. `sidecarset pause/resume`."""
    selector: LabelSelector | None = None
    """Canary: only pods matching this are updated. Cannot be combined with `partition`."""
    partition: IntOrString | None = None
    """Pods (count or percentage of matched pods, rounded up) kept on the old version: the
    last ones in update order."""
    max_unavailable: IntOrString | None = None
    """Pods (count or percentage, rounded up; default 1) that may be updating or
    updated-but-not-ready at any moment."""
    priority_strategy: UpdatePriorityStrategy | None = None
    """Update order: `weightPriority` (label selectors with weights, higher first) or
    `orderPriority` (the integer suffix of a label value, higher first; unlabelled pods
    last)."""
    scatter_strategy: tuple[ScatterTerm, ...] = ()
    """Spread pods sharing a label `key: value` (or `value: "*"`) across the rollout."""

    @property
    def is_not_update(self) -> bool:
        """NotUpdate: inject only. Any other value, even unknown ones, rolls (behaviour.md §1.4)."""
        return self.type == UpdateStrategyType.NOT_UPDATE


class SidecarSetInjectRevision(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    custom_version: str | None = None
    """The newest revision labelled `apps.kruise.io/sidecarset-custom-version` with this
    value."""
    revision_name: str | None = None
    """The ControllerRevision with this name (in the operator's namespace)."""
    policy: str = ""
    """`Always` (default): every new pod gets the pinned revision. `Partial`: only pods
    outside the canary selector, or a `partition` percentage of pods."""


class SidecarSetInjectionStrategy(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    paused: bool = False
    """New pods are not injected with this SidecarSet (running pods are still updated)."""
    revision: SidecarSetInjectRevision | None = None
    """Inject a recorded ControllerRevision instead of the live spec."""


class SidecarSetPatchPodMetadata(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    annotations: dict[str, str] = {}
    """Annotation keys and values to set; keys must match the administrator's whitelist
    (regexes matched anywhere in the key, as Kruise does)."""
    patch_policy: str = ""
    """`Retain` (default: only if absent), `Overwrite`, or `MergePatchJson` (RFC 7386 merge
    into a JSON value)."""


class SidecarSetSpec(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    selector: LabelSelector | None = None
    """Pods whose labels match get the sidecars at creation. Required and non-empty."""
    namespace: str = ""
    """Only pods in this namespace (v1alpha1 only; v1beta1 says it with `namespaceSelector`).
    Cannot be combined with `namespaceSelector`."""
    namespace_selector: LabelSelector | None = None
    """Only pods in namespaces whose labels match; unset means every namespace."""
    init_containers: tuple[SidecarContainer, ...] = ()
    """Init containers to inject, before or after the pod's own. Those with `restartPolicy:
    Always` are native sidecars and are upgraded in place like `containers` (Kruise does
    not)."""
    containers: tuple[SidecarContainer, ...] = ()
    """The sidecar containers. Changing only `image` upgrades running pods in place; any
    other change reaches only pods created afterwards (admission warns)."""
    volumes: tuple[Volume, ...] = ()
    """Volumes the sidecars mount. Only those referenced by an injected mount are added; a
    pod volume of the same name wins."""
    update_strategy: SidecarSetUpdateStrategy = SidecarSetUpdateStrategy()
    """How running pods get a new sidecar image."""
    injection_strategy: SidecarSetInjectionStrategy = SidecarSetInjectionStrategy()
    """Which version new pods get, or no injection at all."""
    image_pull_secrets: tuple[LocalObjectReference, ...] = ()
    """Merged with the pod's pull secrets at injection as one set of names, the pod's first
    (as Kruise merges them: a name the pod repeats is kept once)."""
    revision_history_limit: int | None = None
    """ControllerRevisions kept per SidecarSet (default 10, at least 1)."""
    patch_pod_metadata: tuple[SidecarSetPatchPodMetadata, ...] = ()
    """Pod annotations to set at injection and at each in-place update."""


# --- status -----------------------------------------------------------------------------------


class Condition(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """metav1.Condition."""

    type: str
    status: str
    observed_generation: int = 0
    last_transition_time: datetime | None = None
    reason: str = ""
    message: str = ""


class SidecarSetStatus(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    observed_generation: int = 0
    """The `metadata.generation` this status describes."""
    matched_pods: int = 0
    """Active pods injected by this SidecarSet (pods created before it are not counted)."""
    updated_pods: int = 0
    """Matched pods whose sidecars are at the current spec (hash annotation)."""
    ready_pods: int = 0
    """Matched pods that are Ready with every sidecar running what their spec says."""
    updated_ready_pods: int = 0
    """Pods counted in both `updatedPods` and `readyPods`."""
    latest_revision: str = ""
    """The ControllerRevision holding the current spec."""
    collision_count: int | None = None
    """Bumped when a revision name collides; part of the next revision's name."""
    conditions: tuple[Condition, ...] = ()
    """`Ready`, `Progressing` and `Stalled`, with reasons such as `RolloutComplete`,
    `Rolling`, `WaitingForUnavailableBudget`, `Paused`, `PodsNotUpgradable`,
    `UpdatedPodsFailing`."""


class SidecarSet(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    api_version: str = API_VERSION
    kind: str = KIND
    metadata: ObjectMeta = ObjectMeta()
    spec: SidecarSetSpec = SidecarSetSpec()
    status: SidecarSetStatus = SidecarSetStatus()

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def custom_version(self) -> str | None:
        """The v1alpha1 custom version (a label; v1beta1 has `spec.customVersion`), or None."""
        return self.metadata.labels.get(pod_contract.CUSTOM_VERSION_LABEL) or None


# --- decoding ---------------------------------------------------------------------------------


def parse_sidecarset(obj: Mapping[str, object]) -> SidecarSet:
    """Decode a SidecarSet of either served version from its JSON object (API or manifest).

    Unknown fields are ignored and JSON `null`s count as absent, as Go's decoder treats them for
    non-pointer fields. Container and volume bodies are deep copies, so later changes to `obj`
    don't leak in. Raises `ModelError` naming the field (`spec.updateStrategy.partition`) when a
    value has the wrong JSON type; semantic problems are left to `validation.validate`.
    """
    if not isinstance(obj, Mapping):
        raise ModelError(FieldError.type_invalid("", _type_name(obj), "expected a JSON object"))
    if obj.get("apiVersion") == conversion.V1BETA1:
        try:
            obj = conversion.to_internal(obj)
        except conversion.ConversionError as err:
            raise ModelError(FieldError.type_invalid(err.field, msgspec.UNSET, str(err))) from None
    cleaned = _drop_nulls(obj)
    assert isinstance(cleaned, dict)
    try:
        decoded = msgspec.convert(cleaned, SidecarSet)
    except msgspec.ValidationError as exc:
        raise ModelError(_field_error_from(str(exc), cleaned)) from exc
    spec = cleaned.get("spec")
    if not isinstance(spec, dict):
        return decoded
    return msgspec.structs.replace(
        decoded,
        spec=msgspec.structs.replace(
            decoded.spec,
            init_containers=_with_bodies(decoded.spec.init_containers, spec.get("initContainers")),
            containers=_with_bodies(decoded.spec.containers, spec.get("containers")),
            volumes=_with_bodies(decoded.spec.volumes, spec.get("volumes")),
        ),
    )


_Bodied = TypeVar("_Bodied", SidecarContainer, Volume)


def _with_bodies(items: tuple[_Bodied, ...], raw: object) -> tuple[_Bodied, ...]:
    if not isinstance(raw, list):
        return items
    return tuple(
        msgspec.structs.replace(item, body=copy.deepcopy(body) if isinstance(body, dict) else {})
        for item, body in zip(items, raw, strict=True)
    )


def _drop_nulls(value: object) -> object:
    if isinstance(value, Mapping):
        return {str(k): _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_drop_nulls(v) for v in value]
    return value


_MSGSPEC_ERROR = re.compile(r"^(?P<message>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING_FIELD = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_PATH_TOKEN = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")


def _field_error_from(message: str, root: object) -> FieldError:
    """Turn msgspec's `Expected int, got str - at $.spec.x[0]` into a FieldError on `spec.x[0]`."""
    match = _MSGSPEC_ERROR.match(message)
    assert match is not None
    text = match.group("message")
    raw_path = match.group("path") or "$"
    # A map value's position is reported as `[...]`: name the map itself instead.
    raw_path = raw_path.split("[...]", 1)[0]
    path = raw_path[2:] if raw_path.startswith("$.") else raw_path.lstrip("$")
    missing = _MISSING_FIELD.match(text)
    if missing is not None:
        field = missing.group("field")
        return FieldError.required(f"{path}.{field}" if path else field)
    detail = text[0].lower() + text[1:] if text else "invalid type"
    detail = detail.replace("`", "")
    value = _value_at(root, raw_path)
    shown = msgspec.UNSET if value is _NOT_FOUND else _summarise(value)
    return FieldError.type_invalid(path, shown, detail)


_NOT_FOUND = object()


def _value_at(root: object, raw_path: str) -> object:
    node = root
    for match in _PATH_TOKEN.finditer(raw_path):
        name, index = match.group(1), match.group(2)
        if name is not None and isinstance(node, dict) and name in node:
            node = node[name]
        elif index is not None and isinstance(node, list) and int(index) < len(node):
            node = node[int(index)]
        else:
            return _NOT_FOUND
    return node


def _summarise(value: object) -> object:
    """Scalars as they are; collections are not echoed (an error never repeats a whole body)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return msgspec.UNSET


def _type_name(value: object) -> str:
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__
