"""Pod injection (behaviour.md §4 and §8.1): which SidecarSets a new pod gets, and what they add.

`inject` decides everything from plain data (the Pod JSON of the admission request, the
SidecarSets, the namespace's labels, `now`) and returns an `Injection` that lists exactly what is
added: sidecar (init) containers with their positions, volumes, pull secrets and annotations. The
pod webhook turns it into a JSON patch (`patches.for_injection`); `sidecarset inject -f` and the
tests apply it with `apply_injection`, so both paths share one decision.

Where we deliberately differ from Kruise (each is listed in behaviour.md §12):

* Order is deterministic: SidecarSets are injected in name order, containers in declaration
  order within a SidecarSet (Kruise uses informer list order unless a feature gate is on).
* Injection is idempotent: a SidecarSet whose hash-annotation entry is present and whose
  containers are all in the pod is "already injected" and adds nothing (no re-injection on a
  webhook re-invocation, no second metadata patch).
* `IS_INJECTED=true` (and the hot-upgrade version env) is set once, never duplicated.
* A pod carrying `sidecarset.kruise.io/inject: "false"` (annotation or label) is never injected.
* A SidecarSet with an invalid selector is passed over with a warning instead of failing every
  pod creation in the cluster; pull secrets never remove the pod's own duplicate entries.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping, Sequence
from enum import StrEnum

import msgspec

from sidecarset.core import resources, selectors, wire
from sidecarset.core.errors import FieldError
from sidecarset.core.model import (
    JsonObject,
    PatchPolicy,
    PodInjectPolicy,
    RevisionPolicy,
    ShareVolumePolicyType,
    SidecarContainer,
    SidecarSet,
    TransferEnvVar,
    copy_json,
)

__all__ = [
    "SIDECARSET_ONLY_FIELDS",
    "InjectedContainer",
    "Injection",
    "InjectionDenied",
    "Placement",
    "PodShape",
    "PodSkip",
    "RevisionChoiceError",
    "RevisionLookupFailed",
    "Skip",
    "apply_injection",
    "choose_revision",
    "inject",
    "patch_metadata",
    "wants_pinned_revision",
]

SIDECARSET_ONLY_FIELDS = (
    "podInjectPolicy",
    "upgradeStrategy",
    "shareVolumePolicy",
    "shareVolumeDevicePolicy",
    "transferEnv",
    "resourcesPolicy",
)
"""SidecarContainer fields that are not corev1.Container fields: never copied into a pod."""


class InjectionDenied(ValueError):
    """The pod cannot be admitted as it is: the `FieldError` names what and where.

    Raised for a malformed annotation we must read, a `MergePatchJson` onto a non-JSON value, and
    a `resourcesPolicy` that cannot be computed for this pod. The webhook denies with it.
    """

    def __init__(self, error: FieldError) -> None:
        super().__init__(str(error))
        self.error = error


class PodSkip(StrEnum):
    """Why a pod as a whole is not considered for injection."""

    INACTIVE = "inactive"
    """Phase Succeeded/Failed, or a deletionTimestamp is set."""
    OPTED_OUT = "optedOut"
    """The pod says `sidecarset.kruise.io/inject: "false"`."""


class Skip(StrEnum):
    """Why one SidecarSet adds nothing to this pod."""

    INJECTION_PAUSED = "injectionPaused"
    OTHER_NAMESPACE = "otherNamespace"
    """v1alpha1 `spec.namespace` names another namespace."""
    NAMESPACE_NOT_FOUND = "namespaceNotFound"
    """`namespaceSelector` is set but the namespace's labels are unknown."""
    NAMESPACE_NOT_SELECTED = "namespaceNotSelected"
    EMPTY_SELECTOR = "emptySelector"
    """No (or an empty) `selector`: Kruise never matches such a SidecarSet."""
    INVALID_SELECTOR = "invalidSelector"
    NOT_SELECTED = "notSelected"
    CANARY_BASE = "canaryBase"
    """A matching canary SidecarSet replaces this one (its base) for this pod."""
    ALREADY_INJECTED = "alreadyInjected"


class Placement(StrEnum):
    """Where an injected (init) container goes relative to the pod's own."""

    BEFORE_APP = "BeforeAppContainer"
    AFTER_APP = "AfterAppContainer"
    IN_PLACE = "InPlace"
    """Replaces the pod's container of the same name, at its position."""


class InjectedContainer(msgspec.Struct, frozen=True, kw_only=True):
    """One container as it will stand in the pod: body, placement and final list index."""

    sidecarset: str
    body: JsonObject
    placement: Placement
    index: int
    """Position in the resulting `containers`/`initContainers` list."""

    @property
    def name(self) -> str:
        name = self.body.get("name")
        return name if isinstance(name, str) else ""


class PodShape(msgspec.Struct, frozen=True, kw_only=True):
    """What the pod already has, so a patch knows whether to create or extend.

    A list length is None when the list is absent (or not a list) in the pod.
    """

    has_metadata: bool = False
    has_annotations: bool = False
    has_spec: bool = False
    containers: int | None = None
    init_containers: int | None = None
    volumes: int | None = None
    image_pull_secrets: int | None = None


class Injection(msgspec.Struct, frozen=True, kw_only=True):
    """Everything `inject` decided for one pod: what is added, in order, and why not more.

    `containers` and `init_containers` are sorted by final index; `annotations` holds only keys
    whose value is new or changed (`overwritten_annotations` names the changed ones).
    """

    namespace: str
    shape: PodShape = PodShape()
    pod_skip: PodSkip | None = None
    matched: tuple[str, ...] = ()
    """SidecarSets selecting this pod (canary bases dropped), in injection order."""
    injected: tuple[str, ...] = ()
    """The matched SidecarSets that add something this time."""
    passed_over: Mapping[str, Skip] = {}
    containers: tuple[InjectedContainer, ...] = ()
    init_containers: tuple[InjectedContainer, ...] = ()
    volumes: tuple[JsonObject, ...] = ()
    image_pull_secrets: tuple[str, ...] = ()
    """Pull-secret names appended after the pod's own."""
    duplicate_pull_secrets: tuple[int, ...] = ()
    """Indexes (ascending) of the pod's own pull secrets that repeat an earlier name: removed,
    because Kruise merges the pod's and the SidecarSets' secrets as one set of names."""
    annotations: Mapping[str, str] = {}
    overwritten_annotations: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """True when applying this injection changes the pod."""
        return bool(
            self.containers
            or self.init_containers
            or self.volumes
            or self.image_pull_secrets
            or self.duplicate_pull_secrets
            or self.annotations
        )


# --- JSON access ------------------------------------------------------------------------------


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _objects(value: object) -> list[Mapping[str, object]]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _str_map(value: object) -> dict[str, str]:
    return {str(k): v for k, v in _mapping(value).items() if isinstance(v, str)}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _name(item: Mapping[str, object]) -> str:
    return _text(item.get("name"))


def _first_env_value(container: Mapping[str, object], name: str) -> str:
    """Kruise's GetContainerEnvValue: `value` of the first env entry with this name."""
    for env in _objects(container.get("env")):
        if _name(env) == name:
            return _text(env.get("value"))
    return ""


def _is_app_container(container: Mapping[str, object]) -> bool:
    return _first_env_value(container, wire.INJECTED_ENV) != "true"


# --- matching ---------------------------------------------------------------------------------


def _skip_reason(
    sidecarset: SidecarSet,
    *,
    namespace: str,
    namespace_labels: Mapping[str, str] | None,
    labels: Mapping[str, str],
) -> Skip | None:
    spec = sidecarset.spec
    if spec.injection_strategy.paused:
        return Skip.INJECTION_PAUSED
    if spec.namespace and spec.namespace != namespace:
        return Skip.OTHER_NAMESPACE
    if spec.namespace_selector is not None:
        if namespace_labels is None:
            return Skip.NAMESPACE_NOT_FOUND
        if selectors.matches(spec.namespace_selector, namespace_labels) is not True:
            return Skip.NAMESPACE_NOT_SELECTED
    if spec.selector is None or spec.selector.is_empty:
        return Skip.EMPTY_SELECTOR
    matched = selectors.matches(spec.selector, labels)
    if matched is None:
        return Skip.INVALID_SELECTOR
    return None if matched else Skip.NOT_SELECTED


def _expected_names(sidecarset: SidecarSet) -> tuple[set[str], set[str]]:
    """The (init container, container) names this SidecarSet puts into a pod."""
    init_names: set[str] = set()
    for sidecar in sidecarset.spec.init_containers:
        if sidecar.is_native_sidecar and sidecar.is_hot_upgrade:
            init_names.update(wire.hot_upgrade_names(sidecar.name))
        else:
            init_names.add(sidecar.name)
    names: set[str] = set()
    for sidecar in sidecarset.spec.containers:
        if sidecar.is_hot_upgrade:
            names.update(wire.hot_upgrade_names(sidecar.name))
        else:
            names.add(sidecar.name)
    return init_names, names


def _is_injected(
    sidecarset: SidecarSet, pod_spec: Mapping[str, object], hashes: Mapping[str, wire.UpgradeSpec]
) -> bool:
    """Already injected: the hash annotation has its entry and all its containers are present."""
    if sidecarset.name not in hashes:
        return False
    init_names, names = _expected_names(sidecarset)
    pod_init = {_name(c) for c in _objects(pod_spec.get("initContainers"))}
    pod_containers = {_name(c) for c in _objects(pod_spec.get("containers"))}
    return init_names <= pod_init and names <= pod_containers


# --- patchPodMetadata -------------------------------------------------------------------------


class _JsonNumber(msgspec.Struct, frozen=True):
    """A JSON number kept as its literal text, so a merge patch never rewrites `1.0` as `1`."""

    text: str


class _BadJson(ValueError):
    pass


def _reject_constant(name: str) -> object:
    raise _BadJson(f"{name} is not JSON")


def _load_json(text: str) -> object:
    try:
        return json.loads(
            text,
            parse_int=_JsonNumber,
            parse_float=_JsonNumber,
            parse_constant=_reject_constant,
        )
    except ValueError as exc:
        raise _BadJson(str(exc)) from None


def _dump_json(value: object) -> str:
    if isinstance(value, _JsonNumber):
        return value.text
    if isinstance(value, dict):
        return (
            "{" + ",".join(f"{wire.dump_json(k)}:{_dump_json(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(_dump_json(v) for v in value) + "]"
    return wire.dump_json(value)


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


def _merge_patch(document: str, patch: str) -> str:
    """RFC 7386 merge as Kruise's evanphx/json-patch `MergePatch` does it, output included.

    Objects the merge touches come out with sorted keys (Go marshals them from maps); untouched
    sub-objects keep their order; number literals are kept. Raises `_BadJson` where Go errors.
    """
    doc = _load_json(document)
    change = _load_json(patch)
    if doc is None:
        raise _BadJson("the current value is null")
    if change is None:
        raise _BadJson("the patch is null")
    if isinstance(change, dict):
        merged = _merge_objects(doc, change) if isinstance(doc, dict) else _prune_nulls(change)
        return _dump_json(merged)
    if isinstance(change, list):
        return _dump_json(_prune_nulls(change))
    raise _BadJson("the patch is neither an object nor an array")


def patch_metadata(annotations: Mapping[str, str], sidecarset: SidecarSet) -> dict[str, str]:
    """The pod annotations after the SidecarSet's `patchPodMetadata` (behaviour.md §6.1).

    Retain (and an empty policy) sets absent keys only; Overwrite always sets; MergePatchJson
    merges into a non-empty current value, else sets. Unknown policies do nothing, as in Kruise.
    Raises `InjectionDenied` naming the annotation when a merge meets a non-JSON value.
    """
    result = dict(annotations)
    for entry in sidecarset.spec.patch_pod_metadata:
        policy = entry.patch_policy or PatchPolicy.RETAIN
        for key, value in entry.annotations.items():
            if policy == PatchPolicy.RETAIN:
                result.setdefault(key, value)
            elif policy == PatchPolicy.OVERWRITE:
                result[key] = value
            elif policy == PatchPolicy.MERGE_PATCH_JSON:
                current = result.get(key, "")
                if not current:
                    result[key] = value
                    continue
                try:
                    result[key] = _merge_patch(current, value)
                except _BadJson as exc:
                    raise InjectionDenied(
                        FieldError.invalid(
                            wire.annotation_path(key),
                            current if len(current) <= 200 else current[:200] + "...",
                            f"SidecarSet {sidecarset.name} patchPodMetadata (MergePatchJson)"
                            f" cannot merge {value!r}: {exc}",
                        )
                    ) from None
    return result


# --- building one sidecar ---------------------------------------------------------------------


class _PodContext(msgspec.Struct, frozen=True, kw_only=True):
    """The pod as building reads it: annotations already patched by patchPodMetadata."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    containers: tuple[Mapping[str, object], ...]
    init_containers: tuple[Mapping[str, object], ...]
    volume_names: frozenset[str]
    sidecar_names: frozenset[str]
    """Every (init) container name of every matched SidecarSet: never a resources target."""


_SUBPATH_ENV = re.compile(r"\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


def _merge_by_name(
    original: list[Mapping[str, object]], extra: Sequence[Mapping[str, object]]
) -> list[Mapping[str, object]]:
    """Kruise's MergeEnvVar: append entries whose name is not there yet (first wins)."""
    names = {_name(e) for e in original}
    merged = list(original)
    for entry in extra:
        if _name(entry) not in names:
            merged.append(entry)
            names.add(_name(entry))
    return merged


def _set_env(env: list[Mapping[str, object]], entry: Mapping[str, object]) -> None:
    """Make `entry` the only env var of its name: at the first one's position, else appended.

    Kruise appends (so a sidecar declaring the name gets a duplicate, the last one winning);
    the value that takes effect is the same, without the duplicate.
    """
    positions = [i for i, existing in enumerate(env) if _name(existing) == _name(entry)]
    if not positions:
        env.append(entry)
        return
    env[positions[0]] = entry
    for i in reversed(positions[1:]):
        del env[i]


def _shared_mounts(
    pod: _PodContext,
) -> tuple[list[Mapping[str, object]], list[Mapping[str, object]]]:
    """App containers' volumeMounts, and the env their `subPathExpr` variables need."""
    mounts: list[Mapping[str, object]] = []
    envs: list[Mapping[str, object]] = []
    for container in pod.containers:
        if not _is_app_container(container):
            continue
        for mount in _objects(container.get("volumeMounts")):
            mounts.append(copy_json(mount))
            for variable in _SUBPATH_ENV.findall(_text(mount.get("subPathExpr"))):
                for env in _objects(container.get("env")):
                    if _name(env) == variable:
                        envs.append(copy_json(env))
                        break
    return mounts, envs


def _shared_devices(pod: _PodContext) -> list[Mapping[str, object]]:
    return [
        copy_json(device)
        for container in pod.containers
        if _is_app_container(container)
        for device in _objects(container.get("volumeDevices"))
    ]


def _split_subscript(field_path: str) -> tuple[str, str] | None:
    """Kubernetes fieldpath.SplitMaybeSubscriptedPath: `metadata.labels['k']` -> (path, k)."""
    if not field_path.endswith("']"):
        return None
    head, sep, subscript = field_path[:-2].partition("['")
    if not sep or not head:
        return None
    return head, subscript


def _source_container(
    transfer: TransferEnvVar, pod: _PodContext, warnings: list[str], where: str
) -> str | None:
    source = transfer.source_container_name
    name_from = transfer.source_container_name_from
    if name_from is None or name_from.field_ref is None:
        return source
    field_path = name_from.field_ref.field_path
    split = _split_subscript(field_path)
    if split is None or split[0] not in ("metadata.labels", "metadata.annotations"):
        warnings.append(f"{where}: transferEnv fieldPath {field_path!r} is not supported; skipped")
        return None
    path, key = split
    values = pod.labels if path == "metadata.labels" else pod.annotations
    return values.get(key, "")


def _transferred_env(
    sidecar: SidecarContainer, pod: _PodContext, warnings: list[str], where: str
) -> list[Mapping[str, object]]:
    """transferEnv (behaviour.md §5.3): whole EnvVars copied from a regular container, if there."""
    by_key: dict[tuple[str, str], Mapping[str, object]] = {}
    for container in pod.containers:
        for env in _objects(container.get("env")):
            by_key[(_name(container), _name(env))] = env
    transferred: list[Mapping[str, object]] = []
    for transfer in sidecar.transfer_env:
        source = _source_container(transfer, pod, warnings, where)
        if source is None:
            continue
        names = set(transfer.env_names)
        if transfer.env_name:
            names.add(transfer.env_name)
        for env_name in sorted(names):
            found = by_key.get((source, env_name))
            if found is not None:
                transferred.append(copy_json(found))
    return transferred


def _resource_targets(
    sidecar: SidecarContainer, pod: _PodContext, where: str
) -> list[Mapping[str, object]]:
    assert sidecar.resources_policy is not None
    regex = sidecar.resources_policy.target_containers_name_regex
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        raise InjectionDenied(
            FieldError.invalid(
                f"{where}.resourcesPolicy.targetContainersNameRegex", regex, f"invalid regex: {exc}"
            )
        ) from None
    candidates = [
        c for c in pod.init_containers if _text(c.get("restartPolicy")) == "Always"
    ] + list(pod.containers)
    return [
        c
        for c in candidates
        if _name(c) not in pod.sidecar_names and pattern.search(_name(c)) is not None
    ]


def _computed_resources(
    sidecar: SidecarContainer, pod: _PodContext, sidecarset: str, where: str
) -> JsonObject:
    assert sidecar.resources_policy is not None
    targets = _resource_targets(sidecar, pod, where)
    regex = sidecar.resources_policy.target_containers_name_regex
    if not targets:
        raise InjectionDenied(
            FieldError.invalid(
                "spec.containers",
                regex,
                f"SidecarSet {sidecarset} {where}.resourcesPolicy: no containers match the regex"
                f" pattern {regex!r}",
            )
        )
    try:
        return resources.compute_resources(sidecar.resources_policy, targets)
    except resources.ResourcesError as exc:
        raise InjectionDenied(
            FieldError.invalid(
                "spec.containers",
                regex,
                f"SidecarSet {sidecarset} {where}.resourcesPolicy: {exc}",
            )
        ) from None


def _sidecar_body(
    sidecar: SidecarContainer,
    pod: _PodContext,
    *,
    sidecarset: str,
    where: str,
    warnings: list[str],
) -> JsonObject:
    """The container to inject for one SidecarContainer (behaviour.md §4.2), before a hot split."""
    body: JsonObject = copy_json(
        {k: v for k, v in sidecar.body.items() if k not in SIDECARSET_ONLY_FIELDS}
    )
    body.setdefault("name", sidecar.name)
    if sidecar.resources_policy is not None:
        body["resources"] = _computed_resources(sidecar, pod, sidecarset, where)

    shared_mounts: list[Mapping[str, object]] = []
    subpath_env: list[Mapping[str, object]] = []
    if sidecar.share_volume_policy.type == ShareVolumePolicyType.ENABLED:
        shared_mounts, subpath_env = _shared_mounts(pod)
    extra_env = _merge_by_name(_transferred_env(sidecar, pod, warnings, where), subpath_env)

    own_mounts = _objects(body.get("volumeMounts"))
    own_devices = _objects(body.get("volumeDevices"))
    taken = {_text(m.get("mountPath")) for m in own_mounts}
    taken |= {_text(d.get("devicePath")) for d in own_devices}
    mounts = list(own_mounts)
    for mount in shared_mounts:
        path = _text(mount.get("mountPath"))
        if path not in taken:
            mounts.append(mount)
            taken.add(path)
    if mounts:
        body["volumeMounts"] = mounts

    env = list(_objects(body.get("env")))
    _set_env(env, {"name": wire.INJECTED_ENV, "value": "true"})
    body["env"] = _merge_by_name(env, extra_env)

    share_devices = sidecar.share_volume_device_policy
    if share_devices is not None and share_devices.type == ShareVolumePolicyType.ENABLED:
        device_taken = {_text(d.get("devicePath")) for d in own_devices}
        device_taken |= {_text(m.get("mountPath")) for m in mounts}
        devices = list(own_devices)
        for device in _shared_devices(pod):
            path = _text(device.get("devicePath"))
            if path not in device_taken:
                devices.append(device)
                device_taken.add(path)
        if devices:
            body["volumeDevices"] = devices
    return body


def _hot_upgrade_twins(
    sidecar: SidecarContainer, body: JsonObject, warnings: list[str], where: str
) -> tuple[tuple[JsonObject, JsonObject], dict[str, str]]:
    """`S-1` (working, real image) and `S-2` (idle, empty image), and their version annotations."""
    working, idle = wire.hot_upgrade_names(sidecar.name)
    twins: list[JsonObject] = []
    for twin in (working, idle):
        twin_body = copy_json(body)
        twin_body["name"] = twin
        env = list(_objects(twin_body.get("env")))
        for env_name, field_path in (
            (wire.VERSION_ENV, wire.version_field_path(twin)),
            (wire.VERSION_ALT_ENV, wire.version_alt_field_path(twin)),
        ):
            _set_env(env, {"name": env_name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}})
        twin_body["env"] = env
        twins.append(twin_body)
    empty_image = sidecar.upgrade_strategy.hot_upgrade_empty_image
    if empty_image:
        twins[1]["image"] = empty_image
    else:
        twins[1].pop("image", None)
        warnings.append(
            f"{where}: upgradeStrategy.hotUpgradeEmptyImage is empty; the API server will reject"
            f" container {idle} without an image"
        )
    annotations = {
        wire.version_annotation(working): "1",
        wire.version_alt_annotation(working): "0",
        wire.version_annotation(idle): "0",
        wire.version_alt_annotation(idle): "1",
    }
    return (twins[0], twins[1]), annotations


class _Candidate(msgspec.Struct, frozen=True, kw_only=True):
    sidecarset: str
    body: JsonObject
    placement: Placement


class _Built(msgspec.Struct, frozen=True, kw_only=True):
    init_containers: tuple[_Candidate, ...]
    containers: tuple[_Candidate, ...]
    volumes: tuple[JsonObject, ...]
    sidecar_list: tuple[str, ...]
    annotations: Mapping[str, str]
    hot_working: Mapping[str, str]


def _placement(sidecar: SidecarContainer) -> Placement:
    # Kruise's switch sends anything but BeforeAppContainer (an unset value included) after.
    if sidecar.pod_inject_policy == PodInjectPolicy.BEFORE_APP_CONTAINER:
        return Placement.BEFORE_APP
    return Placement.AFTER_APP


def _build(sidecarset: SidecarSet, pod: _PodContext, warnings: list[str]) -> _Built:
    name = sidecarset.name
    volumes_by_name = {v.name: v.body for v in sidecarset.spec.volumes}
    init_containers: list[_Candidate] = []
    containers: list[_Candidate] = []
    volumes: list[JsonObject] = []
    sidecar_list: set[str] = set()
    annotations: dict[str, str] = {}
    hot_working: dict[str, str] = {}
    groups = (
        ("initContainers", sidecarset.spec.init_containers, init_containers),
        ("containers", sidecarset.spec.containers, containers),
    )
    for field, sidecars, out in groups:
        for i, sidecar in enumerate(sidecars):
            where = f"SidecarSet {name} spec.{field}[{i}]"
            # Plain init containers run once at creation: not listed, never hot-upgraded.
            listed = field == "containers" or sidecar.is_native_sidecar
            if listed:
                sidecar_list.add(sidecar.name)
            mounted = [m.name for m in sidecar.volume_mounts]
            mounted += [d.name for d in sidecar.volume_devices]
            for volume_name in mounted:
                if volume_name in volumes_by_name:
                    volumes.append(copy_json(volumes_by_name[volume_name]))
                elif volume_name not in pod.volume_names:
                    warnings.append(
                        f"{where}: volume {volume_name!r} is declared neither in the SidecarSet"
                        " nor in the pod"
                    )
            body = _sidecar_body(sidecar, pod, sidecarset=name, where=where, warnings=warnings)
            placement = _placement(sidecar)
            if listed and sidecar.is_hot_upgrade:
                twins, versions = _hot_upgrade_twins(sidecar, body, warnings, where)
                out.extend(_Candidate(sidecarset=name, body=b, placement=placement) for b in twins)
                annotations.update(versions)
                hot_working[sidecar.name] = wire.hot_upgrade_names(sidecar.name)[0]
            else:
                out.append(_Candidate(sidecarset=name, body=body, placement=placement))
    return _Built(
        init_containers=tuple(init_containers),
        containers=tuple(containers),
        volumes=tuple(volumes),
        sidecar_list=tuple(sorted(sidecar_list)),
        annotations=annotations,
        hot_working=hot_working,
    )


# --- merging into the pod ---------------------------------------------------------------------


def _place(
    pod_items: object,
    candidates: Sequence[_Candidate],
    warnings: list[str],
    field: str,
) -> tuple[InjectedContainer, ...]:
    """Kruise's mergeSidecarContainers: same name replaces in place, else before or after.

    `pod_items` is the pod's list as received (indexes count every entry); not a list means none.
    """
    items = pod_items if isinstance(pod_items, list) else []
    pod_index = {_name(item): i for i, item in enumerate(items) if isinstance(item, Mapping)}
    before: list[_Candidate] = []
    after: list[_Candidate] = []
    in_place: dict[int, _Candidate] = {}
    seen: set[str] = set()
    for candidate in candidates:
        name = _text(candidate.body.get("name"))
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


def _shape(pod: Mapping[str, object]) -> PodShape:
    metadata = pod.get("metadata")
    spec = pod.get("spec")
    spec_map = _mapping(spec)

    def length(key: str) -> int | None:
        value = spec_map.get(key)
        return len(value) if isinstance(value, list) else None

    return PodShape(
        has_metadata=isinstance(metadata, Mapping),
        has_annotations=isinstance(_mapping(metadata).get("annotations"), Mapping),
        has_spec=isinstance(spec, Mapping),
        containers=length("containers"),
        init_containers=length("initContainers"),
        volumes=length("volumes"),
        image_pull_secrets=length("imagePullSecrets"),
    )


def _is_active(pod: Mapping[str, object]) -> bool:
    phase = _mapping(pod.get("status")).get("phase")
    deleting = _mapping(pod.get("metadata")).get("deletionTimestamp") is not None
    return phase not in ("Succeeded", "Failed") and not deleting


def _read_hashes(annotations: Mapping[str, str], key: str) -> dict[str, wire.UpgradeSpec]:
    try:
        return wire.read_upgrade_specs(annotations, key)
    except wire.MalformedAnnotation as exc:
        raise InjectionDenied(exc.error) from None


def _select(
    sidecarsets: Sequence[SidecarSet],
    *,
    namespace: str,
    namespace_labels: Mapping[str, str] | None,
    labels: Mapping[str, str],
) -> tuple[list[SidecarSet], dict[str, Skip], list[str]]:
    """The SidecarSets selecting the pod, by name, canary bases dropped (behaviour.md §3.1)."""
    warnings: list[str] = []
    passed_over: dict[str, Skip] = {}
    selected: list[SidecarSet] = []
    seen: set[str] = set()
    for sidecarset in sorted(sidecarsets, key=lambda s: s.name):
        if sidecarset.name in seen:
            continue
        seen.add(sidecarset.name)
        reason = _skip_reason(
            sidecarset, namespace=namespace, namespace_labels=namespace_labels, labels=labels
        )
        if reason is Skip.INVALID_SELECTOR:
            warnings.append(f"SidecarSet {sidecarset.name}: invalid selector; not injected")
        if reason is None:
            selected.append(sidecarset)
        else:
            passed_over[sidecarset.name] = reason
    bases = {base for s in selected if (base := wire.is_canary(s.metadata.annotations))}
    passed_over.update({s.name: Skip.CANARY_BASE for s in selected if s.name in bases})
    return [s for s in selected if s.name not in bases], passed_over, warnings


def _volumes_and_secrets(
    pending: Sequence[SidecarSet], built: Mapping[str, _Built], spec: Mapping[str, object]
) -> tuple[tuple[JsonObject, ...], tuple[str, ...], tuple[int, ...]]:
    """Volumes and pull-secret names to append (the pod's own win, then the first SidecarSet),
    and the indexes of the pod's repeated pull secrets. Pull secrets become one set of names,
    the pod's first in their order, as Kruise merges them."""
    volumes: list[JsonObject] = []
    volume_names = {_name(v) for v in _objects(spec.get("volumes"))}
    secrets: list[str] = []
    secret_names: set[str] = set()
    duplicates: list[int] = []
    own = spec.get("imagePullSecrets")
    for index, secret in enumerate(own if isinstance(own, list) else []):
        if not isinstance(secret, Mapping):
            continue
        if _name(secret) in secret_names:
            duplicates.append(index)
        secret_names.add(_name(secret))
    for sidecarset in pending:
        for volume in built[sidecarset.name].volumes:
            if _name(volume) not in volume_names:
                volumes.append(volume)
                volume_names.add(_name(volume))
        for pull in sidecarset.spec.image_pull_secrets:
            if pull.name and pull.name not in secret_names:
                secrets.append(pull.name)
                secret_names.add(pull.name)
    return tuple(volumes), tuple(secrets), tuple(duplicates)


def inject(
    pod: Mapping[str, object],
    sidecarsets: Sequence[SidecarSet],
    namespace_labels: Mapping[str, str] | None,
    *,
    now: str,
    request_namespace: str,
) -> Injection:
    """Decide what the matching SidecarSets add to a pod being created (behaviour.md §4, §8.1).

    `sidecarsets` are defaulted (hash annotations present), each already the revision to inject
    (`choose_revision`). `namespace_labels` are the labels of the pod's namespace, None when it
    was not found. `now` (RFC 3339) stamps the hash annotations. Pure: `pod` is not modified.

    Raises `InjectionDenied` when the pod cannot be admitted (malformed Kruise annotation,
    MergePatchJson onto non-JSON, resourcesPolicy with no target or a failing expression).
    """
    metadata = _mapping(pod.get("metadata"))
    spec = _mapping(pod.get("spec"))
    labels = _str_map(metadata.get("labels"))
    annotations = _str_map(metadata.get("annotations"))
    namespace = _text(metadata.get("namespace")) or request_namespace or "default"
    shape = _shape(pod)
    if not _is_active(pod):
        return Injection(namespace=namespace, shape=shape, pod_skip=PodSkip.INACTIVE)
    if wire.is_injection_opted_out(labels, annotations):
        return Injection(namespace=namespace, shape=shape, pod_skip=PodSkip.OPTED_OUT)
    timestamp = wire.normalize_timestamp(now)

    matched, passed_over, warnings = _select(
        sidecarsets, namespace=namespace, namespace_labels=namespace_labels, labels=labels
    )
    if not matched:
        return Injection(
            namespace=namespace, shape=shape, passed_over=passed_over, warnings=tuple(warnings)
        )

    hashes = _read_hashes(annotations, wire.HASH_ANNOTATION)
    hashes_without_image = _read_hashes(annotations, wire.HASH_WITHOUT_IMAGE_ANNOTATION)
    pending: list[SidecarSet] = []
    for sidecarset in matched:
        if _is_injected(sidecarset, spec, hashes):
            passed_over[sidecarset.name] = Skip.ALREADY_INJECTED
        else:
            pending.append(sidecarset)
    matched_names = tuple(s.name for s in matched)
    if not pending:
        return Injection(
            namespace=namespace,
            shape=shape,
            matched=matched_names,
            passed_over=passed_over,
            warnings=tuple(warnings),
        )

    final = dict(annotations)
    for sidecarset in pending:
        final = patch_metadata(final, sidecarset)

    context = _PodContext(
        labels=labels,
        annotations=final,
        containers=tuple(_objects(spec.get("containers"))),
        init_containers=tuple(_objects(spec.get("initContainers"))),
        volume_names=frozenset(_name(v) for v in _objects(spec.get("volumes"))),
        sidecar_names=frozenset(
            c.name for s in matched for c in (*s.spec.init_containers, *s.spec.containers)
        ),
    )
    built = {s.name: _build(s, context, warnings) for s in pending}
    injected = tuple(
        s.name for s in pending if built[s.name].init_containers or built[s.name].containers
    )

    init_candidates = sorted(
        (c for s in pending for c in built[s.name].init_containers),
        key=lambda c: _text(c.body.get("name")),
    )
    init_containers = _place(spec.get("initContainers"), init_candidates, warnings, "initContainer")
    containers = _place(
        spec.get("containers"),
        [c for s in pending for c in built[s.name].containers],
        warnings,
        "container",
    )
    volumes: tuple[JsonObject, ...] = ()
    secrets: tuple[str, ...] = ()
    duplicate_secrets: tuple[int, ...] = ()
    if injected:
        volumes, secrets, duplicate_secrets = _volumes_and_secrets(pending, built, spec)
        _bookkeeping(
            final,
            annotations,
            [s for s in pending if s.name in injected],
            built,
            hashes=hashes,
            hashes_without_image=hashes_without_image,
            timestamp=timestamp,
            listed=matched_names,
            warnings=warnings,
        )

    changes = {k: v for k, v in final.items() if annotations.get(k) != v}
    return Injection(
        namespace=namespace,
        shape=shape,
        matched=matched_names,
        injected=injected,
        passed_over=passed_over,
        containers=containers,
        init_containers=init_containers,
        volumes=volumes,
        image_pull_secrets=secrets,
        duplicate_pull_secrets=duplicate_secrets,
        annotations=changes,
        overwritten_annotations=tuple(sorted(k for k in changes if k in annotations)),
        warnings=tuple(warnings),
    )


def _bookkeeping(
    final: dict[str, str],
    original: Mapping[str, str],
    injected: Sequence[SidecarSet],
    built: Mapping[str, _Built],
    *,
    hashes: dict[str, wire.UpgradeSpec],
    hashes_without_image: dict[str, wire.UpgradeSpec],
    timestamp: str,
    listed: Sequence[str],
    warnings: list[str],
) -> None:
    """Write the behaviour.md §4.4 annotations into `final`, keeping other SidecarSets' entries."""
    hot_working: dict[str, str] = {}
    if any(built[s.name].hot_working for s in injected):
        try:
            hot_working = wire.read_working_hot_upgrade(original)
        except wire.MalformedAnnotation as exc:
            # Kruise ignores an unreadable value and writes a fresh map; say so.
            warnings.append(f"{exc}; replaced")
    for sidecarset in injected:
        result = built[sidecarset.name]
        name = sidecarset.name
        own = sidecarset.metadata.annotations
        if wire.HASH_ANNOTATION not in own:
            warnings.append(f"SidecarSet {name} has no {wire.HASH_ANNOTATION} annotation")
        hashes[name] = wire.UpgradeSpec(
            update_timestamp=timestamp,
            hash=own.get(wire.HASH_ANNOTATION, ""),
            sidecarset_name=name,
            sidecar_list=result.sidecar_list,
            controller_revision=sidecarset.status.latest_revision,
        )
        hashes_without_image[name] = wire.UpgradeSpec(
            update_timestamp=timestamp,
            hash=own.get(wire.HASH_WITHOUT_IMAGE_ANNOTATION, ""),
            sidecarset_name=name,
            sidecar_list=result.sidecar_list,
        )
        final.update(result.annotations)
        hot_working.update(result.hot_working)
    final[wire.HASH_ANNOTATION] = wire.write_upgrade_specs(hashes)
    final[wire.HASH_WITHOUT_IMAGE_ANNOTATION] = wire.write_upgrade_specs(hashes_without_image)
    final[wire.INJECTED_LIST_ANNOTATION] = wire.write_injected_list(
        wire.read_injected_list(original) | set(listed)
    )
    if hot_working:
        final[wire.WORKING_HOT_UPGRADE_ANNOTATION] = wire.write_working_hot_upgrade(hot_working)


# --- applying ---------------------------------------------------------------------------------


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


# --- which revision to inject (behaviour.md §4.5) ---------------------------------------------


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
