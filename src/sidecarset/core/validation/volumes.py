"""The volumes a SidecarSet declares (behaviour.md §11.4, §5.1).

Volumes are schemaless in the CRD, so the webhook does all their validation (behaviour.md §1.1):
unique DNS-label names, exactly one source, and each source's required fields, modes and paths.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Final

import msgspec

from sidecarset.core import defaults, resources_expr, selectors
from sidecarset.core.errors import FieldError, Path
from sidecarset.core.model import Volume
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
    check = _SOURCE_CHECKS.get(source)
    if check is not None:
        yield from check(section, path)
    if source == "hostPath" and not policy.allow_host_path:
        yield FieldError.forbidden(
            path,
            "hostPath volumes give sidecars access to the node's files and are not allowed"
            " by the administrator's SidecarSet policy",
        )


def _check_host_path(section: JsonMap, path: Path) -> Iterator[FieldError]:
    if not str_field(section, "path"):
        yield FieldError.required(path.child("path"))
    elif ".." in str_field(section, "path").split("/"):
        yield FieldError.invalid(
            path.child("path"), str_field(section, "path"), "must not contain '..'"
        )
    kind = str_field(section, "type")
    if kind not in _HOST_PATH_TYPES:
        yield FieldError.not_supported(path.child("type"), kind, _HOST_PATH_TYPES)


def _check_config_map(section: JsonMap, path: Path) -> Iterator[FieldError]:
    yield from _check_keyed_source(section, "name", path)


def _check_secret(section: JsonMap, path: Path) -> Iterator[FieldError]:
    yield from _check_keyed_source(section, "secretName", path)


def _check_keyed_source(section: JsonMap, name_key: str, path: Path) -> Iterator[FieldError]:
    """A configMap or secret: its name, default mode and the key-to-path items."""
    if not str_field(section, name_key):
        yield FieldError.required(path.child(name_key))
    yield from _check_mode(section, "defaultMode", path)
    for i, item in object_items(section, "items"):
        ipath = path.child("items").index(i)
        if not str_field(item, "key"):
            yield FieldError.required(ipath.child("key"))
        if not str_field(item, "path"):
            yield FieldError.required(ipath.child("path"))
        else:
            yield from check_relative_path(str_field(item, "path"), ipath.child("path"))
        yield from _check_mode(item, "mode", ipath)


def _check_empty_dir(section: JsonMap, path: Path) -> Iterator[FieldError]:
    medium = str_field(section, "medium")
    if medium not in ("", "Memory", "HugePages") and not medium.startswith("HugePages-"):
        yield FieldError.not_supported(path.child("medium"), medium, ["", "Memory", "HugePages"])
    yield from _check_quantity(section.get("sizeLimit"), path.child("sizeLimit"))


def _required(*keys: str) -> Callable[[JsonMap, Path], Iterator[FieldError]]:
    """A source whose only rule is that `keys` are set, in this order."""

    def check(section: JsonMap, path: Path) -> Iterator[FieldError]:
        for key in keys:
            if not str_field(section, key):
                yield FieldError.required(path.child(key))

    return check


def _check_mode(section: JsonMap, key: str, path: Path) -> Iterator[FieldError]:
    mode = int_field(section, key)
    if mode is not None and not 0 <= mode <= _MAX_FILE_MODE:
        yield FieldError.invalid(
            path.child(key), mode, "must be a number between 0 and 0777 (octal), both inclusive"
        )


def check_relative_path(value: str, path: Path) -> Iterator[FieldError]:
    if value.startswith("/"):
        yield FieldError.invalid(path, value, "must be a relative path")
    if ".." in value.split("/"):
        yield FieldError.invalid(path, value, "must not contain '..'")


def _check_downward_api(section: JsonMap, path: Path) -> Iterator[FieldError]:
    yield from _check_mode(section, "defaultMode", path)
    for i, item in object_items(section, "items"):
        ipath = path.child("items").index(i)
        if not str_field(item, "path"):
            yield FieldError.required(ipath.child("path"))
        else:
            yield from check_relative_path(str_field(item, "path"), ipath.child("path"))
        refs = [k for k in ("fieldRef", "resourceFieldRef") if has_field(item, k)]
        if len(refs) != 1:
            yield FieldError.invalid(
                ipath, msgspec.UNSET, "must specify exactly one of fieldRef and resourceFieldRef"
            )
        yield from _check_mode(item, "mode", ipath)


def _check_projected(section: JsonMap, path: Path) -> Iterator[FieldError]:
    yield from _check_mode(section, "defaultMode", path)
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


_SOURCE_CHECKS: Final[Mapping[str, Callable[[JsonMap, Path], Iterator[FieldError]]]] = {
    "hostPath": _check_host_path,
    "configMap": _check_config_map,
    "secret": _check_secret,
    "emptyDir": _check_empty_dir,
    "persistentVolumeClaim": _required("claimName"),
    "downwardAPI": _check_downward_api,
    "projected": _check_projected,
    "nfs": _required("server", "path"),
    "csi": _required("driver"),
    "image": _required("reference"),
}
"""The rules of each volume source; a source not listed has none beyond being an object."""
