"""The administrator's SidecarSet policy, as data (behaviour.md §11.10, §6.3).

A SidecarSet lands in pods its author does not own, so what it may inject (host-level power,
pod annotations) is the cluster administrator's decision. The app builds the policy from the
operator's flags and the whitelist ConfigMap; the checks only read it.
"""

from __future__ import annotations

from typing import Final

import msgspec

from sidecarset.core.model import LabelSelector

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
