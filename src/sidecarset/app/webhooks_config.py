"""The webhook configurations the operator registers, and why each setting is what it is.

- Pod injection: CREATE only (containers of a live pod cannot be added), `failurePolicy: Fail`:
  a pod created without its log shipper or proxy is silent data loss, while a refused creation is
  retried by the pod's controller within seconds. The blast radius is bounded instead by
  namespace exclusions (kube-system, kube-public, kube-node-lease and the operator's own
  namespace, so the cluster and the operator itself can always start), by a match condition
  that never sends pods of the `system-node-critical` / `system-cluster-critical` priority
  classes (CNI agents, DNS and other add-ons the cluster needs to heal, wherever they run; the
  operator's own pods need the CNI to start), and by the per-pod opt-out label. The apiserver
  never calls the webhook for those pods, so they are created even with every replica down.
- `timeoutSeconds: 5`: answers come from memory in milliseconds; a short timeout bounds how long
  a pod creation can hang when the operator is unreachable (the apiserver's default is 10).
- SidecarSet defaulting and validation: `failurePolicy: Fail`, because an unvalidated SidecarSet
  can break every pod it selects.
- `reinvocationPolicy: Never` on pods: a second call would change nothing, because a pod that
  carries our injection record is never injected again. So shared volume mounts and transferred
  env see the containers present when we are called; a container another mutating webhook adds
  after us gets neither (docs/troubleshooting.md).

- SidecarSet admission covers both served versions (v1alpha1, v1beta1), so a request reaches us
  in the version it was made in, never through a conversion.
- The CRD's conversion webhook (`crd_conversion`) points at the same server and CA. It has no
  failure policy: while no replica answers, reads and writes that need a conversion fail (the
  API server stores nothing half converted); reads in the stored version keep working.

Every replica server-side applies both configurations at start. In a cluster the Helm chart
creates them empty beforehand, so the operator needs only `patch` on these two names (`create`
cannot be limited to a name) and `helm uninstall` deletes them.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MUTATING_NAME = "sidecarset-mutating"
VALIDATING_NAME = "sidecarset-validating"
POD_PATH = "/mutate-pod"
SIDECARSET_MUTATE_PATH = "/mutate-apps-kruise-io-sidecarset"
SIDECARSET_VALIDATE_PATH = "/validate-apps-kruise-io-sidecarset"
SIDECARSET_CONVERT_PATH = "/convert-apps-kruise-io-sidecarset"
SIDECARSET_CRD = "sidecarsets.apps.kruise.io"
SIDECARSET_VERSIONS = ["v1alpha1", "v1beta1"]
OPT_OUT_LABEL = "sidecarset.kruise.io/inject"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
ALWAYS_EXCLUDED_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
CRITICAL_PRIORITY_CLASSES = ("system-node-critical", "system-cluster-critical")
SKIP_CRITICAL_CONDITION = {
    "name": "not-system-critical",
    "expression": "!has(object.spec.priorityClassName) || !(object.spec.priorityClassName in "
    + str(list(CRITICAL_PRIORITY_CLASSES))
    + ")",
}


def is_critical(priority_class_name: str) -> bool:
    """A pod the webhook never sees when critical pods are skipped (the match condition)."""
    return priority_class_name in CRITICAL_PRIORITY_CLASSES


TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class Endpoint:
    """Where the apiserver reaches us: a URL (local control plane) or a Service (in-cluster)."""

    ca_bundle: bytes
    url_base: str | None = None
    service_namespace: str | None = None
    service_name: str | None = None
    service_port: int = 443

    def client_config(self, path: str) -> dict[str, Any]:
        config: dict[str, Any] = {"caBundle": base64.b64encode(self.ca_bundle).decode()}
        if self.url_base is not None:
            config["url"] = self.url_base.rstrip("/") + path
        else:
            config["service"] = {
                "namespace": self.service_namespace,
                "name": self.service_name,
                "path": path,
                "port": self.service_port,
            }
        return config


def excluded_namespaces(operator_namespace: str, extra: Sequence[str] = ()) -> list[str]:
    return sorted({*ALWAYS_EXCLUDED_NAMESPACES, operator_namespace, *extra})


def mutating_configuration(
    endpoint: Endpoint,
    *,
    operator_namespace: str,
    extra_excluded: Sequence[str] = (),
    failure_policy: str = "Fail",
    skip_critical: bool = True,
) -> dict[str, Any]:
    namespace_selector = {
        "matchExpressions": [
            {
                "key": NAMESPACE_NAME_LABEL,
                "operator": "NotIn",
                "values": excluded_namespaces(operator_namespace, extra_excluded),
            }
        ]
    }
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": MUTATING_NAME, "labels": {"app.kubernetes.io/part-of": "sidecarset"}},
        "webhooks": [
            {
                "name": "mutate-pod.sidecarset.kruise.io",
                "clientConfig": endpoint.client_config(POD_PATH),
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
                "failurePolicy": failure_policy,
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": TIMEOUT_SECONDS,
                "matchPolicy": "Equivalent",
                "reinvocationPolicy": "Never",
                "namespaceSelector": namespace_selector,
                "objectSelector": {
                    "matchExpressions": [
                        {"key": OPT_OUT_LABEL, "operator": "NotIn", "values": ["false"]}
                    ]
                },
                "matchConditions": [SKIP_CRITICAL_CONDITION] if skip_critical else [],
            },
            {
                "name": "mutate-sidecarset.sidecarset.kruise.io",
                "clientConfig": endpoint.client_config(SIDECARSET_MUTATE_PATH),
                "rules": [
                    {
                        "apiGroups": ["apps.kruise.io"],
                        "apiVersions": SIDECARSET_VERSIONS,
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["sidecarsets"],
                        "scope": "Cluster",
                    }
                ],
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": TIMEOUT_SECONDS,
            },
        ],
    }


def validating_configuration(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {
            "name": VALIDATING_NAME,
            "labels": {"app.kubernetes.io/part-of": "sidecarset"},
        },
        "webhooks": [
            {
                "name": "validate-sidecarset.sidecarset.kruise.io",
                "clientConfig": endpoint.client_config(SIDECARSET_VALIDATE_PATH),
                "rules": [
                    {
                        "apiGroups": ["apps.kruise.io"],
                        "apiVersions": SIDECARSET_VERSIONS,
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["sidecarsets"],
                        "scope": "Cluster",
                    }
                ],
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": TIMEOUT_SECONDS,
            }
        ],
    }


def crd_conversion(endpoint: Endpoint) -> dict[str, Any]:
    """The JSON merge patch pointing the SidecarSet CRD's conversion webhook at `endpoint`.

    Only `spec.conversion`: the CRD's other fields stay with whoever installed it (the Helm
    chart, or the operator's `--install-crd`). The other kind of address (`url` or `service`)
    is removed (null), since a client config must have exactly one."""
    config = endpoint.client_config(SIDECARSET_CONVERT_PATH)
    config.setdefault("url", None)
    config.setdefault("service", None)
    return {
        "spec": {
            "conversion": {
                "strategy": "Webhook",
                "webhook": {
                    "conversionReviewVersions": ["v1"],
                    "clientConfig": config,
                },
            }
        },
    }
