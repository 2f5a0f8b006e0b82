"""The writer's ControllerRevision bytes and its handling of revisions it cannot update."""

from __future__ import annotations

import json
from typing import Any

from sidecarset.app.writer import Writer
from sidecarset.core import pod_contract, revisions
from sidecarset.core.podview import PodView
from sidecarset.shell.kube import errors
from sidecarset.shell.store import Store
from tests.unit.podbuilders import make_sidecarset

# Go's encoding/json form: compact, sorted keys, HTML characters escaped.
DATA = '{"spec":{"$patch":"replace","containers":[{"image":"a\\u003cb","name":"s"}]}}'


class RecordingClient:
    """Records requests; PATCH answers with `patch_error` when set."""

    def __init__(self, patch_error: errors.ApiError | None = None) -> None:
        self.created: list[object] = []
        self.patched: list[tuple[str, object]] = []
        self.patch_error = patch_error

    async def create(self, path: str, body: object) -> dict[str, Any]:
        self.created.append(body)
        return {}

    async def patch(self, path: str, body: object, **_: object) -> dict[str, Any]:
        self.patched.append((path, body))
        if self.patch_error is not None:
            raise self.patch_error
        return {}


def writer(client: RecordingClient) -> Writer:
    return Writer(client, Store[PodView]("pods"), namespace="sidecarset-system")  # type: ignore[arg-type]


def decision(action: revisions.RevisionAction, **extra: Any) -> revisions.RevisionDecision:
    return revisions.RevisionDecision(
        action=action, name="set-1234", revision=3, collision_count=0, data=DATA, **extra
    )


async def test_a_new_revision_carries_its_data_bytes_verbatim() -> None:
    client = RecordingClient()
    await writer(client).record_revision(
        make_sidecarset(), decision(revisions.RevisionAction.CREATE), ()
    )
    [body] = client.created
    assert isinstance(body, bytes)
    assert b'"data":' + DATA.encode() + b"," in body
    assert json.loads(body)["revision"] == 3


async def test_a_revision_that_cannot_be_renumbered_does_not_stop_the_round() -> None:
    refused = errors.Invalid(422, "data: Invalid value: ...: field is immutable")
    client = RecordingClient(patch_error=refused)
    await writer(client).record_revision(
        make_sidecarset(),
        decision(revisions.RevisionAction.RENUMBER, custom_version_label="v2"),
        (),
    )
    assert [body for _, body in client.patched] == [
        {"revision": 3},
        {"metadata": {"labels": {pod_contract.CUSTOM_VERSION_LABEL: "v2"}}},
    ]
