"""The informer's list/watch loop against a scripted stand-in for KubeClient's two streams.

The stand-in replays canned pages and watch lines; the real API server is exercised in
tests/integration/test_informer_and_leader.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from structlog.testing import capture_logs

from sidecarset.shell import backoff, informer
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import KubeClient
from sidecarset.shell.store import Deleted, Event
from tests.unit.shell.clocks import LoopClock

pytestmark = pytest.mark.looptime

JSONObject = dict[str, Any]
Step = bytes | float | Exception  # a line, a pause in seconds, or a failure


def cm(name: str, rv: str, data: str = "") -> JSONObject:
    return {
        "metadata": {"namespace": "ns", "name": name, "resourceVersion": rv},
        "data": {"v": data},
    }


def page(rv: str, *items: JSONObject, cont: str = "") -> bytes:
    return json.dumps(
        {"metadata": {"continue": cont, "resourceVersion": rv}, "items": list(items)}
    ).encode()


def event(kind: str, obj: JSONObject) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode()


def bookmark(rv: str) -> bytes:
    return event("BOOKMARK", {"metadata": {"resourceVersion": rv}})


def expired() -> bytes:
    return event(
        "ERROR",
        {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"},
    )


class ScriptedKube:
    """Answers each list and watch call with the next scripted answer; then hangs like an idle
    watch (until cancelled)."""

    def __init__(self, lists: list[list[bytes] | Exception], watches: list[list[Step]]) -> None:
        self.lists, self.watches = lists, watches
        self.list_calls: list[JSONObject] = []
        self.list_times: list[float] = []
        self.watch_calls: list[JSONObject] = []
        self.idle = asyncio.Event()

    async def list_pages(
        self, path: str, *, limit: int = 500, **params: str | int
    ) -> AsyncIterator[bytes]:
        self.list_calls.append({"path": path, "limit": limit, **params})
        self.list_times.append(asyncio.get_running_loop().time())
        answer = self.lists.pop(0)
        if isinstance(answer, Exception):
            raise answer
        for raw in answer:
            yield raw

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
        self.watch_calls.append(
            {
                "rv": resource_version,
                "at": asyncio.get_running_loop().time(),
                "bookmarks": bookmarks,
                "timeout": timeout_seconds,
                "inactivity": inactivity_timeout,
                **params,
            }
        )
        if not self.watches:
            self.idle.set()
            await asyncio.Event().wait()
        for step in self.watches.pop(0):
            if isinstance(step, Exception):
                raise step
            if isinstance(step, float):
                await asyncio.sleep(step)
                continue
            yield step


async def run_until_idle(kube: ScriptedKube, **options: Any) -> informer.Informer[JSONObject]:
    """Run an informer over `kube` until every scripted answer is used, then stop it."""
    subject: informer.Informer[JSONObject] = informer.Informer(
        cast(KubeClient, kube),
        "/api/v1/namespaces/ns/configmaps",
        informer.DictCodec(),
        clock=LoopClock(),
        retry=backoff.JitteredBackoff(draw=lambda: 0.0),
        draw=lambda: 0.0,
        **options,
    )
    task = asyncio.create_task(subject.run())
    await asyncio.wait_for(kube.idle.wait(), timeout=3600)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return subject


async def test_lists_every_page_then_watches_from_the_lists_version_with_bookmarks() -> None:
    kube = ScriptedKube(
        lists=[[page("10", cm("a", "5"), cont="t"), page("10", cm("b", "6"))]], watches=[]
    )
    subject = await run_until_idle(kube, label_selector="app=x", field_selector="k=v")
    assert sorted(subject.store.keys()) == ["ns/a", "ns/b"]
    assert subject.store.synced.is_set()
    assert kube.list_calls == [
        {
            "path": "/api/v1/namespaces/ns/configmaps",
            "limit": 500,
            "labelSelector": "app=x",
            "fieldSelector": "k=v",
        }
    ]
    [watch] = kube.watch_calls
    assert (watch["rv"], watch["bookmarks"], watch["inactivity"]) == ("10", True, 70.0)
    assert (watch["labelSelector"], watch["fieldSelector"]) == ("app=x", "k=v")
    assert 300 <= watch["timeout"] <= 600


async def test_events_update_the_store_and_bookmarks_move_the_resume_point() -> None:
    kube = ScriptedKube(
        lists=[[page("10", cm("a", "5"))]],
        watches=[
            [
                event("ADDED", cm("b", "11")),
                event("MODIFIED", cm("a", "12", "x")),
                event("DELETED", cm("b", "13")),
                bookmark("20"),
            ],
            [event("MODIFIED", cm("a", "21", "y"))],
        ],
    )
    subject = await run_until_idle(kube)
    assert subject.store.keys() == ["ns/a"]
    assert subject.store.get("ns/a") == cm("a", "21", "y")
    assert [call["rv"] for call in kube.watch_calls] == ["10", "20", "21"]
    assert subject.resource_version == "21"
    assert subject.stats.lists == 1
    assert subject.stats.watch_restarts == 2


@pytest.mark.parametrize(
    "expiry",
    [pytest.param(expired(), id="error-event"), pytest.param(errors.Gone(410, "gone"), id="http")],
)
async def test_an_expired_resume_point_relists_and_deletes_what_vanished_in_the_gap(
    expiry: Step,
) -> None:
    kube = ScriptedKube(
        lists=[[page("10", cm("a", "5"), cm("b", "6"))], [page("30", cm("b", "6"), cm("c", "25"))]],
        watches=[[bookmark("15"), expiry]],
    )
    subject = await run_until_idle(kube)
    assert sorted(subject.store.keys()) == ["ns/b", "ns/c"]
    assert subject.stats.gone == 1
    assert subject.stats.relists == 1
    assert [call["rv"] for call in kube.watch_calls] == ["10", "30"]
    assert kube.watch_calls[1]["at"] == kube.watch_calls[0]["at"]  # relisted without pausing


async def test_a_relist_delivers_deleted_events_to_handlers() -> None:
    kube = ScriptedKube(
        lists=[[page("10", cm("a", "5"), cm("b", "6"))], [page("30", cm("b", "6"))]],
        watches=[[0.5, expired()]],
    )
    seen: list[Event[JSONObject]] = []
    subject: informer.Informer[JSONObject] = informer.Informer(
        cast(KubeClient, kube),
        "/api/v1/namespaces/ns/configmaps",
        informer.DictCodec(),
        clock=LoopClock(),
        draw=lambda: 0.0,
    )
    await subject.store.subscribe(seen.append)
    task = asyncio.create_task(subject.run())
    await asyncio.wait_for(kube.idle.wait(), timeout=3600)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [type(e).__name__ + ":" + e.key for e in seen] == [
        "Added:ns/a",
        "Added:ns/b",
        "Deleted:ns/a",
    ]
    assert seen[-1] == Deleted("ns/a", cm("a", "5"))


async def test_a_silent_watch_is_resumed_at_once_from_the_same_point() -> None:
    kube = ScriptedKube(
        lists=[[page("10")]], watches=[[bookmark("12"), TimeoutError("silent for 70s")]]
    )
    with capture_logs() as logs:
        subject = await run_until_idle(kube)
    assert [call["rv"] for call in kube.watch_calls] == ["10", "12"]
    assert kube.watch_calls[1]["at"] == kube.watch_calls[0]["at"]
    assert subject.stats.inactivity_timeouts == 1
    assert subject.stats.lists == 1
    assert [log["event"] for log in logs if log["log_level"] != "info"] == [
        "watch silent, reconnecting"
    ]


async def test_server_errors_back_off_with_growing_delays_and_resume_without_relisting() -> None:
    down = errors.Unavailable(503, "apiserver down")
    kube = ScriptedKube(lists=[[page("10")]], watches=[[down], [down], [down]])
    with capture_logs():
        subject = await run_until_idle(kube)
    starts = [call["at"] for call in kube.watch_calls]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(starts)]
    assert gaps == [0.8, 1.6, 3.2]
    assert {call["rv"] for call in kube.watch_calls} == {"10"}
    assert subject.stats.failures == 3
    assert subject.stats.lists == 1


async def test_a_throttled_watch_waits_as_long_as_the_server_asks() -> None:
    throttled = errors.TooManyRequests(429, "slow", body={"details": {"retryAfterSeconds": 7}})
    kube = ScriptedKube(lists=[[page("10")]], watches=[[throttled]])
    with capture_logs():
        await run_until_idle(kube)
    assert kube.watch_calls[1]["at"] - kube.watch_calls[0]["at"] == pytest.approx(7.0)


async def test_a_list_that_fails_is_retried_after_a_pause() -> None:
    kube = ScriptedKube(
        lists=[
            errors.Gone(410, "continue expired"),
            errors.Unavailable(0, "x"),
            [page("10", cm("a", "1"))],
        ],
        watches=[],
    )
    with capture_logs():
        subject = await run_until_idle(kube)
    assert subject.store.keys() == ["ns/a"]
    assert subject.stats.gone == 1
    assert subject.stats.lists == 1
    assert len(kube.list_calls) == 3
    assert kube.watch_calls[0]["at"] - kube.list_times[0] == pytest.approx(0.8 + 1.6)


async def test_an_undecodable_event_is_logged_and_followed_by_a_relist() -> None:
    kube = ScriptedKube(
        lists=[[page("10", cm("a", "1"))], [page("20", cm("a", "2"))]], watches=[[b"{not json"]]
    )
    with capture_logs() as logs:
        subject = await run_until_idle(kube)
    assert subject.store.get("ns/a") == cm("a", "2")
    assert subject.stats.relists == 1
    assert [log["event"] for log in logs if log["log_level"] == "error"] == [
        "list/watch failed, relisting"
    ]


async def test_resuming_from_a_given_version_skips_the_first_list() -> None:
    kube = ScriptedKube(lists=[], watches=[[event("ADDED", cm("a", "6"))]])
    subject = await run_until_idle(kube, resource_version="5")
    assert kube.list_calls == []
    assert [call["rv"] for call in kube.watch_calls] == ["5", "6"]
    assert subject.store.keys() == ["ns/a"]


async def test_a_watch_the_server_ends_at_once_and_empty_is_retried_after_a_pause() -> None:
    kube = ScriptedKube(lists=[[page("10")]], watches=[[], [], [30.0]])
    with capture_logs():
        subject = await run_until_idle(kube)
    starts = [call["at"] for call in kube.watch_calls]
    assert [round(b - a, 3) for a, b in itertools.pairwise(starts)] == [0.8, 1.6, 30.0]
    assert subject.stats.failures == 2
