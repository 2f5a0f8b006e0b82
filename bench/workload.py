"""The objects the benchmarks create: SidecarSets shaped like real ones, and pods.

`sidecarsets(100)` is the admission fixture: three SidecarSets select pods labelled
`WEBHOOK_LABEL` (a log shipper with a shared volume, a metrics agent with transferred env, a
proxy injected before the app), the other 97 select other apps, some by namespace. A pod carrying
the label is therefore matched by 3 SidecarSets among 100, and the webhook has to look at all.
"""

from __future__ import annotations

import copy
from typing import Any

from sidecarset.simulator import images

WEBHOOK_LABEL = "bench.sidecarset.dev/webhook"
OLD_IMAGE = "docker.elastic.co/beats/filebeat:7.16.2"
NEW_IMAGE = "docker.elastic.co/beats/filebeat:7.16.3"


def _shipper(name: str, image: str) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "args": ["-e", "-E", "http.enabled=true"],
        "env": [
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}},
            },
            {
                "name": "NODE_NAME",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}},
            },
        ],
        "livenessProbe": {"exec": {"command": ["sh", "-c", "curl --fail 127.0.0.1:5066"]}},
        "readinessProbe": {"exec": {"command": ["sh", "-c", "filebeat test output"]}},
        "resources": {
            "limits": {"cpu": "1", "memory": "200Mi"},
            "requests": {"cpu": "100m", "memory": "100Mi"},
        },
        "volumeMounts": [
            {"mountPath": "/usr/share/filebeat", "name": f"{name}-config"},
            {"mountPath": "/var/log", "name": "log"},
        ],
    }


def _volumes(name: str) -> list[dict[str, Any]]:
    return [
        {"name": f"{name}-config", "configMap": {"name": f"{name}-config"}},
        {"name": "log", "emptyDir": {}},
    ]


def sidecarset(
    name: str,
    selector: dict[str, Any],
    containers: list[dict[str, Any]],
    *,
    volumes: list[dict[str, Any]] | None = None,
    namespace_selector: dict[str, Any] | None = None,
    strategy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": selector, "containers": containers}
    if volumes:
        spec["volumes"] = volumes
    if namespace_selector is not None:
        spec["namespaceSelector"] = namespace_selector
    if strategy is not None:
        spec["updateStrategy"] = strategy
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "SidecarSet",
        "metadata": {"name": name, "labels": {"sidecarset.dev/bench": "true"}},
        "spec": spec,
    }


def admission_sidecarsets(count: int = 100) -> list[dict[str, Any]]:
    """`count` SidecarSets, three of which select pods labelled WEBHOOK_LABEL=on."""
    matching = {"matchLabels": {WEBHOOK_LABEL: "on"}}
    shipper = _shipper("log-shipper", OLD_IMAGE)
    shipper["shareVolumePolicy"] = {"type": "enabled"}
    agent = {
        "name": "metrics-agent",
        "image": "prom/node-exporter:v1.8.2",
        "args": ["--web.listen-address=:9100"],
        "ports": [{"containerPort": 9100, "name": "metrics"}],
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        "transferEnv": [{"sourceContainerName": "app", "envName": "APP_ENV"}],
    }
    proxy = {
        "name": "proxy",
        "image": "envoyproxy/envoy:v1.31.2",
        "args": ["-c", "/etc/envoy/envoy.yaml"],
        "podInjectPolicy": "BeforeAppContainer",
        "ports": [{"containerPort": 15001, "name": "proxy"}],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
        "securityContext": {"runAsUser": 1337, "runAsNonRoot": True},
    }
    found = [
        sidecarset("bench-ss-000", matching, [shipper], volumes=_volumes("log-shipper")),
        sidecarset("bench-ss-001", matching, [agent]),
        sidecarset("bench-ss-002", matching, [proxy]),
    ]
    for i in range(3, count):
        selector: dict[str, Any] = (
            {"matchLabels": {"app": f"service-{i}"}}
            if i % 3
            else {"matchExpressions": [{"key": "tier", "operator": "In", "values": [f"t{i}"]}]}
        )
        ns = {"matchLabels": {"team": f"team-{i}"}} if i % 4 == 0 else None
        found.append(
            sidecarset(
                f"bench-ss-{i:03d}",
                selector,
                [_shipper(f"shipper-{i}", OLD_IMAGE)],
                volumes=_volumes(f"shipper-{i}"),
                namespace_selector=ns,
            )
        )
    return found


def pod(
    name: str,
    labels: dict[str, str],
    *,
    node: str | None = None,
    gated: bool = False,
    generate: bool = False,
) -> dict[str, Any]:
    """A pod like a Deployment's: one app container with env, ports, probes and resources.

    `node` binds it directly (no scheduler); `gated` keeps it unscheduled (a scheduling gate), so
    nothing but the API server and the webhook ever touches it.
    """
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "app",
                "image": "nginx:1.25",
                "env": [
                    {"name": "APP_ENV", "value": "production"},
                    {"name": "LOG_LEVEL", "value": "info"},
                ],
                "ports": [{"containerPort": 80, "name": "http"}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 80}},
                "resources": {
                    "limits": {"cpu": "500m", "memory": "256Mi"},
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                },
                "volumeMounts": [{"name": "cache", "mountPath": "/var/cache/nginx"}],
            }
        ],
        "volumes": [{"name": "cache", "emptyDir": {}}],
        "terminationGracePeriodSeconds": 5,
    }
    if node is not None:
        spec["nodeName"] = node
    if gated:
        spec["schedulingGates"] = [{"name": "sidecarset.dev/bench"}]
    meta: dict[str, Any] = {"labels": {"app": "bench", **labels}}
    if generate:
        meta["generateName"] = f"{name}-"
    else:
        meta["name"] = name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def running_status(pod_obj: dict[str, Any]) -> dict[str, Any]:
    """A `pods/status` body saying every container runs its spec image and the pod is Ready, as
    a kubelet would report it (for pods no node simulator drives)."""
    stamp = pod_obj["metadata"].get("creationTimestamp") or "2026-01-01T00:00:00Z"
    statuses = [
        {
            "name": c["name"],
            "image": c["image"],
            "imageID": images.image_id(c["image"]),
            "containerID": f"containerd://{pod_obj['metadata']['uid'][:8]}{i:02d}",
            "ready": True,
            "started": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": stamp}},
        }
        for i, c in enumerate(pod_obj["spec"]["containers"])
    ]
    conditions = [
        {"type": t, "status": "True", "lastTransitionTime": stamp}
        for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    return {
        "status": {
            "phase": "Running",
            "conditions": conditions,
            "containerStatuses": sorted(statuses, key=lambda s: s["name"]),
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.2",
            "startTime": stamp,
        }
    }


def scoped(body: dict[str, Any], namespace: str) -> dict[str, Any]:
    """A copy of a SidecarSet limited to one namespace (SidecarSets are cluster-scoped)."""
    out = copy.deepcopy(body)
    out["spec"]["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    return out
