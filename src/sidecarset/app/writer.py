"""Executes a RoundPlan: conditional pod patches, pod conditions, status, revisions, Events.

A ControllerRevision is created with its `data` bytes exactly as Kruise's Go code writes them
(compact, keys sorted, HTML characters escaped): the API server compares those bytes on every
later update and re-emits them in that form, so any other form makes renumbering the revision on
a rollback fail with "data: field is immutable".

Every pod write is one strategic-merge patch that carries the resourceVersion the plan was made
from, so the API server refuses it (409) if the pod changed meanwhile: the plan is then redone
from fresh data instead of overwriting someone else's change. Containers merge by name, so only
the sidecar images and our annotations are sent.

In-flight writes are remembered by pod and resourceVersion until the pod cache shows a newer
version, or for at most `PENDING_TIMEOUT` seconds. Unlike Kruise's expectations (behaviour.md §12.3)
an entry can never wedge a rollout: it expires, and a deleted pod drops out with its cache entry.

The `SidecarSetUpgradable` condition an update earns (behaviour.md §9.3) is the second write per
updated pod, and nothing waits for it: it changes no container and no count. So it is not sent
with the update, as Kruise sends it, but queued and written with API rate that no pod update
needs (`KubeClient.raw(spare=True)`): while a rollout is bound by the client's QPS the image
patches go first and the conditions fill the pauses, so the budget's next pods start sooner. A
queued condition is derived again from the pod as cached when it is sent, and two SidecarSets'
verdicts on one pod become one write.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog

from sidecarset.core import conversion, model, pod_contract, revisions
from sidecarset.core.podview import PodKey, PodView
from sidecarset.core.rollout.in_place_update import (
    ImageChange,
    PodConditionUpdate,
    PodUpdate,
    verdicts_condition_update,
)
from sidecarset.shell import metrics
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import STRATEGIC_MERGE_PATCH, KubeClient, resource_path
from sidecarset.shell.store import Store

log = structlog.get_logger("sidecarset.writer")

PENDING_TIMEOUT = 30.0
STATUS_MIN_INTERVAL = 3.0
"""Seconds between two status writes of one SidecarSet that change only counts and messages.
During a rollout nearly every pod event changes a count: writing each cost about one status
write per updated pod (each also waking the next reconcile, and reaching every watcher of
SidecarSets, Argo CD included). At 1 s the status writes of a 2,000-pod rollout were half of
its writes besides the pods'; Kruise's came about 3.5 s apart. A change of generation, revision
or of any condition's status (the rollout completing, stalling) is written at once."""
WRITE_CONCURRENCY = 16
"""Pod writes of one round in flight at once: enough to keep the client's QPS limit busy over a
loopback or in-cluster round trip of a few milliseconds, few enough to be no burst."""
CONDITION_CONCURRENCY = 4
"""Queued condition writes in flight at once; each waits for a spare token first."""
SIDECARSETS_API = conversion.V1BETA1
"""The storage version (as Kruise 1.9): status writes need no conversion; owner references and
events name the SidecarSet as Kruise 1.9 does."""


def pod_patch(update: PodUpdate) -> dict[str, Any]:
    """The strategic-merge patch of one PodUpdate (images by container name, annotations)."""
    spec: dict[str, list[dict[str, str]]] = {}
    for change in update.images:
        spec.setdefault(change.location, []).append(
            {"name": change.container, "image": change.image}
        )
    body: dict[str, Any] = {
        "metadata": {"resourceVersion": update.resource_version, "uid": update.uid}
    }
    if update.annotations:
        body["metadata"]["annotations"] = dict(update.annotations)
    if spec:
        body["spec"] = spec
    return body


def condition_patch(update: PodConditionUpdate) -> dict[str, Any]:
    return {
        "status": {
            "conditions": [
                {
                    "type": update.type,
                    "status": update.status,
                    "reason": update.reason,
                    "message": update.message,
                    "lastTransitionTime": update.last_transition_time.strftime(
                        "%Y-%m-%dT%H:%M:%SZ"
                    ),
                }
            ]
        }
    }


class Writer:
    def __init__(
        self,
        client: KubeClient,
        pods: Store[PodView],
        *,
        namespace: str,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self._pods = pods
        self._namespace = namespace
        self._now = now
        self._pending: dict[PodKey, tuple[str, float]] = {}  # key -> (rv written from, since)
        self._events_sent: dict[tuple[str, str], str] = {}
        self._status_written: dict[str, float] = {}  # SidecarSet -> monotonic time of last write
        self._conditions: dict[PodKey, dict[str, bool]] = {}  # queued verdicts, oldest first
        self._conditions_queued = asyncio.Event()

    def forget(self, sidecarset: str) -> None:
        """Drop what is kept about a deleted SidecarSet (sent events, last status write)."""
        for key in [k for k in self._events_sent if k[0] == sidecarset]:
            del self._events_sent[key]
        self._status_written.pop(sidecarset, None)

    # -- pods -------------------------------------------------------------------------------

    def pending(self) -> set[PodKey]:
        """Pods whose last write by us the cache has not shown yet (bounded in time)."""
        now = time.monotonic()
        still: set[PodKey] = set()
        for key, (old_rv, since) in list(self._pending.items()):
            cached = self._pods.get(f"{key.namespace}/{key.name}")
            if (
                cached is None
                or cached.metadata.resource_version != old_rv
                or (now - since > PENDING_TIMEOUT)
            ):
                del self._pending[key]
            else:
                still.add(key)
        return still

    async def update_pods(self, sidecarset: str, updates: Sequence[PodUpdate]) -> int:
        """Apply a round's updates, up to `WRITE_CONCURRENCY` at once; how many were written.

        One at a time, a round of 200 pods took 200 round trips (two with the condition) before
        the next round could start; the client's QPS limit still bounds the rate. The plan has
        already settled who goes this round, so the order in which the writes land does not
        matter. An unexpected error is raised once every write has finished, as itself.
        """
        gate = asyncio.Semaphore(WRITE_CONCURRENCY)

        async def one(update: PodUpdate) -> bool:
            async with gate:
                return await self.update_pod(sidecarset, update)

        results = await asyncio.gather(*(one(u) for u in updates), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return sum(1 for result in results if result is True)

    async def update_pod(self, sidecarset: str, update: PodUpdate) -> bool:
        """Apply one pod update; False when the pod changed or vanished (replan next round)."""
        path = resource_path("v1", "pods", namespace=update.pod.namespace, name=update.pod.name)
        try:
            # The returned pod is not read: the informer brings it.
            await self._client.raw(
                "PATCH",
                path,
                body=msgspec.json.encode(pod_patch(update)),
                content_type=STRATEGIC_MERGE_PATCH,
                metadata_only=True,
            )
        except (errors.Conflict, errors.NotFound) as err:
            metrics.POD_UPDATES.labels(sidecarset=sidecarset, result="conflict").inc()
            log.debug(
                "pod changed before our update; replanning",
                pod=str(update.pod),
                reason=type(err).__name__,
            )
            return False
        except errors.Invalid as err:
            metrics.POD_UPDATES.labels(sidecarset=sidecarset, result="error").inc()
            log.warning(
                "pod update refused",
                pod=f"{update.pod.namespace}/{update.pod.name}",
                error=err.message,
            )
            return False
        self._pending[update.pod] = (update.resource_version, time.monotonic())
        metrics.POD_UPDATES.labels(sidecarset=sidecarset, result="ok").inc()
        if update.condition is not None:
            self.queue_condition(update.condition)
        return True

    async def set_condition(self, update: PodConditionUpdate, *, spare: bool = False) -> None:
        """Write `update` (`spare`: a queued one, with spare rate). Written at once, it drops any
        verdict of the same SidecarSets still queued for the pod: that was decided earlier and
        must not overwrite this one when its turn comes."""
        queued = None if spare else self._conditions.get(update.pod)
        if queued is not None:
            for name in update.verdicts:
                queued.pop(name, None)
            if not queued:
                del self._conditions[update.pod]
                metrics.POD_CONDITIONS_WAITING.set(len(self._conditions))
        path = resource_path(
            "v1", "pods", namespace=update.pod.namespace, name=update.pod.name, subresource="status"
        )
        try:
            await self._client.raw(
                "PATCH",
                path,
                body=msgspec.json.encode(condition_patch(update)),
                content_type=STRATEGIC_MERGE_PATCH,
                spare=spare,
                metadata_only=True,
            )
        except errors.NotFound:
            pass

    # -- conditions written with spare rate ---------------------------------------------------

    def queue_condition(self, update: PodConditionUpdate) -> None:
        """Write this condition's verdicts later, with rate no pod update is waiting for."""
        self._conditions.setdefault(update.pod, {}).update(update.verdicts)
        metrics.POD_CONDITIONS_WAITING.set(len(self._conditions))
        self._conditions_queued.set()

    def conditions_waiting(self) -> int:
        return len(self._conditions)

    async def write_queued_conditions(self) -> None:
        """Run for as long as the controller runs: send queued conditions, oldest first,
        `CONDITION_CONCURRENCY` at a time.

        Each is derived again from the pod as now cached (None: nothing left to say), so a
        verdict another SidecarSet wrote meanwhile is kept. A condition still queued when the
        controller stops is not written: the successor does not know of it (as in Kruise, where
        a crash between the pod update and the condition write loses it the same way).
        """
        async with asyncio.TaskGroup() as workers:
            for _ in range(CONDITION_CONCURRENCY):
                workers.create_task(self._condition_worker())

    async def _condition_worker(self) -> None:
        while True:
            if not self._conditions:
                self._conditions_queued.clear()
                await self._conditions_queued.wait()
                continue
            key = next(iter(self._conditions))
            verdicts = self._conditions.pop(key)
            metrics.POD_CONDITIONS_WAITING.set(len(self._conditions))
            await self._write_verdicts(key, verdicts)

    async def _write_verdicts(self, key: PodKey, verdicts: Mapping[str, bool]) -> None:
        pod = self._pods.get(f"{key.namespace}/{key.name}")
        if pod is None:
            return
        update = verdicts_condition_update(pod, verdicts, self._now())
        if update is None:
            return
        try:
            await self.set_condition(update, spare=True)
        except errors.ApiError as err:
            log.warning(
                "pod condition not written", pod=f"{key.namespace}/{key.name}", error=str(err)
            )

    # -- SidecarSet status --------------------------------------------------------------------

    async def status(
        self,
        sidecarset: model.SidecarSet,
        raw_status: Mapping[str, Any],
        new: model.SidecarSetStatus,
    ) -> float | None:
        """Write the status subresource if anything differs.

        A change of counts, messages or reasons only is held back until `STATUS_MIN_INTERVAL` has
        passed since this SidecarSet's last status write: then the seconds to wait are returned,
        and the caller comes back (the next round recomputes the status anyway). Otherwise None.
        """
        body = msgspec.to_builtins(new)
        if {k: raw_status.get(k) for k in body} == body:
            return None
        name = sidecarset.metadata.name
        wait = self._status_written.get(name, -STATUS_MIN_INTERVAL) + STATUS_MIN_INTERVAL
        wait -= time.monotonic()
        if wait > 0 and _status_summary(raw_status) == _status_summary(body):
            return wait
        path = resource_path(SIDECARSETS_API, "sidecarsets", name=name, subresource="status")
        try:
            await self._client.patch(path, {"status": body})
        except errors.NotFound:
            return None
        self._status_written[name] = time.monotonic()
        return None

    # -- revisions ----------------------------------------------------------------------------

    async def record_revision(
        self,
        sidecarset: model.SidecarSet,
        decision: revisions.RevisionDecision,
        existing: Iterable[dict[str, Any]],
    ) -> None:
        collection = resource_path("apps/v1", "controllerrevisions", namespace=self._namespace)
        match decision.action:
            case revisions.RevisionAction.CREATE:
                body = {
                    "apiVersion": "apps/v1",
                    "kind": "ControllerRevision",
                    "metadata": {
                        "name": decision.name,
                        "labels": dict(decision.labels),
                        "annotations": dict(decision.annotations),
                        "ownerReferences": [owner_reference(sidecarset)],
                    },
                    "data": msgspec.Raw(decision.data.encode()),
                    "revision": decision.revision,
                }
                try:
                    await self._client.create(collection, msgspec.json.encode(body))
                except errors.AlreadyExists:
                    pass  # created by our previous incarnation; next round reuses it
            case revisions.RevisionAction.RENUMBER:
                await self._patch_revision(
                    sidecarset, decision.name, {"revision": decision.revision}
                )
            case _:
                pass
        if decision.custom_version_label is not None:
            labels = {pod_contract.CUSTOM_VERSION_LABEL: decision.custom_version_label}
            await self._patch_revision(sidecarset, decision.name, {"metadata": {"labels": labels}})

    async def _patch_revision(
        self, sidecarset: model.SidecarSet, name: str, patch: Mapping[str, Any]
    ) -> None:
        """Patch a ControllerRevision's number or labels; a refusal is logged, not raised.

        Both only order and label the history: a revision that cannot be patched must not stop
        the rollout. The API server refuses any update of a revision whose `data` bytes are not
        in the form encoding/json re-emits ("data: field is immutable"); revisions created by
        older builds of this operator, which sent indented JSON, are such revisions.
        """
        path = resource_path("apps/v1", "controllerrevisions", namespace=self._namespace, name=name)
        try:
            await self._client.patch(path, patch)
        except errors.Invalid as err:
            log.error(
                "ControllerRevision cannot be updated; recreate it to reorder the history",
                sidecarset=sidecarset.metadata.name,
                revision=name,
                error=err.message,
            )

    async def delete_revisions(self, names: Iterable[str]) -> None:
        for name in names:
            try:
                await self._client.delete(
                    resource_path(
                        "apps/v1", "controllerrevisions", namespace=self._namespace, name=name
                    )
                )
            except errors.NotFound:
                pass

    # -- events -------------------------------------------------------------------------------

    async def event(
        self,
        sidecarset: model.SidecarSet,
        reason: str,
        message: str,
        *,
        warning: bool = False,
        now: datetime,
    ) -> None:
        """A de-duplicated Event on the SidecarSet (sent again only when the message changes)."""
        key = (sidecarset.metadata.name, reason)
        if self._events_sent.get(key) == message:
            return
        self._events_sent[key] = message
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{sidecarset.metadata.name}.", "namespace": "default"},
            "involvedObject": {
                "apiVersion": SIDECARSETS_API,
                "kind": "SidecarSet",
                "name": sidecarset.metadata.name,
                "uid": sidecarset.metadata.uid,
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": "sidecarset-controller"},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await self._client.create(resource_path("v1", "events", namespace="default"), body)
        except errors.ApiError as err:
            log.warning("could not record event", reason=reason, error=str(err))


def _status_summary(status: Mapping[str, Any]) -> tuple[object, ...]:
    """What a status write must never wait for: generation, revision, each condition's status.

    Not its reason: a rollout's Progressing reason alternates between Rolling and
    WaitingForUnavailableBudget round by round, and each flip would be a write."""
    conditions = status.get("conditions") or []
    return (
        status.get("observedGeneration"),
        status.get("latestRevision"),
        status.get("collisionCount"),
        sorted(
            (str(c.get("type")), str(c.get("status"))) for c in conditions if isinstance(c, Mapping)
        ),
    )


def owner_reference(sidecarset: model.SidecarSet) -> dict[str, Any]:
    return {
        "apiVersion": SIDECARSETS_API,
        "kind": "SidecarSet",
        "name": sidecarset.metadata.name,
        "uid": sidecarset.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": False,
    }


def describe(change: ImageChange) -> str:
    return f"{change.container}: {change.previous} -> {change.image}"
