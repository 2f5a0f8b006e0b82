"""Building what one SidecarSet adds to a pod: each sidecar container's body (behaviour.md §4.2,
§5), its hot-upgrade twins (§8.1) and the volumes it mounts.

A container body starts as the SidecarContainer without the SidecarSet-only fields, then gets
computed resources, shared volume mounts and devices, transferred env and the injection marker
env. Where it goes in the pod is `placement`'s business.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import msgspec

from sidecarset.core import pod_contract, resources
from sidecarset.core.errors import FieldError
from sidecarset.core.injection.pod_json import is_app_container, name_of, objects, text
from sidecarset.core.injection.result import InjectionDenied, Placement
from sidecarset.core.model import (
    JsonObject,
    PodInjectPolicy,
    ShareVolumePolicyType,
    SidecarContainer,
    SidecarSet,
    TransferEnvVar,
    copy_json,
)

__all__ = [
    "SIDECARSET_ONLY_FIELDS",
    "BuiltSidecarSet",
    "Candidate",
    "PodContext",
    "build_sidecarset",
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


class PodContext(msgspec.Struct, frozen=True, kw_only=True):
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
    names = {name_of(e) for e in original}
    merged = list(original)
    for entry in extra:
        if name_of(entry) not in names:
            merged.append(entry)
            names.add(name_of(entry))
    return merged


def _set_env(env: list[Mapping[str, object]], entry: Mapping[str, object]) -> None:
    """Make `entry` the only env var of its name: at the first one's position, else appended.

    Kruise appends (so a sidecar declaring the name gets a duplicate, the last one winning);
    the value that takes effect is the same, without the duplicate.
    """
    positions = [i for i, existing in enumerate(env) if name_of(existing) == name_of(entry)]
    if not positions:
        env.append(entry)
        return
    env[positions[0]] = entry
    for i in reversed(positions[1:]):
        del env[i]


def _shared_mounts(
    pod: PodContext,
) -> tuple[list[Mapping[str, object]], list[Mapping[str, object]]]:
    """App containers' volumeMounts, and the env their `subPathExpr` variables need."""
    mounts: list[Mapping[str, object]] = []
    envs: list[Mapping[str, object]] = []
    for container in pod.containers:
        if not is_app_container(container):
            continue
        for mount in objects(container.get("volumeMounts")):
            mounts.append(copy_json(mount))
            for variable in _SUBPATH_ENV.findall(text(mount.get("subPathExpr"))):
                for env in objects(container.get("env")):
                    if name_of(env) == variable:
                        envs.append(copy_json(env))
                        break
    return mounts, envs


def _shared_devices(pod: PodContext) -> list[Mapping[str, object]]:
    return [
        copy_json(device)
        for container in pod.containers
        if is_app_container(container)
        for device in objects(container.get("volumeDevices"))
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
    transfer: TransferEnvVar, pod: PodContext, warnings: list[str], where: str
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
    sidecar: SidecarContainer, pod: PodContext, warnings: list[str], where: str
) -> list[Mapping[str, object]]:
    """transferEnv (behaviour.md §5.3): whole EnvVars copied from a regular container, if there."""
    by_key: dict[tuple[str, str], Mapping[str, object]] = {}
    for container in pod.containers:
        for env in objects(container.get("env")):
            by_key[(name_of(container), name_of(env))] = env
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
    sidecar: SidecarContainer, pod: PodContext, where: str
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
        c for c in pod.init_containers if text(c.get("restartPolicy")) == "Always"
    ] + list(pod.containers)
    return [
        c
        for c in candidates
        if name_of(c) not in pod.sidecar_names and pattern.search(name_of(c)) is not None
    ]


def _computed_resources(
    sidecar: SidecarContainer, pod: PodContext, sidecarset: str, where: str
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
    pod: PodContext,
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

    own_mounts = objects(body.get("volumeMounts"))
    own_devices = objects(body.get("volumeDevices"))
    taken = {text(m.get("mountPath")) for m in own_mounts}
    taken |= {text(d.get("devicePath")) for d in own_devices}
    mounts = list(own_mounts)
    for mount in shared_mounts:
        path = text(mount.get("mountPath"))
        if path not in taken:
            mounts.append(mount)
            taken.add(path)
    if mounts:
        body["volumeMounts"] = mounts

    env = list(objects(body.get("env")))
    _set_env(env, {"name": pod_contract.INJECTED_ENV, "value": "true"})
    body["env"] = _merge_by_name(env, extra_env)

    share_devices = sidecar.share_volume_device_policy
    if share_devices is not None and share_devices.type == ShareVolumePolicyType.ENABLED:
        device_taken = {text(d.get("devicePath")) for d in own_devices}
        device_taken |= {text(m.get("mountPath")) for m in mounts}
        devices = list(own_devices)
        for device in _shared_devices(pod):
            path = text(device.get("devicePath"))
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
    working, idle = pod_contract.hot_upgrade_names(sidecar.name)
    twins: list[JsonObject] = []
    for twin in (working, idle):
        twin_body = copy_json(body)
        twin_body["name"] = twin
        env = list(objects(twin_body.get("env")))
        for env_name, field_path in (
            (pod_contract.VERSION_ENV, pod_contract.version_field_path(twin)),
            (pod_contract.VERSION_ALT_ENV, pod_contract.version_alt_field_path(twin)),
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
        pod_contract.version_annotation(working): "1",
        pod_contract.version_alt_annotation(working): "0",
        pod_contract.version_annotation(idle): "0",
        pod_contract.version_alt_annotation(idle): "1",
    }
    return (twins[0], twins[1]), annotations


class Candidate(msgspec.Struct, frozen=True, kw_only=True):
    """One built container and where its policy wants it; `placement.place` gives its index."""

    sidecarset: str
    body: JsonObject
    placement: Placement


class BuiltSidecarSet(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one SidecarSet contributes to the pod, before placement and the record."""

    init_containers: tuple[Candidate, ...]
    containers: tuple[Candidate, ...]
    volumes: tuple[JsonObject, ...]
    sidecar_list: tuple[str, ...]
    annotations: Mapping[str, str]
    hot_working: Mapping[str, str]


def _placement(sidecar: SidecarContainer) -> Placement:
    # Kruise's switch sends anything but BeforeAppContainer (an unset value included) after.
    if sidecar.pod_inject_policy == PodInjectPolicy.BEFORE_APP_CONTAINER:
        return Placement.BEFORE_APP
    return Placement.AFTER_APP


def build_sidecarset(
    sidecarset: SidecarSet, pod: PodContext, warnings: list[str]
) -> BuiltSidecarSet:
    """Every container (hot ones as twins) and volume this SidecarSet adds to the pod."""
    name = sidecarset.name
    volumes_by_name = {v.name: v.body for v in sidecarset.spec.volumes}
    init_containers: list[Candidate] = []
    containers: list[Candidate] = []
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
                out.extend(Candidate(sidecarset=name, body=b, placement=placement) for b in twins)
                annotations.update(versions)
                hot_working[sidecar.name] = pod_contract.hot_upgrade_names(sidecar.name)[0]
            else:
                out.append(Candidate(sidecarset=name, body=body, placement=placement))
    return BuiltSidecarSet(
        init_containers=tuple(init_containers),
        containers=tuple(containers),
        volumes=tuple(volumes),
        sidecar_list=tuple(sorted(sidecar_list)),
        annotations=annotations,
        hot_working=hot_working,
    )
