"""Controller: store events -> keys -> work queue -> workers -> `reconcile(key)` -> `Result`.

The reconciler never touches the queue; one `match` here maps each outcome to a queue action:

    success                  forget the key's backoff
    Result(requeue_after=s)  forget, and hand the key out again in `s` seconds
    kube Conflict (409)      re-add at once: the next pass re-reads the cache and re-plans
    Terminal                 log; no retry until the key is added again by an event
    any other exception      log with the traceback; retry with per-key exponential backoff

A key is reconciled by one worker at a time (the queue's guarantee), so `reconcile` may assume
it has its key to itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

from sidecarset.shell import metrics, workqueue
from sidecarset.shell.clock import Clock
from sidecarset.shell.kube import errors
from sidecarset.shell.store import Event, Store

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

_log = structlog.stdlib.get_logger("sidecarset.controller")


@dataclass(frozen=True, slots=True)
class Result:
    """What a reconcile asks for next. `requeue_after` is in seconds; None means "done until
    something changes"."""

    requeue_after: float | None = None
    busy_seconds: float | None = None
    """How long the pass kept the event loop busy, if the reconciler measured it (its
    computation, without the awaits on the API); the batch window of `Controller.watch` scales
    with it. None: the pass's whole duration is used."""


class Terminal(Exception):
    """Retrying cannot help (the object itself is wrong). Logged at error level and not
    retried; the key is reconciled again only when an event adds it."""


@dataclass
class ControllerStats:
    """Outcome counters of this controller, for tests and benchmarks; only ever increase. Of
    these, only the failures are exported (`sidecarset_reconcile_errors_total{kind}`)."""

    reconciles: int = 0
    succeeded: int = 0
    requeued: int = 0
    conflicts: int = 0
    terminal: int = 0
    errors: int = 0


class Controller(Generic[K]):
    """Runs `workers` concurrent reconciles over the keys in `queue` (see the module doc)."""

    def __init__(
        self,
        name: str,
        reconcile: Callable[[K], Awaitable[Result]],
        queue: workqueue.WorkQueue[K],
        *,
        clock: Clock,
        workers: int = 4,
        observe_duration: Callable[[float], None] | None = None,
    ) -> None:
        """`observe_duration` receives each reconcile's duration in seconds."""
        if workers < 1:
            raise ValueError("a controller needs at least one worker")
        self.name = name
        self.stats = ControllerStats()
        self._reconcile = reconcile
        self._queue = queue
        self._clock = clock
        self._workers = workers
        self._observe_duration = observe_duration
        self._log = _log.bind(controller=name)
        self._last_pass: dict[K, tuple[float, float]] = {}  # key -> (start, seconds) of last pass

    async def watch(
        self,
        store: Store[T],
        keys_for: Callable[[Event[T]], Iterable[K]],
        *,
        batch_seconds: float = 0.0,
        batch_factor: float = 0.0,
    ) -> None:
        """Queue the keys `keys_for` maps each of `store`'s events to (objects already stored
        arrive as `Added`, so nothing that exists before the controller starts is missed).

        `batch_seconds` > 0: at most one pass per key in any window of `batch_seconds`, or of
        `batch_factor` times that key's last pass duration (its `Result.busy_seconds` if given)
        if longer; the events in between add nothing, so a burst costs a pass per window, not one
        per event, and the passes of one key take at most 1/`batch_factor` of the time while
        events stream in. An event after a quiet
        spell is not held back: its key is queued at once when its window since its last pass
        started has passed (so a rollout waiting on pod readiness moves on the moment a pod is
        ready), else for the end of that window. No event waits longer."""

        def enqueue(event: Event[T]) -> None:
            for key in keys_for(event):
                if batch_seconds > 0:
                    self._queue.add_after(key, self._window_left(key, batch_seconds, batch_factor))
                else:
                    self._queue.add(key)

        await store.subscribe(enqueue)

    def _window_left(self, key: K, seconds: float, factor: float) -> float:
        """Seconds until `key`'s batch window since its last pass started has passed (<= 0:
        now); the window is `seconds`, or `factor` times that pass's duration if longer."""
        now = self._clock.monotonic()
        if len(self._last_pass) > 1024:  # keys of deleted objects: nothing to remember
            self._last_pass = {
                k: (start, took)
                for k, (start, took) in self._last_pass.items()
                if now - start < max(seconds, factor * took)
            }
        last = self._last_pass.get(key)
        if last is None:
            return 0.0
        start, took = last
        return start + max(seconds, factor * took) - now

    async def run(self) -> None:
        """Reconcile until cancelled, or until the queue is shut down. A key whose reconcile is
        cancelled is put back in the queue for whoever runs next."""
        async with asyncio.TaskGroup() as workers:
            for n in range(self._workers):
                workers.create_task(self._work(), name=f"{self.name}-worker-{n}")

    async def _work(self) -> None:
        while True:
            try:
                async with self._queue.claim() as key:
                    await self.process(key)
            except workqueue.ShutDown:
                return

    async def process(self, key: K) -> None:
        """Reconcile `key` once and apply the outcome to the queue. The caller holds `key`."""
        log = self._log.bind(key=str(key))
        started = self._clock.monotonic()
        self._last_pass[key] = (started, self._last_pass.get(key, (0.0, 0.0))[1])
        outcome: Result | Exception
        with structlog.contextvars.bound_contextvars(controller=self.name, key=str(key)):
            try:
                outcome = await self._reconcile(key)
            except asyncio.CancelledError:
                self._queue.add(key)  # unfinished: whoever runs next must look again
                raise
            except Exception as err:
                outcome = err
        self.stats.reconciles += 1
        took = self._clock.monotonic() - started
        busy = outcome.busy_seconds if isinstance(outcome, Result) else None
        self._last_pass[key] = (started, took if busy is None else busy)
        if self._observe_duration is not None:
            self._observe_duration(took)

        match outcome:
            case Result(requeue_after=None):
                self.stats.succeeded += 1
                self._queue.forget(key)
            case Result(requeue_after=delay):
                self.stats.requeued += 1
                self._queue.forget(key)
                self._queue.add_after(key, float(delay or 0.0))
            case errors.Conflict():
                self.stats.conflicts += 1
                metrics.RECONCILE_ERRORS.labels(kind="conflict").inc()
                log.debug("reconcile conflict, retrying", error=str(outcome))
                self._queue.add(key)
            case Terminal():
                self.stats.terminal += 1
                metrics.RECONCILE_ERRORS.labels(kind="terminal").inc()
                log.error("reconcile failed, not retrying", error=str(outcome))
                self._queue.forget(key)
            case _:
                self.stats.errors += 1
                metrics.RECONCILE_ERRORS.labels(kind="error").inc()
                log.error(
                    "reconcile failed, retrying",
                    exc_info=outcome,
                    retries=self._queue.retries(key) + 1,
                )
                self._queue.add_rate_limited(key)
