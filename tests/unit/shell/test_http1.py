"""The API client's HTTP/1.1 transport: the response parser over any split of the bytes, and the
pool's connection reuse, retry and failure handling against a loopback server of the test's own
(the real API server drives it in every integration test)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import itertools
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecarset.shell import event_loops, pki
from sidecarset.shell.kube.http1 import (
    ConnectionLost,
    Http1Pool,
    HttpProtocolError,
    Response,
    ResponseParser,
)

BODY = b'{"kind":"Pod","metadata":{"name":"p"}}' * 7


def chunked(body: bytes, size: int, *, extension: bool = False, trailer: bool = False) -> bytes:
    out = b""
    for i in range(0, len(body), size):
        piece = body[i : i + size]
        out += f"{len(piece):x}".encode() + (b";x=1" if extension else b"") + b"\r\n" + piece
        out += b"\r\n"
    return out + b"0\r\n" + (b"X-Trailer: 1\r\n" if trailer else b"") + b"\r\n"


def head(status: str, *headers: str, version: str = "1.1") -> bytes:
    return "".join(
        [f"HTTP/{version} {status}\r\n", *(f"{h}\r\n" for h in headers), "\r\n"]
    ).encode()


LENGTH = f"Content-Length: {len(BODY)}"
CHUNKED = "Transfer-Encoding: chunked"
RESPONSES: dict[str, tuple[bytes, Response]] = {
    "length": (head("200 OK", "Content-Type: a/b", LENGTH) + BODY, Response(200, BODY, True)),
    "chunked": (head("201 Created", CHUNKED) + chunked(BODY, 50), Response(201, BODY, True)),
    "chunked-with-extension-and-trailer": (
        head("200 OK", "transfer-encoding: Chunked")
        + chunked(BODY, 64, extension=True, trailer=True),
        Response(200, BODY, True),
    ),
    "gzip": (
        head("200 OK", "Content-Encoding: gzip", CHUNKED) + chunked(gzip.compress(BODY), 40),
        Response(200, BODY, True),
    ),
    "close": (
        head("409 Conflict", "Connection: close", "Content-Length: 2") + b"{}",
        Response(409, b"{}", False),
    ),
    "http10": (
        head("200 OK", "Content-Length: 2", version="1.0") + b"{}",
        Response(200, b"{}", False),
    ),
    "interim-then-final": (head("100 Continue") + head("204 No Content"), Response(204, b"", True)),
    "empty-length": (head("200 OK", "Content-Length: 0"), Response(200, b"", True)),
}


def parse(pieces: list[bytes], *, eof: bool = False) -> Response:
    parser = ResponseParser()
    complete = False
    for piece in pieces:
        assert not complete, "the parser finished before its last bytes"
        complete = parser.feed(piece)
    if eof:
        complete = parser.at_eof()
    assert complete
    return parser.response()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@pytest.mark.parametrize("name", sorted(RESPONSES))
@given(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_every_split_of_a_response_parses_alike(name: str, cuts: list[int]) -> None:
    data, expected = RESPONSES[name]
    assert parse(split(data, cuts)) == expected


@given(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_a_body_without_length_ends_with_the_connection(cuts: list[int]) -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + BODY
    parser = ResponseParser()
    for piece in split(data, cuts):
        assert not parser.feed(piece)
    assert parser.at_eof()
    assert parser.response() == Response(200, BODY, keep_alive=False)


def test_a_cut_short_body_is_not_complete_at_the_end_of_the_connection() -> None:
    parser = ResponseParser()
    assert not parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}")
    assert not parser.at_eof()
    with pytest.raises(HttpProtocolError, match="not complete"):
        parser.response()


def test_the_answer_to_head_has_no_body_whatever_its_length_says() -> None:
    parser = ResponseParser(bodyless=True)
    assert parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n")
    assert parser.response() == Response(200, b"", keep_alive=True)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"SSH-2.0-OpenSSH\r\n\r\n", "status line", id="not-http"),
        pytest.param(b"HTTP/1.1 abc OK\r\n\r\n", "status line", id="bad-status"),
        pytest.param(head("200 OK", "NoColon"), "header line", id="bad-header"),
        pytest.param(head("200 OK", "Content-Length: -1"), "Content-Length", id="bad-length"),
        pytest.param(head("200 OK", CHUNKED) + b"zz\r\n", "chunk size", id="bad-chunk-size"),
        pytest.param(head("200 OK", CHUNKED) + b"2\r\n{}XX", "CRLF", id="bad-chunk-end"),
        pytest.param(head("200 OK", "Content-Length: 2") + b"{}extra", "after the end", id="extra"),
        pytest.param(
            head("200 OK", "Content-Encoding: gzip", "Content-Length: 2") + b"{}", "gzip", id="gzip"
        ),
    ],
)
def test_bytes_that_are_no_http_response_are_refused(data: bytes, message: str) -> None:
    def read() -> Response:
        parser = ResponseParser()
        parser.feed(data)
        return parser.response()

    with pytest.raises(HttpProtocolError, match=message):
        read()


def test_an_endless_head_is_refused() -> None:
    parser = ResponseParser()
    for _ in range(250):
        assert not parser.feed(b"X-Padding: " + b"a" * 1024 + b"\r\n")
    with pytest.raises(HttpProtocolError, match="head longer"):
        parser.feed(b"X-Padding: " + b"a" * 4096 + b"\r\n")


# -- the pool, against a loopback server that answers as the test says -----------------------

Answer = Callable[[int, asyncio.StreamWriter], Awaitable[bool]]
"""Gets the number of the request on its connection (0 first); writes a response, or not;
returns whether to keep the connection."""


async def ok(_nth: int, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    return True


@contextlib.asynccontextmanager
async def server(
    answer: Answer, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A loopback HTTP(S) server; yields its URL and the request heads it received."""
    heads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for nth in range(1000):
                head = await reader.readuntil(b"\r\n\r\n")
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        await reader.readexactly(int(line.split(b":")[1]))
                heads.append(head)
                keep = await answer(nth, writer)
                await writer.drain()
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}/prefix", heads
    finally:
        srv.close()


async def test_requests_share_one_kept_alive_connection_and_carry_the_fixed_headers() -> None:
    async with server(ok) as (url, heads):
        pool = Http1Pool(url, None, user_agent="tester/1")
        for n in range(5):
            got = await pool.request(
                "PATCH", f"/api/x?n={n}", {"Content-Type": "a/b"}, b"{}", timeout=5
            )
            assert got == Response(200, b"{}", keep_alive=True)
        await pool.close()
    assert pool.opened == 1
    assert len(heads) == 5
    first = heads[0].decode()
    assert first.startswith("PATCH /prefix/api/x?n=0 HTTP/1.1\r\n")
    for header in ("Host: 127.0.0.1:", "User-Agent: tester/1", "Content-Type: a/b"):
        assert f"\r\n{header}" in first
    assert "\r\nContent-Length: 2\r\n" in first


async def test_a_connection_the_server_closes_is_not_reused() -> None:
    async def close_after(_nth: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")
        return False

    async with server(close_after) as (url, heads):
        pool = Http1Pool(url, None, user_agent="t")
        for _ in range(3):
            assert (await pool.request("GET", "/", {}, None, timeout=5)).status == 200
        await pool.close()
    assert pool.opened == 3
    assert len(heads) == 3


async def test_a_request_on_a_reused_connection_closed_unanswered_is_sent_once_more() -> None:
    # The server answers the first request of each connection and closes on the second without
    # a byte: what a server dropping an idle connection looks like to the request reusing it.
    async def first_only(nth: int, writer: asyncio.StreamWriter) -> bool:
        if nth:
            return False
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        return True

    async with server(first_only) as (url, heads):
        pool = Http1Pool(url, None, user_agent="t")
        assert (await pool.request("GET", "/a", {}, None, timeout=5)).status == 200
        assert (await pool.request("GET", "/b", {}, None, timeout=5)).status == 200
        await pool.close()
    assert pool.opened == 2
    assert [h.split(b" ")[1] for h in heads] == [b"/prefix/a", b"/prefix/b", b"/prefix/b"]


async def never(_nth: int, _writer: asyncio.StreamWriter) -> bool:
    return False


async def half(_nth: int, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}")
    return False


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(never, id="closed-unanswered-on-a-new-connection"),
        pytest.param(half, id="closed-mid-answer"),
    ],
)
async def test_a_lost_connection_is_an_error_and_is_not_retried(answer: Answer) -> None:
    async with server(answer) as (url, heads):
        pool = Http1Pool(url, None, user_agent="t")
        with pytest.raises(ConnectionLost):
            await pool.request("POST", "/", {}, b"{}", timeout=5)
        await pool.close()
    assert len(heads) == 1


async def test_a_silent_server_times_out_and_its_connection_is_closed() -> None:
    async def silent(_nth: int, _writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(5)
        return False

    async with server(silent) as (url, _heads):
        pool = Http1Pool(url, None, user_agent="t")
        with pytest.raises(TimeoutError):
            await pool.request("GET", "/", {}, None, timeout=0.2)
        assert pool._idle == []
        await pool.close()


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    async with server(ok) as (url, heads):
        pool = Http1Pool(url, None, user_agent="t")
        with pytest.raises(ValueError, match="line break"):
            await pool.request(
                "GET", "/", {"Authorization": "Bearer x\r\nEvil: 1"}, None, timeout=5
            )
        await pool.close()
    assert heads == []
    assert pool.opened == 0


def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        Http1Pool("ftp://example", None, user_agent="t")


def test_tls_on_the_operators_event_loop(tmp_path: Path) -> None:
    # The operator runs on uvloop, whose TLS transports are not asyncio's classes.
    factory = event_loops.loop_factory()
    assert factory is not None, "uvloop is one of the operator's dependencies"
    ca = pki.CertificateAuthority()
    cert, key = ca.issue("localhost", ips=("127.0.0.1",), server=True).write(tmp_path, "server")
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cadata=ca.cert_pem.decode())

    async def go() -> tuple[int, int]:
        async with server(ok, tls=serving) as (url, heads):
            pool = Http1Pool(url, trusting, user_agent="t")
            for _ in range(3):
                assert await pool.request("GET", "/", {}, None, timeout=5) == Response(
                    200, b"{}", keep_alive=True
                )
            await pool.close()
        return pool.opened, len(heads)

    with asyncio.Runner(loop_factory=factory) as runner:
        assert runner.run(go()) == (1, 3)
