"""ThreadedServer: answers while the caller's event loop is busy, starts and stops cleanly."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
import time
from collections.abc import Awaitable, Callable

import pytest
import uvloop
from aiohttp import web

from sidecarset.shell import event_loops
from sidecarset.shell.threaded_server import ThreadedServer


def get(port: int, path: str = "/") -> tuple[str, float]:
    """GET from a plain thread (never from a loop): the body and the seconds it took."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        body = connection.getresponse().read().decode()
    finally:
        connection.close()
    return body, time.perf_counter() - started


def app_answering(seen: list[str]) -> web.Application:
    async def where(_: web.Request) -> web.Response:
        seen.append(threading.current_thread().name)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", where)
    return app


def building_app_recording_cleanup(cleaned: list[str]) -> Callable[[], Awaitable[web.Application]]:
    """A `build` whose app notes the thread its cleanup ran on."""

    async def build() -> web.Application:
        app = app_answering([])

        async def cleanup(_: web.Application) -> None:
            cleaned.append(threading.current_thread().name)

        app.on_cleanup.append(cleanup)
        return app

    return build


async def test_answers_while_the_callers_loop_is_blocked() -> None:
    seen: list[str] = []

    async def build() -> web.Application:
        return app_answering(seen)

    server = ThreadedServer(build, "127.0.0.1", 0, name="test-server")
    await server.start()
    try:
        assert server.port != 0
        answers: list[tuple[str, float]] = []
        client = threading.Thread(target=lambda: answers.extend(get(server.port) for _ in range(5)))
        blocked_from = time.perf_counter()
        client.start()
        # This loop is stuck for a second, as in a long controller pass.
        time.sleep(1.0)  # noqa: ASYNC251 - blocking on purpose
        blocked_for = time.perf_counter() - blocked_from
        await asyncio.to_thread(client.join)
    finally:
        await server.stop()
    assert [body for body, _ in answers] == ["ok"] * 5
    assert blocked_for >= 1.0
    # Every answer came while this loop was blocked, and fast.
    assert sum(took for _, took in answers) < 0.5, answers
    assert seen == ["test-server"] * 5


async def test_start_raises_what_build_raised_and_leaves_no_thread() -> None:
    async def build() -> web.Application:
        raise ValueError("no app today")

    before = threading.active_count()
    server = ThreadedServer(build, "127.0.0.1", 0)
    with pytest.raises(ValueError, match="no app today"):
        await server.start()
    assert threading.active_count() == before
    await server.stop()  # stopping a server that never started is a no-op


async def test_a_port_in_use_is_an_error_and_the_apps_cleanup_still_runs() -> None:
    cleaned: list[str] = []

    build = building_app_recording_cleanup(cleaned)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ThreadedServer(build, "127.0.0.1", port, name="clashing")
        with pytest.raises(OSError, match="address already in use"):
            await server.start()
    assert cleaned == ["clashing"]


async def test_stop_runs_cleanup_on_the_servers_thread_and_closes_the_port() -> None:
    cleaned: list[str] = []
    ran: list[str] = []

    build = building_app_recording_cleanup(cleaned)
    server = ThreadedServer(
        build, "127.0.0.1", 0, name="worker", loop_factory=event_loops.loop_factory()
    )
    await server.start()
    port = server.port
    loops: list[type[asyncio.AbstractEventLoop]] = []
    server.call_soon(lambda: ran.append(threading.current_thread().name))
    server.call_soon(lambda: loops.append(type(asyncio.get_running_loop())))
    assert (await asyncio.to_thread(get, port))[0] == "ok"
    await server.stop()
    assert ran == ["worker"]
    assert loops == [uvloop.Loop]
    assert cleaned == ["worker"]
    with pytest.raises(ConnectionRefusedError):
        await asyncio.to_thread(get, port)
    with pytest.raises(RuntimeError, match="not running"):
        server.call_soon(lambda: None)


async def test_a_crashed_loop_ends_the_server_and_wakes_its_watcher() -> None:
    async def build() -> web.Application:
        return app_answering([])

    server = ThreadedServer(build, "127.0.0.1", 0, name="doomed")
    await server.start()
    assert server.alive()
    watcher = asyncio.create_task(server.wait_ended())
    await asyncio.sleep(0.05)
    assert not watcher.done()
    server.call_soon(lambda: asyncio.get_running_loop().stop())  # the loop dies under the server
    await asyncio.wait_for(watcher, timeout=5)
    assert not server.alive()
    await server.stop()  # still safe: nothing left to stop
    with pytest.raises(RuntimeError, match="already started"):
        await server.start()  # one server, one life
