"""An aiohttp server on an event loop of its own, in a thread of its own.

Why: work on the main event loop runs in slices that do not yield (a controller pass over
thousands of cached objects, a burst of watch events being decoded), and a request served on
that loop waits for every slice queued ahead of it. In its own thread a request waits for the
GIL at most one switch interval (5 ms by default) at a time, not for the main loop's backlog.
It still shares the process's CPU and the GIL with that work: during a saturated 2,000-pod
rollout our webhook still added about 30 ms p50 over the apiserver's own latency (Kruise's
about 10 ms; docs/performance.md), which only a process of its own would remove.

What the handlers may touch follows from that: objects owned by the main loop are read only
through single GIL-atomic calls (a dict's `get`, `list(d.values())`; see `shell.store`), never
awaited, never mutated. Anything that needs a loop (an HTTP client, a timer) is made by `build`,
which runs on the server's own loop, and is closed by the app's `on_cleanup` hooks there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ssl
import threading
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from sidecarset.shell.httpserver import Server

log = structlog.get_logger("sidecarset.http")

Build = Callable[[], Awaitable[web.Application]]


class ThreadedServer:
    """`start()` returns once the server listens (its port in `port`), or raises what `build`
    or binding raised; `stop()` closes it (draining as `Server.stop`) and joins the thread."""

    def __init__(
        self,
        build: Build,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
        *,
        name: str = "http-server",
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    ) -> None:
        """`loop_factory`: the server's kind of event loop (None: the standard one)."""
        self._build = build
        self._loop_factory = loop_factory
        self._host, self._ssl = host, ssl_context
        self._name = name
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ended: concurrent.futures.Future[None] = concurrent.futures.Future()

    async def start(self) -> None:
        if self._thread is not None or self._ended.done():
            raise RuntimeError(f"{self._name} already started")
        listening: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(listening,), name=self._name, daemon=True
        )
        self._thread.start()
        try:
            self.port = await asyncio.wrap_future(listening)
        except BaseException:
            await asyncio.to_thread(self._thread.join)
            raise

    async def wait_ended(self) -> None:
        """Return once the server's thread has ended: after `stop`, or on its own (a crash of
        its loop), which the caller should treat as fatal."""
        await asyncio.wrap_future(self._ended)

    def alive(self) -> bool:
        """Whether the server's thread still runs (false before `start` and after `stop`)."""
        return self._thread is not None and not self._ended.done()

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Run `callback` on the server's thread (e.g. to change what its handlers share)."""
        if self._loop is None:
            raise RuntimeError(f"{self._name} is not running")
        self._loop.call_soon_threadsafe(callback)

    async def stop(self) -> None:
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:  # the loop closed between the check and the call
                pass
        await asyncio.to_thread(thread.join)
        self._thread = self._loop = self._stopping = None

    def _run(self, listening: concurrent.futures.Future[int]) -> None:
        try:
            with asyncio.Runner(loop_factory=self._loop_factory) as runner:
                runner.run(self._serve(listening))
        except Exception:
            log.exception("server thread ended by an error", server=self._name)
        finally:
            if not listening.done():  # the loop died before the server listened
                listening.set_exception(RuntimeError(f"{self._name} ended before listening"))
            self._ended.set_result(None)

    async def _serve(self, listening: concurrent.futures.Future[int]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server: Server | None = None
        try:
            server = Server(await self._build(), self._host, self.port, self._ssl)
            await server.start()
        except BaseException as err:
            if server is not None:  # built but not bound: its cleanup hooks still run
                with contextlib.suppress(Exception):
                    await server.stop()
            listening.set_exception(err)
            return
        listening.set_result(server.port)
        try:
            await self._stopping.wait()
        finally:
            await server.stop()
