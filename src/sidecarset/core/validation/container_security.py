"""A container's security context: Kubernetes' rules and the administrator's policy.

`check_security_context` is the pod validation Kubernetes would apply (behaviour.md §11.4);
`check_security` refuses host-level power the policy does not grant (behaviour.md §11.10).
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from sidecarset.core.errors import FieldError, Path
from sidecarset.core.model import SidecarContainer
from sidecarset.core.validation.fields import (
    JsonMap,
    check_enum,
    int_field,
    map_field,
    object_items,
    str_field,
)
from sidecarset.core.validation.policy import BASELINE_CAPABILITIES, ValidationPolicy


def _security_context(body: JsonMap) -> JsonMap:
    return map_field(body, "securityContext") or {}


def security_flag(body: JsonMap, key: str) -> bool | None:
    value = _security_context(body).get(key)
    return value if isinstance(value, bool) else None


def _capabilities_added(body: JsonMap) -> list[tuple[int, str]]:
    capabilities = map_field(_security_context(body), "capabilities") or {}
    added = capabilities.get("add")
    if not isinstance(added, list):
        return []
    return [(i, c) for i, c in enumerate(added) if isinstance(c, str)]


def _capability(name: str) -> str:
    upper = name.upper()
    return upper[4:] if upper.startswith("CAP_") else upper


def check_security_context(body: JsonMap, path: Path) -> Iterator[FieldError]:
    context = _security_context(body)
    spath = path.child("securityContext")
    escalation = security_flag(body, "allowPrivilegeEscalation")
    if escalation is False:
        if security_flag(body, "privileged") is True:
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
        value = int_field(context, key)
        if value is not None and not 0 <= value <= 2147483647:
            yield FieldError.invalid(
                spath.child(key), value, "must be between 0 and 2147483647, inclusive"
            )
    yield from check_enum(context, "procMount", spath, ("Default", "Unmasked"))
    for key in ("seccompProfile", "appArmorProfile"):
        profile = map_field(context, key)
        if profile is None:
            continue
        ppath = spath.child(key)
        kind = str_field(profile, "type")
        if kind not in ("RuntimeDefault", "Unconfined", "Localhost"):
            yield FieldError.not_supported(
                ppath.child("type"), kind, ["Localhost", "RuntimeDefault", "Unconfined"]
            )
        has_profile = bool(str_field(profile, "localhostProfile"))
        if kind == "Localhost" and not has_profile:
            yield FieldError.required(
                ppath.child("localhostProfile"), "must be set when type is Localhost"
            )
        elif kind != "Localhost" and has_profile:
            yield FieldError.invalid(
                ppath.child("localhostProfile"),
                str_field(profile, "localhostProfile"),
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


def check_security(
    container: SidecarContainer, path: Path, policy: ValidationPolicy
) -> Iterator[FieldError]:
    """The administrator's policy: no host-level power unless `policy` grants it."""
    body = container.body
    context = _security_context(body)
    spath = path.child("securityContext")
    if not policy.allow_privileged:
        yield from _forbid_privileged(context, spath)
    if not policy.allow_privilege_escalation and context.get("allowPrivilegeEscalation") is True:
        yield FieldError.forbidden(
            spath.child("allowPrivilegeEscalation"), f"privilege escalation {_POLICY_HINT}"
        )
    yield from _forbid_capabilities(body, spath, policy.allowed_capabilities)
    if not policy.allow_host_ports:
        for i, port in object_items(body, "ports"):
            host_port = int_field(port, "hostPort")
            if host_port:
                yield FieldError.forbidden(
                    path.child("ports").index(i).child("hostPort"),
                    f"a host port binds the node's network; it {_POLICY_HINT}",
                )
    if not policy.allow_unconfined:
        yield from _forbid_unconfined(context, spath)


def _forbid_privileged(context: JsonMap, path: Path) -> Iterator[FieldError]:
    if context.get("privileged") is True:
        yield FieldError.forbidden(path.child("privileged"), f"a privileged sidecar {_POLICY_HINT}")
    windows = map_field(context, "windowsOptions") or {}
    if windows.get("hostProcess") is True:
        yield FieldError.forbidden(
            path.child("windowsOptions", "hostProcess"),
            f"a host-process sidecar {_POLICY_HINT}",
        )


def _forbid_capabilities(
    body: JsonMap, path: Path, allowed_beyond_baseline: frozenset[str]
) -> Iterator[FieldError]:
    allowed = BASELINE_CAPABILITIES | {_capability(c) for c in allowed_beyond_baseline}
    if "ALL" in allowed:
        return
    for i, capability in _capabilities_added(body):
        if _capability(capability) not in allowed:
            yield FieldError.forbidden(
                path.child("capabilities", "add").index(i),
                f'adding capability "{capability}" {_POLICY_HINT}',
            )


def _forbid_unconfined(context: JsonMap, path: Path) -> Iterator[FieldError]:
    """Unconfined seccomp or AppArmor, an unmasked /proc, a custom SELinux type."""
    for key in ("seccompProfile", "appArmorProfile"):
        profile = map_field(context, key) or {}
        if profile.get("type") == "Unconfined":
            yield FieldError.forbidden(
                path.child(key, "type"), f"an Unconfined profile {_POLICY_HINT}"
            )
    if context.get("procMount") == "Unmasked":
        yield FieldError.forbidden(path.child("procMount"), f"an Unmasked /proc {_POLICY_HINT}")
    selinux = map_field(context, "seLinuxOptions") or {}
    if str_field(selinux, "type") not in _BASELINE_SELINUX_TYPES:
        yield FieldError.forbidden(
            path.child("seLinuxOptions", "type"), f"a custom SELinux type {_POLICY_HINT}"
        )
