"""HTTP/1.1 requests on kept-alive connections: the API client's path for every request but
watches (those stream, and stay on aiohttp).

Why not aiohttp for these: a rollout sends two small PATCHes per pod, and aiohttp's general
machinery around each one (URL objects, header multidicts, timers, payload writers, trace hooks)
cost 0.39 ms of CPU per PATCH on the benchmark VM, where this module costs 0.2 ms (one process,
one apiserver, 3 x 1,000 PATCHes each way). An API server's answer is simple to read: a status
line, headers, and a body delimited by a length, by chunks, or by the end of the connection.

A connection carries one request at a time. One that failed, timed out, was cancelled, or whose
response said `Connection: close` is closed, never reused. A request sent on a reused connection
that the server closed before answering any byte (an idle connection it had just dropped) is
sent once more on a new connection; nothing of it can have been processed.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

__all__ = ["ConnectionLost", "Http1Pool", "HttpProtocolError", "Response", "ResponseParser"]

MAX_HEAD_BYTES = 256 * 1024
"""A status line and headers longer than this are refused (an API server's are under 1 KiB)."""


class HttpProtocolError(ValueError):
    """The bytes received are not an HTTP/1.x response."""


class ConnectionLost(ConnectionError):
    """The connection closed before the whole response arrived."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    keep_alive: bool


class ResponseParser:
    """Reads one response from bytes fed in pieces of any size: `feed` returns True once it is
    complete; `at_eof` says whether the end of the connection completes it."""

    def __init__(self, *, bodyless: bool = False) -> None:
        self._bodyless = bodyless  # the answer to a HEAD request
        self._buffer = bytearray()
        self._body = bytearray()
        self._status = 0
        self._keep_alive = True
        self._gzip = False
        self._mode = "head"  # head, length, chunk-size, chunk-data, chunk-end, trailer, eof, done
        self._left = 0

    def feed(self, data: bytes) -> bool:
        if self._mode == "done":
            raise HttpProtocolError("bytes after the end of the response")
        self._buffer += data
        pos = self._advance(self._buffer)
        del self._buffer[:pos]
        if self._mode == "done" and self._buffer:
            raise HttpProtocolError("bytes after the end of the response")
        if self._mode == "head" and len(self._buffer) > MAX_HEAD_BYTES:
            raise HttpProtocolError(f"response head longer than {MAX_HEAD_BYTES} bytes")
        return self._mode == "done"

    def at_eof(self) -> bool:
        """The connection ended: True if that completes the response."""
        if self._mode == "eof":
            self._mode = "done"
        return self._mode == "done"

    def response(self) -> Response:
        if self._mode != "done":
            raise HttpProtocolError("the response is not complete")
        body = bytes(self._body)
        if self._gzip:
            try:
                body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
            except zlib.error as err:
                raise HttpProtocolError(f"gzip body: {err}") from err
        return Response(self._status, body, self._keep_alive)

    def _advance(self, buf: bytearray) -> int:
        """Consume what `buf` holds from its start; return how many bytes were consumed."""
        pos = 0
        while True:
            moved = _STEPS[self._mode](self, buf, pos)
            if moved is None:
                return pos
            pos = moved

    # Each step reads from `pos`: the position after what it consumed, or None when it needs
    # more bytes (or the response is complete).

    def _step_head(self, buf: bytearray, pos: int) -> int | None:
        end = buf.find(b"\r\n\r\n", pos)
        if end < 0:
            return None
        self._head(bytes(buf[pos:end]))
        return end + 4

    def _step_length(self, buf: bytearray, pos: int) -> int | None:
        return self._body_bytes(buf, pos, "done")

    def _step_chunk_data(self, buf: bytearray, pos: int) -> int | None:
        return self._body_bytes(buf, pos, "chunk-end")

    def _body_bytes(self, buf: bytearray, pos: int, then: str) -> int | None:
        take = min(self._left, len(buf) - pos)
        if take <= 0 and self._left:
            return None
        self._body += buf[pos : pos + take]
        self._left -= take
        if not self._left:
            self._mode = then
        return pos + take

    def _step_chunk_size(self, buf: bytearray, pos: int) -> int | None:
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return None
        self._left = _chunk_size(bytes(buf[pos:end]))
        self._mode = "chunk-data" if self._left else "trailer"
        return end + 2

    def _step_chunk_end(self, buf: bytearray, pos: int) -> int | None:
        if len(buf) - pos < 2:
            return None
        if buf[pos : pos + 2] != b"\r\n":
            raise HttpProtocolError("chunk not followed by CRLF")
        self._mode = "chunk-size"
        return pos + 2

    def _step_trailer(self, buf: bytearray, pos: int) -> int | None:
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return None
        if end == pos:
            self._mode = "done"  # the empty line after the trailers (usually none)
        return end + 2

    def _step_eof(self, buf: bytearray, pos: int) -> int | None:
        if pos >= len(buf):
            return None
        self._body += buf[pos:]
        return len(buf)

    def _step_done(self, buf: bytearray, pos: int) -> int | None:
        return None

    def _head(self, head: bytes) -> None:
        status_line, *lines = head.split(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise HttpProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        status = int(parts[1])
        length: int | None = None
        chunked = False
        connection = b""
        for line in lines:
            name, sep, value = line.partition(b":")
            if not sep:
                raise HttpProtocolError(f"malformed header line: {line[:80]!r}")
            name, value = name.strip().lower(), value.strip()
            if name == b"content-length":
                if not value.isdigit():
                    raise HttpProtocolError(f"bad Content-Length: {value[:40]!r}")
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
            elif name == b"connection":
                connection = value.lower()
            elif name == b"content-encoding":
                self._gzip = value.lower() == b"gzip"
        if 100 <= status < 200:
            return  # an interim response: the real one follows
        self._status = status
        http10 = parts[0] == b"HTTP/1.0"
        self._keep_alive = b"keep-alive" in connection if http10 else b"close" not in connection
        if self._bodyless or status in (204, 304):
            self._mode = "done"
        elif chunked:
            self._mode = "chunk-size"
        elif length is not None:
            self._left = length
            self._mode = "length" if length else "done"
        else:
            self._keep_alive = False
            self._mode = "eof"


_STEPS: dict[str, Callable[[ResponseParser, bytearray, int], int | None]] = {
    "head": ResponseParser._step_head,
    "length": ResponseParser._step_length,
    "chunk-size": ResponseParser._step_chunk_size,
    "chunk-data": ResponseParser._step_chunk_data,
    "chunk-end": ResponseParser._step_chunk_end,
    "trailer": ResponseParser._step_trailer,
    "eof": ResponseParser._step_eof,
    "done": ResponseParser._step_done,
}
"""The parser's step for each mode."""


def _chunk_size(line: bytes) -> int:
    text = line.split(b";", 1)[0].strip()
    try:
        size = int(text, 16)
    except ValueError:
        size = -1
    if size < 0:
        raise HttpProtocolError(f"bad chunk size: {line[:40]!r}")
    return size


class _Connection(asyncio.Protocol):
    """One connection: sends a request, feeds what arrives to that request's parser."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser: ResponseParser | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self.closed = False
        self.answered = False  # some byte of the current response arrived

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        parser, waiter = self._parser, self._waiter
        if parser is None or waiter is None or waiter.done():
            self.close()  # bytes nobody asked for: the connection cannot be trusted
            return
        self.answered = True
        try:
            complete = parser.feed(data)
            if complete:
                self._parser = None
                waiter.set_result(parser.response())
        except HttpProtocolError as err:
            waiter.set_exception(err)
            self.close()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost settles the waiter

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        parser, waiter = self._parser, self._waiter
        if waiter is None or waiter.done():
            return
        try:
            if parser is not None and parser.at_eof():
                waiter.set_result(parser.response())
                return
        except HttpProtocolError as err:
            waiter.set_exception(err)
            return
        reason = f": {exc}" if exc else ""
        waiter.set_exception(ConnectionLost(f"connection closed before the response{reason}"))

    async def exchange(self, request: bytes, parser: ResponseParser) -> Response:
        if self.closed or self._transport is None:
            raise ConnectionLost("connection already closed")
        self._parser, self.answered = parser, False
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return await self._waiter

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()


class Http1Pool:
    """Up to `limit` connections to the server of `url` (its path is prefixed to every target),
    kept open between requests."""

    def __init__(
        self, url: str, ssl_context: ssl.SSLContext | None, *, user_agent: str, limit: int = 64
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) server URL: {url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl_context if parts.scheme == "https" else None
        self._prefix = parts.path.rstrip("/")
        self._fixed = f"Host: {parts.netloc}\r\nUser-Agent: {user_agent}\r\n"
        self._fixed += "Accept-Encoding: gzip\r\n"
        self._slots = asyncio.Semaphore(limit)
        self._idle: list[_Connection] = []
        self.opened = 0
        """Connections opened so far (for tests and benchmarks)."""

    async def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes | None,
        *,
        timeout: float,
    ) -> Response:
        """Send one request (`target`: path and query) and read its whole response within
        `timeout` seconds, connecting included. Raises `ConnectionLost`, `OSError`,
        `HttpProtocolError` or `TimeoutError`."""
        data = self._encode(method, target, headers, body)
        async with asyncio.timeout(timeout), self._slots:
            for attempt in range(2):
                conn, reused = self._take(), True
                if conn is None:
                    conn, reused = await self._connect(), False
                try:
                    response = await conn.exchange(data, ResponseParser(bodyless=method == "HEAD"))
                except ConnectionLost:
                    conn.close()
                    if reused and not conn.answered and attempt == 0:
                        continue  # the server had dropped this idle connection: a new one
                    raise
                except BaseException:
                    conn.close()  # timed out, cancelled or unreadable: its state is unknown
                    raise
                if response.keep_alive and not conn.closed:
                    self._idle.append(conn)
                else:
                    conn.close()
                return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _take(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, self._host, self._port, ssl=self._ssl)
        self.opened += 1
        return conn

    def _encode(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes | None
    ) -> bytes:
        lines = [f"{method} {self._prefix}{target} HTTP/1.1\r\n", self._fixed]
        for name, value in headers.items():
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
                raise ValueError(f"header {name!r} contains a line break")
            lines.append(f"{name}: {value}\r\n")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        return head + body if body else head
