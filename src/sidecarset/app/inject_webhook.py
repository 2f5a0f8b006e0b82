"""The pod mutating webhook: admission request -> core injection -> JSON patch.

Reads only in-memory stores (SidecarSets, Namespaces, ControllerRevisions), synced before the
server answers. A namespace missing from the store (created a moment ago) is fetched once from
the API. The patch is built completely from the `Injection` before anything is returned, so a
response is never half-made; a problem in the user's pod is a denial naming the field; a bug of
ours is an error response that the failurePolicy handles.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from sidecarset.app import revision_lookup
from sidecarset.app.projections import NamespaceView, SidecarSetEntry
from sidecarset.core import injection, model, patches
from sidecarset.shell import admission, metrics
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import KubeClient, resource_path
from sidecarset.shell.store import Store

log = structlog.get_logger("sidecarset.inject")

# Mirrors injection's contract: `now` is RFC 3339 with second precision, as Go's time.Time JSON.
_RFC3339 = "%Y-%m-%dT%H:%M:%SZ"


class PodInjector:
    def __init__(
        self,
        *,
        sidecarsets: Store[SidecarSetEntry],
        namespaces: Store[NamespaceView],
        revisions: Store[dict[str, Any]],
        client: KubeClient | None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._sidecarsets = sidecarsets
        self._namespaces = namespaces
        self._revisions = revisions
        self._client = client
        self._now = now
        self._draw = draw

    async def handle(self, request: admission.AdmissionRequest) -> admission.AdmissionResponse:
        if (
            request.resource != "pods"
            or request.sub_resource
            or request.object is None
            or request.operation != "CREATE"
        ):
            return admission.allowed()
        pod = request.object
        namespace = (pod.get("metadata") or {}).get("namespace") or request.namespace or "default"
        labels = await self._namespace_labels(namespace)
        try:
            chosen = self.versions_for(pod)
            result = injection.inject(
                pod,
                chosen,
                labels,
                now=self._now().strftime(_RFC3339),
                request_namespace=request.namespace,
            )
        except injection.InjectionDenied as err:
            metrics.INJECTION_FAILURES.labels(reason="denied").inc()
            return admission.invalid(f"sidecarset injection refused: {err}")
        except injection.RevisionChoiceError as err:
            metrics.INJECTION_FAILURES.labels(reason="revision").inc()
            return admission.invalid(f"sidecarset injection refused: {err}")
        if not result.changed:
            return admission.allowed(warnings=result.warnings)
        ops = patches.for_injection(result)
        if not request.dry_run:
            for name in result.injected:
                metrics.INJECTIONS.labels(sidecarset=name).inc()
        log.debug("pod injected", sidecarsets=list(result.injected), ops=len(ops))
        return admission.patched(ops, warnings=result.warnings)

    def versions_for(self, pod: dict[str, Any]) -> list[model.SidecarSet]:
        """Each usable SidecarSet as the version a new pod gets (live or pinned revision)."""
        labels = (pod.get("metadata") or {}).get("labels") or {}
        chosen: list[model.SidecarSet] = []
        revisions = None
        for entry in self._sidecarsets.values():
            live = entry.sidecarset
            if live is None:
                continue  # unparsable; reported by the controller, never injected
            if not injection.wants_pinned_revision(live):
                chosen.append(live)
                continue
            if revisions is None:
                revisions = self._revisions.values()
            historic = revision_lookup.historic(entry.raw, live, revisions)
            chosen.append(
                injection.choose_revision(live, historic, pod_labels=labels, draw=self._draw())
            )
        return chosen

    async def _namespace_labels(self, namespace: str) -> dict[str, str] | None:
        cached = self._namespaces.get(namespace)
        if cached is not None:
            return dict(cached.metadata.labels)
        if self._client is None:
            return None
        try:
            ns = await self._client.get(resource_path("v1", "namespaces", name=namespace))
        except errors.NotFound:
            return None
        return dict((ns.get("metadata") or {}).get("labels") or {})
