"""The volumes a SidecarSet declares and how its containers mount them (behaviour.md §11.4).

Volumes are schemaless in the CRD, so the webhook does all their validation (behaviour.md §1.1):
each source's required fields, modes and paths, and the `volumeMounts` and `volumeDevices` that
must name a declared volume.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import msgspec

from sidecarset.core import defaults, resources_expr, selectors
from sidecarset.core.errors import FieldError, Path
from sidecarset.core.model import SidecarContainer, Volume
from sidecarset.core.validation.container_security import security_flag
from sidecarset.core.validation.fields import (
    JsonMap,
    has_field,
    int_field,
    map_field,
    object_items,
    str_field,
)
from sidecarset.core.validation.policy import ValidationPolicy

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


def check_volumes(
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
        sources = [s for s in defaults.VOLUME_SOURCES if has_field(body, s)]
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
        if not str_field(section, "path"):
            yield FieldError.required(path.child("path"))
        elif ".." in str_field(section, "path").split("/"):
            yield FieldError.invalid(
                path.child("path"), str_field(section, "path"), "must not contain '..'"
            )
        kind = str_field(section, "type")
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
        if not str_field(section, name_key):
            yield FieldError.required(path.child(name_key))
        yield from _check_mode(section, "defaultMode", path)
        yield from _check_key_to_paths(section, path)
    elif source == "emptyDir":
        medium = str_field(section, "medium")
        if medium not in ("", "Memory", "HugePages") and not medium.startswith("HugePages-"):
            yield FieldError.not_supported(
                path.child("medium"), medium, ["", "Memory", "HugePages"]
            )
        yield from _check_quantity(section.get("sizeLimit"), path.child("sizeLimit"))
    elif source == "persistentVolumeClaim":
        if not str_field(section, "claimName"):
            yield FieldError.required(path.child("claimName"))
    elif source == "downwardAPI":
        yield from _check_mode(section, "defaultMode", path)
        yield from _check_downward_items(section, path)
    elif source == "projected":
        yield from _check_mode(section, "defaultMode", path)
        yield from _check_projected(section, path)
    elif source == "nfs":
        for key in ("server", "path"):
            if not str_field(section, key):
                yield FieldError.required(path.child(key))
    elif source == "csi":
        if not str_field(section, "driver"):
            yield FieldError.required(path.child("driver"))
    elif source == "image" and not str_field(section, "reference"):
        yield FieldError.required(path.child("reference"))


def _check_mode(section: JsonMap, key: str, path: Path) -> Iterator[FieldError]:
    mode = int_field(section, key)
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
    for i, item in object_items(section, "items"):
        ipath = path.child("items").index(i)
        if not str_field(item, "key"):
            yield FieldError.required(ipath.child("key"))
        if not str_field(item, "path"):
            yield FieldError.required(ipath.child("path"))
        else:
            yield from _check_relative_path(str_field(item, "path"), ipath.child("path"))
        yield from _check_mode(item, "mode", ipath)


def _check_downward_items(section: JsonMap, path: Path) -> Iterator[FieldError]:
    for i, item in object_items(section, "items"):
        ipath = path.child("items").index(i)
        if not str_field(item, "path"):
            yield FieldError.required(ipath.child("path"))
        else:
            yield from _check_relative_path(str_field(item, "path"), ipath.child("path"))
        refs = [k for k in ("fieldRef", "resourceFieldRef") if has_field(item, k)]
        if len(refs) != 1:
            yield FieldError.invalid(
                ipath, msgspec.UNSET, "must specify exactly one of fieldRef and resourceFieldRef"
            )
        yield from _check_mode(item, "mode", ipath)


def _check_projected(section: JsonMap, path: Path) -> Iterator[FieldError]:
    kinds = ("secret", "configMap", "downwardAPI", "serviceAccountToken", "clusterTrustBundle")
    for i, source in object_items(section, "sources"):
        spath = path.child("sources").index(i)
        present = [k for k in kinds if has_field(source, k)]
        if len(present) != 1:
            yield FieldError.forbidden(spath, "must specify exactly one projection type")
        token = map_field(source, "serviceAccountToken")
        if token is not None:
            if not str_field(token, "path"):
                yield FieldError.required(spath.child("serviceAccountToken", "path"))
            expiration = int_field(token, "expirationSeconds")
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


def check_mounts(
    container: SidecarContainer, path: Path, volumes: Mapping[str, Volume]
) -> Iterator[FieldError]:
    body = container.body
    mount_paths: set[str] = set()
    privileged = security_flag(body, "privileged")
    for i, mount in object_items(body, "volumeMounts"):
        mpath = path.child("volumeMounts").index(i)
        name = str_field(mount, "name")
        if not name:
            yield FieldError.required(mpath.child("name"))
        elif name not in volumes:
            yield FieldError.not_found(
                mpath.child("name"),
                name,
                "a sidecar can only mount volumes declared in spec.volumes (declare a placeholder"
                " with the pod volume's name to mount a volume the pod owns)",
            )
        mount_path = str_field(mount, "mountPath")
        if not mount_path:
            yield FieldError.required(mpath.child("mountPath"))
        elif mount_path in mount_paths:
            yield FieldError.invalid(mpath.child("mountPath"), mount_path, "must be unique")
        mount_paths.add(mount_path)
        sub_path, sub_path_expr = str_field(mount, "subPath"), str_field(mount, "subPathExpr")
        if sub_path and sub_path_expr:
            yield FieldError.invalid(
                mpath.child("subPathExpr"),
                sub_path_expr,
                "subPathExpr and subPath are mutually exclusive",
            )
        if sub_path:
            yield from _check_relative_path(sub_path, mpath.child("subPath"))
        propagation = str_field(mount, "mountPropagation")
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
        recursive = str_field(mount, "recursiveReadOnly")
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
    for i, device in object_items(body, "volumeDevices"):
        dpath = path.child("volumeDevices").index(i)
        name = str_field(device, "name")
        if not name:
            yield FieldError.required(dpath.child("name"))
        elif name not in volumes:
            yield FieldError.not_found(dpath.child("name"), name, "not declared in spec.volumes")
        elif not any(
            has_field(volumes[name].body, k) for k in ("persistentVolumeClaim", "ephemeral")
        ):
            yield FieldError.invalid(
                dpath.child("name"),
                name,
                "can only use volume source type of PersistentVolumeClaim or Ephemeral"
                " for block mode",
            )
        device_path = str_field(device, "devicePath")
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
