"""The logging example run for real: nginx writes access logs, Filebeat ships them, we count.

Used by `make demo` and the real-node tests. Each request the experiment sends carries a unique
id (`GET /?seq=<phase>-<pod>-<n>`), so counting the ids Filebeat shipped tells exactly how many
lines were lost and how many were shipped twice, before, during and after an in-place upgrade.

The log store is Filebeat's `file` output, written to an `emptyDir` volume of each pod (`shipped`)
that the host reads in the real node's kubelet folder: no Elasticsearch-compatible store can be
built from the registries this project may use, and a hostPath volume would need the operator's
privileged-sidecar policy. An emptyDir survives container restarts, which is all the experiment
needs. Requests go only to pod addresses on the real node's own bridge.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from sidecarset.devcluster.nodeconfig import NODE_NAME, REAL_NODE_TOLERATION
from sidecarset.shell.kube.client import JSON_PATCH, KubeClient, resource_path

SEQ = re.compile(r"[?&]seq=([A-Za-z0-9_.-]+)")
SHIPPED_MOUNT = "/shipped"

# Filebeat's configuration for the local store: the example's (examples/logging), with a file
# output instead of Elasticsearch. `registry.flush: 0s` writes the read offsets as soon as events
# are acknowledged, and `shutdown_timeout` lets a stopping Filebeat wait for the last
# acknowledgements: with the registry on a pod volume, a restarted container resumes exactly
# where the old one stopped. The `log` input, not filestream (beta in 7.16), which re-shipped a
# few in-flight lines across restarts in some runs.
FILEBEAT_YML = """\
filebeat.inputs:
- type: log
  paths:
  - /var/log/app/*.log
  scan_frequency: 1s
  fields:
    namespace: ${POD_NAMESPACE}
    pod: ${POD_NAME}
  fields_under_root: true
filebeat.registry.flush: 0s
filebeat.shutdown_timeout: 5s
output.file:
  path: /shipped
  filename: events
  rotate_every_kb: 102400
  number_of_files: 64
"""


def filebeat_configmap() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "filebeat-config"},
        "data": {"filebeat.yml": FILEBEAT_YML},
    }


def local_sidecarset(
    example: dict[str, Any], *, name: str, namespace: str, registry_on_volume: bool = True
) -> dict[str, Any]:
    """The example SidecarSet for the local node: scoped to `namespace`, images never pulled,
    a `shipped` volume standing in for Elasticsearch, readiness from Filebeat's HTTP endpoint
    (`filebeat test output` cannot test a file output). `registry_on_volume=False` keeps the
    registry in the container's own filesystem, as the article's manifest does."""
    body = copy.deepcopy(example)
    body["metadata"] = {"name": name}
    spec = body["spec"]
    spec["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    [filebeat] = spec["containers"]
    filebeat["imagePullPolicy"] = "IfNotPresent"
    filebeat["readinessProbe"] = {"httpGet": {"path": "/", "port": 5066}, "periodSeconds": 2}
    mounts = filebeat["volumeMounts"]
    if not registry_on_volume:
        mounts = [m for m in mounts if m["name"] != "filebeat-registry"]
        spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "filebeat-registry"]
    filebeat["volumeMounts"] = [*mounts, {"name": "shipped", "mountPath": SHIPPED_MOUNT}]
    spec["volumes"].append({"name": "shipped", "emptyDir": {}})
    return body


def nginx_deployment(image: str, replicas: int, label: str = "kruise.io/inject-filebeat") -> Any:
    """The example's nginx Deployment for the real node, with the locally built nginx."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "nginx", "labels": {"app": "nginx"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx", label: "true"}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": NODE_NAME},
                    "tolerations": [REAL_NODE_TOLERATION],
                    "enableServiceLinks": False,
                    "containers": [
                        {
                            "name": "nginx",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "readinessProbe": {"httpGet": {"path": "/", "port": 80}},
                            "volumeMounts": [{"name": "log", "mountPath": "/var/log/nginx"}],
                        }
                    ],
                    "volumes": [{"name": "log", "emptyDir": {}}],
                },
            },
        },
    }


@dataclass
class Tally:
    """What was sent to each pod and what arrived in the store, by request id."""

    sent: dict[str, list[str]] = field(default_factory=lambda: collections.defaultdict(list))
    failed: int = 0

    def ids(self, phase: str | None = None) -> list[str]:
        return [
            i
            for ids in self.sent.values()
            for i in ids
            if phase is None or i.startswith(phase + "-")
        ]


@dataclass(frozen=True)
class Counts:
    sent: int
    shipped: int  # distinct ids found in the store
    duplicates: int  # extra copies of ids found more than once
    missing: int  # sent but never shipped

    def line(self) -> str:
        return (
            f"sent {self.sent:>5}  shipped {self.shipped:>5}  missing {self.missing:>4}  "
            f"shipped twice or more {self.duplicates:>5}"
        )


def store_dirs(kubelet_dir: Path, pod_uids: Iterable[str]) -> list[Path]:
    """Where the kubelet keeps each pod's `shipped` emptyDir on the host."""
    return [
        kubelet_dir / "pods" / uid / "volumes" / "kubernetes.io~empty-dir" / "shipped"
        for uid in pod_uids
    ]


def read_store(dirs: Iterable[Path]) -> collections.Counter[str]:
    """Every request id in the store (Filebeat's file output: one JSON event per line)."""
    found: collections.Counter[str] = collections.Counter()
    paths = [p for d in dirs if d.exists() for p in d.glob("events*")]
    for path in paths:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            try:
                message = json.loads(line).get("message", "")
            except ValueError:
                continue
            match = SEQ.search(message)
            if match:
                found[match.group(1)] += 1
    return found


def count(ids: Iterable[str], store: collections.Counter[str]) -> Counts:
    wanted = list(ids)
    return Counts(
        sent=len(wanted),
        shipped=sum(1 for i in wanted if store[i] > 0),
        duplicates=sum(store[i] - 1 for i in wanted if store[i] > 1),
        missing=sum(1 for i in wanted if store[i] == 0),
    )


async def send(
    pods: dict[str, str],
    tally: Tally,
    phase: str,
    per_pod: int,
    *,
    rate: float = 20.0,
    first: int = 0,
) -> None:
    """`per_pod` requests to every pod (name -> IP), `rate` per second in all; bounded.

    Request ids are `<phase>-<pod suffix>-<n>` for n from `first`; only requests answered 200
    count as sent (nginx logs the others too, but they are not the experiment's).
    """
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
        for n in range(first, first + per_pod):
            for name, ip in pods.items():
                request_id = f"{phase}-{name.rsplit('-', 1)[-1]}-{n}"
                try:
                    async with session.get(f"http://{ip}/?seq={request_id}") as resp:
                        await resp.read()
                        if resp.status == 200:
                            tally.sent[name].append(request_id)
                        else:
                            tally.failed += 1
                except (aiohttp.ClientError, TimeoutError, OSError):
                    tally.failed += 1
                await asyncio.sleep(1.0 / rate)


async def send_until(
    pods: dict[str, str],
    tally: Tally,
    phase: str,
    done: Callable[[], Awaitable[bool]],
    *,
    limit: float,
    rate: float = 20.0,
) -> bool:
    """Keep sending, one request to every pod per round, until `await done()` is true or
    `limit` seconds have passed; returns whether `done` became true."""
    deadline = time.monotonic() + limit
    n = 0
    while time.monotonic() < deadline:
        await send(pods, tally, phase, 1, rate=rate, first=n)
        n += 1
        if await done():
            return True
    return False


# -- the experiment, against a live cluster --------------------------------------------------


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


async def nginx_pods(kube: KubeClient, namespace: str, replicas: int, timeout: float) -> Any:
    """name -> pod IP of the nginx pods, once `replicas` of them are Ready."""
    path = resource_path("v1", "pods", namespace=namespace)
    deadline = time.monotonic() + timeout
    while True:
        body = await kube.get(path, labelSelector="app=nginx")
        live = [p for p in body["items"] if not p["metadata"].get("deletionTimestamp")]
        if len(live) == replicas and all(_ready(p) for p in live):
            return {p["metadata"]["name"]: p["status"]["podIP"] for p in live}
        if time.monotonic() > deadline:
            states = {p["metadata"]["name"]: p.get("status", {}).get("phase") for p in live}
            raise TimeoutError(
                f"{replicas} ready nginx pods not there after {timeout:.0f}s: {states}"
            )
        await asyncio.sleep(1)


async def rollout_complete(kube: KubeClient, name: str, pods: int) -> bool:
    path = resource_path("apps.kruise.io/v1alpha1", "sidecarsets", name=name)
    obj = await kube.get(path)
    st = obj.get("status", {})
    return bool(
        st.get("observedGeneration") == obj["metadata"]["generation"]
        and st.get("matchedPods") == st.get("updatedPods") == st.get("updatedReadyPods") == pods
    )


@dataclass(frozen=True)
class UpgradeResult:
    phases: dict[str, Counts]
    total: Counts
    failed_requests: int
    rollout_seconds: float


async def upgrade_under_traffic(
    kube: KubeClient,
    *,
    sidecarset: str,
    pods: dict[str, str],
    new_image: str,
    shipped: list[Path],
    per_pod: int = 40,
    progress: Callable[[str], None] = print,
    settle: float = 60.0,
) -> UpgradeResult:
    """Traffic before, during and after an in-place upgrade of Filebeat; then count the store."""
    tally = Tally()
    progress(f"before: {per_pod} requests to each of {len(pods)} pods")
    await send(pods, tally, "before", per_pod)
    await wait_shipped(shipped, tally.ids(), timeout=settle)
    progress(f"upgrading the sidecar to {new_image}, requests keep coming")
    await kube.patch(
        resource_path("apps.kruise.io/v1alpha1", "sidecarsets", name=sidecarset),
        [{"op": "replace", "path": "/spec/containers/0/image", "value": new_image}],
        content_type=JSON_PATCH,
    )
    started = time.monotonic()
    finished = await send_until(
        pods, tally, "during", lambda: rollout_complete(kube, sidecarset, len(pods)), limit=300
    )
    if not finished:
        raise TimeoutError("the rollout did not complete within 300 s")
    rollout_seconds = time.monotonic() - started
    progress(f"rollout complete in {rollout_seconds:.0f}s; after: {per_pod} more to each pod")
    await send(pods, tally, "after", per_pod)
    await wait_shipped(shipped, tally.ids(), timeout=settle)
    store = read_store(shipped)
    phases = {phase: count(tally.ids(phase), store) for phase in ("before", "during", "after")}
    return UpgradeResult(phases, count(tally.ids(), store), tally.failed, rollout_seconds)


async def wait_shipped(shipped: list[Path], ids: list[str], *, timeout: float) -> None:
    """Until every id is in the store and the store stopped growing for 3 s (or timeout)."""
    deadline = time.monotonic() + timeout
    last_total, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        store = read_store(shipped)
        total = sum(store.values())
        if total != last_total:
            last_total, stable_since = total, time.monotonic()
        if all(store[i] for i in ids) and time.monotonic() - stable_since >= 3:
            return
        await asyncio.sleep(0.5)
