"""Offline injection (`sidecarset inject -f`): workload manifests in, manifests with sidecars out.

Pure: the CLI reads the files and the cluster, this module decides. Each pod template goes
through `inject_webhook.inject_pod`, the webhook's own decision, and is rewritten with
`injection.apply_injection` (equal to applying the webhook's JSON patch), so a manifest injected
here carries exactly what the webhook would add to a pod created from it. A pod created from
an injected template is "already injected" for the webhook, which then adds nothing.

SidecarSets read from files are defaulted and validated as the SidecarSet admission webhooks
would store them, with the revision name the controller would give them (pods record it);
SidecarSets read from the cluster are used as stored, as the webhook does.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

from sidecarset.app import inject_webhook
from sidecarset.app.cached_objects import SidecarSetEntry
from sidecarset.core import conversion, defaults, injection, model, validation
from sidecarset.core import revisions as revision_history
from sidecarset.core.errors import ModelError

__all__ = [
    "MAJORITY_DRAW",
    "POD_TEMPLATE_PATHS",
    "InjectedManifest",
    "Manifest",
    "ManifestError",
    "inject_manifest",
    "is_sidecarset",
    "namespace_of",
    "sidecarset_from_manifest",
    "sidecarsets_from_manifests",
]

POD_TEMPLATE_PATHS: Mapping[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
"""Where each workload kind keeps the pod it creates (a Pod is its own template)."""

MAJORITY_DRAW = 0.5
"""The `draw` for `injectionStrategy.revision.policy: Partial` with a percent partition.

The webhook draws once per pod, so p% of a workload's pods get the pinned revision; a template
is injected once for all its pods, so it gets what the majority gets: the pinned revision when
the partition is above 50%, else the live one. Deterministic, so CI output does not flap."""

# The validating webhook enforces the administrator's policy, which a manifest on disk does not
# know: offline, only structural problems are errors.
_PERMISSIVE = validation.ValidationPolicy(
    allow_privileged=True,
    allow_privilege_escalation=True,
    allowed_capabilities=frozenset({"ALL"}),
    allow_host_path=True,
    allow_host_ports=True,
    allow_unconfined=True,
    patch_metadata_allowed_without_whitelist=True,
)


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    """One document read from a file: where it came from (`source`, 1-based `index`) and what."""

    source: str
    index: int
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind") or "")

    @property
    def name(self) -> str:
        meta = self.body.get("metadata")
        return str(meta.get("name") or "") if isinstance(meta, dict) else ""

    @property
    def where(self) -> str:
        """`deploy.yaml: document 2 (Deployment nginx)`, for messages."""
        what = " ".join(part for part in (self.kind, self.name) if part)
        return f"{self.source}: document {self.index}" + (f" ({what})" if what else "")


class ManifestError(ValueError):
    """A manifest cannot be injected as it is; the message names the file and document."""

    def __init__(self, manifest: Manifest, detail: str) -> None:
        super().__init__(f"{manifest.where}: {detail}")
        self.manifest = manifest


class InjectedManifest(msgspec.Struct, frozen=True, kw_only=True):
    """A manifest after injection; `injection` is None for a kind without a pod template."""

    manifest: Manifest
    body: dict[str, Any]
    injection: injection.Injection | None = None

    @property
    def changed(self) -> bool:
        return self.injection is not None and self.injection.changed


def is_sidecarset(manifest: Manifest) -> bool:
    api_version = str(manifest.body.get("apiVersion") or "")
    return manifest.kind == model.KIND and api_version.startswith(model.API_GROUP + "/")


def sidecarset_from_manifest(
    manifest: Manifest, *, revisions: Iterable[dict[str, Any]] = ()
) -> SidecarSetEntry:
    """The SidecarSet as the cluster would hold it: defaulted by the admission webhook (hashes
    included), and with the `status.latestRevision` the controller gives it (from `revisions`,
    the ControllerRevisions known), which injection records in every pod.

    Either served version is read; the entry holds the internal (v1alpha1) form. Raises
    `ManifestError` when it cannot be parsed.
    """
    try:
        internal = conversion.to_internal(manifest.body)
    except conversion.ConversionError as err:
        raise ManifestError(manifest, f"not a valid SidecarSet: {err}") from None
    defaulted = defaults.apply_defaults(internal)
    try:
        parsed = model.parse_sidecarset(defaulted)
        if not parsed.status.latest_revision:
            records = revision_history.revision_records(parsed.name, list(revisions))
            decision = revision_history.decide_revision(
                parsed, records, collision_count=parsed.status.collision_count or 0
            )
            status = defaulted.get("status")
            defaulted["status"] = {
                **(status if isinstance(status, dict) else {}),
                "latestRevision": decision.name,
            }
            parsed = model.parse_sidecarset(defaulted)
    except ModelError as err:
        raise ManifestError(manifest, f"not a valid SidecarSet: {err}") from None
    return SidecarSetEntry(defaulted, parsed)


def sidecarsets_from_manifests(
    manifests: Sequence[Manifest],
    *,
    cluster: Iterable[SidecarSetEntry] = (),
    revisions: Iterable[dict[str, Any]] = (),
) -> list[SidecarSetEntry]:
    """The SidecarSets to inject: those of the cluster, replaced or joined by the files' own
    (as if the files were applied first). Each file SidecarSet is validated against the others
    (conflicting containers, canary bases) as the validating webhook would, except for the
    administrator's policy, which a manifest on disk does not know.
    """
    known = list(revisions)
    from_files = [
        (m, sidecarset_from_manifest(m, revisions=known)) for m in manifests if is_sidecarset(m)
    ]
    names = [entry.name for _, entry in from_files]
    for manifest, entry in from_files:
        if names.count(entry.name) > 1:
            raise ManifestError(manifest, f"SidecarSet {entry.name!r} is defined more than once")
    by_name = {entry.name: entry for entry in cluster}
    by_name.update((entry.name, entry) for _, entry in from_files)
    for manifest, entry in from_files:
        peers = [
            e.sidecarset for e in by_name.values() if e.sidecarset is not None and e is not entry
        ]
        result = validation.validate(entry.raw, None, peers, _PERMISSIVE)
        if result.errors:
            details = "; ".join(str(error) for error in result.errors)
            raise ManifestError(manifest, f"SidecarSet {entry.name!r} is invalid: {details}")
    return [by_name[name] for name in sorted(by_name)]


def namespace_of(manifest: Manifest, default: str) -> str:
    """The namespace the manifest's pods would be created in."""
    meta = manifest.body.get("metadata")
    namespace = meta.get("namespace") if isinstance(meta, dict) else None
    return namespace if isinstance(namespace, str) and namespace else default


def inject_manifest(
    manifest: Manifest,
    sidecarsets: Sequence[SidecarSetEntry],
    namespace_labels: Mapping[str, str] | None,
    *,
    default_namespace: str,
    revisions: Callable[[], Iterable[dict[str, Any]]],
    now: datetime,
    draw: float = MAJORITY_DRAW,
) -> InjectedManifest:
    """The manifest with the matching SidecarSets injected into its pod template.

    Kinds without a pod template (and SidecarSets) come back unchanged. `namespace_labels` are
    the labels of `namespace_of(manifest, default_namespace)`, None when it does not exist.
    Raises `ManifestError` where the webhook would deny the pod.
    """
    path = POD_TEMPLATE_PATHS.get(manifest.kind)
    if path is None or is_sidecarset(manifest):
        return InjectedManifest(manifest=manifest, body=manifest.body)
    template = _at(manifest.body, path)
    if template is None:
        where = ".".join(path) or "the pod"
        raise ManifestError(manifest, f"{where}: expected an object")
    namespace = namespace_of(manifest, default_namespace)
    pod = _pod_from_template(template, namespace)
    try:
        decided = inject_webhook.inject_pod(
            pod,
            sidecarsets,
            namespace_labels,
            revisions=revisions,
            now=now,
            request_namespace=namespace,
            draw=lambda: draw,
        )
    except (injection.InjectionDenied, injection.RevisionChoiceError) as err:
        raise ManifestError(manifest, f"the webhook would refuse its pods: {err}") from None
    if not decided.changed:
        return InjectedManifest(manifest=manifest, body=manifest.body, injection=decided)
    injected = injection.apply_injection(pod, decided)
    body = copy.deepcopy(manifest.body)
    target = _at(body, path)
    assert target is not None
    _write_back(target, injected, decided)
    return InjectedManifest(manifest=manifest, body=body, injection=decided)


def _at(body: dict[str, Any], path: Sequence[str]) -> dict[str, Any] | None:
    node: object = body
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _pod_from_template(template: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """The pod the API server would see for this template: the template's metadata and spec,
    in the namespace of the workload (a template's own `metadata.namespace` is ignored)."""
    meta = template.get("metadata")
    metadata = copy.deepcopy(meta) if isinstance(meta, dict) else {}
    metadata["namespace"] = namespace
    pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata}
    spec = template.get("spec")
    pod["spec"] = copy.deepcopy(spec) if isinstance(spec, dict) else {}
    if "status" in template:  # a Pod exported from a cluster: the webhook skips finished ones
        pod["status"] = copy.deepcopy(template["status"])
    return pod


def _write_back(
    template: dict[str, Any], pod: Mapping[str, object], decided: injection.Injection
) -> None:
    """Put what the injection changed (spec lists, annotations) into the template in place."""
    spec = pod.get("spec")
    if isinstance(spec, dict):
        template["spec"] = spec
    if decided.annotations:
        meta = template.get("metadata")
        if not isinstance(meta, dict):
            meta = template["metadata"] = {}
        pod_meta = pod.get("metadata")
        assert isinstance(pod_meta, dict)
        meta["annotations"] = pod_meta.get("annotations", {})
