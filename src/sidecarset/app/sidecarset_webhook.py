"""SidecarSet defaulting and validating webhooks.

Defaulting fills the defaults (behaviour.md §1.7) and (re)computes the two hash annotations, so pods
injected by Kruise are recognised as up to date. Validation returns every problem at once, each
naming its field, plus warnings for edits that are allowed but will not reach running pods.
Peers (for conflicts) and revisions (for pinned injection) come from the synced stores.
"""

from __future__ import annotations

from typing import Any

import msgspec

from sidecarset.app import revision_lookup
from sidecarset.app.projections import SidecarSetEntry
from sidecarset.app.settings import OperatorSettings
from sidecarset.core import defaults, model, validation
from sidecarset.core.errors import ModelError
from sidecarset.core.injection import RevisionLookupFailed
from sidecarset.shell import admission
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import KubeClient, resource_path
from sidecarset.shell.store import Store

CONFIG_MAP = "sidecarset-configuration"
WHITELIST_KEY = "SidecarSet_PatchPodMetadata_WhiteList"


POLICY_PHRASE = "administrator's SidecarSet policy"
POLICY_FLAG_HINT = (
    "the policy is the operator's --allow-privileged-sidecars flag, "
    "Helm value allowPrivilegedSidecars"
)


class _Whitelist(msgspec.Struct, frozen=True):
    rules: tuple[validation.WhitelistRule, ...] = ()


class PolicyUnreadable(Exception):
    pass


def defaulting_patch(original: dict[str, Any], defaulted: dict[str, Any]) -> list[dict[str, Any]]:
    """Replace `spec` and `metadata.annotations` wholesale: simple, and exact by construction."""
    ops: list[dict[str, Any]] = []
    if defaulted.get("spec") != original.get("spec"):
        ops.append({"op": "add", "path": "/spec", "value": defaulted.get("spec", {})})
    if not isinstance(original.get("metadata"), dict):
        # `metadata: null` reads as absent (as in Go), but a patch cannot add into null.
        ops.append({"op": "add", "path": "/metadata", "value": defaulted.get("metadata") or {}})
        return ops
    before = (original.get("metadata") or {}).get("annotations")
    after = (defaulted.get("metadata") or {}).get("annotations")
    if after != before:
        ops.append({"op": "add", "path": "/metadata/annotations", "value": after or {}})
    return ops


def _name(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata")
    return str(metadata.get("name", "")) if isinstance(metadata, dict) else ""


class SidecarSetAdmission:
    def __init__(
        self,
        *,
        sidecarsets: Store[SidecarSetEntry],
        revisions: Store[dict[str, Any]],
        client: KubeClient | None,
        settings: OperatorSettings,
    ) -> None:
        self._sidecarsets = sidecarsets
        self._revisions = revisions
        self._client = client
        self._settings = settings

    async def policy(self) -> validation.ValidationPolicy:
        """The administrator policy: operator flags plus the patchPodMetadata whitelist read
        from ConfigMap `sidecarset-configuration` (Kruise's key, so its rules carry over)."""
        s = self._settings
        rules: list[validation.WhitelistRule] = []
        if s.allowed_patch_annotations:
            rules.append(
                validation.WhitelistRule(
                    allowed_annotation_key_exprs=tuple(s.allowed_patch_annotations)
                )
            )
        if self._client is not None:
            cm: dict[str, Any]
            try:
                cm = await self._client.get(
                    resource_path("v1", "configmaps", namespace=s.namespace, name=CONFIG_MAP)
                )
            except errors.NotFound:
                cm = {}
            raw = (cm.get("data") or {}).get(WHITELIST_KEY)
            if raw:
                try:
                    rules.extend(msgspec.json.decode(raw, type=_Whitelist).rules)
                except msgspec.DecodeError as err:
                    raise PolicyUnreadable(
                        f"ConfigMap {s.namespace}/{CONFIG_MAP} key "
                        f"{WHITELIST_KEY} is not valid: {err}"
                    ) from None
        return validation.ValidationPolicy(
            allow_privileged=s.allow_privileged_sidecars,
            allow_privilege_escalation=s.allow_privileged_sidecars,
            allowed_capabilities=frozenset({"ALL"}) if s.allow_privileged_sidecars else frozenset(),
            allow_host_path=s.allow_privileged_sidecars,
            allow_host_ports=s.allow_privileged_sidecars,
            allow_unconfined=s.allow_privileged_sidecars,
            patch_metadata_whitelist=tuple(rules) if rules else None,
        )

    async def mutate(self, request: admission.AdmissionRequest) -> admission.AdmissionResponse:
        if request.object is None or request.operation not in ("CREATE", "UPDATE"):
            return admission.allowed()
        try:
            model.parse_sidecarset(request.object)
        except ModelError:
            # Mutating webhooks run before the CRD schema is checked, so wrong JSON types do
            # reach us, and a defaulting patch onto them might not apply. Leave the object as
            # it is: the schema and the validating webhook refuse it, naming every problem.
            return admission.allowed()
        defaulted = defaults.apply_defaults(request.object)
        return admission.patched(defaulting_patch(request.object, defaulted))

    async def validate(self, request: admission.AdmissionRequest) -> admission.AdmissionResponse:
        if request.object is None or request.operation not in ("CREATE", "UPDATE"):
            return admission.allowed()
        # Validate what will be stored: the defaulting webhook ran first, but defaulting again
        # is idempotent and makes the validator correct on its own (e.g. under `kubectl
        # --dry-run=server` with another mutating chain).
        new = defaults.apply_defaults(request.object)
        old = request.old_object
        name = _name(request.object)
        peers = [
            entry.sidecarset
            for entry in self._sidecarsets.values()
            if entry.sidecarset is not None and entry.name != name
        ]
        try:
            policy = await self.policy()
        except PolicyUnreadable as err:
            return admission.invalid(str(err))
        result = validation.validate(
            new, old, peers, policy, revision_lookup=self._revision_lookup(new)
        )
        if result.errors:
            details = "; ".join(str(e) for e in result.errors)
            if any(POLICY_PHRASE in e.detail for e in result.errors):
                details += f" ({POLICY_FLAG_HINT})"
            return admission.invalid(
                f"SidecarSet {name!r} is invalid: {details}", warnings=result.warnings
            )
        return admission.allowed(warnings=result.warnings)

    def _revision_lookup(self, new: dict[str, Any]) -> validation.RevisionLookup | None:
        try:
            parsed = model.parse_sidecarset(new)
        except ModelError:
            return None  # validation reports the type errors itself
        found = revision_lookup.find_revision(parsed, self._revisions.values())
        if found is None:
            return None
        if isinstance(found, RevisionLookupFailed):
            return validation.RevisionLookup(found=False, detail=found.reason)
        return validation.RevisionLookup(found=True)
