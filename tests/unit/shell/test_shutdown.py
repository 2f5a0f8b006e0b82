"""The graceful stop sequence: prepare at once, cancel only after the drain, a second signal
stops at once. Fake time (looptime), so a 10 s drain takes no real time."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from sidecarset.shell.shutdown import GracefulStop

pytestmark = pytest.mark.looptime


class Recorder:
    """A main task that runs until cancelled, and the times each step happened at."""

    def __init__(self, prepare_takes: float = 0.0, prepare_fails: bool = False) -> None:
        self.events: list[tuple[str, float]] = []
        self.prepare_takes = prepare_takes
        self.prepare_fails = prepare_fails

    def note(self, what: str) -> None:
        self.events.append((what, asyncio.get_running_loop().time()))

    async def main(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.note("cancelled")
            raise

    async def prepare(self) -> None:
        self.note("prepare")
        await asyncio.sleep(self.prepare_takes)
        if self.prepare_fails:
            raise RuntimeError("lease release failed")
        self.note("prepared")


async def stopped(task: asyncio.Task[None]) -> None:
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_prepare_runs_at_once_and_the_task_is_cancelled_after_the_drain() -> None:
    rec = Recorder(prepare_takes=1.0)
    task = asyncio.create_task(rec.main())
    await asyncio.sleep(0)
    start = asyncio.get_running_loop().time()
    stop = GracefulStop(task, drain_seconds=10, prepare=rec.prepare)
    stopping_before = stop.stopping
    stop.request("SIGTERM")
    assert (stopping_before, stop.stopping) == (False, True)
    await asyncio.sleep(9.9)
    assert not task.done(), "cancelled before the drain period was over"
    await stopped(task)
    when = {what: at - start for what, at in rec.events}
    assert when["prepare"] == pytest.approx(0, abs=0.01)
    assert when["prepared"] == pytest.approx(1, abs=0.01)
    assert when["cancelled"] == pytest.approx(10, abs=0.01)


async def test_a_slow_prepare_delays_the_cancel_past_the_drain() -> None:
    """The Lease is released before the process stops, even when the drain is 0 (local mode)."""
    rec = Recorder(prepare_takes=3.0)
    task = asyncio.create_task(rec.main())
    start = asyncio.get_running_loop().time()
    GracefulStop(task, drain_seconds=0, prepare=rec.prepare).request()
    await stopped(task)
    assert [what for what, _ in rec.events] == ["prepare", "prepared", "cancelled"]
    assert rec.events[-1][1] - start == pytest.approx(3, abs=0.01)


async def test_a_failing_prepare_still_drains_then_stops() -> None:
    rec = Recorder(prepare_takes=1.0, prepare_fails=True)
    task = asyncio.create_task(rec.main())
    start = asyncio.get_running_loop().time()
    GracefulStop(task, drain_seconds=5, prepare=rec.prepare).request()
    await stopped(task)
    assert [what for what, _ in rec.events] == ["prepare", "cancelled"]
    assert rec.events[-1][1] - start == pytest.approx(5, abs=0.01)


async def test_a_second_request_stops_at_once() -> None:
    rec = Recorder()
    task = asyncio.create_task(rec.main())
    start = asyncio.get_running_loop().time()
    stop = GracefulStop(task, drain_seconds=10, prepare=rec.prepare)
    stop.request("SIGTERM")
    await asyncio.sleep(2)
    stop.request("SIGINT")
    await stopped(task)
    assert rec.events[-1][0] == "cancelled"
    assert rec.events[-1][1] - start == pytest.approx(2, abs=0.01)


async def test_installed_handlers_answer_real_signals() -> None:
    rec = Recorder()
    task = asyncio.create_task(rec.main())
    stop = GracefulStop(task, drain_seconds=1, prepare=rec.prepare)
    stop.install((signal.SIGUSR1,))
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        await asyncio.sleep(0.5)
        assert stop.stopping
        assert not task.done()
        await stopped(task)
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)


def test_a_negative_drain_is_refused() -> None:
    async def never() -> None:
        return None

    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(never())
        with pytest.raises(ValueError, match="drain_seconds"):
            GracefulStop(task, drain_seconds=-1, prepare=never)
        loop.run_until_complete(task)
    finally:
        loop.close()
