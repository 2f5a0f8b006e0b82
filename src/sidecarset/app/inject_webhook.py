"""The pod mutating webhook: admission request -> core injection -> JSON patch.

Reads only in-memory stores (SidecarSets, Namespaces, ControllerRevisions), synced before the
server answers. A namespace missing from the store (created a moment ago) is fetched from the
API only when a candidate SidecarSet has a namespaceSelector, with the admission client: its
own connection pool, no client-side rate limit shared with the controller's writes, and a
timeout (`NAMESPACE_LOOKUP_TIMEOUT`) well under the webhook's own. The patch is built
completely from the `Injection` before anything is returned, so a response is never half-made;
a problem in the user's pod is a denial naming the field; a bug of ours is an error response
that the failurePolicy handles.
"""

from __future__ import annotations

import operator
import random
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from sidecarset.app.cached_objects import NamespaceView, SidecarSetEntry
from sidecarset.core import injection, model, patches, selectors
from sidecarset.shell import admission, metrics
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import KubeClient, resource_path
from sidecarset.shell.store import Store

log = structlog.get_logger("sidecarset.inject")

NAMESPACE_LOOKUP_TIMEOUT = 2.0
"""Seconds a namespace lookup may take: under the webhook's 5 s timeout, so an API server too
slow to answer gives a clear refusal instead of the API server's own timeout error."""

# Mirrors injection's contract: `now` is RFC 3339 with second precision, as Go's time.Time JSON.
_RFC3339 = "%Y-%m-%dT%H:%M:%SZ"


def inject_pod(
    pod: Mapping[str, Any],
    sidecarsets: Iterable[SidecarSetEntry],
    namespace_labels: Mapping[str, str] | None,
    *,
    revisions: Callable[[], Iterable[dict[str, Any]]],
    now: datetime,
    request_namespace: str,
    draw: Callable[[], float],
) -> injection.Injection:
    """What the SidecarSets add to a pod being created: the webhook's whole decision.

    The webhook and `sidecarset inject -f` (`app/offline.py`) both call this, so a manifest
    injected offline gets exactly what the webhook would add. `revisions` is called only when
    a SidecarSet pins a revision; `draw` once per such SidecarSet. Raises what
    `injection.inject` and `injection.choose_revision` raise (the webhook denies with them).
    """
    chosen = versions_for(pod, sidecarsets, revisions, draw)
    return injection.inject(
        pod,
        chosen,
        namespace_labels,
        now=now.strftime(_RFC3339),
        request_namespace=request_namespace,
    )


def versions_for(
    pod: Mapping[str, Any],
    sidecarsets: Iterable[SidecarSetEntry],
    revisions: Callable[[], Iterable[dict[str, Any]]],
    draw: Callable[[], float],
) -> list[model.SidecarSet]:
    """Each usable SidecarSet as the version a new pod gets (live or pinned revision).

    Unparsable SidecarSets are passed over: the controller reports them, they never inject.
    """
    labels = (pod.get("metadata") or {}).get("labels") or {}
    chosen: list[model.SidecarSet] = []
    stored: list[dict[str, Any]] | None = None
    for entry in sidecarsets:
        live = entry.sidecarset
        if live is None:
            continue
        if not injection.wants_pinned_revision(live):
            chosen.append(live)
            continue
        if stored is None:
            stored = list(revisions())
        historic = injection.resolve_pinned_revision(entry.raw, live, stored)
        chosen.append(injection.choose_revision(live, historic, pod_labels=labels, draw=draw()))
    return chosen


def malformed_metadata(pod: Mapping[str, Any]) -> str | None:
    """Why `pod.metadata` cannot be read the way the webhook must read it, or None.

    The apiserver only sends decoded Pods, but the endpoint also answers direct callers: a
    `metadata`, `namespace` or `labels` of the wrong JSON type is a denial naming the field,
    never an exception (which would surface as a 500 and an "internal error" to the user).
    """
    metadata = pod.get("metadata")
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        return "metadata: Invalid value: must be an object"
    namespace = metadata.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        return "metadata.namespace: Invalid value: must be a string"
    labels = metadata.get("labels")
    if labels is not None and not (
        isinstance(labels, dict) and all(isinstance(v, str) for v in labels.values())
    ):
        return "metadata.labels: Invalid value: must be an object of strings"
    return None


class Candidates:
    """The SidecarSets that may select a pod, looked up by the labels their selectors require.

    Matching every SidecarSet's selector against every admitted pod was a fifth of the webhook's
    time with 100 SidecarSets. One whose selector requires `key=value` (a matchLabels entry, or
    `In` with a single value) can only select pods carrying that label; all others (no such
    requirement, no selector, an invalid one, unparsable) are candidates for every pod. So the
    injection still sees every SidecarSet that could select the pod, and answers exactly as it
    would with all of them (the webhook reports no reason for the SidecarSets passed over).
    """

    def __init__(self, entries: list[SidecarSetEntry]) -> None:
        self.entries = entries
        self._always: list[SidecarSetEntry] = []
        self._by_label: dict[tuple[str, str], list[SidecarSetEntry]] = {}
        for entry in entries:
            label = _required_label(entry)
            if label is None:
                self._always.append(entry)
            else:
                self._by_label.setdefault(label, []).append(entry)

    def for_labels(self, labels: Mapping[str, str]) -> list[SidecarSetEntry]:
        found = list(self._always)
        for label in labels.items():
            found.extend(self._by_label.get(label, ()))
        return found


def _required_label(entry: SidecarSetEntry) -> tuple[str, str] | None:
    sidecarset = entry.sidecarset
    return None if sidecarset is None else selectors.required_label(sidecarset.spec.selector)


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
        """`client`: the admission client (`app.run.connect_admission`), never the controller's
        rate-limited one; None: never call the API."""
        self._sidecarsets = sidecarsets
        self._namespaces = namespaces
        self._revisions = revisions
        self._client = client
        self._now = now
        self._draw = draw
        self._candidates = Candidates([])

    def candidates(self, pod: Mapping[str, Any]) -> list[SidecarSetEntry]:
        """The SidecarSets that may select `pod` (see `Candidates`), from the current store."""
        entries = self._sidecarsets.values()
        known = self._candidates.entries
        if len(known) != len(entries) or not all(map(operator.is_, known, entries)):
            self._candidates = Candidates(entries)  # the store changed: a new index
        labels = (pod.get("metadata") or {}).get("labels") or {}
        return self._candidates.for_labels(labels)

    async def handle(self, request: admission.AdmissionRequest) -> admission.AdmissionResponse:
        if (
            request.resource != "pods"
            or request.sub_resource
            or request.object is None
            or request.operation != "CREATE"
        ):
            return admission.allowed()
        pod = request.object
        malformed = malformed_metadata(pod)
        if malformed is not None:
            metrics.INJECTION_FAILURES.labels(reason="denied").inc()
            return admission.invalid(f"sidecarset injection refused: {malformed}")
        namespace = (pod.get("metadata") or {}).get("namespace") or request.namespace or "default"
        candidates = self.candidates(pod)
        try:
            labels = await self._namespace_labels(namespace, candidates)
        except errors.ApiError as err:
            metrics.INJECTION_FAILURES.labels(reason="namespace").inc()
            return admission.errored(
                f"sidecarset injection: cannot read namespace {namespace!r}: {err.message}",
                code=503,
            )
        try:
            result = inject_pod(
                pod,
                candidates,
                labels,
                revisions=self._revisions.values,
                now=self._now(),
                request_namespace=request.namespace,
                draw=self._draw,
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

    async def _namespace_labels(
        self, namespace: str, candidates: list[SidecarSetEntry]
    ) -> dict[str, str] | None:
        """The namespace's labels from the store; from the API only on a miss that matters
        (some candidate has a namespaceSelector). Raises `errors.ApiError` if that fails."""
        cached = self._namespaces.get(namespace)
        if cached is not None:
            return dict(cached.metadata.labels)
        if self._client is None or not any(
            e.sidecarset is not None and e.sidecarset.spec.namespace_selector is not None
            for e in candidates
        ):
            return None
        path = resource_path("v1", "namespaces", name=namespace)
        try:
            ns = await self._client.request("GET", path, timeout=NAMESPACE_LOOKUP_TIMEOUT)
        except errors.NotFound:
            return None
        return dict((ns.get("metadata") or {}).get("labels") or {})
