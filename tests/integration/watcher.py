"""An independent observer of a rollout: records every pod event from its own watch and checks
the disruption budget after each one, and any per-pod invariants on every event. It shares no
code with the operator's decisions."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecarset.shell.kube import errors
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
    invariants: Mapping[str, Callable[[Pod], bool]] = field(default_factory=dict)
    """Per-pod invariants (name -> holds), checked against every pod event."""
    violations: list[tuple[int, str, str]] = field(default_factory=list)
    """(event number, invariant, pod name) for every pod event that broke an invariant."""
    relists: int = 0
    """Watches resumed from a fresh list after a 410 (intermediate states not observed)."""

    def assert_nothing_lost(self, most_disrupted: range) -> None:
        """Every state was seen, no invariant broke, the most pods disrupted at once was in
        `most_disrupted`, and no pod was deleted or replaced."""
        assert self.relists == 0  # every intermediate state was seen
        assert self.violations == [], self.violations[:20]
        assert self.max_disrupted in most_disrupted, self.history
        assert not self.recreated
        assert not self.deleted

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
            self.violations.extend(
                (self.events, check, name)
                for check, holds in self.invariants.items()
                if not holds(pod)
            )
        now = sorted(n for n, p in self.pods.items() if self.disrupted(p))
        self.history.append((self.events, now))
        self.max_disrupted = max(self.max_disrupted, len(now))


@contextlib.asynccontextmanager
async def watching(
    kube: KubeClient,
    namespace: str,
    disrupted: Callable[[Pod], bool],
    invariants: Mapping[str, Callable[[Pod], bool]] | None = None,
) -> AsyncIterator[Watcher]:
    """Watch every pod of `namespace` from now until the block ends."""
    path = resource_path("v1", "pods", namespace=namespace)
    listed = await kube.get(path)
    watcher = Watcher(disrupted, invariants=dict(invariants or {}))
    for pod in listed["items"]:
        watcher.observe("ADDED", pod)
    started = asyncio.Event()

    async def relist() -> str:
        body = await kube.get(path)
        current = {pod["metadata"]["name"]: pod for pod in body["items"]}
        for name, pod in list(watcher.pods.items()):
            if name not in current:
                watcher.observe("DELETED", pod)
        for pod in current.values():
            watcher.observe("MODIFIED", pod)
        watcher.relists += 1
        return str(body["metadata"]["resourceVersion"])

    async def follow() -> None:
        rv = listed["metadata"]["resourceVersion"]
        while True:
            started.set()
            try:
                async for line in kube.watch(path, resource_version=rv, timeout_seconds=600):
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        status = event["object"]
                        raise errors.from_response(int(status.get("code") or 0), status)
                    rv = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        watcher.observe(event["type"], event["object"])
            except errors.Gone:
                # The resume point is gone (etcd compacted, apiserver restarted): the states in
                # between are lost to every client; go on from a fresh list and count the gap.
                with contextlib.suppress(errors.ApiError):
                    rv = await relist()
            except (errors.ApiError, TimeoutError):
                # The apiserver is down or restarting: nothing can change until it is back.
                await asyncio.sleep(0.2)

    task = asyncio.create_task(follow())
    await started.wait()
    try:
        yield watcher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
