"""The only module that talks to the API server.

Credentials come from `credentials` (in-cluster or a kubeconfig); requests go straight through one
aiohttp session, so list and watch bodies stay bytes until the caller decodes them into its own
projections.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from sidecarset.shell import metrics
from sidecarset.shell.kube import credentials, errors, http1
from sidecarset.shell.kube.credentials import Credentials

JSON = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
JSON_ONLY = "application/json"
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json"
USER_AGENT = "sidecarset"
"""Sent with every request; the API server names the field manager of a write after it."""

_WATCH_LINE_LIMIT = 64 * 1024 * 1024  # a single watch event larger than this is a bug


def resource_path(
    api_version: str,
    plural: str,
    *,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """`/api/v1/namespaces/ns/pods/name/status` and friends."""
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = base
    if namespace:
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{plural}"
    if name:
        path += f"/{quote(name, safe='')}"
    if subresource:
        path += f"/{subresource}"
    return path


class TokenBucket:
    """Client-side QPS limit: `qps` sustained, `burst` at once. Zero disables it.

    Each caller reserves its token at once (the count may go below zero) and then sleeps until
    it is due, as Go's `rate.Limiter.Reserve` does: nothing is held while sleeping, so callers
    are served in arrival order and none waits on another's sleep."""

    def __init__(self, qps: float, burst: int) -> None:
        self._qps, self._burst = qps, max(1, burst)
        self._tokens = float(self._burst)
        self._last = time.monotonic()

    def reserve(self) -> float:
        """Take a token; the seconds until it may be used (0: now)."""
        if self._qps <= 0:
            return 0.0
        self._refill()
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self._qps

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._qps)
        self._last = now

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)

    def take_spare(self) -> bool:
        """Take a token only if one is free now, never borrowing from callers already waiting."""
        if self._qps <= 0:
            return True
        self._refill()
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    async def acquire_spare(self) -> None:
        """Wait for a token no `acquire` caller needs: for writes that can wait while others
        queue. Sleeps until the tokens already reserved are due (at least a token's worth of
        time), then looks again; while `acquire` callers keep the bucket empty this waits for
        them all. (Looking every token's worth of time woke each waiting write 50 times a
        second through a whole rollout: about 2 % of its CPU.)"""
        while True:
            if self.take_spare():
                return
            await asyncio.sleep(max(1.0, 1.0 - self._tokens) / self._qps)


@dataclass
class RequestCounter:
    """Counts requests by verb, for benchmarks (API requests per updated pod)."""

    reads: int = 0
    writes: int = 0


def request_kind(method: str, path: str) -> tuple[str, str]:
    """(verb, resource) of a request path, as the apiserver counts them: a GET without a name is
    a LIST; the resource includes the subresource (`pods/status`); "" for a non-API path."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    if parts[0] == "api":
        rest = parts[2:]
    elif parts[0] == "apis":
        rest = parts[3:]
    else:
        return method, ""
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    if not rest:
        return method, ""
    resource = rest[0] + (f"/{rest[2]}" if len(rest) >= 3 else "")
    verb = "LIST" if method == "GET" and len(rest) == 1 else method
    return verb, resource


class KubeClient:
    """Thin async client: JSON in, JSON (or raw bytes) out, `errors.ApiError` on failure."""

    def __init__(
        self,
        creds: Credentials,
        *,
        qps: float = 0.0,
        burst: int = 10,
        user_agent: str = USER_AGENT,
    ) -> None:
        self._authorization = creds.authorization
        self.host = creds.host
        self._limiter = TokenBucket(qps, burst)
        self.counter = RequestCounter()
        # Every request but watches: plain HTTP/1.1 on kept-alive connections (see http1).
        self._http = http1.Http1Pool(creds.host, creds.ssl_context, user_agent=user_agent)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=creds.ssl_context, limit=64),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            json_serialize=json.dumps,
            headers={"User-Agent": user_agent},
        )

    @classmethod
    async def from_kubeconfig(
        cls,
        path: str | None = None,
        *,
        context: str | None = None,
        qps: float = 0.0,
        burst: int = 10,
    ) -> KubeClient:
        """Raises `credentials.CredentialsError` for a kubeconfig that cannot be used."""
        return cls(await credentials.from_kubeconfig(path, context), qps=qps, burst=burst)

    @classmethod
    def in_cluster(cls, *, qps: float = 0.0, burst: int = 10) -> KubeClient:
        return cls(credentials.in_cluster(), qps=qps, burst=burst)

    async def close(self) -> None:
        await self._http.close()
        await self._session.close()

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _headers(self, content_type: str | None, accept: str = JSON_ONLY) -> dict[str, str]:
        headers = {"Accept": accept}
        token = await self._authorization()
        if token:
            headers["Authorization"] = token
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def raw(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: object = None,
        content_type: str | None = None,
        timeout: float = 30.0,
        spare: bool = False,
        metadata_only: bool = False,
    ) -> bytes:
        """One request; returns the body bytes; raises an ApiError subclass on failure.

        `spare`: sent only with rate-limit capacity no other request is waiting for (see
        `TokenBucket.acquire_spare`). `metadata_only`: the answer is the object's metadata as a
        PartialObjectMetadata (the whole object from a server that cannot): for writes whose
        answer is not read, it spares the server encoding, and us reading, the rest."""
        await (self._limiter.acquire_spare() if spare else self._limiter.acquire())
        if method == "GET":
            self.counter.reads += 1
        else:
            self.counter.writes += 1
        metrics.API_REQUESTS.labels(*request_kind(method, path)).inc()
        data: bytes | None = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            content_type = content_type or "application/json"
        target = path
        if params:
            target += ("&" if "?" in path else "?") + urlencode(params)
        headers = await self._headers(content_type, METADATA_ONLY if metadata_only else JSON_ONLY)
        try:
            response = await self._http.request(method, target, headers, data, timeout=timeout)
        except (OSError, TimeoutError, http1.HttpProtocolError) as err:
            raise errors.Unavailable(0, f"{method} {path}: {err!r}") from err
        if response.status >= 400:
            raise errors.from_response(response.status, _maybe_json(response.body))
        return response.body

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: object = None,
        content_type: str | None = None,
        timeout: float = 30.0,
    ) -> JSON:
        payload = await self.raw(
            method, path, params=params, body=body, content_type=content_type, timeout=timeout
        )
        result = json.loads(payload) if payload else {}
        return result if isinstance(result, dict) else {"items": result}

    async def get(self, path: str, **params: str | int) -> JSON:
        return await self.request("GET", path, params=params)

    async def create(self, path: str, body: object) -> JSON:
        return await self.request("POST", path, body=body)

    async def replace(self, path: str, body: object) -> JSON:
        return await self.request("PUT", path, body=body)

    async def patch(
        self,
        path: str,
        body: object,
        *,
        content_type: str = MERGE_PATCH,
        params: Mapping[str, str | int] | None = None,
    ) -> JSON:
        return await self.request(
            "PATCH", path, body=body, content_type=content_type, params=params
        )

    async def apply(
        self, path: str, body: Mapping[str, object], *, field_manager: str, force: bool = True
    ) -> JSON:
        """Server-side apply (the manifest is JSON, which is valid YAML)."""
        params: dict[str, str | int] = {"fieldManager": field_manager}
        if force:
            params["force"] = "true"
        return await self.request(
            "PATCH", path, body=json.dumps(body).encode(), content_type=APPLY_PATCH, params=params
        )

    async def delete(self, path: str, body: object = None, **params: str | int) -> JSON:
        return await self.request("DELETE", path, body=body, params=params)

    async def list_pages(
        self, path: str, *, limit: int = 500, **params: str | int
    ) -> AsyncIterator[bytes]:
        """Yield each page of a paginated LIST as raw bytes (decode with your own projection)."""
        cont = ""
        while True:
            query: dict[str, str | int] = {**params, "limit": limit}
            if cont:
                query["continue"] = cont
            page = await self.raw("GET", path, params=query, timeout=120)
            yield page
            cont = _continue_token(page)
            if not cont:
                return

    async def watch(
        self,
        path: str,
        *,
        resource_version: str,
        timeout_seconds: int = 300,
        bookmarks: bool = True,
        inactivity_timeout: float | None = None,
        **params: str | int,
    ) -> AsyncIterator[bytes]:
        """Yield raw watch event lines. Ends when the server closes the stream.

        Raises `TimeoutError` if no byte arrives for `inactivity_timeout` seconds: a silent
        watch must not freeze the caller (bookmarks arrive about once a minute).
        """
        await self._limiter.acquire()
        self.counter.reads += 1
        metrics.API_REQUESTS.labels("WATCH", request_kind("GET", path)[1]).inc()
        query: dict[str, str] = {k: str(v) for k, v in params.items()}
        query.update(
            watch="true",
            resourceVersion=resource_version,
            timeoutSeconds=str(timeout_seconds),
        )
        if bookmarks:
            query["allowWatchBookmarks"] = "true"
        try:
            async with self._session.get(
                self.host + path,
                params=query,
                headers=await self._headers(None),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=10, sock_read=inactivity_timeout
                ),
            ) as resp:
                if resp.status >= 400:
                    raise errors.from_response(resp.status, _maybe_json(await resp.read()))
                buffer = b""
                async for chunk in resp.content.iter_any():
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if line.strip():
                            yield line
                    if len(buffer) > _WATCH_LINE_LIMIT:
                        raise errors.Unavailable(0, "watch event too large")
                if buffer.strip():
                    yield buffer
        except aiohttp.ConnectionTimeoutError as err:
            # A subclass of ServerTimeoutError, but no silent stream: the apiserver could not be
            # reached (down, draining, blackholed), which callers back off from like a refusal.
            raise errors.Unavailable(0, f"watch {path}: connect timed out") from err
        except aiohttp.ServerTimeoutError as err:
            raise TimeoutError(f"watch {path} silent for {inactivity_timeout}s") from err
        except (aiohttp.ClientError, ConnectionError) as err:
            raise errors.Unavailable(0, f"watch {path}: {err!r}") from err


def _continue_token(page: bytes) -> str:
    # The metadata block is at the start of a list; avoid decoding the whole page twice.
    head = page[:2048]
    marker = b'"continue":"'
    start = head.find(marker)
    if start < 0:
        return ""
    start += len(marker)
    end = head.find(b'"', start)
    return head[start:end].decode() if end > start else ""


def _maybe_json(payload: bytes) -> object:
    try:
        return json.loads(payload)
    except ValueError:
        return payload
