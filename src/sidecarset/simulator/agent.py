"""The node simulator's shell: registers Nodes, watches the pods bound to them, writes status.

It does, through the API server, what kubelets do: `pods/status` patches (conditions merge by
type, so readiness-gate conditions owned by others survive) and the final grace-0 DELETE of a
terminating pod. Decisions come from `kubelet.step`; this module only schedules and writes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import STRATEGIC_MERGE_PATCH, KubeClient, resource_path
from sidecarset.simulator import kubelet

log = logging.getLogger("sidecarset.simulator")

KUBELET_VERSION = "v1.36.3"


def node_names(count: int, prefix: str = "sim-node") -> list[str]:
    return [f"{prefix}-{i}" for i in range(count)]


def node_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "sidecarset.dev/simulated": "true",
            },
        },
    }


def node_status(now: str) -> dict[str, Any]:
    capacity = {"cpu": "64", "memory": "256Gi", "pods": "2000", "ephemeral-storage": "500Gi"}
    pressure = [
        ("MemoryPressure", "KubeletHasSufficientMemory"),
        ("DiskPressure", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "KubeletHasSufficientPID"),
    ]
    conditions = [
        {
            "type": t,
            "status": "False",
            "reason": r,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
            "message": "simulated",
        }
        for t, r in pressure
    ]
    conditions.append(
        {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
            "message": "simulated kubelet is posting ready status",
        }
    )
    return {
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "nodeInfo": {
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "containerRuntimeVersion": "simulated://1.0",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "osImage": "sidecarset node simulator",
                "kernelVersion": "",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        }
    }


class NodeSimulator:
    """Drives every pod bound to its nodes the way a kubelet would."""

    def __init__(
        self,
        client: KubeClient,
        *,
        nodes: Sequence[str],
        rules: kubelet.Rules,
        workers: int = 8,
        ready_file: Path | None = None,
    ) -> None:
        self._client = client
        self._nodes = set(nodes)
        self._node_list = list(nodes)
        self._rules = rules
        self._workers = workers
        self._ready_file = ready_file
        self._pods: dict[str, dict[str, Any]] = {}  # uid -> latest pod seen
        self._marks: dict[str, dict[str, float]] = {}
        self._due: dict[str, float] = {}  # uid -> monotonic time it should be looked at
        self._busy: set[str] = set()
        self._wakeup = asyncio.Event()
        self.synced = asyncio.Event()

    async def run(self) -> None:
        await self.register_nodes()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._watch_pods())
            tg.create_task(self._heartbeat())
            for _ in range(self._workers):
                tg.create_task(self._worker())
            await self.synced.wait()
            if self._ready_file:
                self._ready_file.write_text("ready\n")
            log.info("simulating %d nodes", len(self._nodes))

    async def register_nodes(self) -> None:
        now = kubelet.rfc3339(datetime.now(UTC))
        for name in self._node_list:
            try:
                await self._client.create(resource_path("v1", "nodes"), node_manifest(name))
            except errors.AlreadyExists:
                pass
            await self._client.patch(
                resource_path("v1", "nodes", name=name, subresource="status"),
                node_status(now),
                content_type=STRATEGIC_MERGE_PATCH,
            )

    async def _heartbeat(self) -> None:
        """Refresh the Ready condition now and then, as a kubelet would (cosmetic here)."""
        while True:
            await asyncio.sleep(40)
            try:
                await self.register_nodes()
            except errors.ApiError as err:
                log.warning("node heartbeat failed: %s", err)

    # -- pod cache ------------------------------------------------------------------------

    def _observe(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        if pod.get("spec", {}).get("nodeName") not in self._nodes:
            return
        old = self._pods.get(uid)
        if old is not None and _rv(old) > _rv(pod):
            return  # our own PATCH response was newer than this event
        self._pods[uid] = pod
        self._schedule(uid, 0.0)

    def _forget(self, uid: str) -> None:
        self._pods.pop(uid, None)
        self._marks.pop(uid, None)
        self._due.pop(uid, None)

    def _schedule(self, uid: str, delay: float) -> None:
        at = time.monotonic() + delay
        if uid not in self._due or self._due[uid] > at:
            self._due[uid] = at
            self._wakeup.set()

    async def _watch_pods(self) -> None:
        path = resource_path("v1", "pods")
        rv = ""
        while True:
            if not rv:
                rv = await self._relist(path)
                self.synced.set()
            try:
                async for line in self._client.watch(
                    path, resource_version=rv, timeout_seconds=300, inactivity_timeout=90
                ):
                    event = json.loads(line)
                    obj = event.get("object", {})
                    kind = event.get("type")
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            rv = ""
                        break
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    if kind == "BOOKMARK":
                        continue
                    if kind == "DELETED":
                        self._forget(obj["metadata"]["uid"])
                    else:
                        self._observe(obj)
            except errors.Gone:
                rv = ""
            except (errors.ApiError, TimeoutError) as err:
                log.warning("pod watch interrupted: %s", err)
                await asyncio.sleep(1)

    async def _relist(self, path: str) -> str:
        seen: set[str] = set()
        rv = ""
        while True:
            try:
                async for page in self._client.list_pages(path):
                    body = json.loads(page)
                    rv = body["metadata"]["resourceVersion"]
                    for pod in body.get("items", []):
                        seen.add(pod["metadata"]["uid"])
                        self._observe(pod)
                break
            except errors.ApiError as err:
                log.warning("pod list failed: %s", err)
                await asyncio.sleep(1)
        for uid in list(self._pods):
            if uid not in seen:
                self._forget(uid)
        return rv

    # -- work -----------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            uid = self._next_due()
            if uid is None:
                self._wakeup.clear()
                wait = min(self._due.values(), default=time.monotonic() + 5) - time.monotonic()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=max(0.01, wait))
                except TimeoutError:
                    pass
                continue
            self._busy.add(uid)
            try:
                await self._sync(uid)
            except Exception:
                log.exception("pod %s: sync failed; retrying", uid)
                self._schedule(uid, 1.0)
            finally:
                self._busy.discard(uid)

    def _next_due(self) -> str | None:
        now = time.monotonic()
        for uid, at in self._due.items():
            if at <= now and uid not in self._busy:
                del self._due[uid]
                return uid
        return None

    async def _sync(self, uid: str) -> None:
        pod = self._pods.get(uid)
        if pod is None:
            return
        result = kubelet.step(
            pod,
            self._marks.get(uid, {}),
            wall=datetime.now(UTC),
            mono=time.monotonic(),
            rules=self._rules,
        )
        meta = pod["metadata"]
        if result.delete:
            path = resource_path("v1", "pods", namespace=meta["namespace"], name=meta["name"])
            try:
                await self._client.delete(
                    path,
                    {
                        "kind": "DeleteOptions",
                        "apiVersion": "v1",
                        "gracePeriodSeconds": 0,
                        "preconditions": {"uid": uid},
                    },
                )
            except (errors.NotFound, errors.Conflict):
                pass
            self._forget(uid)
            return
        self._marks[uid] = result.marks
        if result.patch is not None:
            path = resource_path(
                "v1", "pods", namespace=meta["namespace"], name=meta["name"], subresource="status"
            )
            try:
                updated = await self._client.patch(
                    path, result.patch, content_type=STRATEGIC_MERGE_PATCH
                )
            except errors.NotFound:
                self._forget(uid)
                return
            if updated.get("metadata", {}).get("uid") == uid and uid in self._pods:
                self._observe(updated)
        if result.wake_after is not None:
            self._schedule(uid, result.wake_after)


def _rv(pod: dict[str, Any]) -> int:
    try:
        return int(pod["metadata"].get("resourceVersion", 0))
    except (TypeError, ValueError):
        return 0
