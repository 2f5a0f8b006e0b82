"""The two SidecarSet hashes, byte-identical to Kruise (behaviour.md §2).

Kruise hashes `{"containers": [...], "initContainers": [...]}` as Go's encoding/json writes its
typed structs. We re-encode the JSON bodies through a table of those structs: the field order
and `omitempty` rules of `corev1.Container` as compiled into Kruise (k8s.io/api v0.32), then the
SidecarContainer extras. Fields that v0.32 does not know (e.g. `lifecycle.stopSignal` from 1.33)
are dropped, as Go's decoder drops them, so they never change the hash. Used by `defaults` (the
SidecarSet annotations), `validation` (edit warnings) and revision restore.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Final, NamedTuple, TypeAlias

from sidecarset.core import resources_expr

__all__ = [
    "container_encoding",
    "container_problems",
    "go_json",
    "go_string",
    "hash_input",
    "known_fields",
    "safe_encode",
    "spec_hash",
    "spec_hash_without_image",
]

# --- the Go type table ----------------------------------------------------------------------

# A kind is a scalar name, ("ptr", kind), ("list", kind) or ("struct", name).
Kind: TypeAlias = str | tuple[str, "Kind"]

STR: Final = "string"
BOOL: Final = "bool"
INT: Final = "int"
QUANTITY: Final = "quantity"
INT_OR_STRING: Final = "intOrString"
STRING_MAP: Final = "map[string]string"
QUANTITY_MAP: Final = "map[string]Quantity"


def _ptr(kind: Kind) -> Kind:
    return ("ptr", kind)


def _list(kind: Kind) -> Kind:
    return ("list", kind)


def _struct(name: str) -> Kind:
    return ("struct", name)


class _Field(NamedTuple):
    name: str
    kind: Kind
    omitempty: bool = True


def _f(name: str, kind: Kind, *, always: bool = False) -> _Field:
    """A struct field; `always` marks a tag without `omitempty`."""
    return _Field(name, kind, omitempty=not always)


_STRUCTS: Final[dict[str, tuple[_Field, ...]]] = {
    "SidecarContainer": (
        _f("name", STR, always=True),
        _f("image", STR),
        _f("command", _list(STR)),
        _f("args", _list(STR)),
        _f("workingDir", STR),
        _f("ports", _list(_struct("ContainerPort"))),
        _f("envFrom", _list(_struct("EnvFromSource"))),
        _f("env", _list(_struct("EnvVar"))),
        _f("resources", _struct("ResourceRequirements")),
        _f("resizePolicy", _list(_struct("ContainerResizePolicy"))),
        _f("restartPolicy", _ptr(STR)),
        _f("volumeMounts", _list(_struct("VolumeMount"))),
        _f("volumeDevices", _list(_struct("VolumeDevice"))),
        _f("livenessProbe", _ptr(_struct("Probe"))),
        _f("readinessProbe", _ptr(_struct("Probe"))),
        _f("startupProbe", _ptr(_struct("Probe"))),
        _f("lifecycle", _ptr(_struct("Lifecycle"))),
        _f("terminationMessagePath", STR),
        _f("terminationMessagePolicy", STR),
        _f("imagePullPolicy", STR),
        _f("securityContext", _ptr(_struct("SecurityContext"))),
        _f("stdin", BOOL),
        _f("stdinOnce", BOOL),
        _f("tty", BOOL),
        # Kruise's SidecarContainer fields follow the inlined corev1.Container.
        _f("podInjectPolicy", STR),
        _f("upgradeStrategy", _struct("SidecarContainerUpgradeStrategy")),
        _f("shareVolumePolicy", _struct("ShareVolumePolicy")),
        _f("shareVolumeDevicePolicy", _ptr(_struct("ShareVolumePolicy"))),
        _f("transferEnv", _list(_struct("TransferEnvVar"))),
        _f("resourcesPolicy", _ptr(_struct("ResourcesPolicy"))),
    ),
    "ContainerPort": (
        _f("name", STR),
        _f("hostPort", INT),
        _f("containerPort", INT, always=True),
        _f("protocol", STR),
        _f("hostIP", STR),
    ),
    "EnvFromSource": (
        _f("prefix", STR),
        _f("configMapRef", _ptr(_struct("ConfigMapEnvSource"))),
        _f("secretRef", _ptr(_struct("SecretEnvSource"))),
    ),
    "ConfigMapEnvSource": (_f("name", STR), _f("optional", _ptr(BOOL))),
    "SecretEnvSource": (_f("name", STR), _f("optional", _ptr(BOOL))),
    "EnvVar": (
        _f("name", STR, always=True),
        _f("value", STR),
        _f("valueFrom", _ptr(_struct("EnvVarSource"))),
    ),
    "EnvVarSource": (
        _f("fieldRef", _ptr(_struct("ObjectFieldSelector"))),
        _f("resourceFieldRef", _ptr(_struct("ResourceFieldSelector"))),
        _f("configMapKeyRef", _ptr(_struct("ConfigMapKeySelector"))),
        _f("secretKeyRef", _ptr(_struct("SecretKeySelector"))),
    ),
    "ObjectFieldSelector": (_f("apiVersion", STR), _f("fieldPath", STR, always=True)),
    "ResourceFieldSelector": (
        _f("containerName", STR),
        _f("resource", STR, always=True),
        # A struct-typed Quantity: omitempty never omits it, so an absent divisor prints "0".
        _f("divisor", QUANTITY),
    ),
    "ConfigMapKeySelector": (
        _f("name", STR),
        _f("key", STR, always=True),
        _f("optional", _ptr(BOOL)),
    ),
    "SecretKeySelector": (
        _f("name", STR),
        _f("key", STR, always=True),
        _f("optional", _ptr(BOOL)),
    ),
    "ResourceRequirements": (
        _f("limits", QUANTITY_MAP),
        _f("requests", QUANTITY_MAP),
        _f("claims", _list(_struct("ResourceClaim"))),
    ),
    "ResourceClaim": (_f("name", STR, always=True), _f("request", STR)),
    "ContainerResizePolicy": (
        _f("resourceName", STR, always=True),
        _f("restartPolicy", STR, always=True),
    ),
    "VolumeMount": (
        _f("name", STR, always=True),
        _f("readOnly", BOOL),
        _f("recursiveReadOnly", _ptr(STR)),
        _f("mountPath", STR, always=True),
        _f("subPath", STR),
        _f("mountPropagation", _ptr(STR)),
        _f("subPathExpr", STR),
    ),
    "VolumeDevice": (_f("name", STR, always=True), _f("devicePath", STR, always=True)),
    "Probe": (
        # The inlined ProbeHandler comes first.
        _f("exec", _ptr(_struct("ExecAction"))),
        _f("httpGet", _ptr(_struct("HTTPGetAction"))),
        _f("tcpSocket", _ptr(_struct("TCPSocketAction"))),
        _f("grpc", _ptr(_struct("GRPCAction"))),
        _f("initialDelaySeconds", INT),
        _f("timeoutSeconds", INT),
        _f("periodSeconds", INT),
        _f("successThreshold", INT),
        _f("failureThreshold", INT),
        _f("terminationGracePeriodSeconds", _ptr(INT)),
    ),
    "ExecAction": (_f("command", _list(STR)),),
    "HTTPGetAction": (
        _f("path", STR),
        _f("port", INT_OR_STRING, always=True),
        _f("host", STR),
        _f("scheme", STR),
        _f("httpHeaders", _list(_struct("HTTPHeader"))),
    ),
    "HTTPHeader": (_f("name", STR, always=True), _f("value", STR, always=True)),
    "TCPSocketAction": (_f("port", INT_OR_STRING, always=True), _f("host", STR)),
    # `service` is a *string without omitempty: an absent service prints as null.
    "GRPCAction": (_f("port", INT, always=True), _f("service", _ptr(STR), always=True)),
    "Lifecycle": (
        _f("postStart", _ptr(_struct("LifecycleHandler"))),
        _f("preStop", _ptr(_struct("LifecycleHandler"))),
    ),
    "LifecycleHandler": (
        _f("exec", _ptr(_struct("ExecAction"))),
        _f("httpGet", _ptr(_struct("HTTPGetAction"))),
        _f("tcpSocket", _ptr(_struct("TCPSocketAction"))),
        _f("sleep", _ptr(_struct("SleepAction"))),
    ),
    "SleepAction": (_f("seconds", INT, always=True),),
    "SecurityContext": (
        _f("capabilities", _ptr(_struct("Capabilities"))),
        _f("privileged", _ptr(BOOL)),
        _f("seLinuxOptions", _ptr(_struct("SELinuxOptions"))),
        _f("windowsOptions", _ptr(_struct("WindowsSecurityContextOptions"))),
        _f("runAsUser", _ptr(INT)),
        _f("runAsGroup", _ptr(INT)),
        _f("runAsNonRoot", _ptr(BOOL)),
        _f("readOnlyRootFilesystem", _ptr(BOOL)),
        _f("allowPrivilegeEscalation", _ptr(BOOL)),
        _f("procMount", _ptr(STR)),
        _f("seccompProfile", _ptr(_struct("SeccompProfile"))),
        _f("appArmorProfile", _ptr(_struct("AppArmorProfile"))),
    ),
    "Capabilities": (_f("add", _list(STR)), _f("drop", _list(STR))),
    "SELinuxOptions": (_f("user", STR), _f("role", STR), _f("type", STR), _f("level", STR)),
    "WindowsSecurityContextOptions": (
        _f("gmsaCredentialSpecName", _ptr(STR)),
        _f("gmsaCredentialSpec", _ptr(STR)),
        _f("runAsUserName", _ptr(STR)),
        _f("hostProcess", _ptr(BOOL)),
    ),
    "SeccompProfile": (_f("type", STR, always=True), _f("localhostProfile", _ptr(STR))),
    "AppArmorProfile": (_f("type", STR, always=True), _f("localhostProfile", _ptr(STR))),
    "SidecarContainerUpgradeStrategy": (_f("upgradeType", STR), _f("hotUpgradeEmptyImage", STR)),
    "ShareVolumePolicy": (_f("type", STR),),
    "TransferEnvVar": (
        _f("sourceContainerName", STR),
        _f("sourceContainerNameFrom", _ptr(_struct("SourceContainerNameSource"))),
        _f("envName", STR),
        _f("envNames", _list(STR)),
    ),
    "SourceContainerNameSource": (_f("fieldRef", _ptr(_struct("ObjectFieldSelector"))),),
    "ResourcesPolicy": (
        _f("targetContainersMode", STR, always=True),
        _f("targetContainersNameRegex", STR),
        _f("resourcesExpr", _struct("ResourcesExpr")),
    ),
    "ResourcesExpr": (
        _f("limits", _ptr(_struct("ResourceExprValues"))),
        _f("requests", _ptr(_struct("ResourceExprValues"))),
    ),
    "ResourceExprValues": (_f("cpu", STR), _f("memory", STR)),
}


# --- Go encoding/json -----------------------------------------------------------------------

_HEX = "0123456789abcdef"
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SHORT_ESCAPES |= {"\b": "\\b", "\f": "\\f"}
_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}
_HTML_ESCAPES |= {"\u2028": "\\u2028", "\u2029": "\\u2029"}


def go_string(text: str) -> str:
    """A JSON string as Go's encoding/json writes it (HTML-safe, `\\b`/`\\f` short forms)."""
    out = ['"']
    for ch in text:
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif ch in _HTML_ESCAPES:
            out.append(_HTML_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u00{_HEX[ord(ch) >> 4]}{_HEX[ord(ch) & 0xF]}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            # A lone surrogate is invalid UTF-8; Go writes the replacement character.
            out.append("\\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_json(value: object) -> str:
    """Encode schemaless JSON as Go would encode `interface{}`: sorted keys, no spaces."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return go_string(value)
    if isinstance(value, Mapping):
        items = sorted((str(k), v) for k, v in value.items())
        return "{" + ",".join(f"{go_string(k)}:{go_json(v)}" for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    return go_string(str(value))


def _go_float(value: float) -> str:
    # Go refuses to encode NaN and infinities; JSON input cannot carry them anyway.
    return resources_expr.go_float_text(value) if math.isfinite(value) else "null"


def _encode(kind: Kind, value: object) -> str:
    """Encode `value` (JSON, possibly None for Go's zero value) as the Go type `kind`."""
    if isinstance(kind, tuple):
        wrapper, inner = kind
        if wrapper == "ptr":
            return "null" if value is None else _encode(inner, value)
        if wrapper == "list":
            if value is None:
                return "null"
            if not isinstance(value, list | tuple):
                return go_json(value)
            return "[" + ",".join(_encode(inner, v) for v in value) + "]"
        assert isinstance(inner, str)
        return _encode_struct(inner, value)
    return _encode_scalar(kind, value)


def _encode_struct(name: str, value: object) -> str:
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        return go_json(value)
    parts = []
    for field in _STRUCTS[name]:
        item = value.get(field.name)
        if field.omitempty and _is_empty(field.kind, item):
            continue
        parts.append(f"{go_string(field.name)}:{_encode(field.kind, item)}")
    return "{" + ",".join(parts) + "}"


def _encode_scalar(kind: str, value: object) -> str:
    if kind == STR:
        if value is None:
            return '""'
        return go_string(value) if isinstance(value, str) else go_json(value)
    if kind == BOOL:
        if value is None or isinstance(value, bool):
            return "true" if value else "false"
        return go_json(value)
    if kind == INT:
        return _encode_int(value)
    if kind == INT_OR_STRING:
        if isinstance(value, str):
            return go_string(value)
        return _encode_int(value)
    if kind == QUANTITY:
        return go_string(_quantity_text(value))
    if kind in (STRING_MAP, QUANTITY_MAP):
        if value is None:
            return "null"
        if not isinstance(value, Mapping):
            return go_json(value)
        items = sorted((str(k), v) for k, v in value.items())
        if kind == STRING_MAP:
            return "{" + ",".join(f"{go_string(k)}:{_encode(STR, v)}" for k, v in items) + "}"
        return (
            "{" + ",".join(f"{go_string(k)}:{go_string(_quantity_text(v))}" for k, v in items) + "}"
        )
    raise AssertionError(f"unknown kind {kind}")


def _encode_int(value: object) -> str:
    if value is None:
        return "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return go_json(value)


def _quantity_text(value: object) -> str:
    """Go's JSON for a Quantity field; a value Go could not parse is kept as written."""
    if value is None:
        return "0"
    try:
        return resources_expr.quantity_from_json(value).to_json()
    except resources_expr.QuantityError:
        return value if isinstance(value, str) else go_json(value)


def _is_empty(kind: Kind, value: object) -> bool:
    """Go's omitempty test on the decoded value (JSON null or absent means the zero value).

    Struct-typed fields (including Quantity and IntOrString) are never empty to encoding/json.
    """
    if isinstance(kind, tuple):
        wrapper, _ = kind
        if wrapper == "struct":
            return False
        if value is None:
            return True
        if wrapper == "list":
            return isinstance(value, list | tuple) and len(value) == 0
        return False
    if kind in (QUANTITY, INT_OR_STRING):
        return False
    if value is None:
        return True
    if kind == STR:
        return value == ""
    if kind == BOOL:
        return value is False
    if kind == INT:
        return value == 0 and not isinstance(value, bool)
    if kind in (STRING_MAP, QUANTITY_MAP):
        return isinstance(value, Mapping) and len(value) == 0
    return False


# --- the hashes -----------------------------------------------------------------------------

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def safe_encode(text: str) -> str:
    """Kubernetes `rand.SafeEncodeString`: map each character onto a vowel-free alphabet."""
    return "".join(_SAFE_ALPHABET[ord(ch) % len(_SAFE_ALPHABET)] for ch in text)


def container_encoding(body: Mapping[str, object], *, without_image: bool = False) -> str:
    """One SidecarContainer as Kruise's Go structs serialise it (a fragment of the hash input)."""
    if without_image:
        body = {**body, "image": ""}
    return _encode_struct("SidecarContainer", body)


def _containers(raw: object, *, without_image: bool) -> str:
    if raw is None:
        return "null"
    if not isinstance(raw, list | tuple):
        return go_json(raw)
    parts = []
    for item in raw:
        if isinstance(item, Mapping):
            parts.append(container_encoding(item, without_image=without_image))
        else:
            parts.append(_encode_struct("SidecarContainer", item))
    return "[" + ",".join(parts) + "]"


def _has_native_sidecar(init_containers: object) -> bool:
    return isinstance(init_containers, list | tuple) and any(
        isinstance(c, Mapping) and c.get("restartPolicy") == "Always" for c in init_containers
    )


def hash_input(spec: Mapping[str, object], *, without_image: bool = False) -> bytes:
    """The exact bytes Kruise feeds to SHA-256 for this (already defaulted) spec.

    `containers` is always present (`null` when the spec has none). Init containers take part
    only when one of them is a native sidecar, and then all of them do (behaviour.md §2.1).
    """
    text = '{"containers":' + _containers(spec.get("containers"), without_image=without_image)
    init_containers = spec.get("initContainers")
    if _has_native_sidecar(init_containers):
        text += ',"initContainers":' + _containers(init_containers, without_image=without_image)
    return (text + "}").encode("utf-8", errors="replace")


def spec_hash(spec: Mapping[str, object]) -> str:
    """`kruise.io/sidecarset-hash` of a defaulted spec; 64 characters."""
    return safe_encode(hashlib.sha256(hash_input(spec)).hexdigest())


def spec_hash_without_image(spec: Mapping[str, object]) -> str:
    """`kruise.io/sidecarset-hash-without-image`: the same with every image blanked."""
    return safe_encode(hashlib.sha256(hash_input(spec, without_image=True)).hexdigest())


# --- what Go could not decode ---------------------------------------------------------------


def container_problems(body: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    """Fields of a container body that Go would refuse to decode, as (relative path, expected).

    Paths are relative to the container (`ports[0].containerPort`). Unknown fields are not
    problems: Go ignores them. Validation turns each pair into a FieldError.
    """
    found: list[tuple[str, str]] = []
    _check(_struct("SidecarContainer"), body, "", found)
    return tuple(found)


def _check(kind: Kind, value: object, path: str, found: list[tuple[str, str]]) -> None:
    if value is None:
        return
    if isinstance(kind, tuple):
        wrapper, inner = kind
        if wrapper == "ptr":
            _check(inner, value, path, found)
        elif wrapper == "list":
            if not isinstance(value, list | tuple):
                found.append((path, "must be a list"))
                return
            for i, item in enumerate(value):
                _check(inner, item, f"{path}[{i}]", found)
        else:
            assert isinstance(inner, str)
            if not isinstance(value, Mapping):
                found.append((path, "must be an object"))
                return
            for field in _STRUCTS[inner]:
                child = f"{path}.{field.name}" if path else field.name
                _check(field.kind, value.get(field.name), child, found)
        return
    problem = _scalar_problem(kind, value)
    if problem is not None:
        found.append((path, problem))
    if kind in (STRING_MAP, QUANTITY_MAP) and isinstance(value, Mapping):
        for key, item in value.items():
            if kind == STRING_MAP and item is not None and not isinstance(item, str):
                found.append((f"{path}[{key}]", "must be a string"))
            if kind == QUANTITY_MAP and item is not None:
                try:
                    resources_expr.quantity_from_json(item)
                except resources_expr.QuantityError as exc:
                    found.append((f"{path}[{key}]", f"must be a quantity: {exc}"))


def _scalar_problem(kind: str, value: object) -> str | None:
    if kind == STR and not isinstance(value, str):
        return "must be a string"
    if kind == BOOL and not isinstance(value, bool):
        return "must be a boolean"
    if kind == INT and not _is_integer(value):
        return "must be an integer"
    if kind == INT_OR_STRING and not (isinstance(value, str) or _is_integer(value)):
        return "must be an integer or a string"
    if kind in (STRING_MAP, QUANTITY_MAP) and not isinstance(value, Mapping):
        return "must be an object"
    if kind == QUANTITY:
        try:
            resources_expr.quantity_from_json(value)
        except resources_expr.QuantityError as exc:
            return f"must be a quantity: {exc}"
    return None


def _is_integer(value: object) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def known_fields() -> Mapping[str, Sequence[str]]:
    """Field names per Go struct in the table (for tests that check coverage)."""
    return {name: tuple(f.name for f in fields) for name, fields in _STRUCTS.items()}
