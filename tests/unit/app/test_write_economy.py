"""Writes a rollout does not need: count-only status changes in quick succession, and rounds
woken by our own status writes."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from sidecarset.app import event_routing, writer
from sidecarset.app.cached_objects import SidecarSetEntry, entry
from sidecarset.app.writer import Writer
from sidecarset.core import model
from sidecarset.core.podview import PodView
from sidecarset.shell.store import Added, Store, Updated
from tests.unit.podbuilders import make_sidecarset
from tests.unit.private_loop import run


class RecordingClient:
    def __init__(self) -> None:
        self.patched: list[tuple[str, object]] = []

    async def patch(self, path: str, body: object, **_: object) -> dict[str, Any]:
        self.patched.append((path, body))
        return {}


def status(**fields: Any) -> model.SidecarSetStatus:
    base: dict[str, Any] = {"observedGeneration": 1, "matchedPods": 10, "updatedPods": 1}
    return msgspec.convert({**base, **fields}, model.SidecarSetStatus)


def as_raw(st: model.SidecarSetStatus) -> dict[str, Any]:
    return dict(msgspec.to_builtins(st))


def test_count_changes_in_quick_succession_wait_for_the_interval() -> None:
    client = RecordingClient()
    w = Writer(client, Store[PodView]("pods"), namespace="ns")  # type: ignore[arg-type]
    sidecarset = make_sidecarset()
    assert run(w.status(sidecarset, {}, status())) is None
    deferred = run(w.status(sidecarset, as_raw(status()), status(updatedPods=2)))
    assert deferred is not None
    assert 0 < deferred <= writer.STATUS_MIN_INTERVAL
    assert len(client.patched) == 1


def test_a_new_generation_is_written_at_once() -> None:
    client = RecordingClient()
    w = Writer(client, Store[PodView]("pods"), namespace="ns")  # type: ignore[arg-type]
    sidecarset = make_sidecarset()
    run(w.status(sidecarset, {}, status()))
    again = run(w.status(sidecarset, as_raw(status()), status(observedGeneration=2)))
    assert again is None
    assert len(client.patched) == 2


def test_an_unchanged_status_is_not_written() -> None:
    client = RecordingClient()
    w = Writer(client, Store[PodView]("pods"), namespace="ns")  # type: ignore[arg-type]
    assert run(w.status(make_sidecarset(), as_raw(status()), status())) is None
    assert client.patched == []


def _entry(**changes: Any) -> SidecarSetEntry:
    raw: dict[str, Any] = {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "SidecarSet",
        "metadata": {"name": "s", "generation": 1, "resourceVersion": "1"},
        "spec": {"selector": {"matchLabels": {"app": "a"}}, "containers": []},
        "status": {"matchedPods": 1},
    }
    for key, value in changes.items():
        raw[key] = {**raw[key], **value}
    return entry(raw)


@pytest.mark.parametrize(
    ("changes", "woken"),
    [
        pytest.param(
            {"status": {"matchedPods": 2}, "metadata": {"resourceVersion": "2"}},
            False,
            id="status-only",
        ),
        pytest.param(
            {"metadata": {"generation": 2, "resourceVersion": "2"}}, True, id="new-generation"
        ),
        pytest.param(
            {"metadata": {"annotations": {"a": "b"}, "resourceVersion": "2"}},
            True,
            id="annotation",
        ),
    ],
)
def test_only_changes_beyond_the_status_wake_a_round(changes: dict[str, Any], woken: bool) -> None:
    event = Updated("s", _entry(), _entry(**changes))
    assert list(event_routing.sidecarset_keys(event)) == (["s"] if woken else [])


def test_a_new_sidecarset_wakes_a_round() -> None:
    assert list(event_routing.sidecarset_keys(Added("s", _entry()))) == ["s"]
