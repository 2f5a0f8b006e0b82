"""Executes a RoundPlan: conditional pod patches, pod conditions, status, revisions, Events.

Every pod write is one strategic-merge patch that carries the resourceVersion the plan was made
from, so the API server refuses it (409) if the pod changed meanwhile: the plan is then redone
from fresh data instead of overwriting someone else's change. Containers merge by name, so only
the sidecar images and our annotations are sent.

In-flight writes are remembered by pod and resourceVersion until the pod cache shows a newer
version, or for at most `PENDING_TIMEOUT` seconds. Unlike Kruise's expectations (spec 11.5),
an entry can never wedge a rollout: it expires, and a deleted pod drops out with its cache entry.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import msgspec
import structlog

from sidecarset.core import model, revisions, wire
from sidecarset.core.podview import PodKey, PodView
from sidecarset.core.rollout import ImageChange, PodConditionUpdate, PodUpdate
from sidecarset.shell import metrics
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import STRATEGIC_MERGE_PATCH, KubeClient, resource_path
from sidecarset.shell.store import Store

log = structlog.get_logger("sidecarset.writer")

PENDING_TIMEOUT = 30.0
SIDECARSETS_API = "apps.kruise.io/v1alpha1"


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
    def __init__(self, client: KubeClient, pods: Store[PodView], *, namespace: str) -> None:
        self._client = client
        self._pods = pods
        self._namespace = namespace
        self._pending: dict[PodKey, tuple[str, float]] = {}  # key -> (rv written from, since)
        self._events_sent: dict[tuple[str, str], str] = {}

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

    async def update_pod(self, sidecarset: str, update: PodUpdate) -> bool:
        """Apply one pod update; False when the pod changed or vanished (replan next round)."""
        path = resource_path("v1", "pods", namespace=update.pod.namespace, name=update.pod.name)
        try:
            await self._client.patch(path, pod_patch(update), content_type=STRATEGIC_MERGE_PATCH)
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
            await self.set_condition(update.condition)
        return True

    async def set_condition(self, update: PodConditionUpdate) -> None:
        path = resource_path(
            "v1", "pods", namespace=update.pod.namespace, name=update.pod.name, subresource="status"
        )
        try:
            await self._client.patch(
                path, condition_patch(update), content_type=STRATEGIC_MERGE_PATCH
            )
        except errors.NotFound:
            pass

    # -- SidecarSet status --------------------------------------------------------------------

    async def status(
        self,
        sidecarset: model.SidecarSet,
        raw_status: Mapping[str, Any],
        new: model.SidecarSetStatus,
    ) -> bool:
        """Write the status subresource if anything differs; True when written."""
        body = msgspec.to_builtins(new)
        if {k: raw_status.get(k) for k in body} == body:
            return False
        path = resource_path(
            SIDECARSETS_API, "sidecarsets", name=sidecarset.metadata.name, subresource="status"
        )
        try:
            await self._client.patch(path, {"status": body})
        except errors.NotFound:
            return False
        return True

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
                    "data": msgspec.json.decode(decision.data),
                    "revision": decision.revision,
                }
                try:
                    await self._client.create(collection, body)
                except errors.AlreadyExists:
                    pass  # created by our previous incarnation; next round reuses it
            case revisions.RevisionAction.RENUMBER:
                await self._client.patch(
                    resource_path(
                        "apps/v1",
                        "controllerrevisions",
                        namespace=self._namespace,
                        name=decision.name,
                    ),
                    {"revision": decision.revision},
                )
            case _:
                pass
        if decision.custom_version_label is not None:
            await self._client.patch(
                resource_path(
                    "apps/v1", "controllerrevisions", namespace=self._namespace, name=decision.name
                ),
                {
                    "metadata": {
                        "labels": {wire.CUSTOM_VERSION_LABEL: decision.custom_version_label}
                    }
                },
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
