"""SidecarSet admission validation (behaviour.md §11): every problem, with its path, and warnings.

`validate(new, old, peers, policy)` is what the validating webhook and the offline CLI call.
It covers Kruise's rules (name, selectors, strategies, patchPodMetadata and its whitelist,
canaries, immutability, conflicts with overlapping SidecarSets) and the pod validation Kruise
gets by validating a fake pod, restricted to what a sidecar can break. Facts that need the API
(the other SidecarSets, the whitelist ConfigMap, the pinned ControllerRevision) come in as data.

Deliberate differences from Kruise:

* Native sidecars (init containers with `restartPolicy: Always`) may use RollingUpdate: this
  operator updates them in place.
* Values that defaulting fills (`podInjectPolicy`, `imagePullPolicy`, a volume's source...) are
  accepted when empty, so a not-yet-defaulted object validates as its defaulted form would.
* Stricter: unknown `updateStrategy.type`, `upgradeType`, `patchPolicy` and
  `targetContainersMode` values; percentages above 100%; a HotUpgrade container without a
  distinct `hotUpgradeEmptyImage`; MergePatchJson values that are not JSON objects; whitelist
  regexes must match the whole key; a privileged/host-level security policy.
* Looser: `partition: "0%"` with an update selector is accepted (it holds nothing back).
* Conflicts use an exact selector-overlap test and compare every name a pod would receive.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Final

import msgspec

from sidecarset.core import defaults, hashing, resources_expr, selectors, wire
from sidecarset.core.errors import FieldError, ModelError, Path
from sidecarset.core.model import (
    LabelSelector,
    PatchPolicy,
    PodInjectPolicy,
    RevisionPolicy,
    ShareVolumePolicyType,
    SidecarContainer,
    SidecarSet,
    SidecarSetUpdateStrategy,
    TargetContainersMode,
    UpdateStrategyType,
    UpgradeType,
    Volume,
    parse_sidecarset,
)

__all__ = [
    "BASELINE_CAPABILITIES",
    "RevisionLookup",
    "ValidationPolicy",
    "ValidationResult",
    "WhitelistRule",
    "validate",
]

JsonMap = Mapping[str, object]

# --- inputs and result ------------------------------------------------------------------------

BASELINE_CAPABILITIES: Final = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
"""Capabilities a sidecar may add without an exception: the Pod Security "baseline" set."""


class WhitelistRule(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One rule of Kruise's `SidecarSet_PatchPodMetadata_WhiteList` (behaviour.md §6.3).

    Applies to SidecarSets whose labels match `selector` (all of them when None).
    """

    selector: LabelSelector | None = None
    allowed_annotation_key_exprs: tuple[str, ...] = ()


class ValidationPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """What the cluster administrator allows SidecarSets to inject into every matching pod.

    The defaults follow the Pod Security "baseline" profile plus no privilege escalation: a
    SidecarSet lands in pods its author does not own, so host-level power is opt-in. Pod-level
    host namespaces (hostNetwork/hostPID/hostIPC) cannot be set by a SidecarSet at all; host
    ports, host paths and privilege are their container-level equivalents.
    """

    allow_privileged: bool = False
    """`privileged: true` and Windows `hostProcess: true`."""
    allow_privilege_escalation: bool = False
    """An explicit `allowPrivilegeEscalation: true`."""
    allowed_capabilities: frozenset[str] = frozenset()
    """Capabilities allowed beyond `BASELINE_CAPABILITIES` (without `CAP_`); "ALL" allows any."""
    allow_host_path: bool = False
    """`hostPath` volumes in `spec.volumes`."""
    allow_host_ports: bool = False
    """Container ports with a `hostPort`."""
    allow_unconfined: bool = False
    """Unconfined seccomp or AppArmor, `procMount: Unmasked`, custom SELinux types."""
    patch_metadata_whitelist: tuple[WhitelistRule, ...] | None = None
    """The whitelist rules; None when the ConfigMap or its key is missing."""
    whitelist_source: str = (
        "the administrator's whitelist, key SidecarSet_PatchPodMetadata_WhiteList"
    )
    """Where the rules were read (or looked for), named in every refusal so the administrator
    edits the right ConfigMap."""
    whitelist_full_match: bool = False
    """Opt-in strict mode: a pattern must match the whole key. Off, a pattern only has to
    match somewhere in the key, as Kruise matches (`regexp.MatchString`), so a Kruise
    whitelist such as `^example\\.com/` keeps admitting what Kruise admitted."""
    patch_metadata_allowed_without_whitelist: bool = False
    """Kruise's `SidecarSetPatchPodMetadataDefaultsAllowed` feature gate (off upstream)."""


class RevisionLookup(msgspec.Struct, frozen=True, kw_only=True):
    """Whether `injectionStrategy.revision` resolved to a ControllerRevision (behaviour.md §4.6).

    The caller looks it up; an API failure must not be passed as `found=False`.
    """

    found: bool
    detail: str = ""


class ValidationResult(msgspec.Struct, frozen=True, kw_only=True):
    """All problems (admission denies when there is one) and warnings (admitted, shown)."""

    errors: tuple[FieldError, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return not self.errors


def validate(
    new: SidecarSet | JsonMap,
    old: SidecarSet | JsonMap | None,
    peers: Sequence[SidecarSet],
    policy: ValidationPolicy,
    *,
    revision_lookup: RevisionLookup | None = None,
) -> ValidationResult:
    """Validate a SidecarSet being created (`old` None) or updated.

    `peers` are the other SidecarSets in the cluster (the new object's own name is skipped).
    `revision_lookup` is required when `spec.injectionStrategy.revision` names a revision; if
    it is None then, the reference is not checked. Never raises on malformed input: a value of
    the wrong JSON type is reported as an error. Conflicts with peers are only checked when the
    object is otherwise valid, as Kruise does.
    """
    try:
        sidecarset = new if isinstance(new, SidecarSet) else parse_sidecarset(new)
    except ModelError as exc:
        return ValidationResult(errors=(exc.error,))
    previous: SidecarSet | None
    try:
        previous = old if old is None or isinstance(old, SidecarSet) else parse_sidecarset(old)
    except ModelError:
        previous = None  # the stored object cannot be read; judge the new one on its own

    errors = list(_check_metadata(sidecarset))
    errors.extend(_check_canary(sidecarset, previous, peers))
    errors.extend(_check_spec(sidecarset, policy, revision_lookup))
    warnings: list[str] = []
    if previous is not None:
        errors.extend(_check_immutable(sidecarset, previous))
        warnings.extend(_edit_warnings(sidecarset, previous))
    if not errors:
        errors.extend(_check_conflicts(sidecarset, peers))
    return ValidationResult(errors=tuple(errors), warnings=tuple(warnings))


# --- JSON helpers -----------------------------------------------------------------------------


def _str(body: JsonMap, key: str) -> str:
    value = body.get(key)
    return value if isinstance(value, str) else ""


def _int(body: JsonMap, key: str) -> int | None:
    value = body.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _map(body: JsonMap, key: str) -> JsonMap | None:
    value = body.get(key)
    return value if isinstance(value, Mapping) else None


def _items(body: JsonMap, key: str) -> Iterator[tuple[int, JsonMap]]:
    value = body.get(key)
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, Mapping):
                yield i, item


def _strings(body: JsonMap, key: str) -> list[str]:
    value = body.get(key)
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _present(body: JsonMap, key: str) -> bool:
    return body.get(key) is not None


# --- metadata ---------------------------------------------------------------------------------

_SIDECARSET_NAME = re.compile(r"[a-zA-Z0-9\-]+")
_SIDECARSET_NAME_MAX = 63
_ANNOTATIONS_MAX_BYTES = 256 * 1024


def _check_metadata(sidecarset: SidecarSet) -> Iterator[FieldError]:
    meta = Path.root("metadata")
    name = sidecarset.metadata.name
    if not name:
        yield FieldError.required(meta.child("name"), "name or generateName is required")
    else:
        if _SIDECARSET_NAME.fullmatch(name) is None:
            yield FieldError.invalid(
                meta.child("name"),
                name,
                "sidecarset name must consist of alphanumeric characters or '-'"
                " (e.g. 'example-com', regex used for validation is '^[a-zA-Z0-9\\-]+$')",
            )
        if len(name) > _SIDECARSET_NAME_MAX:
            yield FieldError.invalid(
                meta.child("name"), name, f"must be no more than {_SIDECARSET_NAME_MAX} characters"
            )
    yield from _check_labels(sidecarset.metadata.labels, meta.child("labels"))
    yield from _check_annotations(sidecarset.metadata.annotations, meta.child("annotations"))


def _check_labels(labels: Mapping[str, str], path: Path) -> Iterator[FieldError]:
    for key, value in labels.items():
        for problem in selectors.qualified_name_problems(key):
            yield FieldError.invalid(path, key, problem)
        for problem in selectors.label_value_problems(value):
            yield FieldError.invalid(path.key(key), value, problem)


def _check_annotations(annotations: Mapping[str, str], path: Path) -> Iterator[FieldError]:
    for key in annotations:
        for problem in selectors.qualified_name_problems(key.lower()):
            yield FieldError.invalid(path, key, problem)
    size = sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())
    if size > _ANNOTATIONS_MAX_BYTES:
        yield FieldError.too_long(path, _ANNOTATIONS_MAX_BYTES)


# --- canary (behaviour.md §11.8) ----------------------------------------------------------------


def _check_canary(
    sidecarset: SidecarSet, previous: SidecarSet | None, peers: Sequence[SidecarSet]
) -> Iterator[FieldError]:
    base = wire.is_canary(sidecarset.metadata.annotations)
    if base is None:
        return
    path = Path.root("metadata").child("annotations").key(wire.BASE_ANNOTATION)
    if base == sidecarset.name:
        yield FieldError.invalid(path, base, "the base SidecarSet cannot be the canary itself")
    if previous is not None and previous.metadata.annotations.get(wire.BASE_ANNOTATION) != base:
        yield FieldError.invalid(path, base, "is immutable: a canary cannot change its base")
    found = next((p for p in peers if p.name == base), None)
    if found is None and base != sidecarset.name:
        yield FieldError.not_found(path, base, "the base SidecarSet does not exist")
    elif found is not None and wire.is_canary(found.metadata.annotations) is not None:
        yield FieldError.invalid(path, base, "the base SidecarSet cannot itself be a canary")
    if not sidecarset.spec.update_strategy.is_not_update:
        yield FieldError.invalid(
            Path.root("spec").child("updateStrategy", "type"),
            sidecarset.spec.update_strategy.type or UpdateStrategyType.ROLLING_UPDATE.value,
            "a canary SidecarSet must use NotUpdate (it only injects new pods)",
        )


# --- spec -------------------------------------------------------------------------------------


def _check_spec(
    sidecarset: SidecarSet, policy: ValidationPolicy, revision_lookup: RevisionLookup | None
) -> Iterator[FieldError]:
    spec = sidecarset.spec
    path = Path.root("spec")
    yield from _check_scope(sidecarset, path)
    yield from _check_injection_strategy(
        sidecarset, path.child("injectionStrategy"), revision_lookup
    )
    yield from _check_update_strategy(spec.update_strategy, path.child("updateStrategy"))
    if spec.revision_history_limit is not None and spec.revision_history_limit < 0:
        yield FieldError.invalid(
            path.child("revisionHistoryLimit"),
            spec.revision_history_limit,
            "must be greater than or equal to 0",
        )
    yield from _check_volumes(spec.volumes, path.child("volumes"), policy)
    if not spec.init_containers and not spec.containers:
        yield FieldError.required(
            path.child("containers"), "a SidecarSet needs at least one container or initContainer"
        )
    else:
        yield from _check_all_containers(sidecarset, path, policy)
    for i, secret in enumerate(spec.image_pull_secrets):
        if not secret.name:
            yield FieldError.required(path.child("imagePullSecrets").index(i).child("name"))
    yield from _check_patch_pod_metadata(sidecarset, path.child("patchPodMetadata"), policy)


def _check_scope(sidecarset: SidecarSet, path: Path) -> Iterator[FieldError]:
    spec = sidecarset.spec
    if spec.selector is None:
        yield FieldError.required(path.child("selector"), "no selector defined for SidecarSet")
    else:
        yield from _check_selector(spec.selector, path.child("selector"))
    if spec.namespace_selector is not None:
        yield from _check_selector(spec.namespace_selector, path.child("namespaceSelector"))
        if spec.namespace:
            yield FieldError.forbidden(
                path.child("namespaceSelector"),
                "namespace and namespaceSelector are mutually exclusive",
            )
    if spec.namespace:
        for problem in selectors.dns1123_label_problems(spec.namespace):
            yield FieldError.invalid(path.child("namespace"), spec.namespace, problem)


def _check_selector(selector: LabelSelector, path: Path) -> Iterator[FieldError]:
    yield from selectors.validate_selector(selector, path)
    if selector.is_empty:
        yield FieldError.invalid(
            path, {}, "empty selector is not valid for sidecarset (it would match nothing)"
        )


def _check_injection_strategy(
    sidecarset: SidecarSet, path: Path, revision_lookup: RevisionLookup | None
) -> Iterator[FieldError]:
    revision = sidecarset.spec.injection_strategy.revision
    if revision is None:
        return
    rpath = path.child("revision")
    if revision.revision_name is None and revision.custom_version is None:
        yield FieldError.required(
            rpath, "revisionName and customVersion cannot be empty simultaneously"
        )
    elif revision_lookup is not None and not revision_lookup.found:
        field = "revisionName" if revision.revision_name is not None else "customVersion"
        value = (
            revision.revision_name
            if revision.revision_name is not None
            else revision.custom_version
        )
        detail = "cannot find the ControllerRevision"
        if revision_lookup.detail:
            detail = f"{detail}: {revision_lookup.detail}"
        yield FieldError.not_found(rpath.child(field), value, detail)
    if revision.policy and revision.policy not in tuple(RevisionPolicy):
        yield FieldError.not_supported(
            rpath.child("policy"), revision.policy, [p.value for p in RevisionPolicy]
        )


_PERCENT = re.compile(r"[0-9]+%")


def _check_int_or_percent(value: int | str, path: Path) -> Iterator[FieldError]:
    if isinstance(value, str):
        if _PERCENT.fullmatch(value) is None:
            yield FieldError.invalid(
                path, value, "must be an integer or percentage (e.g '5%', regex '^[0-9]+%$')"
            )
        elif int(value[:-1]) > 100:
            yield FieldError.invalid(path, value, "must be between 0% and 100%")
    elif value < 0:
        yield FieldError.invalid(path, value, "must be greater than or equal to 0")


def _partition_holds_pods(partition: int | str | None) -> bool:
    if partition is None:
        return False
    if isinstance(partition, str):
        return _PERCENT.fullmatch(partition) is None or int(partition[:-1]) != 0
    return partition != 0


def _check_update_strategy(strategy: SidecarSetUpdateStrategy, path: Path) -> Iterator[FieldError]:
    types = [t.value for t in UpdateStrategyType]
    if strategy.type and strategy.type not in types:
        yield FieldError.not_supported(path.child("type"), strategy.type, types)
    if strategy.is_not_update:
        return  # Kruise ignores the rest of the strategy then, and so does the controller
    if strategy.selector is not None:
        yield from _check_selector(strategy.selector, path.child("selector"))
        if _partition_holds_pods(strategy.partition):
            yield FieldError.invalid(
                path.child("partition"),
                strategy.partition,
                "partition and selector cannot be used together",
            )
    if strategy.partition is not None:
        yield from _check_int_or_percent(strategy.partition, path.child("partition"))
    if strategy.max_unavailable is not None:
        yield from _check_int_or_percent(strategy.max_unavailable, path.child("maxUnavailable"))
    priority = strategy.priority_strategy
    if priority is not None:
        ppath = path.child("priorityStrategy")
        if priority.weight_priority and priority.order_priority:
            yield FieldError.forbidden(
                ppath, "only one of weightPriority and orderPriority can be used"
            )
        for i, term in enumerate(priority.weight_priority):
            tpath = ppath.child("weightPriority").index(i)
            if not 0 <= term.weight <= 100:
                yield FieldError.invalid(
                    tpath.child("weight"), term.weight, "must be in the range 0-100"
                )
            yield from _check_selector(term.match_selector, tpath.child("matchSelector"))
        for i, order in enumerate(priority.order_priority):
            if not order.ordered_key:
                yield FieldError.required(ppath.child("orderPriority").index(i).child("orderedKey"))
            else:
                for problem in selectors.qualified_name_problems(order.ordered_key):
                    yield FieldError.invalid(
                        ppath.child("orderPriority").index(i).child("orderedKey"),
                        order.ordered_key,
                        problem,
                    )
    seen: set[tuple[str, str]] = set()
    for i, scatter in enumerate(strategy.scatter_strategy):
        tpath = path.child("scatterStrategy").index(i)
        if not scatter.key:
            yield FieldError.required(tpath.child("key"))
        if not scatter.value:
            yield FieldError.required(tpath.child("value"))
        if (scatter.key, scatter.value) in seen:
            yield FieldError.duplicate(tpath, f"{scatter.key}={scatter.value}")
        seen.add((scatter.key, scatter.value))


# --- volumes ----------------------------------------------------------------------------------

_HOST_PATH_TYPES = (
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
)
_MAX_FILE_MODE = 0o777


def _check_volumes(
    volumes: Sequence[Volume], path: Path, policy: ValidationPolicy
) -> Iterator[FieldError]:
    seen: set[str] = set()
    for i, volume in enumerate(volumes):
        vpath = path.index(i)
        body = volume.body
        if not volume.name:
            yield FieldError.required(vpath.child("name"))
        else:
            for problem in selectors.dns1123_label_problems(volume.name):
                yield FieldError.invalid(vpath.child("name"), volume.name, problem)
            if volume.name in seen:
                yield FieldError.duplicate(vpath.child("name"), volume.name)
            seen.add(volume.name)
        sources = [s for s in defaults.VOLUME_SOURCES if _present(body, s)]
        if len(sources) > 1:
            yield FieldError.forbidden(
                vpath.child(sources[1]), "may not specify more than 1 volume type"
            )
        for source in sources:
            section = body.get(source)
            if not isinstance(section, Mapping):
                yield FieldError.type_invalid(
                    vpath.child(source), msgspec.UNSET, "must be an object"
                )
                continue
            yield from _check_volume_source(source, section, vpath.child(source), policy)


def _check_volume_source(
    source: str, section: JsonMap, path: Path, policy: ValidationPolicy
) -> Iterator[FieldError]:
    if source == "hostPath":
        if not _str(section, "path"):
            yield FieldError.required(path.child("path"))
        elif ".." in _str(section, "path").split("/"):
            yield FieldError.invalid(
                path.child("path"), _str(section, "path"), "must not contain '..'"
            )
        kind = _str(section, "type")
        if kind not in _HOST_PATH_TYPES:
            yield FieldError.not_supported(path.child("type"), kind, _HOST_PATH_TYPES)
        if not policy.allow_host_path:
            yield FieldError.forbidden(
                path,
                "hostPath volumes give sidecars access to the node's files and are not allowed"
                " by the administrator's SidecarSet policy",
            )
    elif source in ("configMap", "secret"):
        name_key = "name" if source == "configMap" else "secretName"
        if not _str(section, name_key):
            yield FieldError.required(path.child(name_key))
        yield from _check_mode(section, "defaultMode", path)
        yield from _check_key_to_paths(section, path)
    elif source == "emptyDir":
        medium = _str(section, "medium")
        if medium not in ("", "Memory", "HugePages") and not medium.startswith("HugePages-"):
            yield FieldError.not_supported(
                path.child("medium"), medium, ["", "Memory", "HugePages"]
            )
        yield from _check_quantity(section.get("sizeLimit"), path.child("sizeLimit"))
    elif source == "persistentVolumeClaim":
        if not _str(section, "claimName"):
            yield FieldError.required(path.child("claimName"))
    elif source == "downwardAPI":
        yield from _check_mode(section, "defaultMode", path)
        yield from _check_downward_items(section, path)
    elif source == "projected":
        yield from _check_mode(section, "defaultMode", path)
        yield from _check_projected(section, path)
    elif source == "nfs":
        for key in ("server", "path"):
            if not _str(section, key):
                yield FieldError.required(path.child(key))
    elif source == "csi":
        if not _str(section, "driver"):
            yield FieldError.required(path.child("driver"))
    elif source == "image" and not _str(section, "reference"):
        yield FieldError.required(path.child("reference"))


def _check_mode(section: JsonMap, key: str, path: Path) -> Iterator[FieldError]:
    mode = _int(section, key)
    if mode is not None and not 0 <= mode <= _MAX_FILE_MODE:
        yield FieldError.invalid(
            path.child(key), mode, "must be a number between 0 and 0777 (octal), both inclusive"
        )


def _check_relative_path(value: str, path: Path) -> Iterator[FieldError]:
    if value.startswith("/"):
        yield FieldError.invalid(path, value, "must be a relative path")
    if ".." in value.split("/"):
        yield FieldError.invalid(path, value, "must not contain '..'")


def _check_key_to_paths(section: JsonMap, path: Path) -> Iterator[FieldError]:
    for i, item in _items(section, "items"):
        ipath = path.child("items").index(i)
        if not _str(item, "key"):
            yield FieldError.required(ipath.child("key"))
        if not _str(item, "path"):
            yield FieldError.required(ipath.child("path"))
        else:
            yield from _check_relative_path(_str(item, "path"), ipath.child("path"))
        yield from _check_mode(item, "mode", ipath)


def _check_downward_items(section: JsonMap, path: Path) -> Iterator[FieldError]:
    for i, item in _items(section, "items"):
        ipath = path.child("items").index(i)
        if not _str(item, "path"):
            yield FieldError.required(ipath.child("path"))
        else:
            yield from _check_relative_path(_str(item, "path"), ipath.child("path"))
        refs = [k for k in ("fieldRef", "resourceFieldRef") if _present(item, k)]
        if len(refs) != 1:
            yield FieldError.invalid(
                ipath, msgspec.UNSET, "must specify exactly one of fieldRef and resourceFieldRef"
            )
        yield from _check_mode(item, "mode", ipath)


def _check_projected(section: JsonMap, path: Path) -> Iterator[FieldError]:
    kinds = ("secret", "configMap", "downwardAPI", "serviceAccountToken", "clusterTrustBundle")
    for i, source in _items(section, "sources"):
        spath = path.child("sources").index(i)
        present = [k for k in kinds if _present(source, k)]
        if len(present) != 1:
            yield FieldError.forbidden(spath, "must specify exactly one projection type")
        token = _map(source, "serviceAccountToken")
        if token is not None:
            if not _str(token, "path"):
                yield FieldError.required(spath.child("serviceAccountToken", "path"))
            expiration = _int(token, "expirationSeconds")
            if expiration is not None and expiration < 600:
                yield FieldError.invalid(
                    spath.child("serviceAccountToken", "expirationSeconds"),
                    expiration,
                    "may not specify a duration less than 10 minutes",
                )


def _check_quantity(raw: object, path: Path) -> Iterator[FieldError]:
    if raw is None:
        return
    try:
        quantity = resources_expr.quantity_from_json(raw)
    except resources_expr.QuantityError as exc:
        yield FieldError.invalid(path, raw, str(exc))
        return
    if quantity.value < 0:
        yield FieldError.invalid(path, raw, "must be greater than or equal to 0")


# --- containers -------------------------------------------------------------------------------


def _pod_names(container: SidecarContainer) -> tuple[str, ...]:
    """The container names a pod receives for this sidecar (HotUpgrade injects two twins)."""
    if container.is_hot_upgrade:
        return wire.hot_upgrade_names(container.name)
    return (container.name,)


def _check_all_containers(
    sidecarset: SidecarSet, path: Path, policy: ValidationPolicy
) -> Iterator[FieldError]:
    spec = sidecarset.spec
    volume_names = {v.name: v for v in spec.volumes}
    seen: set[str] = set()
    for key, items in (("initContainers", spec.init_containers), ("containers", spec.containers)):
        for i, container in enumerate(items):
            cpath = path.child(key).index(i)
            init = key == "initContainers"
            if container.name:
                for name in _pod_names(container):
                    if name in seen:
                        yield FieldError.duplicate(cpath.child("name"), name)
                    seen.add(name)
            yield from _check_container(container, cpath, init=init, volumes=volume_names)
            yield from _check_sidecar_fields(container, cpath, init=init)
            yield from _check_security(container, cpath, policy)


def _check_container(
    container: SidecarContainer, path: Path, *, init: bool, volumes: Mapping[str, Volume]
) -> Iterator[FieldError]:
    body = container.body
    for relative, expected in hashing.container_problems(body):
        yield FieldError.type_invalid(
            path.child(relative) if relative else path, _shown(body, relative), expected
        )
    if not container.name:
        yield FieldError.required(path.child("name"))
    else:
        for problem in selectors.dns1123_label_problems(container.name):
            yield FieldError.invalid(path.child("name"), container.name, problem)
    if not container.image:
        yield FieldError.required(path.child("image"))
    elif container.image.strip() != container.image:
        yield FieldError.invalid(
            path.child("image"), container.image, "must not have leading or trailing whitespace"
        )
    yield from _check_enum(body, "imagePullPolicy", path, ("Always", "IfNotPresent", "Never"))
    yield from _check_enum(
        body, "terminationMessagePolicy", path, ("File", "FallbackToLogsOnError")
    )
    restart = container.restart_policy
    if restart is not None:
        if not init:
            yield FieldError.forbidden(
                path.child("restartPolicy"), "may not be set for non-init containers"
            )
        elif restart != "Always":
            yield FieldError.not_supported(path.child("restartPolicy"), restart, ["Always"])
    yield from _check_ports(body, path)
    yield from _check_env(body, path)
    yield from _check_mounts(container, path, volumes)
    yield from _check_resources(body, path.child("resources"))
    yield from _check_resize_policy(body, path)
    plain_init = init and not container.is_native_sidecar
    for probe_key in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = _map(body, probe_key)
        if probe is None:
            continue
        if plain_init:
            yield FieldError.forbidden(
                path.child(probe_key),
                "may not be set for init containers without restartPolicy=Always",
            )
        else:
            yield from _check_probe(probe, probe_key, path.child(probe_key))
    lifecycle = _map(body, "lifecycle")
    if lifecycle is not None:
        if plain_init:
            yield FieldError.forbidden(
                path.child("lifecycle"),
                "may not be set for init containers without restartPolicy=Always",
            )
        for hook in ("postStart", "preStop"):
            handler = _map(lifecycle, hook)
            if handler is not None:
                yield from _check_lifecycle_handler(handler, path.child("lifecycle", hook))
    yield from _check_security_context(body, path)


def _shown(body: JsonMap, relative: str) -> object:
    """The scalar at a relative path, for an error message (collections are not echoed)."""
    node: object = body
    for match in re.finditer(r"([^.\[\]]+)|\[(\d+)\]", relative):
        name, index = match.group(1), match.group(2)
        if name is not None and isinstance(node, Mapping):
            node = node.get(name)
        elif index is not None and isinstance(node, list) and int(index) < len(node):
            node = node[int(index)]
        else:
            return msgspec.UNSET
    if node is None or isinstance(node, str | int | float | bool):
        return node
    return msgspec.UNSET


def _check_enum(
    body: JsonMap, key: str, path: Path, supported: Sequence[str]
) -> Iterator[FieldError]:
    value = _str(body, key)
    if value and value not in supported:
        yield FieldError.not_supported(path.child(key), value, supported)


_IANA_SVC_NAME = re.compile(r"[-a-z0-9]+")


def _port_name_problems(name: str) -> list[str]:
    problems = []
    if len(name) > 15:
        problems.append("must be no more than 15 characters")
    if _IANA_SVC_NAME.fullmatch(name) is None:
        problems.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in name:
        problems.append("must not contain consecutive hyphens")
    if not re.search("[a-z]", name):
        problems.append("must contain at least one letter (a-z)")
    if name.startswith("-") or name.endswith("-"):
        problems.append("must not begin or end with a hyphen")
    return problems


def _check_port_number(value: int | None, path: Path, *, allow_zero: bool) -> Iterator[FieldError]:
    if value is None:
        return
    low = 0 if allow_zero else 1
    if not low <= value <= 65535:
        yield FieldError.invalid(path, value, f"must be between {low} and 65535, inclusive")


def _check_ports(body: JsonMap, path: Path) -> Iterator[FieldError]:
    names: set[str] = set()
    for i, port in _items(body, "ports"):
        ppath = path.child("ports").index(i)
        name = _str(port, "name")
        if name:
            for problem in _port_name_problems(name):
                yield FieldError.invalid(ppath.child("name"), name, problem)
            if name in names:
                yield FieldError.duplicate(ppath.child("name"), name)
            names.add(name)
        if not _present(port, "containerPort"):
            yield FieldError.required(ppath.child("containerPort"))
        yield from _check_port_number(
            _int(port, "containerPort"), ppath.child("containerPort"), allow_zero=False
        )
        yield from _check_port_number(
            _int(port, "hostPort"), ppath.child("hostPort"), allow_zero=True
        )
        yield from _check_enum(port, "protocol", ppath, ("TCP", "UDP", "SCTP"))


_ENV_VAR_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_CONFIG_MAP_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_ENV_FIELD_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
)
_SUBSCRIPTED = re.compile(r"(metadata\.(?:labels|annotations))\['(.*)'\]")
_RESOURCE_FIELD_REFS = (
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
)


def _env_name_problems(name: str) -> list[str]:
    if _ENV_VAR_NAME.fullmatch(name) is None:
        return [
            "a valid environment variable name must consist of alphabetic characters, digits,"
            " '_', '-', or '.', and must not start with a digit"
        ]
    return []


def _check_env(body: JsonMap, path: Path) -> Iterator[FieldError]:
    for i, env in _items(body, "env"):
        epath = path.child("env").index(i)
        name = _str(env, "name")
        if not name:
            yield FieldError.required(epath.child("name"))
        for problem in _env_name_problems(name) if name else ():
            yield FieldError.invalid(epath.child("name"), name, problem)
        source = _map(env, "valueFrom")
        if source is None:
            continue
        if _str(env, "value"):
            yield FieldError.invalid(
                epath.child("valueFrom"),
                msgspec.UNSET,
                "may not be specified when `value` is not empty",
            )
        kinds = [
            k
            for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")
            if _present(source, k)
        ]
        if len(kinds) != 1:
            yield FieldError.invalid(
                epath.child("valueFrom"),
                msgspec.UNSET,
                "must specify exactly one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef`"
                " or `secretKeyRef`",
            )
        field_ref = _map(source, "fieldRef")
        if field_ref is not None:
            yield from _check_field_ref(field_ref, epath.child("valueFrom", "fieldRef"))
        resource_ref = _map(source, "resourceFieldRef")
        if resource_ref is not None:
            resource = _str(resource_ref, "resource")
            rpath = epath.child("valueFrom", "resourceFieldRef", "resource")
            if not resource:
                yield FieldError.required(rpath)
            elif resource not in _RESOURCE_FIELD_REFS and not re.fullmatch(
                r"(limits|requests)\.hugepages-.+", resource
            ):
                yield FieldError.not_supported(rpath, resource, _RESOURCE_FIELD_REFS)
        for ref_key in ("configMapKeyRef", "secretKeyRef"):
            ref = _map(source, ref_key)
            if ref is None:
                continue
            rpath = epath.child("valueFrom", ref_key)
            if not _str(ref, "name"):
                yield FieldError.required(rpath.child("name"))
            key = _str(ref, "key")
            if not key:
                yield FieldError.required(rpath.child("key"))
            elif _CONFIG_MAP_KEY.fullmatch(key) is None:
                yield FieldError.invalid(
                    rpath.child("key"),
                    key,
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                )
    for i, source in _items(body, "envFrom"):
        spath = path.child("envFrom").index(i)
        refs = [k for k in ("configMapRef", "secretRef") if _present(source, k)]
        if len(refs) != 1:
            yield FieldError.invalid(
                spath, msgspec.UNSET, "must specify exactly one of: `configMapRef` or `secretRef`"
            )
        for ref_key in refs:
            ref = _map(source, ref_key)
            if ref is not None and not _str(ref, "name"):
                yield FieldError.required(spath.child(ref_key, "name"))
        prefix = _str(source, "prefix")
        for problem in _env_name_problems(prefix) if prefix else ():
            yield FieldError.invalid(spath.child("prefix"), prefix, problem)


def _check_field_ref(field_ref: JsonMap, path: Path) -> Iterator[FieldError]:
    version = _str(field_ref, "apiVersion")
    if version and version != "v1":
        yield FieldError.invalid(path.child("apiVersion"), version, 'only "v1" is supported')
    field_path = _str(field_ref, "fieldPath")
    if not field_path:
        yield FieldError.required(path.child("fieldPath"))
        return
    subscripted = _SUBSCRIPTED.fullmatch(field_path)
    if subscripted is not None:
        for problem in selectors.qualified_name_problems(subscripted.group(2).lower()):
            yield FieldError.invalid(path.child("fieldPath"), field_path, problem)
    elif field_path not in _ENV_FIELD_PATHS:
        yield FieldError.not_supported(
            path.child("fieldPath"),
            field_path,
            [*_ENV_FIELD_PATHS, "metadata.labels['<KEY>']", "metadata.annotations['<KEY>']"],
        )


def _check_mounts(
    container: SidecarContainer, path: Path, volumes: Mapping[str, Volume]
) -> Iterator[FieldError]:
    body = container.body
    mount_paths: set[str] = set()
    privileged = _security_flag(body, "privileged")
    for i, mount in _items(body, "volumeMounts"):
        mpath = path.child("volumeMounts").index(i)
        name = _str(mount, "name")
        if not name:
            yield FieldError.required(mpath.child("name"))
        elif name not in volumes:
            yield FieldError.not_found(
                mpath.child("name"),
                name,
                "a sidecar can only mount volumes declared in spec.volumes (declare a placeholder"
                " with the pod volume's name to mount a volume the pod owns)",
            )
        mount_path = _str(mount, "mountPath")
        if not mount_path:
            yield FieldError.required(mpath.child("mountPath"))
        elif mount_path in mount_paths:
            yield FieldError.invalid(mpath.child("mountPath"), mount_path, "must be unique")
        mount_paths.add(mount_path)
        sub_path, sub_path_expr = _str(mount, "subPath"), _str(mount, "subPathExpr")
        if sub_path and sub_path_expr:
            yield FieldError.invalid(
                mpath.child("subPathExpr"),
                sub_path_expr,
                "subPathExpr and subPath are mutually exclusive",
            )
        if sub_path:
            yield from _check_relative_path(sub_path, mpath.child("subPath"))
        propagation = _str(mount, "mountPropagation")
        if propagation:
            if propagation not in ("None", "HostToContainer", "Bidirectional"):
                yield FieldError.not_supported(
                    mpath.child("mountPropagation"),
                    propagation,
                    ["Bidirectional", "HostToContainer", "None"],
                )
            elif propagation == "Bidirectional" and not privileged:
                yield FieldError.forbidden(
                    mpath.child("mountPropagation"),
                    "Bidirectional mount propagation is available only to privileged containers",
                )
        recursive = _str(mount, "recursiveReadOnly")
        if recursive:
            if recursive not in ("Disabled", "IfPossible", "Enabled"):
                yield FieldError.not_supported(
                    mpath.child("recursiveReadOnly"),
                    recursive,
                    ["Disabled", "IfPossible", "Enabled"],
                )
            elif recursive != "Disabled" and mount.get("readOnly") is not True:
                yield FieldError.forbidden(
                    mpath.child("recursiveReadOnly"), "may only be specified when readOnly is true"
                )
            elif recursive == "Enabled" and propagation not in ("", "None"):
                yield FieldError.forbidden(
                    mpath.child("recursiveReadOnly"),
                    "may only be specified when mountPropagation is None or not specified",
                )
    device_paths: set[str] = set()
    for i, device in _items(body, "volumeDevices"):
        dpath = path.child("volumeDevices").index(i)
        name = _str(device, "name")
        if not name:
            yield FieldError.required(dpath.child("name"))
        elif name not in volumes:
            yield FieldError.not_found(dpath.child("name"), name, "not declared in spec.volumes")
        elif not any(
            _present(volumes[name].body, k) for k in ("persistentVolumeClaim", "ephemeral")
        ):
            yield FieldError.invalid(
                dpath.child("name"),
                name,
                "can only use volume source type of PersistentVolumeClaim or Ephemeral"
                " for block mode",
            )
        device_path = _str(device, "devicePath")
        if not device_path:
            yield FieldError.required(dpath.child("devicePath"))
        elif device_path in device_paths:
            yield FieldError.invalid(dpath.child("devicePath"), device_path, "must be unique")
        elif device_path in mount_paths:
            yield FieldError.invalid(
                dpath.child("devicePath"),
                device_path,
                "can not be the same as a volumeMounts mountPath",
            )
        device_paths.add(device_path)


_STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def _resource_name_problems(name: str) -> list[str]:
    if name in _STANDARD_RESOURCES or name.startswith("hugepages-"):
        return []
    problems = selectors.qualified_name_problems(name)
    if problems:
        return problems
    if "/" not in name or name.startswith(("kubernetes.io/", "requests.")):
        return ["must be a standard resource for containers"]
    return []


def _check_resources(body: JsonMap, path: Path) -> Iterator[FieldError]:
    resources = _map(body, "resources")
    if resources is None:
        return
    parsed: dict[str, dict[str, resources_expr.Quantity]] = {"limits": {}, "requests": {}}
    for kind in ("limits", "requests"):
        values = _map(resources, kind)
        for name, raw in (values or {}).items():
            rpath = path.child(kind).key(name)
            for problem in _resource_name_problems(name):
                yield FieldError.invalid(rpath, name, problem)
            try:
                quantity = resources_expr.quantity_from_json(raw)
            except resources_expr.QuantityError:
                continue  # reported as a type problem
            if quantity.value < 0:
                yield FieldError.invalid(
                    rpath, quantity.to_json(), "must be greater than or equal to 0"
                )
            parsed[kind][name] = quantity
    for name, request in parsed["requests"].items():
        limit = parsed["limits"].get(name)
        rpath = path.child("requests").key(name)
        if limit is None:
            continue
        if request.value > limit.value:
            yield FieldError.invalid(
                rpath,
                request.to_json(),
                f"must be less than or equal to {name} limit of {limit.to_json()}",
            )
        elif name not in _STANDARD_RESOURCES and request.value != limit.value:
            yield FieldError.invalid(
                rpath, request.to_json(), f"must be equal to {name} limit of {limit.to_json()}"
            )
    claims: set[str] = set()
    for i, claim in _items(resources, "claims"):
        name = _str(claim, "name")
        cpath = path.child("claims").index(i).child("name")
        if not name:
            yield FieldError.required(cpath)
        elif name in claims:
            yield FieldError.duplicate(cpath, name)
        claims.add(name)


def _check_resize_policy(body: JsonMap, path: Path) -> Iterator[FieldError]:
    seen: set[str] = set()
    for i, item in _items(body, "resizePolicy"):
        ipath = path.child("resizePolicy").index(i)
        name = _str(item, "resourceName")
        if name not in ("cpu", "memory"):
            yield FieldError.not_supported(ipath.child("resourceName"), name, ["cpu", "memory"])
        elif name in seen:
            yield FieldError.duplicate(ipath.child("resourceName"), name)
        seen.add(name)
        policy = _str(item, "restartPolicy")
        if policy not in ("NotRequired", "RestartContainer"):
            yield FieldError.not_supported(
                ipath.child("restartPolicy"), policy, ["NotRequired", "RestartContainer"]
            )


_PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
_LIFECYCLE_HANDLERS = ("exec", "httpGet", "tcpSocket", "sleep")
_TERMINATION_GRACE_SECONDS = 30  # the fake pod Kruise validates sidecars in uses the default


def _check_handler_count(
    handler: JsonMap, kinds: Sequence[str], path: Path
) -> Iterator[FieldError]:
    present = [k for k in kinds if _present(handler, k)]
    if not present:
        yield FieldError.required(path, "must specify a handler type")
    elif len(present) > 1:
        yield FieldError.forbidden(
            path.child(present[1]), "may not specify more than 1 handler type"
        )


def _check_probe(probe: JsonMap, kind: str, path: Path) -> Iterator[FieldError]:
    yield from _check_handler_count(probe, _PROBE_HANDLERS, path)
    yield from _check_actions(probe, path)
    for key in (
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ):
        value = _int(probe, key)
        if value is not None and value < 0:
            yield FieldError.invalid(path.child(key), value, "must be greater than or equal to 0")
    success = _int(probe, "successThreshold")
    if kind != "readinessProbe" and success not in (None, 0, 1):
        yield FieldError.invalid(path.child("successThreshold"), success, "must be 1")
    grace = _int(probe, "terminationGracePeriodSeconds")
    if _present(probe, "terminationGracePeriodSeconds") and kind == "readinessProbe":
        yield FieldError.forbidden(
            path.child("terminationGracePeriodSeconds"), "must not be set for readinessProbes"
        )
    elif grace is not None and grace <= 0:
        yield FieldError.invalid(
            path.child("terminationGracePeriodSeconds"), grace, "must be greater than 0"
        )


def _check_lifecycle_handler(handler: JsonMap, path: Path) -> Iterator[FieldError]:
    yield from _check_handler_count(handler, _LIFECYCLE_HANDLERS, path)
    yield from _check_actions(handler, path)
    sleep = _map(handler, "sleep")
    if sleep is not None:
        seconds = _int(sleep, "seconds")
        if seconds is not None and not 0 <= seconds <= _TERMINATION_GRACE_SECONDS:
            yield FieldError.invalid(
                path.child("sleep", "seconds"),
                seconds,
                "must be non-negative and less than terminationGracePeriodSeconds "
                f"({_TERMINATION_GRACE_SECONDS})",
            )


def _check_target_port(port: JsonMap, path: Path) -> Iterator[FieldError]:
    value = port.get("port")
    if value is None:
        yield FieldError.required(path.child("port"))
    elif isinstance(value, str):
        for problem in _port_name_problems(value):
            yield FieldError.invalid(path.child("port"), value, problem)
    else:
        yield from _check_port_number(_int(port, "port"), path.child("port"), allow_zero=False)


_HTTP_HEADER_NAME = re.compile(r"[-A-Za-z0-9!#$%&'*+.^_`|~]+")


def _check_actions(handler: JsonMap, path: Path) -> Iterator[FieldError]:
    exec_action = _map(handler, "exec")
    if exec_action is not None and not _strings(exec_action, "command"):
        yield FieldError.required(path.child("exec", "command"))
    http_get = _map(handler, "httpGet")
    if http_get is not None:
        hpath = path.child("httpGet")
        yield from _check_target_port(http_get, hpath)
        yield from _check_enum(http_get, "scheme", hpath, ("HTTP", "HTTPS"))
        for i, header in _items(http_get, "httpHeaders"):
            name = _str(header, "name")
            if _HTTP_HEADER_NAME.fullmatch(name) is None:
                yield FieldError.invalid(
                    hpath.child("httpHeaders").index(i).child("name"),
                    name,
                    "must be a valid HTTP header name",
                )
    tcp = _map(handler, "tcpSocket")
    if tcp is not None:
        yield from _check_target_port(tcp, path.child("tcpSocket"))
    grpc = _map(handler, "grpc")
    if grpc is not None:
        yield from _check_port_number(
            _int(grpc, "port"), path.child("grpc", "port"), allow_zero=False
        )


def _security_context(body: JsonMap) -> JsonMap:
    return _map(body, "securityContext") or {}


def _security_flag(body: JsonMap, key: str) -> bool | None:
    value = _security_context(body).get(key)
    return value if isinstance(value, bool) else None


def _capabilities_added(body: JsonMap) -> list[tuple[int, str]]:
    capabilities = _map(_security_context(body), "capabilities") or {}
    added = capabilities.get("add")
    if not isinstance(added, list):
        return []
    return [(i, c) for i, c in enumerate(added) if isinstance(c, str)]


def _capability(name: str) -> str:
    upper = name.upper()
    return upper[4:] if upper.startswith("CAP_") else upper


def _check_security_context(body: JsonMap, path: Path) -> Iterator[FieldError]:
    context = _security_context(body)
    spath = path.child("securityContext")
    escalation = _security_flag(body, "allowPrivilegeEscalation")
    if escalation is False:
        if _security_flag(body, "privileged") is True:
            yield FieldError.invalid(
                spath,
                msgspec.UNSET,
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            )
        if any(_capability(c) == "SYS_ADMIN" for _, c in _capabilities_added(body)):
            yield FieldError.invalid(
                spath,
                msgspec.UNSET,
                "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add`"
                " CAP_SYS_ADMIN",
            )
    for key in ("runAsUser", "runAsGroup"):
        value = _int(context, key)
        if value is not None and not 0 <= value <= 2147483647:
            yield FieldError.invalid(
                spath.child(key), value, "must be between 0 and 2147483647, inclusive"
            )
    yield from _check_enum(context, "procMount", spath, ("Default", "Unmasked"))
    for key in ("seccompProfile", "appArmorProfile"):
        profile = _map(context, key)
        if profile is None:
            continue
        ppath = spath.child(key)
        kind = _str(profile, "type")
        if kind not in ("RuntimeDefault", "Unconfined", "Localhost"):
            yield FieldError.not_supported(
                ppath.child("type"), kind, ["Localhost", "RuntimeDefault", "Unconfined"]
            )
        has_profile = bool(_str(profile, "localhostProfile"))
        if kind == "Localhost" and not has_profile:
            yield FieldError.required(
                ppath.child("localhostProfile"), "must be set when type is Localhost"
            )
        elif kind != "Localhost" and has_profile:
            yield FieldError.invalid(
                ppath.child("localhostProfile"),
                _str(profile, "localhostProfile"),
                "can only be set when type is Localhost",
            )


_POLICY_HINT = "is not allowed by the administrator's SidecarSet policy"
_BASELINE_SELINUX_TYPES = (
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
)


def _check_security(
    container: SidecarContainer, path: Path, policy: ValidationPolicy
) -> Iterator[FieldError]:
    """The administrator's policy: no host-level power unless `policy` grants it."""
    body = container.body
    context = _security_context(body)
    spath = path.child("securityContext")
    if not policy.allow_privileged:
        if context.get("privileged") is True:
            yield FieldError.forbidden(
                spath.child("privileged"), f"a privileged sidecar {_POLICY_HINT}"
            )
        windows = _map(context, "windowsOptions") or {}
        if windows.get("hostProcess") is True:
            yield FieldError.forbidden(
                spath.child("windowsOptions", "hostProcess"),
                f"a host-process sidecar {_POLICY_HINT}",
            )
    if not policy.allow_privilege_escalation and context.get("allowPrivilegeEscalation") is True:
        yield FieldError.forbidden(
            spath.child("allowPrivilegeEscalation"), f"privilege escalation {_POLICY_HINT}"
        )
    allowed = BASELINE_CAPABILITIES | {_capability(c) for c in policy.allowed_capabilities}
    if "ALL" not in allowed:
        for i, capability in _capabilities_added(body):
            if _capability(capability) not in allowed:
                yield FieldError.forbidden(
                    spath.child("capabilities", "add").index(i),
                    f'adding capability "{capability}" {_POLICY_HINT}',
                )
    if not policy.allow_host_ports:
        for i, port in _items(body, "ports"):
            host_port = _int(port, "hostPort")
            if host_port:
                yield FieldError.forbidden(
                    path.child("ports").index(i).child("hostPort"),
                    f"a host port binds the node's network; it {_POLICY_HINT}",
                )
    if not policy.allow_unconfined:
        for key in ("seccompProfile", "appArmorProfile"):
            profile = _map(context, key) or {}
            if profile.get("type") == "Unconfined":
                yield FieldError.forbidden(
                    spath.child(key, "type"), f"an Unconfined profile {_POLICY_HINT}"
                )
        if context.get("procMount") == "Unmasked":
            yield FieldError.forbidden(
                spath.child("procMount"), f"an Unmasked /proc {_POLICY_HINT}"
            )
        selinux = _map(context, "seLinuxOptions") or {}
        if _str(selinux, "type") not in _BASELINE_SELINUX_TYPES:
            yield FieldError.forbidden(
                spath.child("seLinuxOptions", "type"), f"a custom SELinux type {_POLICY_HINT}"
            )


# --- Kruise's SidecarContainer fields ---------------------------------------------------------

_TRANSFER_FIELD_PATH = re.compile(r"metadata\.(labels|annotations)\['(.*)'\]")
_HOT_UPGRADE_SUFFIX_LENGTH = 2  # "-1" / "-2"


def _check_sidecar_fields(
    container: SidecarContainer, path: Path, *, init: bool
) -> Iterator[FieldError]:
    policies = [p.value for p in PodInjectPolicy]
    if container.pod_inject_policy and container.pod_inject_policy not in policies:
        yield FieldError.not_supported(
            path.child("podInjectPolicy"), container.pod_inject_policy, policies
        )
    share_types = [t.value for t in ShareVolumePolicyType]
    if container.share_volume_policy.type and container.share_volume_policy.type not in share_types:
        yield FieldError.not_supported(
            path.child("shareVolumePolicy", "type"), container.share_volume_policy.type, share_types
        )
    device_policy = container.share_volume_device_policy
    if device_policy is not None and device_policy.type and device_policy.type not in share_types:
        yield FieldError.not_supported(
            path.child("shareVolumeDevicePolicy", "type"), device_policy.type, share_types
        )
    yield from _check_upgrade_strategy(container, path, init=init)
    yield from _check_transfer_env(container, path)
    if container.resources_policy is not None:
        rpath = path.child("resourcesPolicy")
        if init and not container.is_native_sidecar:
            yield FieldError.invalid(
                rpath,
                msgspec.UNSET,
                "resourcesPolicy is only supported for initContainers with restartPolicy Always",
            )
        yield from _check_resources_policy(container, rpath)


def _check_upgrade_strategy(
    container: SidecarContainer, path: Path, *, init: bool
) -> Iterator[FieldError]:
    upath = path.child("upgradeStrategy")
    upgrade_type = container.upgrade_strategy.upgrade_type
    types = [t.value for t in UpgradeType]
    if upgrade_type and upgrade_type not in types:
        yield FieldError.not_supported(upath.child("upgradeType"), upgrade_type, types)
    if not container.is_hot_upgrade:
        return
    if init and not container.is_native_sidecar:
        yield FieldError.invalid(
            upath.child("upgradeType"),
            upgrade_type,
            "HotUpgrade needs a long-running container: an initContainer must set"
            " restartPolicy Always",
        )
    empty_image = container.upgrade_strategy.hot_upgrade_empty_image
    if not empty_image:
        yield FieldError.required(
            upath.child("hotUpgradeEmptyImage"),
            "HotUpgrade runs an idle twin with this image; without it pod creation would fail",
        )
    elif empty_image == container.image:
        yield FieldError.invalid(
            upath.child("hotUpgradeEmptyImage"),
            empty_image,
            "must differ from image: the idle twin would run the real sidecar",
        )
    limit = 63 - _HOT_UPGRADE_SUFFIX_LENGTH
    if len(container.name) > limit:
        yield FieldError.invalid(
            path.child("name"),
            container.name,
            f"must be no more than {limit} characters for HotUpgrade"
            f" (pods get {container.name}-1 and -2)",
        )


def _check_transfer_env(container: SidecarContainer, path: Path) -> Iterator[FieldError]:
    for i, transfer in enumerate(container.transfer_env):
        tpath = path.child("transferEnv").index(i)
        source_from = transfer.source_container_name_from
        field_ref = source_from.field_ref if source_from is not None else None
        if not transfer.source_container_name and field_ref is None:
            yield FieldError.required(
                tpath, "one of sourceContainerName or sourceContainerNameFrom.fieldRef is required"
            )
        elif transfer.source_container_name and field_ref is not None:
            yield FieldError.forbidden(
                tpath.child("sourceContainerNameFrom"),
                "may not be set together with sourceContainerName",
            )
        if not transfer.env_name and not transfer.env_names:
            yield FieldError.required(tpath, "one of envName or envNames is required")
        for j, name in enumerate(transfer.env_names):
            for problem in _env_name_problems(name):
                yield FieldError.invalid(tpath.child("envNames").index(j), name, problem)
        if transfer.env_name:
            for problem in _env_name_problems(transfer.env_name):
                yield FieldError.invalid(tpath.child("envName"), transfer.env_name, problem)
        if field_ref is None:
            continue
        fpath = tpath.child("sourceContainerNameFrom", "fieldRef")
        if field_ref.api_version and field_ref.api_version != "v1":
            yield FieldError.invalid(
                fpath.child("apiVersion"), field_ref.api_version, 'only "v1" is supported'
            )
        if not field_ref.field_path:
            yield FieldError.required(fpath.child("fieldPath"))
            continue
        subscripted = _TRANSFER_FIELD_PATH.fullmatch(field_ref.field_path)
        if subscripted is None:
            yield FieldError.not_supported(
                fpath.child("fieldPath"),
                field_ref.field_path,
                ["metadata.labels['<KEY>']", "metadata.annotations['<KEY>']"],
            )
            continue
        key = subscripted.group(2)
        checked = key.lower() if subscripted.group(1) == "annotations" else key
        for problem in selectors.qualified_name_problems(checked):
            yield FieldError.invalid(fpath.child("fieldPath"), field_ref.field_path, problem)


def _check_resources_policy(container: SidecarContainer, path: Path) -> Iterator[FieldError]:
    policy = container.resources_policy
    assert policy is not None
    resources = _map(container.body, "resources") or {}
    if _map(resources, "limits") or _map(resources, "requests"):
        yield FieldError.invalid(
            path, msgspec.UNSET, "resourcesPolicy and resources cannot be configured together"
        )
        return
    modes = [m.value for m in TargetContainersMode]
    if policy.target_containers_mode not in modes:
        if not policy.target_containers_mode:
            yield FieldError.required(path.child("targetContainersMode"), "must be sum or max")
        else:
            yield FieldError.not_supported(
                path.child("targetContainersMode"), policy.target_containers_mode, modes
            )
    regex = policy.target_containers_name_regex
    if not regex:
        yield FieldError.required(path.child("targetContainersNameRegex"), "invalid empty regex")
    else:
        try:
            re.compile(regex)
        except re.error as exc:
            yield FieldError.invalid(
                path.child("targetContainersNameRegex"), regex, f"invalid regex pattern: {exc}"
            )
    expr = policy.resources_expr
    epath = path.child("resourcesExpr")
    if expr.limits is None and expr.requests is None:
        yield FieldError.invalid(
            epath, msgspec.UNSET, "at least one of limits or requests must be configured"
        )
    for kind, values in (("limits", expr.limits), ("requests", expr.requests)):
        if values is None:
            continue
        for variable, text in (("cpu", values.cpu), ("memory", values.memory)):
            if not text:
                continue
            problem = _expression_problem(text, variable)
            if problem is not None:
                yield FieldError.invalid(epath.child(kind, variable), text, problem)


def _expression_problem(text: str, variable: str) -> str | None:
    """Kruise's check: parse and evaluate with the resource's own variable bound to 1."""
    try:
        expression = resources_expr.parse_expression(text)
        expression.evaluate({variable: 1.0})
    except resources_expr.ExpressionError as exc:
        return f"invalid expression: {exc}"
    return None


# --- patchPodMetadata -------------------------------------------------------------------------


def _check_patch_pod_metadata(
    sidecarset: SidecarSet, path: Path, policy: ValidationPolicy
) -> Iterator[FieldError]:
    patches = sidecarset.spec.patch_pod_metadata
    if not patches:
        return
    yield from _check_whitelist(sidecarset, path, policy)
    seen: set[str] = set()
    policies = [p.value for p in PatchPolicy]
    for i, patch in enumerate(patches):
        ppath = path.index(i)
        if not patch.annotations:
            yield FieldError.required(
                ppath.child("annotations"), "no annotations defined for patchPodMetadata"
            )
        yield from _check_annotations(patch.annotations, ppath.child("annotations"))
        if patch.patch_policy and patch.patch_policy not in policies:
            yield FieldError.not_supported(ppath.child("patchPolicy"), patch.patch_policy, policies)
        for key, value in patch.annotations.items():
            apath = ppath.child("annotations").key(key)
            if key in seen:
                yield FieldError.duplicate(
                    apath, key, "the same annotation is patched by two entries"
                )
            seen.add(key)
            if patch.patch_policy == PatchPolicy.MERGE_PATCH_JSON and not _is_json_object(value):
                yield FieldError.invalid(
                    apath,
                    value,
                    "MergePatchJson values must be JSON objects (pods would be rejected)",
                )


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _check_whitelist(
    sidecarset: SidecarSet, path: Path, policy: ValidationPolicy
) -> Iterator[FieldError]:
    source = policy.whitelist_source
    if policy.patch_metadata_whitelist is None:
        if not policy.patch_metadata_allowed_without_whitelist:
            yield FieldError.forbidden(
                path, f"patching pod metadata needs a whitelist ({source}), which is not set"
            )
        return
    patterns = list(
        _whitelist_patterns(policy.patch_metadata_whitelist, sidecarset.metadata.labels)
    )
    if not patterns:
        if not policy.patch_metadata_allowed_without_whitelist:
            yield FieldError.forbidden(
                path, f"no whitelist rule ({source}) applies to this SidecarSet's labels"
            )
        return
    for i, patch in enumerate(sidecarset.spec.patch_pod_metadata):
        for key in patch.annotations:
            if not any(_allows(p, key, full=policy.whitelist_full_match) for p in patterns):
                yield FieldError.forbidden(
                    path.index(i).child("annotations").key(key),
                    f"annotation key is not allowed by the whitelist ({source}"
                    + (
                        "; patterns must match the whole key)"
                        if policy.whitelist_full_match
                        else ")"
                    ),
                )


def _allows(pattern: re.Pattern[str], key: str, *, full: bool) -> bool:
    return (pattern.fullmatch(key) if full else pattern.search(key)) is not None


def _whitelist_patterns(
    rules: Iterable[WhitelistRule], labels: Mapping[str, str]
) -> Iterator[re.Pattern[str]]:
    for rule in rules:
        if rule.selector is not None and not selectors.matches_or_false(rule.selector, labels):
            continue
        for expr in rule.allowed_annotation_key_exprs:
            try:
                yield re.compile(expr)
            except re.error:
                continue  # an administrator's broken pattern allows nothing


# --- UPDATE: immutability and warnings --------------------------------------------------------


def _effective_upgrade_type(container: SidecarContainer) -> str:
    return container.upgrade_strategy.upgrade_type or UpgradeType.COLD_UPGRADE.value


def _check_immutable(sidecarset: SidecarSet, previous: SidecarSet) -> Iterator[FieldError]:
    path = Path.root("spec")
    before = {c.name: c for c in previous.spec.containers}
    for i, container in enumerate(sidecarset.spec.containers):
        cpath = path.child("containers").index(i)
        old = before.get(container.name)
        if old is None:
            yield FieldError.forbidden(
                cpath.child("name"),
                f"container {container.name!r} is not in the current SidecarSet: containers cannot"
                " be added or renamed after creation, running pods could never receive them"
                " (create another SidecarSet instead)",
            )
        elif _effective_upgrade_type(old) != _effective_upgrade_type(container):
            yield FieldError.invalid(
                cpath.child("upgradeStrategy", "upgradeType"),
                _effective_upgrade_type(container),
                f"is immutable (was {_effective_upgrade_type(old)})",
            )
    before_init = {c.name: c for c in previous.spec.init_containers if c.is_native_sidecar}
    for i, container in enumerate(sidecarset.spec.init_containers):
        old = before_init.get(container.name)
        if old is not None and _effective_upgrade_type(old) != _effective_upgrade_type(container):
            yield FieldError.invalid(
                path.child("initContainers").index(i).child("upgradeStrategy", "upgradeType"),
                _effective_upgrade_type(container),
                f"is immutable (was {_effective_upgrade_type(old)})",
            )


_STRANDED = (
    "changes to fields other than image cannot be applied to running pods in place;"
    " existing pods keep the old definition until they are recreated"
)


def _hash_spec(sidecarset: SidecarSet) -> dict[str, object]:
    spec: dict[str, object] = {
        "containers": [
            defaults.default_container(c.body, inject_policy=PodInjectPolicy.BEFORE_APP_CONTAINER)
            for c in sidecarset.spec.containers
        ]
    }
    if sidecarset.spec.init_containers:
        spec["initContainers"] = [
            defaults.default_container(c.body, inject_policy=PodInjectPolicy.AFTER_APP_CONTAINER)
            for c in sidecarset.spec.init_containers
        ]
    return spec


def _edit_warnings(sidecarset: SidecarSet, previous: SidecarSet) -> Iterator[str]:
    """Warn when an edit strands running pods (behaviour.md §11.7): hash-without-image changes."""
    new_spec, old_spec = _hash_spec(sidecarset), _hash_spec(previous)
    if hashing.spec_hash_without_image(new_spec) == hashing.spec_hash_without_image(old_spec):
        return
    groups = ["containers"]
    # Init containers are hashed, all of them, once any is a native sidecar (behaviour.md §2.1).
    if any(c.is_native_sidecar for s in (sidecarset, previous) for c in s.spec.init_containers):
        groups.append("initContainers")
    for key in groups:
        new_items = _encodings(new_spec.get(key))
        old_items = _encodings(old_spec.get(key))
        for name, encoding in new_items.items():
            before = old_items.get(name)
            if before is None:
                if key == "initContainers":
                    yield (
                        f"spec.{key}[{name}]: a new init container changes the SidecarSet hash"
                        " while it has a native sidecar; running pods cannot be updated in place"
                        " until they are recreated"
                    )
            elif before != encoding:
                yield f"spec.{key}[{name}]: {_STRANDED}"
        for name in old_items.keys() - new_items.keys():
            yield (
                f"spec.{key}[{name}]: removing it changes the SidecarSet hash; running pods keep"
                " it and cannot be updated in place until they are recreated"
            )


def _encodings(items: object) -> dict[str, str]:
    if not isinstance(items, list):
        return {}
    return {
        _str(c, "name"): hashing.container_encoding(c, without_image=True)
        for c in items
        if isinstance(c, Mapping)
    }


# --- conflicts with other SidecarSets (behaviour.md §11.9) --------------------------------------


def _namespace_scope(sidecarset: SidecarSet) -> LabelSelector | None:
    """The namespaces a SidecarSet covers as a Namespace label selector; None means all."""
    if sidecarset.spec.namespace:
        return LabelSelector(match_labels={wire.NAMESPACE_NAME_LABEL: sidecarset.spec.namespace})
    return sidecarset.spec.namespace_selector


def _overlapping(first: SidecarSet, second: SidecarSet) -> bool:
    a, b = first.spec.selector, second.spec.selector
    if a is None or b is None or a.is_empty or b.is_empty:
        return False  # an empty pod selector injects nothing (behaviour.md §3.1)
    scope_a, scope_b = _namespace_scope(first), _namespace_scope(second)
    if scope_a is not None and scope_b is not None and not selectors.overlaps(scope_a, scope_b):
        return False
    return selectors.overlaps(a, b)


def _all_pod_names(sidecarset: SidecarSet) -> set[str]:
    return {
        name
        for c in (*sidecarset.spec.init_containers, *sidecarset.spec.containers)
        for name in _pod_names(c)
    }


def _check_conflicts(sidecarset: SidecarSet, peers: Sequence[SidecarSet]) -> Iterator[FieldError]:
    base = wire.is_canary(sidecarset.metadata.annotations)
    path = Path.root("spec")
    for peer in peers:
        if peer.name == sidecarset.name or peer.name == base:
            continue
        if not _overlapping(sidecarset, peer):
            continue
        taken = _all_pod_names(peer)
        for key, items in (
            ("initContainers", sidecarset.spec.init_containers),
            ("containers", sidecarset.spec.containers),
        ):
            for i, container in enumerate(items):
                clash = sorted(set(_pod_names(container)) & taken)
                if clash:
                    yield FieldError.invalid(
                        path.child(key).index(i).child("name"),
                        container.name,
                        f"container {clash[0]} already exists in SidecarSet {peer.name}, which"
                        " selects the same pods",
                    )
        theirs = {v.name: defaults.default_volume(v.body) for v in peer.spec.volumes}
        for i, volume in enumerate(sidecarset.spec.volumes):
            other = theirs.get(volume.name)
            if other is not None and other != defaults.default_volume(volume.body):
                yield FieldError.invalid(
                    path.child("volumes").index(i),
                    volume.name,
                    f"volume {volume.name} is in conflict with SidecarSet {peer.name}: same name,"
                    " different definition",
                )
        yield from _metadata_conflicts(sidecarset, peer, path.child("patchPodMetadata"))


def _metadata_conflicts(
    sidecarset: SidecarSet, peer: SidecarSet, path: Path
) -> Iterator[FieldError]:
    theirs: dict[str, str] = {}
    for patch in peer.spec.patch_pod_metadata:
        if patch.patch_policy in ("", PatchPolicy.RETAIN):
            continue
        for key in patch.annotations:
            theirs[key] = patch.patch_policy
    for i, patch in enumerate(sidecarset.spec.patch_pod_metadata):
        if patch.patch_policy in ("", PatchPolicy.RETAIN):
            continue
        for key in patch.annotations:
            other = theirs.get(key)
            if other is None:
                continue
            if PatchPolicy.OVERWRITE in (patch.patch_policy, other):
                yield FieldError.invalid(
                    path.index(i).child("annotations").key(key),
                    key,
                    f"annotation {key} is in conflict with SidecarSet {peer.name}",
                )
