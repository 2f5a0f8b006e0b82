"""The informer and the Lease elector against the real local API server."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import pytest

from sidecarset.devcluster.controlplane import ControlPlane
from sidecarset.shell.clock import RealClock
from sidecarset.shell.informer import DictCodec, Informer
from sidecarset.shell.kube.client import KubeClient, resource_path
from sidecarset.shell.leader import LeaderElector, LeadershipLost
from sidecarset.shell.store import Deleted, Event, Store
from tests.integration.waiting import wait_for

JSONObject = dict[str, Any]
T = TypeVar("T")

# Short timings keep the tests quick (client-go's defaults are 15 s / 10 s / 2 s).
LEASE = {"lease_duration": 4.0, "renew_deadline": 3.0, "retry_period": 0.5}


def current(read: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """A `wait_for` probe that reads in-process state (a store, an elector)."""

    async def probe() -> T:
        return read()

    return probe


# -- informer ---------------------------------------------------------------------------------


def configmaps(namespace: str) -> str:
    return resource_path("v1", "configmaps", namespace=namespace)


async def create_configmap(kube: KubeClient, namespace: str, name: str, value: str) -> None:
    await kube.create(configmaps(namespace), {"metadata": {"name": name}, "data": {"v": value}})


async def api_versions(kube: KubeClient, namespace: str) -> dict[str, str]:
    body = await kube.get(configmaps(namespace))
    return {
        f"{namespace}/{item['metadata']['name']}": item["metadata"]["resourceVersion"]
        for item in body["items"]
    }


def store_versions(store: Store[JSONObject]) -> dict[str, str]:
    return {key: obj["metadata"]["resourceVersion"] for key, obj in store.items()}


async def store_matches_api(
    kube: KubeClient, namespace: str, store: Store[JSONObject], what: str
) -> None:
    async def both() -> tuple[dict[str, str], dict[str, str]]:
        return await api_versions(kube, namespace), store_versions(store)

    await wait_for(both, lambda pair: pair[0] == pair[1], timeout=30, what=what)


@contextlib.asynccontextmanager
async def running(informer: Informer[JSONObject]) -> AsyncIterator[Informer[JSONObject]]:
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.store.synced.wait(), timeout=30)
        yield informer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def configmap_informer(kube: KubeClient, namespace: str, **options: Any) -> Informer[JSONObject]:
    return Informer(kube, configmaps(namespace), DictCodec(), clock=RealClock(), **options)


def changes(events: list[Event[JSONObject]], name: str) -> list[str]:
    return [type(e).__name__ for e in events if e.key.endswith(f"/{name}")]


async def test_the_informer_store_follows_creates_updates_and_deletes(
    kube: KubeClient, namespace: str
) -> None:
    informer = configmap_informer(kube, namespace)
    events: list[Event[JSONObject]] = []
    await informer.store.subscribe(events.append)
    async with running(informer):
        await create_configmap(kube, namespace, "alpha", "1")
        await create_configmap(kube, namespace, "beta", "1")
        await store_matches_api(kube, namespace, informer.store, "both created")
        await kube.patch(
            resource_path("v1", "configmaps", namespace=namespace, name="alpha"),
            {"data": {"v": "2"}},
        )
        await store_matches_api(kube, namespace, informer.store, "alpha updated")
        alpha = informer.store.get(f"{namespace}/alpha")
        assert alpha is not None
        assert alpha["data"] == {"v": "2"}
        await kube.delete(resource_path("v1", "configmaps", namespace=namespace, name="beta"))
        await store_matches_api(kube, namespace, informer.store, "beta deleted")
    assert changes(events, "alpha") == ["Added", "Updated"]
    assert changes(events, "beta") == ["Added", "Deleted"]
    assert informer.stats.lists == 1
    assert informer.stats.gone == 0


async def test_a_paginated_list_and_a_label_selector_fill_the_store_exactly(
    kube: KubeClient, namespace: str
) -> None:
    for i in range(7):
        labels = {"pick": "yes" if i % 2 else "no"}
        await kube.create(
            configmaps(namespace), {"metadata": {"name": f"cm-{i}", "labels": labels}}
        )
    informer = configmap_informer(kube, namespace, label_selector="pick=yes", page_size=2)
    async with running(informer):
        assert sorted(informer.store.keys()) == [f"{namespace}/cm-{i}" for i in (1, 3, 5)]


def events_path(namespace: str) -> str:
    return resource_path("v1", "events", namespace=namespace)


async def create_event(kube: KubeClient, namespace: str, name: str) -> None:
    await kube.create(
        events_path(namespace),
        {
            "metadata": {"name": name},
            "involvedObject": {"kind": "Pod", "namespace": namespace, "name": "some-pod"},
            "reason": "Testing",
            "message": name,
        },
    )


async def compact_etcd(control_plane: ControlPlane) -> None:
    """Drop etcd's history up to now, as the API server's periodic compaction would."""
    etcd = f"http://127.0.0.1:{control_plane.state().ports['etcd']}"
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{etcd}/v3/kv/range", json={"key": "AA=="}) as resp:
            revision = (await resp.json())["header"]["revision"]
        async with session.post(
            f"{etcd}/v3/kv/compaction", json={"revision": revision, "physical": True}
        ) as resp:
            assert resp.status == 200, await resp.text()


async def test_a_watch_resumed_after_compaction_relists_and_deletes_what_vanished(
    kube: KubeClient, namespace: str, control_plane: ControlPlane
) -> None:
    # Events, because the API server keeps no watch cache for them: a watch from a compacted
    # resourceVersion reaches etcd and is answered with a 410 ERROR event.
    first: Informer[JSONObject] = Informer(
        kube, events_path(namespace), DictCodec(), clock=RealClock()
    )
    async with running(first):
        await create_event(kube, namespace, "stays")
        await create_event(kube, namespace, "vanishes")
        await wait_for(
            current(lambda: sorted(first.store.keys())),
            lambda keys: keys == [f"{namespace}/stays", f"{namespace}/vanishes"],
            timeout=30,
            what="both events in the store",
        )

    # The gap: changes while nothing watches, then compaction expires the resume point.
    await kube.delete(resource_path("v1", "events", namespace=namespace, name="vanishes"))
    await create_event(kube, namespace, "arrives")
    await compact_etcd(control_plane)

    changes_seen: list[Event[JSONObject]] = []
    await first.store.subscribe(changes_seen.append)
    changes_seen.clear()  # drop the replay of what the store already held
    second: Informer[JSONObject] = Informer(
        kube,
        events_path(namespace),
        DictCodec(),
        clock=RealClock(),
        store=first.store,
        resource_version=first.resource_version,
    )
    task = asyncio.create_task(second.run())
    try:
        await wait_for(
            current(lambda: sorted(second.store.keys())),
            lambda keys: keys == [f"{namespace}/arrives", f"{namespace}/stays"],
            timeout=30,
            what="the store after the relist",
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert second.stats.gone == 1
    assert second.stats.relists == 1
    assert changes(changes_seen, "vanishes") == ["Deleted"]
    assert changes(changes_seen, "arrives") == ["Added"]
    assert changes(changes_seen, "stays") == []
    [deleted] = [e for e in changes_seen if isinstance(e, Deleted)]
    assert deleted.old["message"] == "vanishes"


# -- leader election --------------------------------------------------------------------------


class Campaign:
    """Runs one elector's `leading()` block and records when its body ran."""

    def __init__(self, elector: LeaderElector, terms: list[tuple[str, float, float]]) -> None:
        self.elector = elector
        self.terms = terms
        self.lost = False
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async with self.elector.leading():
                started = time.monotonic()
                try:
                    await asyncio.Event().wait()
                finally:
                    self.terms.append((self.elector.identity, started, time.monotonic()))
        except LeadershipLost:
            self.lost = True

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def elector(kube: KubeClient, namespace: str, identity: str, **options: Any) -> LeaderElector:
    return LeaderElector(
        kube,
        namespace=namespace,
        name="sidecarset-controller",
        clock=RealClock(),
        identity=identity,
        **{**LEASE, **options},
    )


async def lease_holder(kube: KubeClient, namespace: str) -> str:
    lease = await kube.get(
        resource_path(
            "coordination.k8s.io/v1", "leases", namespace=namespace, name="sidecarset-controller"
        )
    )
    return str(lease["spec"].get("holderIdentity") or "")


def assert_no_overlap(terms: list[tuple[str, float, float]]) -> None:
    ordered = sorted(terms, key=lambda term: term[1])
    for (who, _, ended), (successor, started, _) in itertools.pairwise(ordered):
        assert ended <= started, f"{who} still led when {successor} began"


@contextlib.asynccontextmanager
async def watching_for_two_leaders(
    electors: list[LeaderElector],
) -> AsyncIterator[list[float]]:
    """Samples every 20 ms; yields the list of times at which more than one elector led."""
    both: list[float] = []

    async def sample() -> None:
        while True:
            if sum(e.is_leader for e in electors) > 1:
                both.append(time.monotonic())
            await asyncio.sleep(0.02)

    task = asyncio.create_task(sample())
    try:
        yield both
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def first_leader(campaigns: list[Campaign]) -> Campaign:
    async def leaders() -> list[Campaign]:
        return [c for c in campaigns if c.elector.is_leader]

    [leader] = await wait_for(leaders, lambda found: len(found) == 1, timeout=15, what="a leader")
    return leader


async def test_one_of_two_electors_leads_and_the_other_takes_over_when_it_exits(
    kube: KubeClient, namespace: str
) -> None:
    terms: list[tuple[str, float, float]] = []
    campaigns = [Campaign(elector(kube, namespace, name), terms) for name in ("one", "two")]
    async with watching_for_two_leaders([c.elector for c in campaigns]) as both:
        leader = await first_leader(campaigns)
        [standby] = [c for c in campaigns if c is not leader]
        await asyncio.sleep(3 * LEASE["retry_period"])  # several renewals: still one leader
        assert leader.elector.is_leader
        assert not standby.elector.is_leader
        assert await lease_holder(kube, namespace) == leader.elector.identity

        stopped = time.monotonic()
        await leader.stop()  # a clean exit releases the lease
        await wait_for(
            current(lambda: standby.elector.is_leader),
            bool,
            timeout=15,
            what="the standby to lead",
        )
        takeover = time.monotonic() - stopped
        assert await lease_holder(kube, namespace) == standby.elector.identity
        await standby.stop()
    assert both == []
    assert_no_overlap(terms)
    assert [who for who, _, _ in sorted(terms, key=lambda t: t[1])] == [
        leader.elector.identity,
        standby.elector.identity,
    ]
    # Released, so the standby needs at most one jittered retry, not a whole lease duration.
    assert takeover < LEASE["lease_duration"]


async def test_a_leader_that_vanishes_without_releasing_is_replaced_after_the_lease_expires(
    kube: KubeClient, namespace: str
) -> None:
    terms: list[tuple[str, float, float]] = []
    campaigns = [
        Campaign(elector(kube, namespace, name, release_on_exit=False), terms)
        for name in ("one", "two")
    ]
    async with watching_for_two_leaders([c.elector for c in campaigns]) as both:
        leader = await first_leader(campaigns)
        [standby] = [c for c in campaigns if c is not leader]
        stopped = time.monotonic()
        await leader.stop()
        await wait_for(
            current(lambda: standby.elector.is_leader),
            bool,
            timeout=20,
            what="the standby to lead",
        )
        takeover = time.monotonic() - stopped
        await standby.stop()
    assert both == []
    assert_no_overlap(terms)
    # The standby waits out the lease it last saw renewed (<= one retry period before the stop).
    assert takeover >= LEASE["lease_duration"] - LEASE["retry_period"]
    assert takeover <= LEASE["lease_duration"] + 3 * LEASE["retry_period"] + 2.0


async def test_a_leader_whose_lease_is_taken_stops_within_the_renew_deadline(
    kube: KubeClient, namespace: str
) -> None:
    terms: list[tuple[str, float, float]] = []
    campaign = Campaign(elector(kube, namespace, "one"), terms)
    await first_leader([campaign])
    path = resource_path(
        "coordination.k8s.io/v1", "leases", namespace=namespace, name="sidecarset-controller"
    )
    lease = await kube.get(path)
    lease["spec"].update(holderIdentity="intruder", leaseDurationSeconds=60)
    await kube.replace(path, lease)
    taken = time.monotonic()
    await asyncio.wait_for(campaign.task, timeout=15)
    assert campaign.lost
    assert not campaign.elector.is_leader
    [(_, _, ended)] = terms
    assert ended - taken <= LEASE["renew_deadline"] + LEASE["retry_period"] + 0.5
    assert await lease_holder(kube, namespace) == "intruder"  # never released or overwritten


def lease_path(namespace: str) -> str:
    return resource_path(
        "coordination.k8s.io/v1", "leases", namespace=namespace, name="sidecarset-controller"
    )


@contextlib.asynccontextmanager
async def sole_leader(
    control_plane: ControlPlane, namespace: str
) -> AsyncIterator[tuple[KubeClient, Campaign]]:
    """Elector "one" leading, renewing every 1 s, on a client of its own (its requests counted)."""
    own = await KubeClient.from_kubeconfig(str(control_plane.kubeconfig))
    async with own:
        campaign = Campaign(elector(own, namespace, "one", renew_interval=1.0), [])
        await first_leader([campaign])
        try:
            yield own, campaign
        finally:
            await campaign.stop()


async def test_a_leader_renews_every_renew_interval_with_one_write_and_no_read(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    async with sole_leader(control_plane, namespace) as (own, campaign):
        reads, writes = own.counter.reads, own.counter.writes
        renewed = (await kube.get(lease_path(namespace)))["spec"]["renewTime"]
        await asyncio.sleep(4.2)
        renewals = own.counter.writes - writes
        assert campaign.elector.is_leader
        assert own.counter.reads == reads, "a renewal read the Lease before writing it"
        # Every 1 s (4 in 4.2 s), not every 0.5 s retry period (8).
        assert 3 <= renewals <= 5, renewals
        lease = await kube.get(lease_path(namespace))
        assert lease["spec"]["holderIdentity"] == "one"
        assert lease["spec"]["renewTime"] > renewed


async def test_a_leader_keeps_its_lease_when_someone_else_only_labels_it(
    control_plane: ControlPlane, kube: KubeClient, namespace: str
) -> None:
    # The labelled Lease has a new resourceVersion: the next renewal conflicts, reads the Lease
    # again, finds itself the holder and renews on what it read.
    async with sole_leader(control_plane, namespace) as (own, campaign):
        lease = await kube.get(lease_path(namespace))
        lease["metadata"].setdefault("labels", {})["touched"] = "yes"
        labelled = await kube.replace(lease_path(namespace), lease)
        reads = own.counter.reads
        await asyncio.sleep(2.5)
        assert campaign.elector.is_leader
        assert not campaign.lost
        assert own.counter.reads == reads + 1, "the conflict made exactly one read"
        lease = await kube.get(lease_path(namespace))
        assert lease["metadata"]["labels"]["touched"] == "yes"
        assert lease["spec"]["holderIdentity"] == "one"
        assert lease["spec"]["renewTime"] > labelled["spec"]["renewTime"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"renew_deadline": 5.0}, "renew_deadline", id="deadline-beyond-lease"),
        pytest.param({"retry_period": 3.0}, "retry_period", id="retry-beyond-deadline"),
        pytest.param({"renew_interval": 3.0}, "renew_interval", id="renewal-beyond-deadline"),
    ],
)
async def test_inconsistent_lease_timings_are_rejected(
    kube: KubeClient, options: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        elector(kube, "default", "x", **options)
