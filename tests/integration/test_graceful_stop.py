"""Graceful stop of an operator replica (issue 13): SIGTERM hands the Lease over at once, the
webhook keeps answering through the drain period, and a rolling restart under pod-creation load
refuses no pod.

The replicas are real `sidecarset operator run --local` processes with a Lease of their own.
Locally the apiserver calls a webhook by URL, not through a Service, so the test plays the part
of the Service's endpoint propagation: it points the pod webhook at the replica being stopped
until `PROPAGATION` seconds after that replica's SIGTERM, then at its successor. In a cluster
the apiserver (or kube-proxy) likewise keeps sending calls to a terminating pod until the
EndpointSlice change reaches it; a server that closes on SIGTERM refuses them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import signal
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest_asyncio

from sidecarset.app import webhooks_config
from sidecarset.devcluster.components import OPERATOR, OPERATOR_NAMESPACE
from sidecarset.devcluster.controlplane import ControlPlane
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import KubeClient, resource_path
from tests.fixtures.admission_reviews import review
from tests.integration import kubeobjects as k
from tests.integration.conftest import OPERATOR_ARGS, OperatorHandle
from tests.integration.test_reliability import Replica
from tests.integration.waiting import wait_for

LEASE = "graceful-stop"
LEASE_SECONDS = 15.0  # the default: the takeover must be well under it
RETRY_SECONDS = LEASE_SECONDS * 2 / 15
DRAIN_SECONDS = 4.0
PROPAGATION = 1.0  # seconds until a terminating replica's endpoint is gone everywhere
LOAD_RATE = 5.0  # pod creations per second
LOAD_LIMIT = 400  # and never more than this many per run


def replica(plane: ControlPlane, name: str, drain: float) -> Replica:
    """An operator process competing for this module's Lease, with this drain period."""
    args = (*OPERATOR_ARGS, "--lease-name", LEASE, "--drain-seconds", str(drain))
    return Replica(plane, name, args)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def plane(
    control_plane: ControlPlane, operator: OperatorHandle
) -> AsyncIterator[ControlPlane]:
    """The control plane without the session's operator (which installed the CRD): it would
    compete for the webhook registration. Started again afterwards (registering again)."""
    await asyncio.to_thread(control_plane.down, names=[OPERATOR], progress=lambda _m: None)
    yield control_plane
    await asyncio.to_thread(operator.start)


@contextlib.asynccontextmanager
async def replicas(plane: ControlPlane, *names: str, drain: float) -> AsyncIterator[list[Replica]]:
    started = [replica(plane, name, drain) for name in names]
    try:
        for each in started:
            await each.restart()
        yield started
    finally:
        for each in started:
            await each.stop()


async def lease_holder(kube: KubeClient) -> str:
    lease = await kube.get(
        resource_path("coordination.k8s.io/v1", "leases", namespace=OPERATOR_NAMESPACE, name=LEASE)
    )
    return str(lease["spec"].get("holderIdentity") or "")


def holder_pid(identity: str) -> int | None:
    parts = identity.rsplit("_", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


async def readyz(port: int) -> int:
    """The status of /readyz (0: nothing listening)."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
            session.get(f"http://127.0.0.1:{port}/readyz") as resp,
        ):
            return resp.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


# --- SIGTERM: the Lease at once, the webhook until the drain is over ---------------------------


async def test_sigterm_hands_the_lease_over_at_once_and_the_webhook_drains(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets, plane: ControlPlane
) -> None:
    control_plane = plane
    async with replicas(control_plane, "drain-a", "drain-b", drain=DRAIN_SECONDS) as (a, b):
        await sidecarsets.create(k.sidecarset(f"drain-{namespace[-5:]}", namespace))
        await wait_for(lambda: lease_holder(kube), lambda h: holder_pid(h) in (a.pid, b.pid))
        holder = holder_pid(await lease_holder(kube))
        leader, heir = (a, b) if holder == a.pid else (b, a)
        await wait_for(
            lambda: review_status(leader.info["webhookPort"], control_plane, namespace),
            lambda answered: answered[0] == 200 and answered[1],
            timeout=30,
            what="the leader injecting",
        )
        port, probe = int(leader.info["webhookPort"]), int(leader.info["probePort"])

        os.kill(leader.pid, signal.SIGTERM)
        signalled = time.monotonic()
        answers: list[tuple[float, int, bool]] = []
        readiness: list[tuple[float, int]] = []
        took_over: float | None = None
        closed_at: float | None = None
        while time.monotonic() - signalled < DRAIN_SECONDS + 10:
            now = time.monotonic() - signalled
            readiness.append((now, await readyz(probe)))
            if took_over is None and holder_pid(await lease_holder(kube)) == heir.pid:
                took_over = time.monotonic() - signalled
            try:
                status, patched = await review_status(port, control_plane, namespace)
            except (aiohttp.ClientConnectionError, ssl.SSLError, TimeoutError):
                closed_at = time.monotonic() - signalled
                break
            answers.append((now, status, patched))
            await asyncio.sleep(0.1)
        # The heir's acquire retry may come after the server closed (up to `bound` below).
        while took_over is None and time.monotonic() - signalled < LEASE_SECONDS:
            if holder_pid(await lease_holder(kube)) == heir.pid:
                took_over = time.monotonic() - signalled
            else:
                await asyncio.sleep(0.1)

    assert closed_at is not None, "the webhook never closed"
    print(
        f"\nSIGTERM: /readyz 503 after {first(readiness, lambda s: s != 200):.2f}s, Lease to "
        f"the other replica after {took_over}s, {len(answers)} reviews answered while draining, "
        f"server closed after {closed_at:.1f}s"
    )
    # Not ready at once (the first probe after the signal, allowing for the signal's delivery).
    assert first(readiness, lambda s: s != 200) < 1.0, readiness
    assert all(s == 503 for t, s in readiness if 1.0 <= t < closed_at - 0.5), readiness
    # Every review during the drain answered and injected; the server stayed up for the drain.
    assert answers
    assert all(status == 200 and patched for _, status, patched in answers), answers
    assert answers[-1][0] >= DRAIN_SECONDS - 0.5, answers[-5:]
    assert DRAIN_SECONDS - 0.5 <= closed_at <= DRAIN_SECONDS + 5
    # Released on SIGTERM: the heir leads within its acquire retry, far under the Lease.
    bound = 2.2 * RETRY_SECONDS + 2.0
    assert took_over is not None
    assert took_over <= bound, (took_over, bound)
    assert bound < LEASE_SECONDS / 2


def first(samples: list[tuple[float, int]], matches: Any) -> float:
    return next((t for t, s in samples if matches(s)), float("inf"))


async def review_status(port: int, plane: ControlPlane, namespace: str) -> tuple[int, bool]:
    """POST one pod AdmissionReview on a new connection: (HTTP status, a patch came back)."""
    pod = k.pod(f"review-{time.monotonic_ns()}")
    sent = review(pod, "Pod", "pods", namespace)
    context = ssl.create_default_context(cafile=str(plane.workdir / "webhook-pki" / "ca.crt"))
    async with (
        aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=5),
            connector=aiohttp.TCPConnector(ssl=context, force_close=True),
        ) as session,
        session.post(f"https://127.0.0.1:{port}{webhooks_config.POD_PATH}", json=sent) as resp,
    ):
        body = await resp.json() if resp.status == 200 else {}
    answer = body.get("response") or {}
    patch = json.loads(base64.b64decode(answer["patch"])) if "patch" in answer else []
    return resp.status, any(op.get("path", "").startswith("/spec/containers") for op in patch)


# --- a rolling restart under pod-creation load ---------------------------------------------------


async def point_pod_webhook_at(kube: KubeClient, port: int) -> None:
    """Route the apiserver's pod webhook calls to one replica's port."""
    path = resource_path(
        "admissionregistration.k8s.io/v1",
        "mutatingwebhookconfigurations",
        name=webhooks_config.MUTATING_NAME,
    )
    config = await kube.get(path)
    pod_hook = config["webhooks"][0]
    pod_hook["clientConfig"]["url"] = f"https://127.0.0.1:{port}{webhooks_config.POD_PATH}"
    await kube.replace(path, config)


@dataclass
class Load:
    """Pod creations at a steady rate until stopped (bounded in count), each counted."""

    kube: KubeClient
    namespace: str
    prefix: str
    created: int = 0
    refused: list[str] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        pending: set[asyncio.Task[None]] = set()
        for n in range(LOAD_LIMIT):
            if stop.is_set():
                break
            task = asyncio.create_task(self._create(n))
            pending.add(task)
            task.add_done_callback(pending.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1 / LOAD_RATE)
        if pending:
            await asyncio.wait(pending)

    async def _create(self, n: int) -> None:
        try:
            await k.create(self.kube, k.pod(f"{self.prefix}-{n}"), self.namespace)
            self.created += 1
        except errors.ApiError as err:
            self.refused.append(str(err)[:300])


async def rolling_restart(
    kube: KubeClient, plane: ControlPlane, namespace: str, drain: float, sidecarset: dict[str, Any]
) -> Load:
    """Two replicas are replaced one by one as a Deployment does with maxSurge 1 and
    maxUnavailable 0 (the new one ready, then the old one terminated), while pods are created
    steadily. As with a Service, calls still reach the terminating replica until its endpoint
    removal has propagated (`PROPAGATION` seconds after its SIGTERM), then the new one."""
    load = Load(kube, namespace, f"drain-{drain:g}")
    names = (f"roll-{drain:g}-{n}" for n in itertools.count())
    current = [replica(plane, next(names), drain) for _ in range(2)]
    try:
        for each in current:
            await each.restart()
        with contextlib.suppress(errors.AlreadyExists):
            await k.create(kube, sidecarset)
        stop = asyncio.Event()
        creating = asyncio.create_task(load.run(stop))
        await asyncio.sleep(2)
        for i, old in enumerate(list(current)):
            new = replica(plane, next(names), drain)
            await new.restart()
            await point_pod_webhook_at(kube, old.webhook_port)
            await asyncio.sleep(1)
            stopping = asyncio.create_task(old.stop())
            await asyncio.sleep(PROPAGATION)
            await point_pod_webhook_at(kube, new.webhook_port)
            await stopping
            current[i] = new
        await asyncio.sleep(2)
        stop.set()
        await creating
    finally:
        for each in current:
            await each.stop()
    return load


async def test_a_rolling_restart_under_pod_creation_load_refuses_no_pod(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets, plane: ControlPlane
) -> None:
    control_plane = plane
    selecting = k.sidecarset(f"roll-{namespace[-5:]}", namespace)
    sidecarsets.names.append(selecting["metadata"]["name"])
    # Before the drain existed the webhook server closed on SIGTERM: `--drain-seconds 0`.
    before = await rolling_restart(kube, control_plane, namespace, 0, selecting)
    after = await rolling_restart(kube, control_plane, namespace, DRAIN_SECONDS, selecting)
    print(
        f"\nrolling restart under {LOAD_RATE:g} pod creations/s: without drain "
        f"{len(before.refused)} refused of {before.created + len(before.refused)}; with a "
        f"{DRAIN_SECONDS:g}s drain {len(after.refused)} refused of "
        f"{after.created + len(after.refused)}"
    )
    # The scenario bites: without the drain, calls routed to the stopping replica are refused.
    assert before.refused, "no refusal without the drain: the test no longer exercises the race"
    assert after.refused == [], after.refused[:5]
    assert after.created >= 10 * LOAD_RATE, after.created
    assert all("failed calling webhook" in refusal for refusal in before.refused), before.refused[
        :5
    ]
    pods = await k.pods(kube, namespace)
    assert pods
    assert all("filebeat" in [c["name"] for c in p["spec"]["containers"]] for p in pods), (
        "a pod was created without its sidecar"
    )
