"""Store: the informer's cache of one resource, key -> projection, with secondary indexes and
typed change events for the handlers that turn changes into work.

Guarantees:

- Handlers see `Added`, `Updated` and `Deleted` for one key in the order the changes were
  stored, each after the store already holds the new state, so a handler reading the store sees
  the world as of that event. Events are delivered one at a time, across all keys.
- An event means the projection changed (`old != new`): a watch event or relist that changes
  nothing the projection keeps is stored silently.
- `replace` (a relist) emits `Deleted` for every key absent from the new list: nothing that
  vanished while the watch was down is left behind. No tombstones: `Deleted.old` is the last
  state known.
- `synced` is set once the first `replace` is stored *and* delivered to every handler.
- A handler subscribed late first receives `Added` for every object already stored.

Readers (`get`, `by_index`, ...) are plain synchronous calls: on one event loop nothing changes
the store while a reader runs, so no lock is needed to read. From another thread (the webhook
server's, `shell.threaded_server`) only `get`, `__contains__`, `__len__`, `keys`, `values` and
`items` may be called: each is one C-level dict operation, which the GIL makes atomic, so such a
reader sees the store before or after a change, never half way. `by_index` reads an index and
then the items, and is for the owning loop only.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

import structlog

T = TypeVar("T")

Key: TypeAlias = str
"""`namespace/name`, or `name` for cluster-scoped objects (see `object_key`)."""

IndexFunc: TypeAlias = Callable[[T], Iterable[str]]
"""Maps an object to the index values it is filed under (none, one or many)."""

log = structlog.stdlib.get_logger("sidecarset.store")


def object_key(namespace: str | None, name: str) -> Key:
    """The store key: `namespace/name`, or `name` when the object is cluster-scoped."""
    return f"{namespace}/{name}" if namespace else name


@dataclass(frozen=True, slots=True)
class Added(Generic[T]):
    key: Key
    new: T


@dataclass(frozen=True, slots=True)
class Updated(Generic[T]):
    key: Key
    old: T
    new: T


@dataclass(frozen=True, slots=True)
class Deleted(Generic[T]):
    key: Key
    old: T


Event: TypeAlias = Added[T] | Updated[T] | Deleted[T]
Handler: TypeAlias = Callable[[Event[T]], Awaitable[None] | None]
"""Called with each event; may be sync or async. The informer waits for it, so it should only
map the event to work (queue keys), and it must not subscribe to the same store."""


def replace_events(current: Mapping[Key, T], listed: Mapping[Key, T]) -> list[Event[T]]:
    """The events that turn `current` into `listed`: deletions first (in key order), then
    additions and changes in list order. Unchanged objects produce nothing."""
    events: list[Event[T]] = [
        Deleted(key, old) for key, old in sorted(current.items()) if key not in listed
    ]
    for key, new in listed.items():
        if key not in current:
            events.append(Added(key, new))
        elif current[key] != new:
            events.append(Updated(key, current[key], new))
    return events


class Store(Generic[T]):
    """key -> projection, secondary indexes, and in-order change events (see module doc)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.synced = asyncio.Event()
        self._items: dict[Key, T] = {}
        self._indexers: dict[str, IndexFunc[T]] = {}
        self._indexes: dict[str, dict[str, set[Key]]] = {}
        self._filed: dict[str, dict[Key, tuple[str, ...]]] = {}  # what each key is filed under
        self._handlers: list[Handler[T]] = []
        self._delivering = asyncio.Lock()

    # -- reading --------------------------------------------------------------------------

    def get(self, key: Key) -> T | None:
        return self._items.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Key]:
        return iter(list(self._items))

    def keys(self) -> list[Key]:
        return list(self._items)

    def values(self) -> list[T]:
        return list(self._items.values())

    def items(self) -> list[tuple[Key, T]]:
        return list(self._items.items())

    def by_index(self, name: str, value: str) -> list[T]:
        """Objects filed under `value` in index `name`, in key order. Unknown index: KeyError."""
        return [self._items[key] for key in sorted(self.keys_by_index(name, value))]

    def has_index(self, name: str) -> bool:
        return name in self._indexers

    def keys_by_index(self, name: str, value: str) -> frozenset[Key]:
        return frozenset(self._indexes[name].get(value, ()))

    # -- configuration --------------------------------------------------------------------

    def add_index(self, name: str, index: IndexFunc[T]) -> None:
        """File every object (stored now or later) under the values `index` returns."""
        if name in self._indexers:
            raise ValueError(f"store {self.name}: index {name!r} already exists")
        self._indexers[name] = index
        self._indexes[name] = {}
        self._filed[name] = {}
        for key, obj in self._items.items():
            self._file(name, key, obj)

    async def subscribe(self, handler: Handler[T]) -> None:
        """Deliver every later event to `handler`, after `Added` for each object stored now."""
        async with self._delivering:
            for key, obj in list(self._items.items()):
                await self._call(handler, Added(key, obj))
            self._handlers.append(handler)

    # -- writing (the informer) -----------------------------------------------------------

    async def put(self, key: Key, obj: T) -> None:
        """Store `obj`; emit `Added`, or `Updated` if it differs from what was stored."""
        async with self._delivering:
            if key not in self._items:
                await self._apply(Added(key, obj))
            elif self._items[key] != obj:
                await self._apply(Updated(key, self._items[key], obj))

    async def delete(self, key: Key, last: T | None = None) -> None:
        """Forget `key`; emit `Deleted` with `last` (the final state, if the caller has it) or
        else the stored object. Deleting an unknown key does nothing."""
        async with self._delivering:
            if key in self._items:
                old = self._items[key] if last is None else last
                await self._apply(Deleted(key, old))

    async def replace(self, listed: Mapping[Key, T]) -> None:
        """Make the store hold exactly `listed` (a full list); then mark the store synced."""
        async with self._delivering:
            for event in replace_events(self._items, listed):
                await self._apply(event)
            self.synced.set()

    # -- internals ------------------------------------------------------------------------

    async def _apply(self, event: Event[T]) -> None:
        match event:
            case Added(key, new) | Updated(key, _, new):
                self._unfile(key)
                self._items[key] = new
                for name in self._indexers:
                    self._file(name, key, new)
            case Deleted(key, _):
                self._unfile(key)
                del self._items[key]
        for handler in list(self._handlers):
            await self._call(handler, event)

    async def _call(self, handler: Handler[T], event: Event[T]) -> None:
        try:
            result = handler(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            # One broken handler must not stop the cache or the other handlers.
            log.exception(
                "store handler failed", store=self.name, key=event.key, change=type(event).__name__
            )

    def _file(self, name: str, key: Key, obj: T) -> None:
        try:
            values = tuple(self._indexers[name](obj))
        except Exception:
            # The object stays stored (and visible by key); only this index misses it.
            log.exception("store index failed", store=self.name, index=name, key=key)
            values = ()
        if not values:
            return
        self._filed[name][key] = values
        index = self._indexes[name]
        for value in values:
            index.setdefault(value, set()).add(key)

    def _unfile(self, key: Key) -> None:
        for name, filed in self._filed.items():
            index = self._indexes[name]
            for value in filed.pop(key, ()):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]
