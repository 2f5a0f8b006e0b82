"""A container's `env` and `envFrom` (behaviour.md §11.4, §5.3).

Kubernetes' rules for variable names and `valueFrom` sources, restricted to the field references
a pod can resolve; `env_name_problems` also checks Kruise's `transferEnv` names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import msgspec

from sidecarset.core import selectors
from sidecarset.core.errors import FieldError, Path
from sidecarset.core.validation.fields import JsonMap, has_field, map_field, object_items, str_field

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


def env_name_problems(name: str) -> list[str]:
    if _ENV_VAR_NAME.fullmatch(name) is None:
        return [
            "a valid environment variable name must consist of alphabetic characters, digits,"
            " '_', '-', or '.', and must not start with a digit"
        ]
    return []


def check_env(body: JsonMap, path: Path) -> Iterator[FieldError]:
    for i, env in object_items(body, "env"):
        yield from _check_env_var(env, path.child("env").index(i))
    for i, source in object_items(body, "envFrom"):
        yield from _check_env_from(source, path.child("envFrom").index(i))


def _check_env_var(env: JsonMap, path: Path) -> Iterator[FieldError]:
    name = str_field(env, "name")
    if not name:
        yield FieldError.required(path.child("name"))
    for problem in env_name_problems(name) if name else ():
        yield FieldError.invalid(path.child("name"), name, problem)
    source = map_field(env, "valueFrom")
    if source is None:
        return
    if str_field(env, "value"):
        yield FieldError.invalid(
            path.child("valueFrom"),
            msgspec.UNSET,
            "may not be specified when `value` is not empty",
        )
    yield from _check_value_from(source, path.child("valueFrom"))


def _check_value_from(source: JsonMap, path: Path) -> Iterator[FieldError]:
    kinds = [
        k
        for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")
        if has_field(source, k)
    ]
    if len(kinds) != 1:
        yield FieldError.invalid(
            path,
            msgspec.UNSET,
            "must specify exactly one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef`"
            " or `secretKeyRef`",
        )
    field_ref = map_field(source, "fieldRef")
    if field_ref is not None:
        yield from _check_field_ref(field_ref, path.child("fieldRef"))
    resource_ref = map_field(source, "resourceFieldRef")
    if resource_ref is not None:
        yield from _check_resource_field_ref(resource_ref, path.child("resourceFieldRef"))
    for ref_key in ("configMapKeyRef", "secretKeyRef"):
        ref = map_field(source, ref_key)
        if ref is not None:
            yield from _check_key_ref(ref, path.child(ref_key))


def _check_resource_field_ref(ref: JsonMap, path: Path) -> Iterator[FieldError]:
    resource = str_field(ref, "resource")
    rpath = path.child("resource")
    if not resource:
        yield FieldError.required(rpath)
    elif resource not in _RESOURCE_FIELD_REFS and not re.fullmatch(
        r"(limits|requests)\.hugepages-.+", resource
    ):
        yield FieldError.not_supported(rpath, resource, _RESOURCE_FIELD_REFS)


def _check_key_ref(ref: JsonMap, path: Path) -> Iterator[FieldError]:
    """A `configMapKeyRef` or `secretKeyRef`."""
    if not str_field(ref, "name"):
        yield FieldError.required(path.child("name"))
    key = str_field(ref, "key")
    if not key:
        yield FieldError.required(path.child("key"))
    elif _CONFIG_MAP_KEY.fullmatch(key) is None:
        yield FieldError.invalid(
            path.child("key"),
            key,
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
        )


def _check_env_from(source: JsonMap, path: Path) -> Iterator[FieldError]:
    refs = [k for k in ("configMapRef", "secretRef") if has_field(source, k)]
    if len(refs) != 1:
        yield FieldError.invalid(
            path, msgspec.UNSET, "must specify exactly one of: `configMapRef` or `secretRef`"
        )
    for ref_key in refs:
        ref = map_field(source, ref_key)
        if ref is not None and not str_field(ref, "name"):
            yield FieldError.required(path.child(ref_key, "name"))
    prefix = str_field(source, "prefix")
    for problem in env_name_problems(prefix) if prefix else ():
        yield FieldError.invalid(path.child("prefix"), prefix, problem)


def _check_field_ref(field_ref: JsonMap, path: Path) -> Iterator[FieldError]:
    version = str_field(field_ref, "apiVersion")
    if version and version != "v1":
        yield FieldError.invalid(path.child("apiVersion"), version, 'only "v1" is supported')
    field_path = str_field(field_ref, "fieldPath")
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
