"""The SidecarSetUpgradable condition an update earns is queued and written with spare API rate,
derived again from the pod as cached when it goes (behaviour.md §9.3)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from typing import Any

from sidecarset.app.writer import Writer
from sidecarset.core import pod_contract, rollout
from sidecarset.core.podview import PodView, podview_from_dict
from sidecarset.shell.store import Store
from tests.unit.podbuilders import SET, make_pod_dict, make_sidecarset, outdated_pod
from tests.unit.private_loop import run

NOW = datetime(2025, 3, 1, tzinfo=UTC)


class RecordingClient:
    """Records each request: (method, path, decoded body, spare)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any, bool]] = []

    async def raw(
        self, method: str, path: str, *, body: bytes, spare: bool = False, **_: object
    ) -> bytes:
        self.sent.append((method, path, json.loads(body), spare))
        return b"{}"

    def conditions(self) -> list[tuple[str, Any, bool]]:
        return [
            (p, b["status"]["conditions"][0], s)
            for _m, p, b, s in self.sent
            if p.endswith("/status")
        ]


def writer_with(*pods: PodView) -> tuple[Writer, RecordingClient]:
    client = RecordingClient()
    store = Store[PodView]("pods")
    for pod in pods:
        run(store.put(f"{pod.key.namespace}/{pod.key.name}", pod))
    return Writer(client, store, namespace="ns", now=lambda: NOW), client  # type: ignore[arg-type]


async def drain(w: Writer) -> None:
    """Run the condition writer until its queue is empty and its writes have landed."""
    task = asyncio.create_task(w.write_queued_conditions())
    for _ in range(100):
        await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def with_condition(name: str, message: dict[str, bool], status: str = "True") -> PodView:
    raw = make_pod_dict(name)
    raw["status"]["conditions"].append(  # type: ignore[index]
        {
            "type": pod_contract.UPGRADABLE_CONDITION,
            "status": status,
            "reason": pod_contract.ALL_UPGRADABLE_REASON,
            "message": json.dumps(message, separators=(",", ":")),
        }
    )
    return podview_from_dict(raw)


def test_the_pod_update_goes_at_once_and_its_condition_later_with_spare_rate() -> None:
    pod = outdated_pod("p")
    w, client = writer_with(pod)
    update = rollout.pod_update(make_sidecarset(), pod, NOW)

    assert run(w.update_pod(SET, update))

    assert [(m, p.rsplit("/", 1)[-1], s) for m, p, _b, s in client.sent] == [("PATCH", "p", False)]
    assert w.conditions_waiting() == 1
    run(drain(w))
    [(path, condition, spare)] = client.conditions()
    assert path.endswith("/pods/p/status")
    assert spare
    assert (condition["status"], condition["message"]) == ("True", f'{{"{SET}":true}}')
    assert w.conditions_waiting() == 0


def test_two_sidecarsets_verdicts_on_one_pod_become_one_write_keeping_both() -> None:
    pod = outdated_pod("p")
    w, client = writer_with(pod)
    for name in ("a", "b"):
        condition = rollout.upgradable_condition_update(pod, name, True, NOW)
        assert condition is not None
        w.queue_condition(condition)

    run(drain(w))

    [(_path, condition, _spare)] = client.conditions()
    assert json.loads(condition["message"]) == {"a": True, "b": True}


def test_a_verdict_written_meanwhile_by_another_sidecarset_is_kept() -> None:
    before = outdated_pod("p")
    condition = rollout.upgradable_condition_update(before, "a", True, NOW)
    assert condition is not None
    w, client = writer_with(with_condition("p", {"b": False}, status="False"))
    w.queue_condition(condition)  # decided before b's verdict reached the cache

    run(drain(w))

    [(_path, written, _spare)] = client.conditions()
    assert json.loads(written["message"]) == {"a": True, "b": False}
    assert written["status"] == "False"


def test_nothing_is_written_for_a_deleted_pod_or_a_condition_that_already_says_it() -> None:
    gone = outdated_pod("gone")
    said = with_condition("said", {"a": True})
    w, client = writer_with(said)
    for pod in (gone, outdated_pod("said")):
        condition = rollout.upgradable_condition_update(pod, "a", True, NOW)
        assert condition is not None
        w.queue_condition(condition)

    run(drain(w))

    assert client.conditions() == []
    assert w.conditions_waiting() == 0


def test_a_verdict_written_at_once_is_not_overwritten_by_an_older_queued_one() -> None:
    pod = outdated_pod("p")
    w, client = writer_with(pod)
    earlier = rollout.upgradable_condition_update(pod, "a", True, NOW)
    later = rollout.upgradable_condition_update(pod, "a", False, NOW)
    assert earlier is not None
    assert later is not None
    w.queue_condition(earlier)  # updated, condition waiting for spare rate

    run(w.set_condition(later))  # then found not upgradable: written in its round
    run(drain(w))

    assert [(c["status"], json.loads(c["message"])) for _p, c, _s in client.conditions()] == [
        ("False", {"a": False})
    ]
    assert w.conditions_waiting() == 0
