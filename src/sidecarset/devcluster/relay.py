"""A TCP relay from the real node's pod gateway to the apiserver on loopback.

The apiserver listens on 127.0.0.1 only, which a pod cannot reach: inside its network namespace
127.0.0.1 is the pod itself. Pods can reach the host at their bridge's address (10.244.N.1),
so this relay listens there and copies bytes both ways to the apiserver. TLS passes through
untouched (the apiserver's certificate names the gateway address), so pods authenticate with
their ServiceAccount token and verify the cluster CA as on any cluster; they only need
KUBERNETES_SERVICE_HOST/PORT set to the relay, since no kube-proxy routes the `kubernetes`
Service's ClusterIP here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

CHUNK = 64 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            if writer.can_write_eof():
                writer.write_eof()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _handler(target_host: str, target_port: int) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            await _close(writer)
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            await _close(up_writer)
            await _close(writer)

    return handle


async def serve(
    listen_host: str,
    listen_port: int,
    target_host: str,
    target_port: int,
    ready_file: Path | None = None,
) -> None:
    """Relay connections on listen_host:listen_port to target_host:target_port until cancelled."""
    server = await asyncio.start_server(
        _handler(target_host, target_port), listen_host, listen_port, reuse_address=True
    )
    async with server:
        if ready_file is not None:
            ready_file.touch()
        await server.serve_forever()
