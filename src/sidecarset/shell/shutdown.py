"""Graceful stop on SIGTERM: not ready at once, keep serving through a drain period, then stop.

Why a drain: a load balancer (a Service's endpoints, the apiserver's own endpoint resolution)
drops a terminating server only once that change has propagated, which takes up to seconds.
Requests routed here meanwhile must still be answered; a webhook that closes at once turns
each of them into a failed call (with `failurePolicy: Fail`, a refused pod creation).

Sequence: the first signal calls `prepare` (report not ready, hand over leadership) and starts
the drain clock; once both the drain period has passed and `prepare` has finished, the main
task is cancelled and the servers close. A second signal cancels the main task at once.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog

log = structlog.get_logger("sidecarset.shutdown")


class GracefulStop:
    """Stops `task` gracefully on the first signal, at once on the second."""

    def __init__(
        self,
        task: asyncio.Task[Any],
        *,
        drain_seconds: float,
        prepare: Callable[[], Awaitable[None]],
    ) -> None:
        if drain_seconds < 0:
            raise ValueError("drain_seconds must not be negative")
        self._task = task
        self._drain = drain_seconds
        self._prepare = prepare
        self._stopper: asyncio.Task[None] | None = None

    @property
    def stopping(self) -> bool:
        return self._stopper is not None

    def install(self, signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT)) -> None:
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.add_signal_handler(sig, self.request, sig.name)

    def request(self, why: str = "stop requested") -> None:
        """What a signal does: begin the graceful stop, or end it at once if already begun."""
        if self._stopper is not None:
            log.warning("second stop request: stopping now", signal=why)
            self._task.cancel()
            return
        log.info("stopping: not ready, draining", signal=why, drain_seconds=self._drain)
        self._stopper = asyncio.get_running_loop().create_task(self._stop(), name="graceful-stop")

    async def _stop(self) -> None:
        started = asyncio.get_running_loop().time()
        try:
            await asyncio.gather(self._prepare(), asyncio.sleep(self._drain))
        except Exception:
            log.exception("preparing to stop failed; stopping anyway")
            remaining = started + self._drain - asyncio.get_running_loop().time()
            await asyncio.sleep(max(0.0, remaining))
        log.info("drain period over: closing")
        self._task.cancel()
