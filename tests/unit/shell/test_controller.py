"""Controller: each reconcile outcome maps to one queue action; workers never share a key."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import pytest
from structlog.testing import capture_logs

from sidecarset.shell import backoff, workqueue
from sidecarset.shell.controller import Controller, Result, Terminal
from sidecarset.shell.kube import errors
from sidecarset.shell.store import Added, Event, Store
from tests.unit.shell.clocks import LoopClock

pytestmark = pytest.mark.looptime

Reconcile = Callable[[str], Awaitable[Result]]


def make(
    reconcile: Reconcile, *, workers: int = 1
) -> tuple[Controller[str], workqueue.WorkQueue[str]]:
    clock = LoopClock()
    queue: workqueue.WorkQueue[str] = workqueue.WorkQueue(
        "test", clock=clock, rate_limiter=backoff.PerKeyExponential(base=1.0, cap=100.0)
    )
    return Controller("test", reconcile, queue, clock=clock, workers=workers), queue


async def run_for(controller: Controller[str], seconds: float) -> None:
    task = asyncio.create_task(controller.run())
    await asyncio.sleep(seconds)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def scripted(*outcomes: Result | Exception) -> tuple[Reconcile, list[float]]:
    """A reconcile that returns (or raises) `outcomes` in turn, recording loop times."""
    script: Iterator[Result | Exception] = iter(outcomes)
    calls: list[float] = []

    async def reconcile(key: str) -> Result:
        calls.append(asyncio.get_running_loop().time())
        outcome = next(script, Result())
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return reconcile, calls


async def test_success_forgets_the_keys_backoff_and_does_not_requeue() -> None:
    reconcile, calls = scripted(RuntimeError("flaky"), Result())
    with capture_logs():
        controller, queue = make(reconcile)
        queue.add("a")
        await run_for(controller, 60)
    assert len(calls) == 2
    assert queue.retries("a") == 0
    assert controller.stats.succeeded == 1


async def test_requeue_after_hands_the_key_back_after_that_delay() -> None:
    reconcile, calls = scripted(Result(requeue_after=30.0))
    controller, queue = make(reconcile)
    start = asyncio.get_running_loop().time()
    queue.add("a")
    await run_for(controller, 100)
    assert [round(t - start, 3) for t in calls] == [0.0, 30.0]
    assert controller.stats.requeued == 1


async def test_a_conflict_is_retried_at_once_without_backoff() -> None:
    reconcile, calls = scripted(errors.Conflict(409, "stale"), errors.Conflict(409, "stale"))
    with capture_logs() as logs:
        controller, queue = make(reconcile)
        start = asyncio.get_running_loop().time()
        queue.add("a")
        await run_for(controller, 10)
    assert [round(t - start, 3) for t in calls] == [0.0, 0.0, 0.0]
    assert controller.stats.conflicts == 2
    assert all(log["log_level"] == "debug" for log in logs)


async def test_a_terminal_error_is_logged_and_not_retried() -> None:
    reconcile, calls = scripted(Terminal("spec.containers[0].image: Required value"))
    with capture_logs() as logs:
        controller, queue = make(reconcile)
        queue.add("a")
        await run_for(controller, 3600)
    assert len(calls) == 1
    assert [(log["event"], log["key"], log["log_level"]) for log in logs] == [
        ("reconcile failed, not retrying", "a", "error")
    ]
    assert queue.waiting == 0


async def test_any_other_error_is_logged_with_the_key_and_retried_with_growing_backoff() -> None:
    reconcile, calls = scripted(RuntimeError("one"), RuntimeError("two"), RuntimeError("three"))
    with capture_logs() as logs:
        controller, queue = make(reconcile)
        start = asyncio.get_running_loop().time()
        queue.add("a")
        await run_for(controller, 60)
    assert [round(t - start, 3) for t in calls] == [0.0, 1.0, 3.0, 7.0]
    assert [(log["event"], log["key"], log["retries"]) for log in logs] == [
        ("reconcile failed, retrying", "a", 1),
        ("reconcile failed, retrying", "a", 2),
        ("reconcile failed, retrying", "a", 3),
    ]
    assert isinstance(logs[0]["exc_info"], RuntimeError)
    assert controller.stats.errors == 3


async def test_a_reconcile_cancelled_midway_puts_its_key_back() -> None:
    started = asyncio.Event()

    async def reconcile(key: str) -> Result:
        started.set()
        await asyncio.sleep(3600)
        return Result()

    controller, queue = make(reconcile)
    queue.add("a")
    task = asyncio.create_task(controller.run())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(queue) == 1


async def test_workers_run_different_keys_in_parallel_but_never_one_key_twice() -> None:
    active: set[str] = set()
    overlaps: list[str] = []
    peak = 0

    async def reconcile(key: str) -> Result:
        nonlocal peak
        if key in active:
            overlaps.append(key)
        active.add(key)
        peak = max(peak, len(active))
        await asyncio.sleep(1)
        active.discard(key)
        return Result()

    controller, queue = make(reconcile, workers=4)
    for key in "abcd":
        queue.add(key)

    async def churn() -> None:
        for _ in range(20):
            for key in "abcd":
                queue.add(key)
            await asyncio.sleep(0.3)

    churner = asyncio.create_task(churn())
    await run_for(controller, 30)
    await churner
    assert overlaps == []
    assert peak == 4


async def test_watch_queues_keys_for_objects_stored_before_and_after() -> None:
    store: Store[str] = Store("things")
    await store.put("ns/old", "v1")
    reconciled: list[str] = []

    async def reconcile(key: str) -> Result:
        reconciled.append(key)
        return Result()

    def keys_for(event: Event[str]) -> list[str]:
        return [f"owner-of-{event.key}"] if isinstance(event, Added) else []

    controller, _ = make(reconcile)
    await controller.watch(store, keys_for)
    await store.put("ns/new", "v1")
    await store.put("ns/new", "v2")  # Updated: mapped to no key
    await run_for(controller, 1)
    assert reconciled == ["owner-of-ns/old", "owner-of-ns/new"]


async def test_a_burst_of_events_costs_one_pass_per_batch_window_the_first_at_once() -> None:
    store: Store[str] = Store("things")
    reconcile, calls = scripted()
    controller, _ = make(reconcile)
    await controller.watch(store, lambda _event: ["owner"], batch_seconds=0.5)
    start = asyncio.get_running_loop().time()
    runner = asyncio.create_task(run_for(controller, 5))
    for version in range(120):  # 1.2 s of events, 100 per second
        await store.put("ns/thing", f"v{version}")
        await asyncio.sleep(0.01)
    await runner
    assert [round(t - start, 3) for t in calls] == [0.0, 0.5, 1.0, 1.5]


async def test_an_event_after_a_quiet_spell_is_not_held_back() -> None:
    store: Store[str] = Store("things")
    reconcile, calls = scripted()
    controller, _ = make(reconcile)
    await controller.watch(store, lambda _event: ["owner"], batch_seconds=0.5)
    start = asyncio.get_running_loop().time()
    runner = asyncio.create_task(run_for(controller, 5))
    await store.put("ns/thing", "v1")
    await asyncio.sleep(2)
    await store.put("ns/thing", "v2")
    await runner
    assert [round(t - start, 3) for t in calls] == [0.0, 2.0]


async def test_a_slow_pass_widens_its_keys_window_by_the_batch_factor() -> None:
    store: Store[str] = Store("things")
    calls: list[float] = []

    async def slow(key: str) -> Result:
        calls.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.2)  # a round over many pods
        return Result()

    controller, _ = make(slow)
    await controller.watch(store, lambda _event: ["owner"], batch_seconds=0.1, batch_factor=10)
    start = asyncio.get_running_loop().time()
    runner = asyncio.create_task(run_for(controller, 5))
    for version in range(450):  # 4.5 s of events, 100 per second
        await store.put("ns/thing", f"v{version}")
        await asyncio.sleep(0.01)
    await runner
    # The first pass knows no duration yet: the key is due again at 0.1 s and runs once that
    # pass has ended (0.2 s); from then on passes are 10 x 0.2 s = 2 s apart.
    assert [round(t - start, 2) for t in calls] == [0.0, 0.2, 2.2, 4.2]


def test_a_controller_needs_a_worker() -> None:
    reconcile, _ = scripted()
    with pytest.raises(ValueError, match="at least one worker"):
        make(reconcile, workers=0)
