"""WorkQueue: de-duplicating keyed queue with delayed adds and per-key backoff, which the
controller's workers claim keys from.

Guarantees (client-go's workqueue, written down):

- A key is handed to at most one worker at a time.
- A key added while a worker holds it is handed out again after that worker is done, so a change
  that arrived mid-reconcile is never lost.
- A key waiting to be handed out is held once, however often it is added (de-duplication).
- A key waiting for a delay is held once, with the earliest deadline asked for.
- Keys are handed out in the order they became ready.
- `async with queue.claim() as key:` marks the key done on exit, however the body exits.

After `shutdown()` adds are ignored and `claim()` raises `ShutDown`; keys being processed finish.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sidecarset.shell import backoff
from sidecarset.shell.clock import Clock

K = TypeVar("K", bound=Hashable)


class ShutDown(Exception):
    """The queue was shut down: it hands out no more keys."""


@dataclass
class QueueStats:
    """Counters of this queue, for tests and benchmarks; only ever increase (not exported; the
    queue's depth is, as `sidecarset_workqueue_depth`)."""

    adds: int = 0
    """Keys that entered the queue (de-duplicated adds are not counted)."""
    retries: int = 0
    """Rate-limited re-adds, i.e. failed reconciles scheduled for a retry."""


class WorkQueue(Generic[K]):
    """See the module docstring for the guarantees."""

    def __init__(
        self,
        name: str,
        *,
        clock: Clock,
        rate_limiter: backoff.RateLimiter[K] | None = None,
        observe_latency: Callable[[float], None] | None = None,
    ) -> None:
        """`observe_latency` receives, for each claim, the seconds the key waited while ready."""
        self.name = name
        self.stats = QueueStats()
        self._clock = clock
        self._limiter: backoff.RateLimiter[K] = rate_limiter or backoff.default_rate_limiter()
        self._observe_latency = observe_latency
        self._queue: deque[K] = deque()  # ready keys, in order; each also in _dirty
        self._dirty: set[K] = set()  # keys that need a pass: ready, or re-added mid-processing
        self._processing: set[K] = set()
        self._ready_since: dict[K, float] = {}
        self._waiting: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._nonempty = asyncio.Event()
        self._shutting_down = False

    # -- adding ---------------------------------------------------------------------------

    def add(self, key: K) -> None:
        """Make `key` ready now (or after its current pass, if a worker holds it). A delayed add
        still pending for it is dropped: the pass it asked for is this one (a reconcile that
        wants another pass later asks again with its result)."""
        if self._shutting_down or key in self._dirty:
            return
        pending = self._waiting.pop(key, None)
        if pending is not None:
            pending[1].cancel()
        self._dirty.add(key)
        self.stats.adds += 1
        if key not in self._processing:
            self._enqueue(key)

    def add_after(self, key: K, seconds: float) -> None:
        """Make `key` ready in `seconds`. An earlier pending deadline for `key` wins, and so does
        a pass it is already due for (ready, or to run again after its current one)."""
        if self._shutting_down or key in self._dirty:
            return
        if seconds <= 0:
            self.add(key)
            return
        deadline = self._clock.monotonic() + seconds
        pending = self._waiting.get(key)
        if pending is not None:
            if pending[0] <= deadline:
                return
            pending[1].cancel()
        handle = asyncio.get_running_loop().call_later(seconds, self._fire, key)
        self._waiting[key] = (deadline, handle)

    def add_rate_limited(self, key: K) -> None:
        """Retry `key` after its backoff: per-key exponential, and the overall bucket."""
        if self._shutting_down:
            return
        self.stats.retries += 1
        self.add_after(key, self._limiter.when(key, self._clock.monotonic()))

    def forget(self, key: K) -> None:
        """`key` succeeded: reset its backoff. Does not remove it from the queue."""
        self._limiter.forget(key)

    def retries(self, key: K) -> int:
        """Rate-limited re-adds of `key` since it was last forgotten."""
        return self._limiter.retries(key)

    # -- claiming -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def claim(self) -> AsyncIterator[K]:
        """Wait for a ready key and hold it for the body; it is done when the body exits."""
        key = await self._get()
        try:
            yield key
        finally:
            self._done(key)

    def shutdown(self) -> None:
        """Stop accepting keys and wake every waiting `claim()` with `ShutDown`."""
        self._shutting_down = True
        for _, handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        self._nonempty.set()

    # -- metrics --------------------------------------------------------------------------

    def __len__(self) -> int:
        """Depth: keys ready and waiting for a worker."""
        return len(self._queue)

    @property
    def waiting(self) -> int:
        """Keys waiting for a delay (requeue_after or backoff) to pass."""
        return len(self._waiting)

    @property
    def processing(self) -> int:
        return len(self._processing)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    # -- internals ------------------------------------------------------------------------

    def _enqueue(self, key: K) -> None:
        self._queue.append(key)
        self._ready_since[key] = self._clock.monotonic()
        self._nonempty.set()

    def _fire(self, key: K) -> None:
        self._waiting.pop(key, None)
        self.add(key)

    async def _get(self) -> K:
        while not self._queue or self._shutting_down:
            if self._shutting_down:
                raise ShutDown(f"work queue {self.name} is shut down")
            self._nonempty.clear()
            await self._nonempty.wait()
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        ready_since = self._ready_since.pop(key, None)
        if self._observe_latency is not None and ready_since is not None:
            self._observe_latency(self._clock.monotonic() - ready_since)
        return key

    def _done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty and not self._shutting_down:
            self._enqueue(key)
