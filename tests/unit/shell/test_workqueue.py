"""WorkQueue guarantees, on fake loop time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from sidecarset.shell import backoff, workqueue
from tests.unit.shell.clocks import LoopClock

pytestmark = pytest.mark.looptime


def make_queue(
    limiter: backoff.RateLimiter[str] | None = None,
    observe_latency: Callable[[float], None] | None = None,
) -> workqueue.WorkQueue[str]:
    return workqueue.WorkQueue(
        "test", clock=LoopClock(), rate_limiter=limiter, observe_latency=observe_latency
    )


async def claim_now(queue: workqueue.WorkQueue[str]) -> str | None:
    """The key a claim gets without waiting on the (fake) clock, or None."""
    try:
        async with asyncio.timeout(0.001):
            async with queue.claim() as key:
                return key
    except TimeoutError:
        return None


async def drain(queue: workqueue.WorkQueue[str]) -> list[str]:
    keys = []
    while (key := await claim_now(queue)) is not None:
        keys.append(key)
    return keys


async def test_keys_are_handed_out_in_the_order_they_became_ready() -> None:
    queue = make_queue()
    for key in ("b", "a", "c"):
        queue.add(key)
    assert await drain(queue) == ["b", "a", "c"]


async def test_a_key_added_many_times_while_waiting_is_handed_out_once() -> None:
    queue = make_queue()
    for _ in range(5):
        queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    assert await drain(queue) == ["a", "b"]
    assert queue.stats.adds == 2


async def test_a_key_is_never_held_by_two_workers_at_once() -> None:
    queue = make_queue()
    queue.add("a")
    async with queue.claim() as key:
        assert key == "a"
        queue.add("a")
        assert len(queue) == 0
        assert await claim_now(queue) is None
    assert await claim_now(queue) == "a"


async def test_a_key_added_while_processing_is_handed_out_again_once_done() -> None:
    queue = make_queue()
    queue.add("a")
    async with queue.claim():
        queue.add("a")
        queue.add("a")
        queue.add("b")
    assert await drain(queue) == ["b", "a"]


async def test_claim_marks_the_key_done_even_when_the_body_raises() -> None:
    queue = make_queue()
    queue.add("a")
    with pytest.raises(RuntimeError):
        async with queue.claim():
            raise RuntimeError("boom")
    assert queue.processing == 0
    queue.add("a")
    assert await claim_now(queue) == "a"


async def test_a_waiting_claim_wakes_when_a_key_is_added() -> None:
    queue = make_queue()

    async def worker() -> str:
        async with queue.claim() as key:
            return key

    task = asyncio.create_task(worker())
    await asyncio.sleep(10)
    assert not task.done()
    queue.add("a")
    assert await task == "a"


async def test_add_after_hands_the_key_out_only_after_the_delay() -> None:
    queue = make_queue()
    loop = asyncio.get_running_loop()
    start = loop.time()
    queue.add_after("a", 30.0)
    assert queue.waiting == 1
    assert await claim_now(queue) is None
    async with queue.claim() as key:
        assert key == "a"
        assert loop.time() - start == pytest.approx(30.0)
    assert queue.waiting == 0


async def test_the_earliest_deadline_wins_for_a_key_waiting_twice() -> None:
    queue = make_queue()
    loop = asyncio.get_running_loop()
    start = loop.time()
    queue.add_after("a", 30.0)
    queue.add_after("a", 10.0)
    queue.add_after("a", 20.0)
    assert queue.waiting == 1
    async with queue.claim():
        assert loop.time() - start == pytest.approx(10.0)
    await asyncio.sleep(60)
    assert await claim_now(queue) is None


async def test_add_after_with_no_delay_adds_at_once() -> None:
    queue = make_queue()
    queue.add_after("a", 0.0)
    assert await claim_now(queue) == "a"


async def test_rate_limited_adds_back_off_per_key_until_forgotten() -> None:
    queue = make_queue(backoff.PerKeyExponential(base=1.0, cap=100.0))
    loop = asyncio.get_running_loop()
    waits = []
    for _ in range(3):
        start = loop.time()
        queue.add_rate_limited("a")
        async with queue.claim():
            waits.append(loop.time() - start)
    assert waits == pytest.approx([1.0, 2.0, 4.0])
    assert queue.retries("a") == 3
    assert queue.stats.retries == 3
    queue.forget("a")
    assert queue.retries("a") == 0
    start = loop.time()
    queue.add_rate_limited("a")
    async with queue.claim():
        assert loop.time() - start == pytest.approx(1.0)


async def test_shutdown_wakes_waiting_claims_and_ignores_later_adds() -> None:
    queue = make_queue()

    async def worker() -> None:
        async with queue.claim():
            pass

    task = asyncio.create_task(worker())
    await asyncio.sleep(1)
    queue.add_after("later", 5.0)
    queue.shutdown()
    with pytest.raises(workqueue.ShutDown):
        await task
    queue.add("a")
    assert len(queue) == 0
    assert queue.waiting == 0
    with pytest.raises(workqueue.ShutDown):
        async with queue.claim():
            pass


async def test_a_key_held_at_shutdown_finishes_normally() -> None:
    queue = make_queue()
    queue.add("a")
    async with queue.claim() as key:
        queue.shutdown()
        assert key == "a"
    assert queue.processing == 0


async def test_latency_hook_sees_how_long_a_ready_key_waited() -> None:
    seen: list[float] = []
    queue = make_queue(observe_latency=seen.append)
    queue.add("a")
    await asyncio.sleep(7)
    async with queue.claim():
        pass
    assert seen == pytest.approx([7.0])


async def test_many_workers_share_keys_without_overlap() -> None:
    queue = make_queue()
    active: set[str] = set()
    overlaps: list[str] = []
    done: list[str] = []

    async def worker() -> None:
        while True:
            async with queue.claim() as key:
                if key in active:
                    overlaps.append(key)
                active.add(key)
                await asyncio.sleep(1)
                active.discard(key)
                done.append(key)

    for key in "abcabcabc":
        queue.add(key)
    async with asyncio.TaskGroup() as tg:
        workers = [tg.create_task(worker()) for _ in range(4)]
        await asyncio.sleep(0.5)
        for key in "abc":
            queue.add(key)  # all three are being processed: each runs once more
        await asyncio.sleep(10)
        for task in workers:
            task.cancel()
    assert overlaps == []
    assert sorted(done) == ["a", "a", "b", "b", "c", "c"]


async def test_a_key_already_due_for_a_pass_gets_no_later_one() -> None:
    queue: workqueue.WorkQueue[str] = workqueue.WorkQueue("test", clock=LoopClock())
    queue.add("k")
    queue.add_after("k", 0.001)  # an event a hair later, while the pass is still to come
    async with queue.claim() as key:
        assert key == "k"
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert len(queue) == 0


async def test_a_key_made_ready_drops_its_delayed_add() -> None:
    queue: workqueue.WorkQueue[str] = workqueue.WorkQueue("test", clock=LoopClock())
    queue.add_after("k", 1.0)
    queue.add("k")
    async with queue.claim():
        pass
    await asyncio.sleep(2)
    assert len(queue) == 0
