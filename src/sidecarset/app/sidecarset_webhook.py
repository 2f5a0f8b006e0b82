"""SidecarSet defaulting and validating webhooks.

Defaulting fills the defaults (behaviour.md §1.7) and (re)computes the two hash annotations, so pods
injected by Kruise are recognised as up to date. Validation returns every problem at once, each
naming its field, plus warnings for edits that are allowed but will not reach running pods.
Both served versions are handled the same way: the object is converted to the internal form,
defaulted or validated there, and a defaulting patch is computed in the version it came in.
Peers (for conflicts), revisions (for pinned injection) and the whitelist ConfigMaps come from
the synced stores: answering never waits on an API call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from sidecarset.app.cached_objects import SidecarSetEntry
from sidecarset.app.settings import OperatorSettings
from sidecarset.core import conversion, defaults, model, validation
from sidecarset.core.errors import ModelError
from sidecarset.core.injection.revision_choice import RevisionLookupFailed, find_revision
from sidecarset.shell import admission
from sidecarset.shell.store import Store

KRUISE_CONFIG_MAP = "kruise-configuration"
"""Kruise's own ConfigMap: an existing Kruise whitelist keeps working unchanged."""
OWN_CONFIG_MAP = "sidecarset-configuration"
"""The name this operator read before it read Kruise's; still read, so nothing breaks."""
CONFIG_MAPS = (KRUISE_CONFIG_MAP, OWN_CONFIG_MAP)
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
        configmaps: Sequence[Store[dict[str, Any]]] = (),
        settings: OperatorSettings,
    ) -> None:
        """`configmaps`: synced stores holding the whitelist ConfigMaps (`CONFIG_MAPS`) of the
        operator's namespace, if they exist."""
        self._sidecarsets = sidecarsets
        self._revisions = revisions
        self._configmaps = configmaps
        self._settings = settings

    def policy(self) -> validation.ValidationPolicy:
        """The administrator policy: operator flags plus the patchPodMetadata whitelist, the
        rules of key `SidecarSet_PatchPodMetadata_WhiteList` in ConfigMaps
        `kruise-configuration` (Kruise's) and `sidecarset-configuration`, both in the
        operator's namespace; rules from both apply."""
        s = self._settings
        rules: list[validation.WhitelistRule] = []
        if s.allowed_patch_annotations:
            rules.append(
                validation.WhitelistRule(
                    allowed_annotation_key_exprs=tuple(s.allowed_patch_annotations)
                )
            )
        read: list[str] = []
        for cm in self._whitelist_configmaps():
            raw = (cm.get("data") or {}).get(WHITELIST_KEY)
            if not isinstance(raw, str) or not raw:
                continue
            where = f"ConfigMap {s.namespace}/{_name(cm)}"
            read.append(where)
            try:
                rules.extend(msgspec.json.decode(raw, type=_Whitelist).rules)
            except msgspec.DecodeError as err:
                raise PolicyUnreadable(f"{where} key {WHITELIST_KEY} is not valid: {err}") from None
        if read:
            source = " and ".join(read) + f", key {WHITELIST_KEY}"
        else:
            looked = " or ".join(f"{s.namespace}/{name}" for name in CONFIG_MAPS)
            source = f"ConfigMap {looked}, key {WHITELIST_KEY}"
        return validation.ValidationPolicy(
            allow_privileged=s.allow_privileged_sidecars,
            allow_privilege_escalation=s.allow_privileged_sidecars,
            allowed_capabilities=frozenset({"ALL"}) if s.allow_privileged_sidecars else frozenset(),
            allow_host_path=s.allow_privileged_sidecars,
            allow_host_ports=s.allow_privileged_sidecars,
            allow_unconfined=s.allow_privileged_sidecars,
            patch_metadata_whitelist=tuple(rules) if rules else None,
            whitelist_source=source,
            whitelist_full_match=s.whitelist_full_match,
        )

    def _whitelist_configmaps(self) -> list[dict[str, Any]]:
        """The whitelist ConfigMaps held, Kruise's first."""
        found = [cm for store in self._configmaps for cm in store.values()]
        wanted = [cm for cm in found if _name(cm) in CONFIG_MAPS]
        return sorted(wanted, key=lambda cm: CONFIG_MAPS.index(_name(cm)))

    async def mutate(self, request: admission.AdmissionRequest) -> admission.AdmissionResponse:
        if request.object is None or request.operation not in ("CREATE", "UPDATE"):
            return admission.allowed()
        try:
            internal = conversion.to_internal(request.object)
            model.parse_sidecarset(internal)
        except (ModelError, conversion.ConversionError):
            # Mutating webhooks run before the CRD schema is checked, so wrong JSON types do
            # reach us, and a defaulting patch onto them might not apply. Leave the object as
            # it is: the schema and the validating webhook refuse it, naming every problem.
            return admission.allowed()
        defaulted = defaults.apply_defaults(internal)
        if request.object.get("apiVersion") == conversion.V1BETA1:
            defaulted = conversion.to_v1beta1(defaulted)
        return admission.patched(defaulting_patch(request.object, defaulted))

    async def validate(self, request: admission.AdmissionRequest) -> admission.AdmissionResponse:
        if request.object is None or request.operation not in ("CREATE", "UPDATE"):
            return admission.allowed()
        # Validate what will be stored: the defaulting webhook ran first, but defaulting again
        # is idempotent and makes the validator correct on its own (e.g. under `kubectl
        # --dry-run=server` with another mutating chain).
        try:
            new = defaults.apply_defaults(conversion.to_internal(request.object))
            old = None if request.old_object is None else conversion.to_internal(request.old_object)
        except conversion.ConversionError as err:
            return admission.invalid(f"SidecarSet {_name(request.object)!r} is invalid: {err}")
        name = _name(request.object)
        peers = [
            entry.sidecarset
            for entry in self._sidecarsets.values()
            if entry.sidecarset is not None and entry.name != name
        ]
        try:
            policy = self.policy()
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
        found = find_revision(parsed, self._revisions.values())
        if found is None:
            return None
        if isinstance(found, RevisionLookupFailed):
            return validation.RevisionLookup(found=False, detail=found.reason)
        return validation.RevisionLookup(found=True)
