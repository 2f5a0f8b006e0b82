"""Informer: keeps a `Store` equal to one list/watch path of the API server.

Guarantees:

- The store is filled from a paginated LIST (500 objects a page), then kept current by a WATCH
  with bookmarks from the list's resourceVersion; every event and bookmark moves the resume
  point, so a reconnect replays nothing and skips nothing.
- When the resume point has expired (410 Gone, as an HTTP status or as an ERROR event) the
  informer lists again, and the store's `replace` emits `Deleted` for every object that vanished
  during the gap.
- A watch that stays silent for `inactivity_timeout` seconds is reconnected (see below), so a
  connection dropped by a load balancer or NAT cannot freeze the cache.
- Other failures (429, 5xx, network, RBAC) back off with jitter, 0.8 s doubling to 30 s, and
  honour a 429's retryAfterSeconds.
- Objects are decoded by the caller's `Codec` straight into its projection type, so fields the
  projection does not declare are never materialised. `DictCodec` keeps whole JSON objects.

The pure decisions (`recovery_for`, `retry_after`) are separate functions, tested without I/O.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar, cast

import msgspec
import structlog

from sidecarset.shell import backoff, metrics
from sidecarset.shell.clock import Clock
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import KubeClient
from sidecarset.shell.store import Key, Store, object_key

T = TypeVar("T")
S = TypeVar("S", bound="HasMetadata")

_log = structlog.stdlib.get_logger("sidecarset.informer")

# Why 70 s: the API server sends a bookmark on an idle watch about once a minute, so a healthy
# stream is never silent for much more than 60 s; and its watch cache keeps events for at least
# 75 s (eventFreshDuration), so a watch resumed within 75 s of the last event seen still finds
# its resourceVersion and needs no relist. 70 s sits between the two (kopf #1267/#1268 chose the
# same after years of silently frozen watches behind load balancers).
DEFAULT_INACTIVITY_TIMEOUT = 70.0

# The server ends each watch after timeoutSeconds; spreading it over 5-10 minutes (client-go's
# choice) keeps many informers from reconnecting in lock-step.
_WATCH_SECONDS_MIN = 300

PAGE_SIZE = 500


# -- decoding ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListPage(Generic[T]):
    resource_version: str
    items: list[T]


@dataclass(frozen=True, slots=True)
class WatchEvent(Generic[T]):
    """One watch line. `obj` is set for ADDED/MODIFIED/DELETED; `code`/`message`/`reason` for
    ERROR; `resource_version` for everything but ERROR."""

    type: str
    resource_version: str = ""
    obj: T | None = None
    code: int = 0
    message: str = ""
    reason: str = ""


class Codec(Protocol[T]):
    """Turns list pages and watch lines into projections of type `T`, and names their keys."""

    def decode_list(self, page: bytes) -> ListPage[T]: ...

    def decode_event(self, line: bytes) -> WatchEvent[T]: ...

    def key(self, obj: T) -> Key: ...


class _ListMeta(msgspec.Struct, frozen=True, rename="camel"):
    resource_version: str = ""


class _ListEnvelope(msgspec.Struct, Generic[T], frozen=True, rename="camel"):
    api_version: str = ""
    kind: str = ""
    metadata: _ListMeta = _ListMeta()
    items: list[T] | None = None


class _EventEnvelope(msgspec.Struct, frozen=True):
    type: str
    object: msgspec.Raw = msgspec.Raw(b"{}")


class _ObjectMeta(msgspec.Struct, frozen=True, rename="camel"):
    resource_version: str = ""


class _MetaOnly(msgspec.Struct, frozen=True):
    metadata: _ObjectMeta = _ObjectMeta()


class _Status(msgspec.Struct, frozen=True):
    code: int = 0
    message: str = ""
    reason: str = ""


_events = msgspec.json.Decoder(_EventEnvelope)
_meta_only = msgspec.json.Decoder(_MetaOnly)
_status = msgspec.json.Decoder(_Status)


def _decode_envelope(
    line: bytes, decode_object: Callable[[bytes], T], version_of: Callable[[T], str]
) -> WatchEvent[T]:
    envelope = _events.decode(line)
    match envelope.type:
        case "ERROR":
            status = _status.decode(envelope.object)
            return WatchEvent(
                "ERROR", code=status.code, message=status.message, reason=status.reason
            )
        case "BOOKMARK":
            return WatchEvent(
                "BOOKMARK", _meta_only.decode(envelope.object).metadata.resource_version
            )
        case kind:
            obj = decode_object(envelope.object)
            return WatchEvent(kind, version_of(obj), obj)


JSONObject = dict[str, Any]


class DictCodec:
    """Whole objects as JSON dicts: for small resources, tools and tests.

    List items get the `kind` and `apiVersion` that the API server leaves out of them but puts in
    watch objects, so a relist does not report every object as changed.
    """

    _list = msgspec.json.Decoder(_ListEnvelope[JSONObject])
    _object = msgspec.json.Decoder(JSONObject)

    def decode_list(self, page: bytes) -> ListPage[JSONObject]:
        envelope = self._list.decode(page)
        items = envelope.items or []
        kind = envelope.kind.removesuffix("List")
        if kind and envelope.api_version:
            for item in items:
                item.setdefault("kind", kind)
                item.setdefault("apiVersion", envelope.api_version)
        return ListPage(envelope.metadata.resource_version, items)

    def decode_event(self, line: bytes) -> WatchEvent[JSONObject]:
        return _decode_envelope(
            line,
            self._object.decode,
            lambda obj: str(obj.get("metadata", {}).get("resourceVersion", "")),
        )

    def key(self, obj: JSONObject) -> Key:
        meta = obj.get("metadata", {})
        return object_key(meta.get("namespace"), str(meta.get("name", "")))


class ObjectMetaLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def resource_version(self) -> str: ...


class HasMetadata(Protocol):
    """A projection with `metadata.name` and `metadata.resource_version`; a `namespace` there is
    used for the key when present (cluster-scoped projections may leave it out)."""

    @property
    def metadata(self) -> ObjectMetaLike: ...


class StructCodec(Generic[S]):
    """Decodes straight into the msgspec Struct `item_type`; undeclared fields are skipped."""

    def __init__(self, item_type: type[S]) -> None:
        self._list = msgspec.json.Decoder(_ListEnvelope[item_type])  # type: ignore[valid-type]
        self._object = msgspec.json.Decoder(item_type)

    def decode_list(self, page: bytes) -> ListPage[S]:
        envelope = self._list.decode(page)
        return ListPage(envelope.metadata.resource_version, envelope.items or [])

    def decode_event(self, line: bytes) -> WatchEvent[S]:
        return _decode_envelope(
            line, self._object.decode, lambda obj: obj.metadata.resource_version
        )

    def key(self, obj: S) -> Key:
        return object_key(getattr(obj.metadata, "namespace", None), obj.metadata.name)


# -- decisions --------------------------------------------------------------------------------


class Recovery(StrEnum):
    """What the informer does after a watch (or list) ends."""

    RESUME = "resume"  # watch again at once from the last resourceVersion
    RELIST = "relist"  # the resourceVersion expired: list again at once
    BACK_OFF = "backOff"  # wait, then watch again from the last resourceVersion (or list)
    BACK_OFF_RELIST = "backOffRelist"  # wait, then list again


def recovery_for(failure: BaseException | None, *, listing: bool) -> Recovery:
    """Decide how to go on after a list (`listing`) or watch ended with `failure` (None: the
    server closed the stream at its timeoutSeconds).

    A 410 on a watch means the resume point is too old: relist at once. A 410 while listing (a
    continue token expired mid-list) relists after a pause, so a list that keeps expiring cannot
    spin. A silent watch reconnects at once. Anything that could not be decoded means events may
    have been lost: relist after a pause. Everything else pauses and resumes.
    """
    match failure:
        case None | TimeoutError():
            return Recovery.RESUME
        case errors.Gone():
            return Recovery.BACK_OFF_RELIST if listing else Recovery.RELIST
        case errors.ApiError():
            return Recovery.BACK_OFF
        case _:
            return Recovery.BACK_OFF_RELIST


def retry_after(failure: BaseException | None) -> float:
    """The wait a 429's Status asks for (details.retryAfterSeconds), else 0."""
    if not isinstance(failure, errors.TooManyRequests) or not isinstance(failure.body, dict):
        return 0.0
    details = failure.body.get("details")
    seconds = details.get("retryAfterSeconds") if isinstance(details, dict) else None
    return float(seconds) if isinstance(seconds, int | float) and seconds > 0 else 0.0


@dataclass
class InformerStats:
    """Counters of this informer, for tests and benchmarks; only ever increase. Of these, only
    the relists are exported (`sidecarset_informer_relists_total{resource}`)."""

    lists: int = 0
    """Full lists, the first included."""
    relists: int = 0
    """Lists into a store that was already synced (after a 410 or an undecodable event)."""
    gone: int = 0
    """410 Gone answers, as HTTP status or ERROR event."""
    watch_restarts: int = 0
    """Watches opened after the first, for any reason."""
    inactivity_timeouts: int = 0
    """Watches abandoned because nothing arrived for `inactivity_timeout` seconds."""
    failures: int = 0
    """Lists or watches that failed and were retried after a backoff."""
    events: int = 0
    """Watch events received, bookmarks included."""


def _generator(stream: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    # KubeClient.list_pages and .watch are async generators annotated as AsyncIterator; closing
    # them promptly (aclosing) releases the HTTP connection when a watch is abandoned.
    return cast("AsyncGenerator[bytes, None]", stream)


# -- the informer -----------------------------------------------------------------------------


class Informer(Generic[T]):
    """Keeps `store` equal to `path` (see the module doc). `run()` returns only when cancelled."""

    def __init__(
        self,
        client: KubeClient,
        path: str,
        codec: Codec[T],
        *,
        clock: Clock,
        store: Store[T] | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        inactivity_timeout: float = DEFAULT_INACTIVITY_TIMEOUT,
        page_size: int = PAGE_SIZE,
        resource_version: str = "",
        retry: backoff.JitteredBackoff | None = None,
        draw: Callable[[], float] = random.random,
    ) -> None:
        """`resource_version` resumes a watch without listing first; only meaningful for a
        `store` already filled from that version (a stale one costs one relist)."""
        self.path = path
        self.store: Store[T] = store if store is not None else Store(path)
        self.stats = InformerStats()
        self._client = client
        self._codec = codec
        self._clock = clock
        self._params: dict[str, str] = {}
        if label_selector:
            self._params["labelSelector"] = label_selector
        if field_selector:
            self._params["fieldSelector"] = field_selector
        self._inactivity_timeout = inactivity_timeout
        self._page_size = page_size
        self._rv = resource_version
        self._retry = retry or backoff.JitteredBackoff(draw=draw)
        self._draw = draw
        self._watches = 0
        self._log = _log.bind(informer=path, **self._params)
        self._resource = path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def resource_version(self) -> str:
        """Where the next watch resumes; empty until the first list, and after a 410."""
        return self._rv

    async def run(self) -> None:
        while True:
            listing = not self._rv
            failure: Exception | None = None
            try:
                if listing:
                    await self._list()
                    listing = False
                await self._watch()
            except Exception as err:
                failure = err
            await self._recover(failure, listing=listing)

    async def _recover(self, failure: Exception | None, *, listing: bool) -> None:
        recovery = recovery_for(failure, listing=listing)
        if isinstance(failure, errors.Gone):
            self.stats.gone += 1
        match recovery:
            case Recovery.RESUME:
                if failure is not None:
                    self.stats.inactivity_timeouts += 1
                    self._log.warning(
                        "watch silent, reconnecting", seconds=self._inactivity_timeout
                    )
            case Recovery.RELIST:
                self._log.info("resourceVersion expired, relisting", resource_version=self._rv)
                self._rv = ""
            case Recovery.BACK_OFF | Recovery.BACK_OFF_RELIST:
                self.stats.failures += 1
                if recovery is Recovery.BACK_OFF_RELIST:
                    self._rv = ""
                delay = max(self._retry.next_delay(self._clock.monotonic()), retry_after(failure))
                if isinstance(failure, errors.Unauthorized | errors.Forbidden):
                    self._log.error(  # RBAC or credentials: needs a human, retrying anyway
                        "list/watch not allowed, retrying",
                        error=str(failure),
                        listing=listing,
                        delay=round(delay, 2),
                    )
                elif isinstance(failure, errors.ApiError):
                    self._log.warning(
                        "list/watch failed, retrying",
                        error=str(failure),
                        listing=listing,
                        delay=round(delay, 2),
                    )
                else:
                    self._log.error(
                        "list/watch failed, relisting",
                        exc_info=failure,
                        listing=listing,
                        delay=round(delay, 2),
                    )
                await self._clock.sleep(delay)

    async def _list(self) -> None:
        listed: dict[Key, T] = {}
        version = ""
        pages = _generator(
            self._client.list_pages(self.path, limit=self._page_size, **self._params)
        )
        async with contextlib.aclosing(pages):
            async for raw in pages:
                page = self._codec.decode_list(raw)
                version = page.resource_version
                for obj in page.items:
                    listed[self._codec.key(obj)] = obj
        self.stats.lists += 1
        if self.store.synced.is_set():
            self.stats.relists += 1
            metrics.INFORMER_RELISTS.labels(resource=self._resource).inc()
        before = len(self.store)
        await self.store.replace(listed)
        self._rv = version
        self._log.info("listed", count=len(listed), before=before, resource_version=version)

    async def _watch(self) -> None:
        self._watches += 1
        if self._watches > 1:
            self.stats.watch_restarts += 1
        opened, received = self._clock.monotonic(), self.stats.events
        lines = _generator(
            self._client.watch(
                self.path,
                resource_version=self._rv,
                timeout_seconds=int(_WATCH_SECONDS_MIN * (1.0 + self._draw())),
                inactivity_timeout=self._inactivity_timeout,
                bookmarks=True,
                **self._params,
            )
        )
        async with contextlib.aclosing(lines):
            async for line in lines:
                event = self._codec.decode_event(line)
                self.stats.events += 1
                match event.type:
                    case "ADDED" | "MODIFIED" if event.obj is not None:
                        await self.store.put(self._codec.key(event.obj), event.obj)
                    case "DELETED" if event.obj is not None:
                        await self.store.delete(self._codec.key(event.obj), event.obj)
                    case "BOOKMARK":
                        pass
                    case "ERROR":
                        raise errors.from_response(
                            event.code, {"message": event.message, "reason": event.reason}
                        )
                    case other:
                        self._log.warning("unknown watch event type", type=other)
                if event.resource_version:
                    self._rv = event.resource_version
        if self.stats.events == received and self._clock.monotonic() - opened < 1.0:
            # A watch the server ends at once and empty (a proxy, an overloaded apiserver) would
            # otherwise be reopened in a tight loop; client-go treats it as an error too.
            raise errors.Unavailable(0, f"watch {self.path} closed at once without events")
