"""Leader election on a coordination.k8s.io/v1 Lease, as `async with elector.leading():`.

The body runs only while this process holds the Lease. If a renewal cannot succeed within
`renew_deadline`, the body is cancelled and `LeadershipLost` is raised out of the `async with`,
so the caller exits (controller-runtime style) instead of acting on a lease it may no longer
hold. On a clean exit (the body returns, raises or is cancelled) the Lease is released, so a
successor takes over within one retry period instead of one lease duration.

A holder renews every `renew_interval` and, after a failed renewal, retries every
`retry_period`. It renews with a conditional update of the Lease it last wrote, without reading
it first; only a conflict (someone else wrote it) makes it read the Lease again.

Why two leaders never act at once, when clocks run at the same rate: every write is conditional
on the Lease's resourceVersion (a 409 means another candidate won the race). A candidate takes
the Lease only once it has seen the same record unchanged for the holder's `leaseDurationSeconds`
*measured on its own clock from when it observed it*, which is at or after the moment the
holder's last renewal was written. The holder stops leading once `renew_deadline` has passed since
its last successful renewal *began* (before it was sent), which is earlier. The gap
(`lease_duration - renew_deadline`, 5 s by default) is what the cancelled body has to stop its
writes, plus any difference in clock rate. Wall clocks are only written (renewTime), never
compared across machines.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import structlog

from sidecarset.shell.clock import Clock
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import KubeClient, resource_path

_log = structlog.stdlib.get_logger("sidecarset.leader")

LEASE_API = "coordination.k8s.io/v1"

# client-go's wait.Jitter factor for the acquire loop: retries spread over [1, 2.2) x retry_period
# so candidates that started together do not keep colliding.
_ACQUIRE_JITTER = 1.2


class LeadershipLost(Exception):
    """The Lease could not be renewed in time (or was taken): the body was cancelled."""


def default_identity() -> str:
    """`hostname_pid_random`: unique per process, readable in `kubectl get lease`."""
    return f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


def micro_time(moment: datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 in UTC with microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaderStats:
    """Terms won and lost by this elector, for tests; not exported (the exported gauge is
    `sidecarset_leader`, set by the caller while it leads)."""

    acquired: int = 0
    lost: int = 0


class LeaderElector:
    """Competes for the Lease `namespace/name`; see the module doc for the guarantee.

    Defaults are client-go's: a 15 s lease, renewed every 2 s, given up after 10 s of failed
    renewals. `renew_interval` (default: `retry_period`) spaces the renewals that succeed: a
    kubelet renews its node Lease at a quarter of its duration, and the operator does the same
    (`app/controller.py`), because every renewal is an API write for as long as it runs.
    """

    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str,
        name: str,
        clock: Clock,
        identity: str | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        renew_interval: float | None = None,
        release_on_exit: bool = True,
        draw: Callable[[], float] = random.random,
    ) -> None:
        if not 0 < renew_deadline < lease_duration:
            raise ValueError("renew_deadline must be positive and shorter than lease_duration")
        if not 0 < retry_period * _ACQUIRE_JITTER < renew_deadline:
            raise ValueError("retry_period x 1.2 must be positive and shorter than renew_deadline")
        if renew_interval is not None and not 0 < renew_interval < renew_deadline:
            raise ValueError("renew_interval must be positive and shorter than renew_deadline")
        self.identity = identity or default_identity()
        self.namespace, self.name = namespace, name
        self.stats = LeaderStats()
        self._client = client
        self._clock = clock
        self._lease_seconds = max(1, math.ceil(lease_duration))
        self._renew_deadline = renew_deadline
        self._retry_period = retry_period
        self._renew_interval = retry_period if renew_interval is None else renew_interval
        self._release_on_exit = release_on_exit
        self._draw = draw
        self._path = resource_path(LEASE_API, "leases", namespace=namespace, name=name)
        self._lease: dict[str, Any] | None = None  # the last Lease object read or written
        self._observed_spec: dict[str, Any] | None = None
        self._observed_at = 0.0  # monotonic time `_observed_spec` was first seen
        self._renewed_at = 0.0  # monotonic time our last successful renewal began
        self._leading = False
        self._in_term = False
        self._log = _log.bind(lease=f"{namespace}/{name}", identity=self.identity)

    @property
    def is_leader(self) -> bool:
        return self._leading

    @property
    def holder(self) -> str:
        """The holder in the last Lease record seen ("" if none)."""
        return str((self._observed_spec or {}).get("holderIdentity") or "")

    def leading(self) -> _Term:
        """`async with elector.leading():` waits until this process leads, then runs the body
        while it does. Leadership lost: the body is cancelled and `LeadershipLost` raised."""
        return _Term(self)

    # -- the protocol -----------------------------------------------------------------------

    async def _acquire(self) -> None:
        while True:
            started = self._clock.monotonic()
            try:
                async with asyncio.timeout(self._renew_deadline):
                    acquired = await self._try_acquire_or_renew()
            except (errors.ApiError, TimeoutError) as err:
                self._log.warning("lease acquire failed", error=str(err) or type(err).__name__)
                acquired = False
            if acquired:
                self._renewed_at = started
                self._leading = True
                self.stats.acquired += 1
                self._log.info("became leader")
                return
            await self._clock.sleep(self._retry_period * (1 + _ACQUIRE_JITTER * self._draw()))

    async def _renew_until_lost(self) -> None:
        """Returns when a renewal could not succeed within `renew_deadline` of the last one."""
        while True:
            await self._clock.sleep(self._renew_interval)
            while True:
                remaining = self._renewed_at + self._renew_deadline - self._clock.monotonic()
                if remaining <= 0:
                    return
                started = self._clock.monotonic()
                try:
                    async with asyncio.timeout(remaining):
                        renewed = await self._try_acquire_or_renew()
                except (errors.ApiError, TimeoutError) as err:
                    self._log.warning("lease renew failed", error=str(err) or type(err).__name__)
                    renewed = False
                if renewed:
                    self._renewed_at = started
                    break
                left = self._renewed_at + self._renew_deadline - self._clock.monotonic()
                await self._clock.sleep(max(0.0, min(self._retry_period, left)))

    async def _try_acquire_or_renew(self) -> bool:
        now = self._clock.monotonic()
        wall = micro_time(self._clock.now())
        if self._leading and await self._renew_as_last_written(wall, now):
            return True
        try:
            lease = await self._client.get(self._path)
        except errors.NotFound:
            return await self._create(wall, now)
        spec: dict[str, Any] = dict(lease.get("spec") or {})
        self._observe(lease, spec, now)
        holder = spec.get("holderIdentity") or ""
        duration = spec.get("leaseDurationSeconds") or self._lease_seconds
        if holder and holder != self.identity and now < self._observed_at + duration:
            return False  # someone else holds it and has not been silent for its duration
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder != self.identity:
            spec["acquireTime"] = wall
            spec["leaseTransitions"] = transitions + 1
        spec.update(
            holderIdentity=self.identity, leaseDurationSeconds=self._lease_seconds, renewTime=wall
        )
        spec.setdefault("acquireTime", wall)
        try:
            # The body carries metadata.resourceVersion: a conditional update.
            written = await self._client.replace(self._path, {**lease, "spec": spec})
        except errors.Conflict:
            return False
        self._observe(written, dict(written.get("spec") or {}), now)
        return True

    async def _renew_as_last_written(self, wall: str, now: float) -> bool:
        """Renew by a conditional update of the Lease as we last wrote it; False on a conflict
        (it changed since: the caller reads it and decides as a candidate would)."""
        try:
            return await self._update_ours({"renewTime": wall}, now)
        except (errors.Conflict, errors.NotFound):
            return False

    async def _update_ours(self, changes: dict[str, Any], now: float) -> bool:
        """Write `changes` into the Lease's spec as last seen, conditionally on its
        resourceVersion, if that record says we hold it (False: it does not; nothing sent)."""
        lease, spec = self._lease, dict(self._observed_spec or {})
        if lease is None or spec.get("holderIdentity") != self.identity:
            return False
        written = await self._client.replace(self._path, {**lease, "spec": {**spec, **changes}})
        self._observe(written, dict(written.get("spec") or {}), now)
        return True

    async def _create(self, wall: str, now: float) -> bool:
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self._lease_seconds,
            "acquireTime": wall,
            "renewTime": wall,
            "leaseTransitions": 0,
        }
        body = {
            "apiVersion": LEASE_API,
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": spec,
        }
        collection = resource_path(LEASE_API, "leases", namespace=self.namespace)
        try:
            created = await self._client.create(collection, body)
        except errors.AlreadyExists:
            return False
        self._observe(created, dict(created.get("spec") or {}), now)
        return True

    def _observe(self, lease: dict[str, Any], spec: dict[str, Any], now: float) -> None:
        self._lease = lease
        if spec != self._observed_spec:
            self._observed_spec = spec
            self._observed_at = now

    async def _release(self) -> None:
        """Hand the Lease back (holder empty, 1 s duration) if we still hold it as last seen."""
        wall = micro_time(self._clock.now())
        handed_back = {
            "holderIdentity": "",
            "leaseDurationSeconds": 1,
            "renewTime": wall,
            "acquireTime": wall,
        }
        try:
            async with asyncio.timeout(self._renew_deadline):
                released = await self._update_ours(handed_back, self._clock.monotonic())
        except (errors.ApiError, TimeoutError) as err:
            # A conflict means the Lease changed hands already; otherwise it simply expires.
            self._log.warning("lease release failed", error=str(err) or type(err).__name__)
            return
        if released:
            self._log.info("lease released")


class _Term:
    """One `async with elector.leading():` block."""

    def __init__(self, elector: LeaderElector) -> None:
        self._elector = elector
        self._lost = False
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = 0
        self._renewer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> None:
        elector = self._elector
        if elector._in_term:
            raise RuntimeError("this elector is already inside leading()")
        elector._in_term = True
        try:
            await elector._acquire()
        except BaseException:
            elector._in_term = False
            raise
        self._task = asyncio.current_task()
        assert self._task is not None, "leading() must run inside a task"
        self._cancelling = self._task.cancelling()
        self._renewer = asyncio.create_task(self._keep(), name=f"lease-{elector.name}")

    async def _keep(self) -> None:
        elector = self._elector
        try:
            await elector._renew_until_lost()
        except Exception:
            elector._log.exception("lease renewal crashed")
        elector._leading = False
        elector.stats.lost += 1
        elector._log.error("leadership lost", renew_deadline=elector._renew_deadline)
        self._lost = True
        assert self._task is not None
        self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        elector = self._elector
        assert self._renewer is not None
        assert self._task is not None
        self._renewer.cancel()
        try:
            await asyncio.wait([self._renewer])
        finally:
            was_leading, elector._leading = elector._leading, False
            elector._in_term = False
            if was_leading and not self._lost and elector._release_on_exit:
                await elector._release()
        if not self._lost:
            return None
        # Our cancel() is spent; other cancellation requests (a shutdown) still propagate.
        if self._task.uncancel() > self._cancelling:
            return None
        if exc_type is None or issubclass(exc_type, asyncio.CancelledError):
            raise LeadershipLost(f"lost lease {elector.namespace}/{elector.name}") from exc
        return None
