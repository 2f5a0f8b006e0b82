"""A container's `volumeMounts` and `volumeDevices` (behaviour.md §11.4, §5.2).

A sidecar can only mount what the SidecarSet declares in `spec.volumes` (a placeholder stands
for a volume the pod owns), and Kubernetes' rules for paths, sub-paths, propagation and
read-only recursion apply as they would in the pod.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from sidecarset.core.errors import FieldError, Path
from sidecarset.core.model import SidecarContainer, Volume
from sidecarset.core.validation.container_security import security_flag
from sidecarset.core.validation.fields import JsonMap, has_field, object_items, str_field
from sidecarset.core.validation.volumes import check_relative_path


def check_mounts(
    container: SidecarContainer, path: Path, volumes: Mapping[str, Volume]
) -> Iterator[FieldError]:
    body = container.body
    mount_paths: set[str] = set()
    privileged = security_flag(body, "privileged") is True
    for i, mount in object_items(body, "volumeMounts"):
        yield from _check_mount(
            mount, path.child("volumeMounts").index(i), volumes, mount_paths, privileged=privileged
        )
    yield from _check_devices(body, path, volumes, mount_paths)


def _check_mount(
    mount: JsonMap,
    path: Path,
    volumes: Mapping[str, Volume],
    mount_paths: set[str],
    *,
    privileged: bool,
) -> Iterator[FieldError]:
    """One mount; adds its path to `mount_paths`, which must stay unique in the container."""
    name = str_field(mount, "name")
    if not name:
        yield FieldError.required(path.child("name"))
    elif name not in volumes:
        yield FieldError.not_found(
            path.child("name"),
            name,
            "a sidecar can only mount volumes declared in spec.volumes (declare a placeholder"
            " with the pod volume's name to mount a volume the pod owns)",
        )
    mount_path = str_field(mount, "mountPath")
    if not mount_path:
        yield FieldError.required(path.child("mountPath"))
    elif mount_path in mount_paths:
        yield FieldError.invalid(path.child("mountPath"), mount_path, "must be unique")
    mount_paths.add(mount_path)
    sub_path, sub_path_expr = str_field(mount, "subPath"), str_field(mount, "subPathExpr")
    if sub_path and sub_path_expr:
        yield FieldError.invalid(
            path.child("subPathExpr"),
            sub_path_expr,
            "subPathExpr and subPath are mutually exclusive",
        )
    if sub_path:
        yield from check_relative_path(sub_path, path.child("subPath"))
    yield from _check_propagation(mount, path, privileged=privileged)
    yield from _check_recursive_read_only(mount, path)


def _check_propagation(mount: JsonMap, path: Path, *, privileged: bool) -> Iterator[FieldError]:
    propagation = str_field(mount, "mountPropagation")
    if not propagation:
        return
    if propagation not in ("None", "HostToContainer", "Bidirectional"):
        yield FieldError.not_supported(
            path.child("mountPropagation"),
            propagation,
            ["Bidirectional", "HostToContainer", "None"],
        )
    elif propagation == "Bidirectional" and not privileged:
        yield FieldError.forbidden(
            path.child("mountPropagation"),
            "Bidirectional mount propagation is available only to privileged containers",
        )


def _check_recursive_read_only(mount: JsonMap, path: Path) -> Iterator[FieldError]:
    recursive = str_field(mount, "recursiveReadOnly")
    if not recursive:
        return
    if recursive not in ("Disabled", "IfPossible", "Enabled"):
        yield FieldError.not_supported(
            path.child("recursiveReadOnly"),
            recursive,
            ["Disabled", "IfPossible", "Enabled"],
        )
    elif recursive != "Disabled" and mount.get("readOnly") is not True:
        yield FieldError.forbidden(
            path.child("recursiveReadOnly"), "may only be specified when readOnly is true"
        )
    elif recursive == "Enabled" and str_field(mount, "mountPropagation") not in ("", "None"):
        yield FieldError.forbidden(
            path.child("recursiveReadOnly"),
            "may only be specified when mountPropagation is None or not specified",
        )


def _check_devices(
    body: JsonMap, path: Path, volumes: Mapping[str, Volume], mount_paths: set[str]
) -> Iterator[FieldError]:
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
