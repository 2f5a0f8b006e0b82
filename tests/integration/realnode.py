"""Pods for the real node: its name, its locally built images, and the pod spec they need.

Images are never pulled (no registry is reachable): they are imported into the node's
containerd from `<testbin>/images/`, so every container says `imagePullPolicy: IfNotPresent`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sidecarset.devcluster.nodeconfig import NODE_NAME

AGENT_V1 = "sidecarset.local/testagent:v1"
AGENT_V2 = "sidecarset.local/testagent:v2"
AGENT_V3 = "sidecarset.local/testagent:v3"
AGENT_BROKEN = "sidecarset.local/testagent:broken"
AGENT_EMPTY = "sidecarset.local/testagent:empty"
FILEBEAT_OLD = "docker.elastic.co/beats/filebeat:7.16.2"
FILEBEAT_NEW = "docker.elastic.co/beats/filebeat:7.16.3"

# An exec readiness probe that reads a marker inside the container's own filesystem, so two
# hot-upgrade twins sharing the pod's network never answer for each other.
READY_PROBE = {
    "exec": {"command": ["testagent", "check"]},
    "periodSeconds": 1,
    "failureThreshold": 1,
}


def app_image(images_dir: Path) -> str:
    """The app image (real nginx from Debian packages, or our access-log app) from the index."""
    index = json.loads((images_dir / "index.json").read_text())
    [ref] = [i["ref"] for i in index["images"] if i.get("role") == "app"]
    return str(ref)


def container(name: str, image: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": image, "imagePullPolicy": "IfNotPresent", **extra}


def agent(name: str, image: str = AGENT_V1, **extra: Any) -> dict[str, Any]:
    """A test agent that becomes ready after 1 s and exits at once on SIGTERM."""
    defaults = {"args": ["serve", "--ready-delay", "1s"], "readinessProbe": READY_PROBE}
    return container(name, image, **{**defaults, **extra})


def on_real_node(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` pinned to the real node, with a short grace period unless it sets one."""
    return {
        "nodeSelector": {"kubernetes.io/hostname": NODE_NAME},
        "terminationGracePeriodSeconds": 5,
        "enableServiceLinks": False,
        **spec,
    }


def pod(name: str, labels: dict[str, str], containers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": on_real_node({"containers": containers}),
    }


def statuses(p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    st = p.get("status", {})
    return {
        s["name"]: s for s in st.get("containerStatuses", []) + st.get("initContainerStatuses", [])
    }
