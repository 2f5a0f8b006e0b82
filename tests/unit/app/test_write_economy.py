"""Writes a rollout does not need: count-only status changes in quick succession, and rounds
woken by our own status writes."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from sidecarset.app import event_routing, writer
from sidecarset.app.cached_objects import SidecarSetEntry, entry
from sidecarset.app.writer import Writer
from sidecarset.core import model, pod_contract
from sidecarset.core.podview import PodView, podview_from_dict
from sidecarset.shell.store import Added, Deleted, Store, Updated
from tests.unit.podbuilders import SET, V2, make_pod_dict, make_sidecarset
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


# --- pod events: our own SidecarSetUpgradable condition waits for a gathered round -----------


def _pod(rv: str, *, upgradable: str | None = None, ready: bool = True, **kwargs: Any) -> PodView:
    raw = make_pod_dict("p", ready=ready, **kwargs)
    raw["metadata"]["resourceVersion"] = rv  # type: ignore[index]
    if upgradable is not None:
        raw["status"]["conditions"].append(  # type: ignore[index]
            {"type": pod_contract.UPGRADABLE_CONDITION, "status": upgradable, "message": "{}"}
        )
    return podview_from_dict(raw)


def _sidecarsets() -> Store[SidecarSetEntry]:
    store = Store[SidecarSetEntry]("sidecarsets")
    run(store.put(SET, entry({"metadata": {"name": SET}, "spec": {"containers": []}})))
    return store


@pytest.mark.parametrize(
    ("old", "new", "woken"),
    [
        pytest.param(_pod("7"), _pod("8", upgradable="True"), False, id="condition-added"),
        pytest.param(
            _pod("7", upgradable="True"), _pod("8", upgradable="False"), False, id="flipped"
        ),
        pytest.param(_pod("7"), _pod("8"), False, id="nothing-projected"),
        pytest.param(_pod("7"), _pod("8", ready=False, upgradable="True"), True, id="readiness"),
        pytest.param(_pod("7"), _pod("8", spec_image=V2, upgradable="True"), True, id="image"),
        pytest.param(
            _pod("7"), _pod("8", labels={"app": "x"}, upgradable="True"), True, id="labels"
        ),
        pytest.param(
            _pod("7"), _pod("8", sidecar_ready=False, upgradable="True"), True, id="sidecar-status"
        ),
        pytest.param(_pod("7"), _pod("8", restarts=1, upgradable="True"), True, id="restarts"),
        pytest.param(_pod("7"), _pod("8", deleting=True), True, id="deleting"),
    ],
)
def test_a_pod_update_of_only_the_upgradable_condition_waits_for_a_gathered_round(
    old: PodView, new: PodView, woken: bool
) -> None:
    sidecarsets = _sidecarsets()
    event = Updated("default/p", old, new)
    assert list(event_routing.pod_keys(sidecarsets)(event)) == ([SET] if woken else [])
    # The others go to the rounds gathered a few seconds apart: every event has one route.
    later = event_routing.upgradable_condition_keys(sidecarsets)(event)
    assert list(later) == ([] if woken else [SET])


def test_a_new_or_deleted_pod_always_wakes_its_sidecarset() -> None:
    keys = event_routing.pod_keys(_sidecarsets())
    later = event_routing.upgradable_condition_keys(_sidecarsets())
    for event in (Added("default/p", _pod("7")), Deleted("default/p", _pod("7"))):
        assert list(keys(event)) == [SET]
        assert list(later(event)) == []
