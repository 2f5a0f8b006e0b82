"""Store: contents, indexes, in-order typed events and the meaning of `synced`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from structlog.testing import capture_logs

from sidecarset.shell.store import Added, Deleted, Event, Store, Updated, object_key

pytestmark = pytest.mark.looptime


@dataclass(frozen=True)
class Obj:
    name: str
    labels: tuple[str, ...] = ()
    version: int = 1


@dataclass
class Recorder:
    """A handler that records events and the store's view of the key at delivery."""

    store: Store[Obj]
    events: list[Event[Obj]] = field(default_factory=list)
    seen: list[Obj | None] = field(default_factory=list)

    def __call__(self, event: Event[Obj]) -> None:
        self.events.append(event)
        self.seen.append(self.store.get(event.key))


async def recorded_store() -> tuple[Store[Obj], Recorder]:
    store: Store[Obj] = Store("test")
    recorder = Recorder(store)
    await store.subscribe(recorder)
    return store, recorder


def test_object_keys_are_namespace_slash_name_or_just_the_name() -> None:
    assert object_key("ns", "a") == "ns/a"
    assert object_key(None, "a") == "a"
    assert object_key("", "a") == "a"


async def test_putting_a_new_key_then_a_changed_one_emits_added_then_updated() -> None:
    store, recorder = await recorded_store()
    await store.put("a", Obj("a"))
    await store.put("a", Obj("a", version=2))
    assert recorder.events == [
        Added("a", Obj("a")),
        Updated("a", Obj("a"), Obj("a", version=2)),
    ]
    assert store.get("a") == Obj("a", version=2)


async def test_putting_an_unchanged_projection_emits_nothing() -> None:
    store, recorder = await recorded_store()
    await store.put("a", Obj("a"))
    await store.put("a", Obj("a"))
    assert recorder.events == [Added("a", Obj("a"))]


async def test_handlers_see_the_store_as_of_the_event_they_receive() -> None:
    store, recorder = await recorded_store()
    await store.put("a", Obj("a"))
    await store.put("a", Obj("a", version=2))
    await store.delete("a")
    assert recorder.seen == [Obj("a"), Obj("a", version=2), None]


async def test_deleting_emits_the_last_known_state_and_unknown_keys_are_ignored() -> None:
    store, recorder = await recorded_store()
    await store.put("a", Obj("a"))
    await store.put("b", Obj("b"))
    await store.delete("a")
    await store.delete("b", last=Obj("b", version=9))
    await store.delete("missing")
    assert recorder.events[2:] == [Deleted("a", Obj("a")), Deleted("b", Obj("b", version=9))]
    assert len(store) == 0


async def test_replace_deletes_what_vanished_adds_what_is_new_and_updates_what_changed() -> None:
    store, recorder = await recorded_store()
    for name in ("gone", "kept", "changed"):
        await store.put(name, Obj(name))
    recorder.events.clear()
    await store.replace(
        {"kept": Obj("kept"), "changed": Obj("changed", version=2), "new": Obj("new")}
    )
    assert recorder.events == [
        Deleted("gone", Obj("gone")),
        Updated("changed", Obj("changed"), Obj("changed", version=2)),
        Added("new", Obj("new")),
    ]
    assert sorted(store.keys()) == ["changed", "kept", "new"]


async def test_synced_is_set_only_after_handlers_have_received_the_first_list() -> None:
    store: Store[Obj] = Store("test")
    synced_during_delivery: list[bool] = []

    async def slow_handler(event: Event[Obj]) -> None:
        await asyncio.sleep(5)
        synced_during_delivery.append(store.synced.is_set())

    await store.subscribe(slow_handler)
    task = asyncio.create_task(store.replace({"a": Obj("a"), "b": Obj("b")}))
    await asyncio.sleep(7)
    assert "b" in store  # stored...
    assert not store.synced.is_set()  # ...but not yet delivered
    await task
    assert store.synced.is_set()
    assert synced_during_delivery == [False, False]


async def test_an_empty_first_list_still_marks_the_store_synced() -> None:
    store: Store[Obj] = Store("test")
    await store.replace({})
    assert store.synced.is_set()


async def test_sync_and_async_handlers_receive_every_event_in_order() -> None:
    store: Store[Obj] = Store("test")
    sync_seen: list[str] = []
    async_seen: list[str] = []

    def sync_handler(event: Event[Obj]) -> None:
        sync_seen.append(f"{type(event).__name__}:{event.key}")

    async def async_handler(event: Event[Obj]) -> None:
        await asyncio.sleep(1)
        async_seen.append(f"{type(event).__name__}:{event.key}")

    await store.subscribe(sync_handler)
    await store.subscribe(async_handler)
    await asyncio.gather(
        store.put("a", Obj("a")),
        store.put("a", Obj("a", version=2)),
        store.delete("a"),
    )
    assert sync_seen == async_seen == ["Added:a", "Updated:a", "Deleted:a"]


async def test_a_failing_handler_is_logged_and_does_not_stop_the_others() -> None:
    store, recorder = await recorded_store()

    def broken(event: Event[Obj]) -> None:
        raise ValueError("bug")

    await store.subscribe(broken)
    await store.subscribe(recorder)  # a second recorder, after the broken handler
    recorder.events.clear()
    with capture_logs() as logs:
        await store.put("a", Obj("a"))
    assert recorder.events == [Added("a", Obj("a")), Added("a", Obj("a"))]
    assert [(log["event"], log["key"]) for log in logs] == [("store handler failed", "a")]


async def test_a_late_subscriber_first_receives_everything_already_stored() -> None:
    store: Store[Obj] = Store("test")
    await store.put("a", Obj("a"))
    await store.put("b", Obj("b"))
    recorder = Recorder(store)
    await store.subscribe(recorder)
    await store.put("a", Obj("a", version=2))
    assert recorder.events == [
        Added("a", Obj("a")),
        Added("b", Obj("b")),
        Updated("a", Obj("a"), Obj("a", version=2)),
    ]


async def test_a_late_subscriber_never_sees_an_update_before_its_replay() -> None:
    store: Store[Obj] = Store("test")
    await store.put("a", Obj("a"))

    async def slow(event: Event[Obj]) -> None:
        await asyncio.sleep(1)

    await store.subscribe(slow)
    recorder = Recorder(store)
    writer = asyncio.create_task(store.put("a", Obj("a", version=2)))
    await asyncio.sleep(0.5)  # the writer is delivering to `slow`, store already updated
    await store.subscribe(recorder)
    await writer
    await store.put("a", Obj("a", version=3))
    assert [type(event).__name__ for event in recorder.events] == ["Added", "Updated"]
    assert recorder.events[0] == Added("a", Obj("a", version=2))


async def test_an_index_finds_objects_by_every_value_they_are_filed_under() -> None:
    store: Store[Obj] = Store("test")
    store.add_index("label", lambda obj: obj.labels)
    await store.put("a", Obj("a", labels=("x", "y")))
    await store.put("b", Obj("b", labels=("y",)))
    await store.put("c", Obj("c"))
    assert [obj.name for obj in store.by_index("label", "y")] == ["a", "b"]
    assert store.keys_by_index("label", "x") == {"a"}
    assert store.by_index("label", "z") == []


async def test_an_index_follows_updates_and_deletions() -> None:
    store: Store[Obj] = Store("test")
    store.add_index("label", lambda obj: obj.labels)
    await store.put("a", Obj("a", labels=("x",)))
    await store.put("a", Obj("a", labels=("y",), version=2))
    assert store.by_index("label", "x") == []
    assert store.keys_by_index("label", "y") == {"a"}
    await store.replace({})
    assert store.keys_by_index("label", "y") == frozenset()


async def test_an_index_added_later_covers_objects_already_stored() -> None:
    store: Store[Obj] = Store("test")
    await store.put("a", Obj("a", labels=("x",)))
    store.add_index("label", lambda obj: obj.labels)
    assert store.keys_by_index("label", "x") == {"a"}


async def test_a_failing_index_function_leaves_the_object_stored_and_logs_it() -> None:
    store: Store[Obj] = Store("test")

    def index(obj: Obj) -> tuple[str, ...]:
        if obj.name == "bad":
            raise KeyError("labels")
        return obj.labels

    store.add_index("label", index)
    with capture_logs() as logs:
        await store.put("bad", Obj("bad", labels=("x",)))
        await store.put("good", Obj("good", labels=("x",)))
    assert store.get("bad") == Obj("bad", labels=("x",))
    assert store.keys_by_index("label", "x") == {"good"}
    assert [(log["event"], log["key"]) for log in logs] == [("store index failed", "bad")]


def test_an_unknown_index_is_an_error() -> None:
    store: Store[Obj] = Store("test")
    with pytest.raises(KeyError):
        store.by_index("nope", "x")
