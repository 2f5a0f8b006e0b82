"""An independent observer of a rollout: records every pod event from its own watch and checks
the disruption budget after each one. It shares no code with the operator's decisions."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from sidecarset.shell.kube.client import KubeClient, resource_path

Pod = dict[str, Any]


def sidecar_disrupted(container: str, image: str) -> Callable[[Pod], bool]:
    """A pod whose `container` was switched to `image` but is not yet running it ready."""

    def disrupted(pod: Pod) -> bool:
        spec = [
            c
            for c in pod["spec"].get("containers", []) + pod["spec"].get("initContainers", [])
            if c["name"] == container
        ]
        if not spec or spec[0]["image"] != image:
            return False
        statuses = [
            s
            for s in pod.get("status", {}).get("containerStatuses", [])
            + pod.get("status", {}).get("initContainerStatuses", [])
            if s["name"] == container
        ]
        pod_ready = any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in pod.get("status", {}).get("conditions", [])
        )
        running_new = (
            bool(statuses) and statuses[0].get("image") == image and bool(statuses[0].get("ready"))
        )
        return not (pod_ready and running_new)

    return disrupted


@dataclass
class Watcher:
    disrupted: Callable[[Pod], bool]
    pods: dict[str, Pod] = field(default_factory=dict)
    uids: dict[str, str] = field(default_factory=dict)
    events: int = 0
    max_disrupted: int = 0
    history: list[tuple[int, list[str]]] = field(default_factory=list)
    recreated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    async def snapshot(self) -> dict[str, Pod]:
        """The pods as last seen (async, for `wait_for`)."""
        return dict(self.pods)

    def observe(self, kind: str, pod: Pod) -> None:
        name = pod["metadata"]["name"]
        uid = pod["metadata"]["uid"]
        self.events += 1
        if kind == "DELETED":
            self.deleted.append(name)
            self.pods.pop(name, None)
        else:
            if name in self.uids and self.uids[name] != uid:
                self.recreated.append(name)
            self.uids[name] = uid
            self.pods[name] = pod
        now = sorted(n for n, p in self.pods.items() if self.disrupted(p))
        self.history.append((self.events, now))
        self.max_disrupted = max(self.max_disrupted, len(now))


@contextlib.asynccontextmanager
async def watching(
    kube: KubeClient, namespace: str, disrupted: Callable[[Pod], bool]
) -> AsyncIterator[Watcher]:
    """Watch every pod of `namespace` from now until the block ends."""
    path = resource_path("v1", "pods", namespace=namespace)
    listed = await kube.get(path)
    watcher = Watcher(disrupted)
    for pod in listed["items"]:
        watcher.observe("ADDED", pod)
    started = asyncio.Event()

    async def follow() -> None:
        rv = listed["metadata"]["resourceVersion"]
        while True:
            started.set()
            async for line in kube.watch(path, resource_version=rv, timeout_seconds=600):
                event = json.loads(line)
                if event["type"] == "ERROR":
                    raise AssertionError(f"watch failed: {event}")
                rv = event["object"]["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    watcher.observe(event["type"], event["object"])

    task = asyncio.create_task(follow())
    await started.wait()
    try:
        yield watcher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
