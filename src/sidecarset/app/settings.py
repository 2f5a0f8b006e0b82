"""OperatorSettings: every knob of `sidecarset operator run`, each default with its reason."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


class Mode(StrEnum):
    ALL = "all"
    """Webhooks and controller in one process: local clusters, small clusters."""
    WEBHOOK = "webhook"
    """Admission only, active on every replica; small caches (no pods)."""
    CONTROLLER = "controller"
    """Status and in-place upgrades, leader-elected; holds the pod cache."""


@dataclass(frozen=True)
class OperatorSettings:
    mode: Mode = Mode.ALL
    kubeconfig: str | None = None
    """None: in-cluster credentials when running in a pod, else the default kubeconfig."""
    namespace: str = field(
        default_factory=lambda: os.environ.get("POD_NAMESPACE", "sidecarset-system")
    )
    """The operator's namespace: its Lease, certificate Secret and ControllerRevisions live here,
    and its pods are never injected. Set it to `kruise-system` to take over Kruise's revisions."""
    local: bool = False
    """Local control plane: webhooks registered by URL on 127.0.0.1, certificates in files, CRD
    installed by the operator. In a cluster the Helm chart installs the CRD."""
    install_crd: bool = False
    """Apply the bundled CRD at start (what `--local` does by default). Off in a cluster: the
    chart installs the CRD, and the operator's ServiceAccount may not write CRDs."""
    webhook_host: str = "0.0.0.0"
    """The address the webhook and probe servers bind (`--bind-address`): every interface in a
    pod; the node's own IP with hostNetwork, so nothing listens on the node's other addresses."""
    webhook_port: int = 9443
    """0 picks a free port (local mode)."""
    probe_port: int = 8080
    """/healthz, /readyz and /metrics (plain HTTP)."""
    service_name: str = "sidecarset-webhook"
    """The Service in front of the webhook (in-cluster webhook configurations point at it)."""
    cert_dir: Path | None = None
    """Local mode: where the webhook CA and serving certificate are kept (shared by replicas)."""
    certificate_secret: str = "sidecarset-webhook-certs"
    failure_policy: str = "Fail"
    """Pod injection failurePolicy; see app/webhooks_config.py for why Fail is the default."""
    excluded_namespaces: tuple[str, ...] = ()
    """Namespaces never injected, besides kube-system, kube-public, kube-node-lease and ours."""
    skip_critical_pods: bool = True
    """Never send pods of the system-node-critical / system-cluster-critical priority classes to
    the webhook: with every replica down (failurePolicy Fail), the CNI, DNS and other add-ons
    the cluster (and the operator's own pods) need can still be created."""
    leader_election: bool = True
    lease_name: str = "sidecarset-controller"
    lease_duration: float = 15.0
    """Seconds a silent leader keeps the Lease: how long a SIGKILLed leader's successor waits.
    The renew deadline (2/3 of it) and retry period (2/15) scale with it, keeping client-go's
    15/10/2 proportions; shorter values fail over faster but tolerate shorter API outages."""
    workers: int = 3
    """Reconcile workers; Kruise uses 3. Each SidecarSet is reconciled by one worker at a time."""
    qps: float = 50.0
    burst: int = 100
    """Client-side write limit, so a 2,000-pod rollout cannot flood the API server."""
    allow_privileged_sidecars: bool = False
    """Administrator policy: allow SidecarSets that inject privileged containers, host
    namespaces, added capabilities or hostPath volumes."""
    allowed_patch_annotations: tuple[str, ...] = ()
    """Regexes of pod annotation keys `patchPodMetadata` may write (besides the whitelist
    ConfigMaps), matched like the ConfigMap's rules."""
    whitelist_full_match: bool = False
    """Opt-in: whitelist patterns must match the whole annotation key. Off by default, because
    Kruise matches a pattern anywhere in the key and its whitelists must keep working."""
    failing_after: float = 300.0
    """Seconds an updated pod may stay unavailable before the rollout is reported Stalled
    (UpdatedPodsFailing): room for an image pull and a slow readiness probe."""
    drain_seconds: float = 10.0
    """After SIGTERM, seconds the webhook keeps answering (while /readyz already fails) before it
    closes: room for the Service's endpoints to drop this pod everywhere. The chart's preStop
    sleep and terminationGracePeriodSeconds are sized from the same value."""
    ready_file: Path | None = None
    log_level: str = "info"
