"""Reliability, bad input and security promises, proven on the real control plane (issue 8).

Faults are injected into the real processes: the operator is SIGKILLed, kube-apiserver is
stopped and started again on the same port and etcd, etcd is compacted past every watcher's
resume point, concurrent writers race the operator with conditional updates, a second operator
replica competes for the Lease, and the webhook is taken away under both failure policies.
Rollouts are observed by the independent watcher (its own watch, its own invariant checks).
Every scenario, its runs and how to reproduce it are listed in docs/reliability.md.

The module runs its own operator (`tuned`): the session's, with a 5 s Lease instead of 15 s so
that a SIGKILLed leader's successor takes over in seconds; the session operator is put back
afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import http.client
import itertools
import json
import os
import random
import re
import signal
import ssl
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
import jsonpatch
import pytest
import pytest_asyncio
import yaml
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from sidecarset.app import certificates, webhooks_config
from sidecarset.app.inject_webhook import PodInjector
from sidecarset.core import pod_contract
from sidecarset.devcluster.components import OPERATOR, OPERATOR_NAMESPACE, operator_component
from sidecarset.devcluster.controlplane import (
    ControlPlane,
    port_in_use,
)
from sidecarset.shell import admission, httpserver, pki
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import KubeClient, resource_path
from sidecarset.shell.store import Store
from tests.fixtures.admission_reviews import (
    POD,
    SECRET_MARKER,
    SIDECARSET_SPEC_CHANGES,
    maybe,
    review,
    unique_names,
)
from tests.integration import kubeobjects as k
from tests.integration.conftest import OPERATOR_ARGS, deployment
from tests.integration.kubeobjects import NEW, OLD, patch_strategy, set_image, sidecarset
from tests.integration.waiting import wait_for
from tests.integration.watcher import Pod, sidecar_disrupted, watching

LEASE_SECONDS = 5.0
RETRY_SECONDS = LEASE_SECONDS * 2 / 15  # what --lease-duration derives, as client-go's 15/2
TUNED_ARGS = (*OPERATOR_ARGS, "--lease-duration", str(LEASE_SECONDS))

SIDECAR = "filebeat"
NEWER = "docker.elastic.co/beats/filebeat:7.17.0"
AGENT = "logagent"
AGENT_OLD = "docker.io/fluent/fluent-bit:3.0.7"
AGENT_NEW = "docker.io/fluent/fluent-bit:3.1.4"
APP_IMAGE = "nginx:1.25"
SIDECARSETS_API = "apps.kruise.io/v1alpha1"


# --- the operator processes --------------------------------------------------------------------


def webhook_client_context(plane: ControlPlane) -> ssl.SSLContext:
    """A client that trusts the local webhook's CA."""
    return ssl.create_default_context(cafile=str(plane.workdir / "webhook-pki" / "ca.crt"))


def sigkill(plane: ControlPlane, name: str) -> None:
    """SIGKILL one process the control plane started (by its recorded pid), and reap it."""
    record = plane.state().processes[name]
    os.kill(record.pid, signal.SIGKILL)
    for _ in range(250):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(record.pid, os.WNOHANG)
        if not record.is_running():
            return
        time.sleep(0.02)
    raise AssertionError(f"{name} (pid {record.pid}) survived SIGKILL")


@dataclass
class Replica:
    """One operator subprocess: started (blocking until its ready file appears), SIGKILLed,
    stopped with SIGTERM. The ready file holds its pid and bound ports."""

    plane: ControlPlane
    name: str = OPERATOR
    args: tuple[str, ...] = TUNED_ARGS

    def start(self, *extra: str) -> None:
        self.plane.up(
            extra=[operator_component(self.plane, (*self.args, *extra), name=self.name)],
            progress=lambda _m: None,
        )

    async def restart(self, *extra: str) -> None:
        """Start in a thread, so the watchers keep reading their streams meanwhile."""
        await asyncio.to_thread(self.start, *extra)

    def kill(self) -> None:
        """SIGKILL: no lease release, no cleanup, no webhook deregistration."""
        sigkill(self.plane, self.name)

    async def stop(self) -> None:
        """SIGTERM: the Lease is released on the way out."""
        await asyncio.to_thread(self.plane.down, names=[self.name], progress=lambda _m: None)

    def running(self) -> bool:
        record = self.plane.state().processes.get(self.name)
        return record is not None and record.is_running()

    @property
    def info(self) -> dict[str, Any]:
        ready: dict[str, Any] = json.loads((self.plane.workdir / f"{self.name}.ready").read_text())
        return ready

    @property
    def pid(self) -> int:
        return int(self.info["pid"])

    @property
    def probe_port(self) -> int:
        return int(self.info["probePort"])

    @property
    def webhook_port(self) -> int:
        return int(self.info["webhookPort"])

    @property
    def log(self) -> Path:
        return self.plane.log_dir / f"{self.name}.log"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tuned(control_plane: ControlPlane) -> AsyncIterator[Replica]:
    """This module's operator (short Lease); the session operator is restored afterwards."""
    replica = Replica(control_plane)
    session_operator_was_running = replica.running()
    await replica.stop()
    await replica.restart()
    yield replica
    await replica.stop()
    if session_operator_was_running:
        await asyncio.to_thread(
            control_plane.up,
            extra=[operator_component(control_plane, OPERATOR_ARGS)],
            progress=lambda _m: None,
        )


async def pod_webhook(kube: KubeClient) -> dict[str, Any]:
    """The registered pod webhook, as the apiserver holds it."""
    config = await kube.get(
        resource_path(
            "admissionregistration.k8s.io/v1",
            "mutatingwebhookconfigurations",
            name=webhooks_config.MUTATING_NAME,
        )
    )
    return dict(config["webhooks"][0])


async def webhook_port_registered(kube: KubeClient) -> int:
    url = str((await pod_webhook(kube))["clientConfig"]["url"])
    return int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def operator_restored(kube: KubeClient, tuned: Replica) -> AsyncIterator[None]:
    """After each test, this module's operator runs and the webhooks point at it, whatever
    the test did (a failed test must not leave the next one without a webhook)."""
    yield
    if not tuned.running():
        await tuned.restart()
    elif await webhook_port_registered(kube) != tuned.webhook_port:
        await tuned.stop()
        await tuned.restart()


# --- metrics -----------------------------------------------------------------------------------


async def scrape(port: int) -> dict[str, float]:
    """Every sample of a replica's /metrics, keyed `name{label="value",...}` (labels sorted)."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        text = await resp.text()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[series(sample.name, **sample.labels)] = sample.value
    return samples


def series(name: str, **labels: str) -> str:
    if not labels:
        return name
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(
        value
        for key, value in samples.items()
        if (key == name or key.startswith(name + "{")) and all(w in key for w in wanted)
    )


async def leads(replica: Replica) -> bool:
    return total(await scrape(replica.probe_port), "sidecarset_leader") == 1


async def lease_holder(kube: KubeClient) -> str:
    lease = await kube.get(
        resource_path(
            "coordination.k8s.io/v1",
            "leases",
            namespace=OPERATOR_NAMESPACE,
            name="sidecarset-controller",
        )
    )
    return str(lease["spec"].get("holderIdentity") or "")


def holder_pid(identity: str) -> int | None:
    """The pid in a `hostname_pid_random` identity (None when the Lease is free)."""
    parts = identity.rsplit("_", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


# --- objects and pod checks --------------------------------------------------------------------


def bare_pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": APP_IMAGE}]},
    }


def sidecarset_path(name: str, subresource: str | None = None) -> str:
    return resource_path(SIDECARSETS_API, "sidecarsets", name=name, subresource=subresource)


def container_names(pod: Pod) -> list[str]:
    spec = pod["spec"]
    return [c["name"] for c in spec.get("initContainers", []) + spec.get("containers", [])]


def each_sidecar_once(*sidecars: str) -> Callable[[Pod], bool]:
    """No container name twice, each of `sidecars` present, each listed once as injected."""

    def holds(pod: Pod) -> bool:
        names = container_names(pod)
        listed = (pod["metadata"].get("annotations") or {}).get(
            pod_contract.INJECTED_LIST_ANNOTATION, ""
        )
        entries = [n for n in listed.split(",") if n]
        return (
            len(names) == len(set(names))
            and all(names.count(s) == 1 for s in sidecars)
            and len(entries) == len(set(entries))
        )

    return holds


def image_of(pod: Pod, name: str) -> str:
    return str(k.container(pod, name)["image"])


def runs(name: str, image: str) -> Callable[[Pod], bool]:
    """The pod is ready and `name` runs `image` (spec and status agree, container ready)."""

    def check(pod: Pod) -> bool:
        statuses = pod.get("status", {}).get("containerStatuses", [])
        status = next((s for s in statuses if s["name"] == name), None)
        return (
            image_of(pod, name) == image
            and status is not None
            and status.get("image") == image
            and bool(status.get("ready"))
            and k.is_ready(pod)
        )

    return check


def switched_to(name: str, image: str) -> Callable[[Pod], bool]:
    """The operator has written `image` into the pod's spec (ready or not)."""
    return lambda pod: image_of(pod, name) == image


async def all_pods(
    kube: KubeClient,
    namespace: str,
    count: int,
    check: Callable[[Pod], bool],
    *,
    timeout: float = 120,
    what: str = "pods",
) -> list[Pod]:
    return await wait_for(
        lambda: k.pods(kube, namespace),
        lambda ps: len(ps) == count and all(check(p) for p in ps),
        timeout=timeout,
        what=what,
    )


def assert_not_restarted(pods: list[Pod], before: list[Pod]) -> None:
    """Same pods (UIDs), app containers never restarted."""
    assert {p["metadata"]["uid"] for p in pods} == {p["metadata"]["uid"] for p in before}
    for pod in pods:
        assert k.container_status(pod, "app")["restartCount"] == 0, pod["metadata"]["name"]


async def status_counts(kube: KubeClient, name: str, expected: int, updated: int) -> None:
    await wait_for(
        lambda: k.get_sidecarset(kube, name),
        lambda s: (
            (s.get("status") or {}).get("observedGeneration") == s["metadata"]["generation"]
            and s["status"].get("matchedPods") == expected
            and s["status"].get("updatedPods") == updated
            and s["status"].get("updatedReadyPods") == updated
        ),
        timeout=60,
        what=f"status of {name}: {updated} of {expected} updated and ready",
    )


def max_per_group(
    history: list[tuple[int, list[str]]], group: str, before: int | None = None
) -> int:
    """The most pods of Deployment `group` (pod names `group-...`) in one history entry."""
    return max(
        (
            sum(1 for n in names if n.startswith(group + "-"))
            for event, names in history
            if before is None or event < before
        ),
        default=0,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def sidecarsets(kube: KubeClient, tuned: Replica) -> AsyncIterator[k.SidecarSets]:
    """conftest's fixture, ordered to be torn down while this module's operator still runs."""
    created = k.SidecarSets(kube)
    yield created
    await created.delete_all()


def ok_run(seed: int) -> str:
    return f"seed-{seed}"


# --- 1. the operator SIGKILLed at random moments during rollouts ---------------------------------

ROLLOUTS_PER_RUN = 5
PODS_PER_ROLLOUT = 6
BUDGET = 2
PARTITION = 2
PARTITIONED = ("g1", "g3")


@pytest.mark.parametrize("seed", [11, 23], ids=ok_run)
async def test_rollouts_finish_within_budget_and_partition_while_the_operator_is_sigkilled(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets, tuned: Replica, seed: int
) -> None:
    rng = random.Random(seed)
    groups = [f"g{i}" for i in range(ROLLOUTS_PER_RUN)]
    names: dict[str, str] = {}
    for group in groups:
        names[group] = await sidecarsets.create(
            sidecarset(
                f"kill-{seed}-{group}-{namespace[-5:]}",
                namespace,
                {"group": group},
                maxUnavailable=BUDGET,
                partition=PARTITION if group in PARTITIONED else 0,
            )
        )
    for group in groups:
        await k.create(
            kube,
            deployment(
                group,
                PODS_PER_ROLLOUT,
                [{"name": "app", "image": APP_IMAGE}],
                labels={"group": group},
            ),
            namespace,
        )
    everyone = ROLLOUTS_PER_RUN * PODS_PER_ROLLOUT
    before = await all_pods(
        kube, namespace, everyone, runs(SIDECAR, OLD), what="every pod injected and ready"
    )
    phase_one = {g: PODS_PER_ROLLOUT - (PARTITION if g in PARTITIONED else 0) for g in groups}
    at_kill: list[tuple[int, int]] = []  # (pods switched to NEW, pods running NEW ready)

    async def kill_after(delay: float) -> None:
        await asyncio.sleep(delay)  # the fault's moment, drawn from the seed
        pods_now = list(switched.pods.values())
        at_kill.append(
            (
                sum(switched_to(SIDECAR, NEW)(p) for p in pods_now),
                sum(runs(SIDECAR, NEW)(p) for p in pods_now),
            )
        )
        tuned.kill()
        await tuned.restart()

    async with (
        watching(
            kube,
            namespace,
            sidecar_disrupted(SIDECAR, NEW),
            invariants={"each sidecar once": each_sidecar_once(SIDECAR)},
        ) as budget,
        watching(kube, namespace, switched_to(SIDECAR, NEW)) as switched,
    ):
        for group in groups:
            await set_image(kube, names[group], NEW)
        await kill_after(rng.uniform(0.0, 2.0))

        def phase_one_done(pods: list[Pod]) -> bool:
            on_new = Counter(
                p["metadata"]["labels"]["group"] for p in pods if runs(SIDECAR, NEW)(p)
            )
            return len(pods) == everyone and all(on_new[g] == phase_one[g] for g in groups)

        await wait_for(
            lambda: k.pods(kube, namespace), phase_one_done, timeout=120, what="partitioned round"
        )
        for group in groups:
            await status_counts(kube, names[group], PODS_PER_ROLLOUT, phase_one[group])
        lifted = switched.events
        for group in PARTITIONED:
            await patch_strategy(kube, names[group], partition=0)
        await kill_after(rng.uniform(0.0, 0.5))
        after = await all_pods(
            kube, namespace, everyone, runs(SIDECAR, NEW), what="every pod on the new sidecar"
        )
        await wait_for(
            budget.snapshot,
            lambda ps: len(ps) == everyone and all(runs(SIDECAR, NEW)(p) for p in ps.values()),
            timeout=30,
            what="the watcher seeing the end",
        )

    for group in groups:
        assert max_per_group(budget.history, group) <= BUDGET, (group, budget.history)
        assert max_per_group(switched.history, group, before=lifted) <= phase_one[group], group
        await status_counts(kube, names[group], PODS_PER_ROLLOUT, PODS_PER_ROLLOUT)
    # At least one kill landed with the rollout half done (the other may fall anywhere).
    assert any(ready < everyone and switched > 0 for switched, ready in at_kill), at_kill
    print(f"\nSIGKILLs at (pods switched, pods running the new sidecar) = {at_kill} of {everyone}")
    assert not budget.violations, budget.violations
    assert not budget.recreated
    assert not budget.deleted
    assert_not_restarted(after, before)


# --- 2. kube-apiserver restarted mid-rollout, etcd compacted past every resume point ----------


async def etcd(control_plane: ControlPlane, call: str, body: dict[str, Any]) -> dict[str, Any]:
    url = f"http://127.0.0.1:{control_plane.state().ports['etcd']}/v3/{call}"
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as resp:
        assert resp.status == 200, await resp.text()
        reply: dict[str, Any] = await resp.json()
        return reply


async def compact_past_everyone(control_plane: ControlPlane) -> int:
    """Write one key outside /registry (so every client's last revision is behind the head),
    then compact to the head: every resume point of every watch is gone."""
    key = base64.b64encode(b"/sidecarset-reliability/bump").decode()
    value = base64.b64encode(uuid.uuid4().hex.encode()).decode()
    put = await etcd(control_plane, "kv/put", {"key": key, "value": value})
    revision = int(put["header"]["revision"])
    await etcd(control_plane, "kv/compaction", {"revision": revision, "physical": True})
    return revision


OUTAGE_LEASE_SECONDS = 90.0


@pytest_asyncio.fixture(loop_scope="session")
async def outage_proof_lease(tuned: Replica) -> AsyncIterator[None]:
    """This module's operator restarted with a Lease longer than an apiserver outage."""
    await tuned.stop()
    await tuned.restart("--lease-duration", str(OUTAGE_LEASE_SECONDS))
    yield
    await tuned.stop()
    await tuned.restart()


@pytest.mark.usefixtures("outage_proof_lease")
@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
async def test_a_rollout_survives_an_apiserver_restart_and_410_gone_on_every_watch(
    kube: KubeClient,
    namespace: str,
    sidecarsets: k.SidecarSets,
    tuned: Replica,
    control_plane: ControlPlane,
    stop: str,
) -> None:
    """kube-apiserver stopped mid-rollout (gracefully, or killed as in a crash); while it is
    down, etcd is compacted past every client's resume point, so every watch resumed after
    the restart is answered 410 Gone and every informer must relist.

    The outage outlasts the renew deadline of this module's 5 s Lease, and a leader that cannot
    renew exits (as controller-runtime's do; see
    `test_a_replica_that_loses_the_lease_exits_to_restart_cold`). This test is about one process
    riding out the outage, so its operator holds a Lease longer than the outage
    (`outage_proof_lease`)."""
    pods = 8
    name = await sidecarsets.create(
        sidecarset(f"apiserver-{namespace[-5:]}", namespace, {"app": "web"}, maxUnavailable=BUDGET)
    )
    await k.create(kube, deployment("web", pods, [{"name": "app", "image": APP_IMAGE}]), namespace)
    before = await all_pods(kube, namespace, pods, runs(SIDECAR, OLD), what="pods injected")
    operator_pid = tuned.pid
    relists_before = await scrape(tuned.probe_port)
    log_offset = tuned.log.stat().st_size
    async with watching(
        kube,
        namespace,
        sidecar_disrupted(SIDECAR, NEW),
        invariants={"each sidecar once": each_sidecar_once(SIDECAR)},
    ) as watcher:
        await set_image(kube, name, NEW)
        await wait_for(
            watcher.snapshot,
            lambda ps: any(switched_to(SIDECAR, NEW)(p) for p in ps.values()),
            timeout=30,
            what="the rollout under way",
        )
        if stop == "sigkill":
            sigkill(control_plane, "kube-apiserver")
            port = control_plane.state().ports["kube-apiserver"]
            await wait_for(  # the kernel closes a killed process's sockets a moment later
                lambda: asyncio.sleep(0.1, result=port_in_use(port)),
                lambda in_use: not in_use,
                timeout=30,
                what=f"port {port} released",
            )
        else:
            await asyncio.to_thread(
                control_plane.down, names=["kube-apiserver"], progress=lambda _m: None
            )
        await compact_past_everyone(control_plane)
        await asyncio.to_thread(control_plane.up, progress=lambda _m: None)
        after = await all_pods(
            kube, namespace, pods, runs(SIDECAR, NEW), timeout=150, what="rollout finished"
        )
        await wait_for(
            watcher.snapshot,
            lambda ps: len(ps) == pods and all(runs(SIDECAR, NEW)(p) for p in ps.values()),
            timeout=30,
            what="the watcher seeing the end",
        )
    await status_counts(kube, name, pods, pods)
    assert tuned.running(), "the operator died"
    assert tuned.pid == operator_pid, "the operator was restarted"
    assert watcher.max_disrupted <= BUDGET, watcher.history
    assert not watcher.violations, watcher.violations
    assert not watcher.recreated
    assert not watcher.deleted
    assert_not_restarted(after, before)
    # Each informer relists when its backoff (up to 30 s, jittered) next lets it reconnect: the
    # rollout can finish before the last one has, so wait for every count to rise.
    keys = [
        series("sidecarset_informer_relists_total", resource=resource)
        for resource in ("pods", "sidecarsets", "namespaces", "controllerrevisions")
    ]
    await wait_for(
        lambda: scrape(tuned.probe_port),
        lambda relists: all(relists.get(key, 0) > relists_before.get(key, 0) for key in keys),
        timeout=60,
        what="every informer relisting after the 410",
    )
    with tuned.log.open() as log:
        log.seek(log_offset)
        assert "resourceVersion expired, relisting" in log.read()
    assert watcher.relists >= 1  # the watcher itself got its 410 too


# --- 3. conflicting concurrent writers (409s) -------------------------------------------------


@dataclass
class Writes:
    attempts: int = 0
    conflicts: int = 0
    last: dict[str, str] = field(default_factory=dict)


async def put_until_accepted(
    kube: KubeClient, path: str, change: Callable[[dict[str, Any]], None], writes: Writes
) -> None:
    """Read, change, conditional PUT; on 409 read again (at most 50 tries)."""
    for _ in range(50):
        obj = await kube.get(path)
        change(obj)
        writes.attempts += 1
        try:
            await kube.replace(path, obj)
            return
        except errors.Conflict:
            writes.conflicts += 1
    raise AssertionError(f"{path}: 50 conflicts in a row")


def annotate(key: str, value: str) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        obj["metadata"].setdefault("annotations", {})[key] = value

    return change


@pytest.mark.parametrize("seed", [5, 9], ids=ok_run)
async def test_concurrent_writers_lose_no_update_and_nothing_is_injected_twice(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets, tuned: Replica, seed: int
) -> None:
    pods = 6
    rng = random.Random(seed)
    tag = namespace[-5:]
    logs = await sidecarsets.create(
        sidecarset(f"race-logs-{tag}", namespace, {"app": "race"}, maxUnavailable=BUDGET)
    )
    agent = await sidecarsets.create(
        sidecarset(
            f"race-agent-{tag}",
            namespace,
            {"app": "race"},
            container=AGENT,
            image=AGENT_OLD,
            maxUnavailable=BUDGET,
        )
    )
    await k.create(kube, deployment("race", pods, [{"name": "app", "image": APP_IMAGE}]), namespace)
    before = await all_pods(kube, namespace, pods, runs(AGENT, AGENT_OLD), what="pods injected")
    updates_before = await scrape(tuned.probe_port)
    pod_writes, set_writes, image_writes = Writes(), Writes(), Writes()

    async def pod_writer(deadline: float) -> None:
        """Every pod annotated over and over (bounded: 30 rounds, 20 s, ~60 writes/s)."""
        for n in range(30):
            if time.monotonic() > deadline:
                return
            for pod in before:
                pod_name = pod["metadata"]["name"]
                path = resource_path("v1", "pods", namespace=namespace, name=pod_name)
                await put_until_accepted(
                    kube, path, annotate("reliability/write", str(n)), pod_writes
                )
                pod_writes.last[pod_name] = str(n)
                await asyncio.sleep(0.015)

    async def sidecarset_writer() -> None:
        for n in range(15):
            await put_until_accepted(
                kube, sidecarset_path(logs), annotate("reliability/owner", str(n)), set_writes
            )
            set_writes.last[logs] = str(n)
            await asyncio.sleep(rng.uniform(0.02, 0.2))

    async def image_writer() -> None:
        """Change the image again mid-rollout: NEWER is the final word."""
        await asyncio.sleep(rng.uniform(0.5, 2.5))

        def change(obj: dict[str, Any]) -> None:
            obj["spec"]["containers"][0]["image"] = NEWER

        await put_until_accepted(kube, sidecarset_path(logs), change, image_writes)

    def both_final(agent_image: str) -> Callable[[dict[str, Any]], bool]:
        return lambda p: runs(SIDECAR, NEWER)(p) and runs(AGENT, agent_image)(p)

    def operator_conflicts(now: dict[str, float]) -> float:
        return total(now, "sidecarset_pod_updates_total", result="conflict") - total(
            updates_before, "sidecarset_pod_updates_total", result="conflict"
        )

    async with watching(
        kube,
        namespace,
        lambda _p: False,
        invariants={"each sidecar once": each_sidecar_once(SIDECAR, AGENT)},
    ) as watcher:
        # Both rollouts at once: the same pods come first in both plans, so the operator's own
        # workers race each other on them (each patch is conditional on resourceVersion). Whether
        # one of the operator's writes meets a 409 is up to timing, so the race is run again (at
        # most 3 times, the agent going back and forth) until it has.
        for race in range(3):
            agent_image = AGENT_NEW if race % 2 == 0 else AGENT_OLD
            await set_image(kube, logs, NEW)
            await set_image(kube, agent, agent_image)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(pod_writer(time.monotonic() + 20))
                tg.create_task(sidecarset_writer())
                tg.create_task(image_writer())
            done = await all_pods(
                kube,
                namespace,
                pods,
                both_final(agent_image),
                what="both sidecars at their final images",
            )
            updates = await scrape(tuned.probe_port)
            if operator_conflicts(updates) > 0:
                break
    await status_counts(kube, logs, pods, pods)
    await status_counts(kube, agent, pods, pods)
    final_logs, final_agent = (
        await k.get_sidecarset(kube, logs),
        await k.get_sidecarset(kube, agent),
    )
    assert final_logs["spec"]["containers"][0]["image"] == NEWER
    assert final_logs["metadata"]["annotations"]["reliability/owner"] == set_writes.last[logs]
    for pod in done:
        annotations = pod["metadata"]["annotations"]
        assert annotations["reliability/write"] == pod_writes.last[pod["metadata"]["name"]]
        hashes = pod_contract.read_upgrade_specs(annotations, pod_contract.HASH_ANNOTATION)
        for ss in (final_logs, final_agent):
            assert (
                hashes[ss["metadata"]["name"]].hash
                == ss["metadata"]["annotations"][pod_contract.HASH_ANNOTATION]
            ), "a stale write dropped a SidecarSet's hash entry"
        assert sorted(annotations[pod_contract.INJECTED_LIST_ANNOTATION].split(",")) == sorted(
            [logs, agent]
        )
    assert not watcher.violations, watcher.violations
    assert not watcher.recreated
    assert not watcher.deleted
    assert_not_restarted(done, before)
    conflicts = operator_conflicts(updates)
    assert conflicts > 0, f"the operator met no 409 in {race + 1} races: the race was not run"
    print(  # reported in docs/reliability.md
        f"\n409s: operator {conflicts:.0f} in {race + 1} race(s), "
        f"pod writer {pod_writes.conflicts}/{pod_writes.attempts}, "
        f"sidecarset writers {set_writes.conflicts + image_writes.conflicts}"
        f"/{set_writes.attempts + image_writes.attempts}"
    )


# --- 4. two operator replicas --------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    at: float
    leader: dict[str, float | None]
    """Each replica's `sidecarset_leader` (None: not reachable, e.g. just killed)."""
    writes: dict[str, float | None]
    """Each replica's `sidecarset_pod_updates_total`, all results."""


@contextlib.asynccontextmanager
async def sampling(replicas: list[Replica]) -> AsyncIterator[list[Sample]]:
    """Every 100 ms, both replicas' leader gauge and pod-write counter (bounded: 20 minutes)."""
    samples: list[Sample] = []

    async def one(replica: Replica) -> tuple[float | None, float | None]:
        try:
            values = await scrape(replica.probe_port)
        except (OSError, aiohttp.ClientError, TimeoutError, ValueError, KeyError):
            return None, None
        return total(values, "sidecarset_leader"), total(values, "sidecarset_pod_updates_total")

    async def sample() -> None:
        for _ in range(12_000):
            seen = await asyncio.gather(*(one(r) for r in replicas))
            samples.append(
                Sample(
                    at=time.monotonic(),
                    leader={r.name: s[0] for r, s in zip(replicas, seen, strict=True)},
                    writes={r.name: s[1] for r, s in zip(replicas, seen, strict=True)},
                )
            )
            await asyncio.sleep(0.1)

    task = asyncio.create_task(sample())
    try:
        yield samples
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def noop() -> None:
    pass


async def failover(kube: KubeClient, dead: Replica, heir: Replica) -> float:
    """SIGKILL `dead` (the leader); seconds until `heir` was seen holding the Lease and
    reporting `sidecarset_leader 1` (an upper bound: polled every 50 ms)."""
    killed = time.monotonic()
    dead.kill()

    async def heir_leads() -> bool:
        holder = await lease_holder(kube)
        return holder_pid(holder) == heir.pid and await leads(heir)

    await wait_for(
        heir_leads, bool, timeout=LEASE_SECONDS * 4, interval=0.05, what=f"{heir.name} leading"
    )
    return time.monotonic() - killed


def assert_one_active_controller(samples: list[Sample], names: list[str]) -> None:
    """Never two leaders in one sample; a replica's pod writes grow only around samples where
    it leads (its counter can rise between a sample where it leads and the next one)."""
    for sample in samples:
        assert sum(1 for n in names if sample.leader[n] == 1) <= 1, sample
    for name in names:
        seen = [s for s in samples if s.writes[name] is not None]
        for earlier, later in itertools.pairwise(seen):
            if (later.writes[name] or 0) > (earlier.writes[name] or 0):
                assert earlier.leader[name] == 1 or later.leader[name] == 1, (name, earlier, later)


async def test_one_of_two_replicas_leads_and_a_sigkilled_leader_is_replaced_within_the_lease(
    kube: KubeClient,
    namespace: str,
    sidecarsets: k.SidecarSets,
    tuned: Replica,
    control_plane: ControlPlane,
) -> None:
    second = Replica(control_plane, name="operator-b")
    pods = 6
    name = await sidecarsets.create(
        sidecarset(f"ha-{namespace[-5:]}", namespace, {"app": "ha"}, maxUnavailable=BUDGET)
    )
    await k.create(kube, deployment("ha", pods, [{"name": "app", "image": APP_IMAGE}]), namespace)
    before = await all_pods(kube, namespace, pods, runs(SIDECAR, OLD), what="pods injected")
    await wait_for(lambda: leads(tuned), bool, timeout=30, what="the first replica leading")
    await second.restart()
    takeovers: list[float] = []
    try:
        async with (
            sampling([tuned, second]) as samples,
            watching(
                kube,
                namespace,
                sidecar_disrupted(SIDECAR, NEWER),
                invariants={"each sidecar once": each_sidecar_once(SIDECAR)},
            ) as watcher,
        ):
            await wait_for(lambda: lease_holder(kube), lambda h: holder_pid(h) == tuned.pid)
            await wait_for(
                lambda: asyncio.sleep(0.3, result=list(samples[-3:])),
                lambda last: (
                    len(last) == 3
                    and all(s.leader == {tuned.name: 1, second.name: 0} for s in last)
                ),
                what="exactly the first replica leading",
            )
            # The first replica is killed, restarted (it follows), then the second is killed:
            # the first leads again, and it is also the one the webhook configuration names.
            for image, leader, heir in ((NEW, tuned, second), (NEWER, second, tuned)):
                await set_image(kube, name, image)

                def rolling(ps: dict[str, Pod], image: str = image) -> bool:
                    return any(switched_to(SIDECAR, image)(p) for p in ps.values())

                await wait_for(
                    watcher.snapshot,
                    rolling,
                    timeout=30,
                    what=f"{leader.name} rolling {image}",
                )
                takeovers.append(await failover(kube, leader, heir))
                restarted = asyncio.create_task(leader.restart() if leader is tuned else noop())
                await all_pods(
                    kube, namespace, pods, runs(SIDECAR, image), what=f"rollout of {image}"
                )
                await restarted
                if leader is tuned:
                    await wait_for(
                        lambda: asyncio.sleep(0.3, result=list(samples[-3:])),
                        lambda last: all(s.leader == {tuned.name: 0, second.name: 1} for s in last),
                        what="the restarted first replica following, the second leading",
                    )
            await wait_for(
                lambda: asyncio.sleep(0.3, result=list(samples[-3:])),
                lambda last: all(s.leader[tuned.name] == 1 for s in last),
                what="the first replica leading alone",
            )
    finally:
        await second.stop()
    assert_one_active_controller(samples, [tuned.name, second.name])
    first_writes = [w for s in samples if (w := s.writes[tuned.name]) is not None]
    second_writes = [w for s in samples if (w := s.writes[second.name]) is not None]
    assert max(second_writes or [0]) > 0, "the second replica never wrote after taking over"
    assert max(first_writes or [0]) > 0
    # The Lease, the acquire loop's jitter (up to 2.2 retry periods), and 3 s for our polling
    # (a Lease GET and a scrape every 50 ms) on a loaded machine.
    bound = LEASE_SECONDS + 2.2 * RETRY_SECONDS + 3.0
    assert all(t <= bound for t in takeovers), f"takeovers {takeovers}, bound {bound:.1f}s"
    assert watcher.max_disrupted <= BUDGET, watcher.history
    assert not watcher.violations
    assert not watcher.recreated
    after = await k.pods(kube, namespace)
    assert_not_restarted(after, before)
    print(f"\nfailovers after SIGKILL: {', '.join(f'{t:.1f}s' for t in takeovers)}")


async def test_a_replica_that_loses_the_lease_exits_to_restart_cold(
    kube: KubeClient, tuned: Replica
) -> None:
    # Another holder takes the Lease (as after a long partition): the leader's next renewal
    # finds it taken. controller-runtime exits then; so do we, instead of campaigning again
    # with the lost term's writer, judgements and queue.
    await wait_for(lambda: leads(tuned), bool, timeout=30, what="the replica leading")
    path = resource_path(
        "coordination.k8s.io/v1",
        "leases",
        namespace=OPERATOR_NAMESPACE,
        name="sidecarset-controller",
    )
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    await kube.patch(
        path,
        {"spec": {"holderIdentity": "thief_1_00000000", "renewTime": now, "acquireTime": now}},
    )
    await wait_for(
        lambda: asyncio.to_thread(tuned.running),
        lambda running: not running,
        timeout=LEASE_SECONDS * 3,
        what="the replica exiting after losing the Lease",
    )
    logged = tuned.log.read_text()
    assert "leadership lost; exiting" in logged, logged[-2000:]
    await kube.patch(path, {"spec": {"holderIdentity": None, "renewTime": None}})


# --- 5. the webhook unavailable: failure policy, exclusions, missed injections -----------------


async def mutating_policy(kube: KubeClient) -> str:
    return str((await pod_webhook(kube))["failurePolicy"])


def condition(sidecarset_obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    found = (sidecarset_obj.get("status") or {}).get("conditions") or []
    return next((c for c in found if c["type"] == kind), None)


async def test_without_the_webhook_pods_follow_the_failure_policy_and_missed_ones_are_reported(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets, tuned: Replica
) -> None:
    tag = namespace[-5:]
    selects = {"reliability-probe": tag}
    # Cluster-wide on purpose (no namespaceSelector): kube-public pods match its selector too.
    name = await sidecarsets.create(sidecarset(f"missed-{tag}", None, selects))
    public = f"public-{tag}"
    tuned.kill()
    try:
        assert await mutating_policy(kube) == "Fail"
        for attempt in range(3):
            with pytest.raises(errors.ApiError) as refused:
                await k.create(kube, bare_pod(f"refused-{attempt}", selects), namespace)
            assert 'failed calling webhook "mutate-pod.sidecarset.kruise.io"' in str(refused.value)
        created = await k.create(kube, bare_pod(public, selects), "kube-public")
        assert container_names(created) == ["app"]
        opted_out = {**selects, webhooks_config.OPT_OUT_LABEL: "false"}
        created = await k.create(kube, bare_pod("opted-out", opted_out), namespace)
        assert container_names(created) == ["app"]
        with pytest.raises(errors.ApiError) as refused:
            await k.create(kube, sidecarset(f"refused-{tag}", namespace, {"a": "b"}))
        assert "sidecarset.kruise.io" in str(refused.value)

        await tuned.restart("--failure-policy", "Ignore")
        assert await mutating_policy(kube) == "Ignore"
        tuned.kill()
        created = await k.create(kube, bare_pod("missed", selects), namespace)
        assert container_names(created) == ["app"]
    finally:
        await tuned.restart()
    assert await mutating_policy(kube) == "Fail"
    injected = await k.create(kube, bare_pod("injected", selects), namespace)
    assert container_names(injected) == ["filebeat", "app"]
    missed_series = series("sidecarset_pods", sidecarset=name, state="missed_injection")
    try:
        await wait_for(
            lambda: scrape(tuned.probe_port),
            lambda m: m.get(missed_series) == 1,
            timeout=30,
            what="sidecarset_pods{state=missed_injection} == 1",
        )
        reported = await wait_for(
            lambda: k.get_sidecarset(kube, name),
            lambda s: (condition(s, "InjectionMissed") or {}).get("status") == "True",
            timeout=30,
            what="condition InjectionMissed",
        )
        missed = condition(reported, "InjectionMissed") or {}
        assert missed["reason"] == "PodsWithoutSidecars"
        assert f"{namespace}/missed" in missed["message"]
        assert "public" not in missed["message"]
        assert "opted-out" not in missed["message"]
        events = await kube.get(
            resource_path("v1", "events", namespace="default"),
            fieldSelector=f"involvedObject.name={name}",
        )
        [event] = [e for e in events["items"] if e["reason"] == "MissedInjection"]
        assert event["type"] == "Warning"
        assert f"{namespace}/missed" in event["message"]

        await kube.delete(resource_path("v1", "pods", namespace=namespace, name="missed"))
        await wait_for(
            lambda: k.get_sidecarset(kube, name),
            lambda s: (condition(s, "InjectionMissed") or {}).get("reason") == "AllInjected",
            timeout=30,
            what="InjectionMissed cleared once the pod is gone",
        )
        assert (await scrape(tuned.probe_port)).get(missed_series) == 0
    finally:
        with contextlib.suppress(errors.NotFound):
            await kube.delete(resource_path("v1", "pods", namespace="kube-public", name=public))


async def test_a_failing_reconcile_is_counted_and_a_deleted_sidecarsets_series_go(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets, tuned: Replica
) -> None:
    # A real failure: a quota of zero ControllerRevisions in the operator's namespace makes the
    # API server refuse the revision every round of a new SidecarSet records first.
    quotas = resource_path("v1", "resourcequotas", namespace=OPERATOR_NAMESPACE)
    quota = f"no-revisions-{namespace[-5:]}"
    errors_series = series("sidecarset_reconcile_errors_total", kind="error")
    before = (await scrape(tuned.probe_port)).get(errors_series, 0.0)
    await kube.create(
        quotas,
        {"metadata": {"name": quota}, "spec": {"hard": {"count/controllerrevisions.apps": "0"}}},
    )
    try:
        name = await sidecarsets.create(
            sidecarset(f"quota-{namespace[-5:]}", namespace, image=f"{k.OLD}-{namespace[-5:]}"),
            seen=False,
        )
        await wait_for(
            lambda: scrape(tuned.probe_port),
            lambda m: m.get(errors_series, 0.0) > before,
            timeout=30,
            what="sidecarset_reconcile_errors_total{kind=error} rising",
        )
    finally:
        await kube.delete(f"{quotas}/{quota}")
    matched = series("sidecarset_pods", sidecarset=name, state="matched")
    await wait_for(
        lambda: scrape(tuned.probe_port),
        lambda m: matched in m,
        timeout=60,
        what=f"{matched} once the quota is gone",
    )
    await k.delete_sidecarset(kube, name)
    gone = await wait_for(
        lambda: scrape(tuned.probe_port),
        lambda m: not any(f'sidecarset="{name}"' in key for key in m),
        timeout=30,
        what=f"every sidecarset_pods series of {name} removed",
    )
    assert gone.get(series("sidecarset_reconcile_errors_total", kind="conflict")) is not None


# --- 6. generated and malformed AdmissionReviews, straight at the webhook ------------------------


def fuzz_sidecarsets(namespace: str) -> list[dict[str, Any]]:
    """The live SidecarSets the generated pods meet: the article's Filebeat one and a hot
    upgrade one, both selecting `fuzz: "true"` in the test namespace."""
    article = k.scoped(k.load("tests/fixtures/filebeat-sidecarset.yaml")[0], namespace)
    article["metadata"]["name"] = f"fuzz-filebeat-{namespace[-5:]}"
    article["spec"]["selector"] = {"matchLabels": {"fuzz": "true"}}
    hot = sidecarset(f"fuzz-hot-{namespace[-5:]}", namespace, {"fuzz": "true"}, container="proxy")
    hot["spec"]["containers"][0]["upgradeStrategy"] = {
        "upgradeType": "HotUpgrade",
        "hotUpgradeEmptyImage": "docker.io/openkruise/hotupgrade-sample:empty",
    }
    return [article, hot]


class WebhookCaller:
    """Synchronous HTTPS to one webhook port, trusting the webhook CA (127.0.0.1 only)."""

    def __init__(self, port: int, ca_file: Path) -> None:
        self.port = port
        self.context = ssl.create_default_context(cafile=str(ca_file))
        self.connection = self._connect()
        self.calls = 0

    def _connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=10)

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.calls += 1
        for attempt in (1, 2):
            try:
                self.connection.request(
                    "POST", path, body=body, headers={"Content-Type": "application/json"}
                )
                response = self.connection.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionError, BrokenPipeError):
                self.connection.close()  # a keep-alive connection the server closed: redial once
                self.connection = self._connect()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def assert_answered(sent: dict[str, Any], status: int, body: bytes) -> dict[str, Any]:
    """A well-formed answer to `sent`: never a 500, a refusal always says why, a patch always
    applies to the object it was made for."""
    assert status == 200, (status, body[:500])
    answer: dict[str, Any] = json.loads(body)["response"]
    assert answer["uid"] == sent["request"]["uid"]
    if not answer["allowed"]:
        refusal = answer["status"]
        assert 400 <= refusal["code"] < 500, refusal
        assert refusal["message"].strip(), refusal
        assert "internal error" not in refusal["message"], refusal
    if "patch" in answer:
        operations = json.loads(base64.b64decode(answer["patch"]))
        patched = jsonpatch.apply_patch(sent["request"]["object"], operations)
        if sent["request"]["resource"]["resource"] == "pods" and unique_names(
            sent["request"]["object"]
        ):
            assert unique_names(patched), "a sidecar was injected twice"
    return answer


async def test_generated_pods_and_sidecarsets_never_get_a_500_and_every_refusal_says_why(
    kube: KubeClient,
    namespace: str,
    sidecarsets: k.SidecarSets,
    tuned: Replica,
    control_plane: ControlPlane,
) -> None:
    for body in fuzz_sidecarsets(namespace):
        await sidecarsets.create(body, seen=False)
    errors_before = total(
        await scrape(tuned.probe_port), "sidecarset_webhook_requests_total", outcome="error"
    )
    caller = WebhookCaller(tuned.webhook_port, control_plane.workdir / "webhook-pki" / "ca.crt")
    outcomes: Counter[str] = Counter()

    def call(path: str, sent: dict[str, Any]) -> None:
        status, body = caller.post(path, json.dumps(sent).encode())
        answer = assert_answered(sent, status, body)
        outcomes["patched" if "patch" in answer else str(answer["allowed"])] += 1

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(pod=POD)
    def pods_are_answered(pod: dict[str, Any]) -> None:
        call(webhooks_config.POD_PATH, review(pod, "Pod", "pods", namespace))

    base = fuzz_sidecarsets("nowhere")[0]
    base["metadata"]["name"] = "generated"

    @settings(
        max_examples=100,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        changes=SIDECARSET_SPEC_CHANGES,
        metadata=maybe(st.just(base["metadata"])),
        update=st.booleans(),
    )
    def sidecarsets_are_answered(changes: dict[str, Any], metadata: Any, update: bool) -> None:
        obj = {**base, "metadata": metadata, "spec": {**base["spec"], **changes}}
        extra = {"operation": "UPDATE", "oldObject": base} if update else {}
        for path in (
            webhooks_config.SIDECARSET_MUTATE_PATH,
            webhooks_config.SIDECARSET_VALIDATE_PATH,
        ):
            call(path, review(obj, "SidecarSet", "sidecarsets", "", **extra))

    pods_are_answered()
    sidecarsets_are_answered()
    errors_after = total(
        await scrape(tuned.probe_port), "sidecarset_webhook_requests_total", outcome="error"
    )
    assert errors_after == errors_before, "a handler raised (answered as an internal error)"
    assert outcomes["patched"] > 0, outcomes  # injection ran
    assert outcomes["False"] > 0, outcomes  # and refusals were made
    pod = await k.create(kube, bare_pod("after-fuzz", {"fuzz": "true"}), namespace)
    assert "filebeat" in container_names(pod)  # still serving, still injecting
    print(f"\n{caller.calls} generated reviews: {dict(outcomes)}")


def oversized_review() -> bytes:
    """A valid AdmissionReview just over 3 MiB (a pod with one huge annotation)."""
    pod = bare_pod("huge", {"fuzz": "true"})
    pod["metadata"]["annotations"] = {"filler": "x" * admission.MAX_BODY_BYTES}
    return json.dumps(review(pod, "Pod", "pods", "default")).encode()


BAD_BODIES = [
    pytest.param(b"", id="empty"),
    pytest.param(b"not json", id="not-json"),
    pytest.param(b"[]", id="json-array"),
    pytest.param(b"\xff\xfe\x00garbage", id="not-utf8"),
    pytest.param(b'{"apiVersion": "admission.k8s.io/v1"}', id="no-kind"),
    pytest.param(
        json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(),
        id="no-request",
    ),
    pytest.param(
        json.dumps(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 5}}
        ).encode(),
        id="uid-not-a-string",
    ),
    pytest.param(
        json.dumps(review("a pod", "Pod", "pods", "default")).encode(), id="object-a-string"
    ),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-100000-deep"),
    pytest.param(
        json.dumps(review(json.loads("[" * 150 + "]" * 150), "Pod", "pods", "default")).encode(),
        id="nested-150-deep-in-the-object",
    ),
]


@pytest.mark.parametrize("body", BAD_BODIES)
@pytest.mark.parametrize(
    "path", [webhooks_config.POD_PATH, webhooks_config.SIDECARSET_VALIDATE_PATH], ids=["pod", "ss"]
)
async def test_a_malformed_admission_review_gets_a_400_that_says_why(
    tuned: Replica, control_plane: ControlPlane, path: str, body: bytes
) -> None:
    context = webhook_client_context(control_plane)
    url = f"https://127.0.0.1:{tuned.webhook_port}{path}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, ssl=context) as resp,
    ):
        assert resp.status == 400
        assert (await resp.json())["error"].startswith("malformed AdmissionReview")


async def test_an_oversized_admission_review_gets_a_400_and_the_server_keeps_serving(
    kube: KubeClient, namespace: str, tuned: Replica, control_plane: ControlPlane
) -> None:
    context = webhook_client_context(control_plane)
    url = f"https://127.0.0.1:{tuned.webhook_port}{webhooks_config.POD_PATH}"
    body = oversized_review()
    assert len(body) > admission.MAX_BODY_BYTES

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the limit still holds
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    pid = tuned.pid
    async with aiohttp.ClientSession() as session:
        for data in (body, chunked()):
            async with session.post(url, data=data, ssl=context) as resp:
                assert resp.status == 400
                assert "too large" in (await resp.json())["error"]
    pod = await k.create(kube, bare_pod("after-oversized", {"app": "x"}), namespace)
    assert container_names(pod) == ["app"]  # the apiserver still reached the webhook
    assert tuned.running()
    assert tuned.pid == pid


# --- 7. the administrator's policy: host-level sidecars, patchPodMetadata whitelist -----------

HOST_LEVEL = [
    pytest.param(
        {"securityContext": {"privileged": True}},
        [],
        "spec.containers[0].securityContext.privileged",
        id="privileged",
    ),
    pytest.param(
        {"securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}},
        [],
        "spec.containers[0].securityContext.capabilities.add[0]",
        id="added-capability",
    ),
    pytest.param(
        {"ports": [{"containerPort": 8080, "hostPort": 8080}]},
        [],
        "spec.containers[0].ports[0].hostPort",
        id="host-port",
    ),
    pytest.param(
        {"volumeMounts": [{"name": "node-root", "mountPath": "/host"}]},
        [{"name": "node-root", "hostPath": {"path": "/"}}],
        "spec.volumes[0].hostPath",
        id="host-path",
    ),
    pytest.param(
        {"securityContext": {"allowPrivilegeEscalation": True}},
        [],
        "spec.containers[0].securityContext.allowPrivilegeEscalation",
        id="privilege-escalation",
    ),
]


def host_level(
    name: str, container: dict[str, Any], volumes: list[dict[str, Any]]
) -> dict[str, Any]:
    body = sidecarset(name, "nowhere", {"app": name})
    body["spec"]["containers"][0].update(container)
    if volumes:
        body["spec"]["volumes"] = volumes
    return body


@pytest.mark.parametrize(("container", "volumes", "field"), HOST_LEVEL)
async def test_a_host_level_sidecar_is_refused_naming_the_field_and_the_policy(
    kube: KubeClient, tuned: Replica, container: dict[str, Any], volumes: list[Any], field: str
) -> None:
    body = host_level(f"host-level-{uuid.uuid4().hex[:6]}", container, volumes)
    with pytest.raises(errors.ApiError) as refused:
        await k.create(kube, body)
    message = refused.value.message
    assert refused.value.status in (400, 403, 422), refused.value
    assert f"{field}: Forbidden" in message, message
    assert "--allow-privileged-sidecars" in message, message


async def test_the_allow_privileged_sidecars_policy_admits_them(
    kube: KubeClient, sidecarsets: k.SidecarSets, tuned: Replica
) -> None:
    await tuned.stop()
    try:
        await tuned.restart("--allow-privileged-sidecars")
        for n, case in enumerate(HOST_LEVEL):
            container, volumes, _field = cast(
                tuple[dict[str, Any], list[dict[str, Any]], str], case.values
            )
            await sidecarsets.create(
                host_level(f"allowed-{n}-{uuid.uuid4().hex[:6]}", container, volumes),
                seen=False,
            )
    finally:
        await tuned.stop()
        await tuned.restart()


WHITELIST = {
    "rules": [
        {
            "selector": {"matchLabels": {"team": "logging"}},
            "allowedAnnotationKeyExprs": [r"^logs\.example\.com/[a-z]+"],
        }
    ]
}
"""A Kruise administrator's whitelist, in Kruise's ConfigMap, with a rule that relies on Kruise's
unanchored matching (`level2` passes: the pattern matches its start)."""


def patching(name: str, key: str, labels: dict[str, str]) -> dict[str, Any]:
    body = sidecarset(name, "nowhere", {"app": "patched"})
    body["metadata"]["labels"] = labels
    body["spec"]["patchPodMetadata"] = [{"annotations": {key: "on"}, "patchPolicy": "Overwrite"}]
    return body


@pytest.mark.parametrize(
    ("key", "labels", "admitted"),
    [
        pytest.param("logs.example.com/level", {"team": "logging"}, True, id="listed-key"),
        pytest.param("xlogs.example.com/level", {"team": "logging"}, False, id="prefix-added"),
        pytest.param("logs.example.com/level2", {"team": "logging"}, True, id="suffix-added"),
        pytest.param("logs.example.com/level", {"team": "other"}, False, id="rule-not-selected"),
    ],
)
async def test_patch_pod_metadata_keys_are_matched_by_kruise_configuration_as_kruise_does(
    kube: KubeClient, sidecarsets: k.SidecarSets, key: str, labels: dict[str, str], admitted: bool
) -> None:
    configmaps = resource_path("v1", "configmaps", namespace=OPERATOR_NAMESPACE)
    config = {
        "metadata": {"name": "kruise-configuration"},
        "data": {"SidecarSet_PatchPodMetadata_WhiteList": json.dumps(WHITELIST)},
    }
    body = patching(f"patch-{uuid.uuid4().hex[:6]}", key, labels)
    with pytest.raises(errors.ApiError) as without_whitelist:
        await k.create(kube, body)
    assert f"{OPERATOR_NAMESPACE}/kruise-configuration" in without_whitelist.value.message
    await kube.create(configmaps, config)
    try:
        # The webhook reads the ConfigMap from its informer: retry until it has seen it.
        async def attempt() -> str:
            try:
                if admitted:
                    await sidecarsets.create(body, seen=False)
                else:
                    await k.create(kube, body)
            except errors.ApiError as err:
                return f"refused: {err.message}"
            return "admitted"

        def settled(outcome: str) -> bool:
            if admitted:
                return outcome == "admitted"
            return "spec.patchPodMetadata" in outcome and "kruise-configuration, key" in outcome

        await wait_for(attempt, settled, timeout=10, what=f"the whitelist decision on {key}")
    finally:
        await kube.delete(f"{configmaps}/kruise-configuration")


# --- 8. TLS ------------------------------------------------------------------------------------


async def handshake(port: int, ca_file: Path, version: ssl.TLSVersion) -> str:
    """Connect with exactly `version`: the version negotiated, or "refused: ..."."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.minimum_version = context.maximum_version = version
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let our client offer old versions at all
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=context), timeout=10
        )
    except (ssl.SSLError, ConnectionResetError) as err:
        # OpenSSL 3 servers answer an old ClientHello with an alert or a plain reset.
        return f"refused: {type(err).__name__} {err}"
    negotiated = str(writer.get_extra_info("ssl_object").version())
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return negotiated


@contextlib.asynccontextmanager
async def permissive_server(directory: Path) -> AsyncIterator[int]:
    """A TLS server that accepts TLS 1.0 and up: the control showing our client can offer
    the old versions, so a refusal by the webhook is the webhook's."""
    certificates.load_or_create_local(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.load_cert_chain(str(directory / "serving.crt"), str(directory / "serving.key"))

    async def close(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(close, "127.0.0.1", 0, ssl=context)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize(
    ("version", "name", "accepted"),
    [
        pytest.param(ssl.TLSVersion.TLSv1, "TLSv1", False, id="TLSv1.0"),
        pytest.param(ssl.TLSVersion.TLSv1_1, "TLSv1.1", False, id="TLSv1.1"),
        pytest.param(ssl.TLSVersion.TLSv1_2, "TLSv1.2", True, id="TLSv1.2"),
        pytest.param(ssl.TLSVersion.TLSv1_3, "TLSv1.3", True, id="TLSv1.3"),
    ],
)
async def test_the_webhook_speaks_tls_1_2_and_1_3_only(
    tuned: Replica,
    control_plane: ControlPlane,
    tmp_path: Path,
    version: ssl.TLSVersion,
    name: str,
    accepted: bool,
) -> None:
    async with permissive_server(tmp_path) as control:
        assert await handshake(control, tmp_path / "ca.crt", version) == name
    ca = control_plane.workdir / "webhook-pki" / "ca.crt"
    got = await handshake(tuned.webhook_port, ca, version)
    if accepted:
        assert got == name
    else:
        assert got.startswith("refused"), got


async def post_over_new_connection(
    port: int, context: ssl.SSLContext, body: bytes
) -> tuple[int, int]:
    """One POST on its own TLS connection: (HTTP status, serial of the certificate presented)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        request = (
            f"POST {webhooks_config.POD_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        writer.write(request + body)
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    status = int(response.split(b" ", 2)[1])
    return status, x509.load_der_x509_certificate(der).serial_number


@pytest.mark.parametrize("run", [1, 2], ids=lambda n: f"run-{n}")
async def test_certificate_rotation_under_load_fails_no_request(tmp_path: Path, run: int) -> None:
    """The app's webhook server in-process, hammered at a bounded rate from 8 clients, each
    request on a new TLS connection, while the serving certificate is re-issued and loaded
    into the live context three times."""
    material = certificates.load_or_create_local(tmp_path / "pki")
    tls = certificates.LiveTLS(material)
    ca = pki.CertificateAuthority.load(material.ca)
    stores = [Store[Any](name) for name in ("sidecarsets", "namespaces", "revisions")]
    for store in stores:
        await store.replace({})
    injector = PodInjector(
        sidecarsets=stores[0], namespaces=stores[1], revisions=stores[2], client=None
    )
    app = httpserver.webhook_app(
        [httpserver.Route(webhooks_config.POD_PATH, "mutate-pod", injector.handle)],
        ready=lambda: True,
    )
    server = httpserver.Server(app, "127.0.0.1", 0, tls.context)
    await server.start()
    client = ssl.create_default_context(cafile=str(tmp_path / "pki" / "ca.crt"))
    body = json.dumps(review(bare_pod("p", {"a": "b"}), "Pod", "pods", "default")).encode()
    results: list[tuple[float, int, int]] = []
    failures: list[str] = []
    serials = [material.serving.certificate().serial_number]
    rotated_at: list[float] = []
    stop = time.monotonic() + 4.0

    async def hammer() -> None:
        for _ in range(400):  # at most 400 requests per client, ~40/s each
            if time.monotonic() > stop:
                return
            started = time.monotonic()
            try:
                status, serial = await post_over_new_connection(server.port, client, body)
                results.append((started, status, serial))
            except (OSError, ssl.SSLError, ValueError, IndexError) as err:
                failures.append(repr(err))
            await asyncio.sleep(0.025)

    async def rotate() -> None:
        for _ in range(3):
            await asyncio.sleep(1.0)
            fresh = certificates.issue(ca, ("localhost",), ("127.0.0.1",))
            tls.load(certificates.WebhookPKI(material.ca, fresh))
            serials.append(fresh.certificate().serial_number)
            rotated_at.append(time.monotonic())

    try:
        async with asyncio.TaskGroup() as tg:
            for _ in range(8):
                tg.create_task(hammer())
            tg.create_task(rotate())
    finally:
        await server.stop()
    assert not failures, failures[:5]
    assert len(results) > 100
    assert all(status == 200 for _, status, _ in results)
    for n, moment in enumerate(rotated_at, start=1):
        # Connections opened after the reload (a little later, to leave out handshakes already
        # under way) must present the new certificate or a newer one.
        later = {serial for started, _, serial in results if started > moment + 0.05}
        assert later, f"no request after rotation {n}"
        assert later <= set(serials[n:]), f"an old certificate after rotation {n}"
    presented = len({serial for *_, serial in results})
    print(f"\n{len(results)} requests, 0 failed, {presented} certificates presented")


# --- 9. no secret in the log -----------------------------------------------------------------


def pem_body_lines(pem: bytes) -> list[str]:
    """The base64 lines of a PEM key (the part that is secret)."""
    return [
        line.strip()
        for line in pem.decode().splitlines()
        if line.strip() and not line.startswith("-----")
    ]


async def test_no_secret_or_token_is_ever_logged(
    control_plane: ControlPlane, tuned: Replica
) -> None:
    """Run last: the operator logs (debug level) of every process this module started."""
    kubeconfig = yaml.safe_load(control_plane.kubeconfig.read_text())
    client_key_data = kubeconfig["users"][0]["user"]["client-key-data"]
    secrets = {
        "kubeconfig client-key-data": [client_key_data, client_key_data[:40]],
        "kubeconfig client key": pem_body_lines(base64.b64decode(client_key_data)),
        "webhook CA key": pem_body_lines(
            (control_plane.workdir / "webhook-pki" / "ca.key").read_bytes()
        ),
        "webhook serving key": pem_body_lines(
            (control_plane.workdir / "webhook-pki" / "serving.key").read_bytes()
        ),
        "service-account signing key": pem_body_lines(
            (control_plane.pki_dir / "sa.key").read_bytes()
        ),
        "pod env value": [SECRET_MARKER],
    }
    patterns = {
        "a PEM private key": re.compile(r"PRIVATE KEY-----"),
        "a bearer token": re.compile(r"Bearer\s+[A-Za-z0-9._-]{8,}", re.IGNORECASE),
        "a JWT": re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\."),
        "an Authorization header": re.compile(r"authorization['\"]?\s*[:=]", re.IGNORECASE),
    }
    logs = sorted(control_plane.log_dir.glob("operator*.log"))
    assert logs, "no operator log"
    text = "\n".join(log.read_text(errors="replace") for log in logs)
    assert "admission handler failed" not in text, "a webhook handler raised"
    for what, needles in secrets.items():
        for needle in needles:
            if len(needle) >= 16:
                assert needle not in text, f"{what} appears in the operator log"
    for what, pattern in patterns.items():
        assert not pattern.search(text), f"{what} appears in the operator log"
    print(f"\nscanned {len(text.splitlines())} log lines in {[log.name for log in logs]}")
