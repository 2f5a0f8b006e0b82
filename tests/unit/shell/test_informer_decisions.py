"""The informer's pure parts: relist diffs, recovery decisions, Retry-After and the codecs."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from sidecarset.shell import informer
from sidecarset.shell.kube import errors
from sidecarset.shell.store import Added, Deleted, Updated, replace_events


class Meta(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    namespace: str = ""
    name: str = ""
    resource_version: str = ""


class ClusterMeta(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    name: str = ""
    resource_version: str = ""


class PodProjection(msgspec.Struct, frozen=True, kw_only=True):
    metadata: Meta = Meta()


class ClusterProjection(msgspec.Struct, frozen=True, kw_only=True):
    metadata: ClusterMeta = ClusterMeta()


def pod(name: str, rv: str, namespace: str = "ns", **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": namespace,
            "name": name,
            "resourceVersion": rv,
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": extra,
    }


def line(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode()


# -- relist diffs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "listed", "expected"),
    [
        pytest.param({}, {}, [], id="empty"),
        pytest.param({}, {"a": 1, "b": 2}, [Added("a", 1), Added("b", 2)], id="first-list"),
        pytest.param({"a": 1, "b": 2}, {"a": 1, "b": 2}, [], id="unchanged"),
        pytest.param({"a": 1, "b": 2}, {"b": 2}, [Deleted("a", 1)], id="vanished-in-gap"),
        pytest.param({"a": 1}, {"a": 3}, [Updated("a", 1, 3)], id="changed-in-gap"),
        pytest.param(
            {"z": 1, "a": 1, "m": 1},
            {"n": 5, "m": 2},
            [Deleted("a", 1), Deleted("z", 1), Added("n", 5), Updated("m", 1, 2)],
            id="deletions-first-in-key-order-then-list-order",
        ),
    ],
)
def test_a_relist_emits_exactly_the_difference(
    current: dict[str, int], listed: dict[str, int], expected: list[object]
) -> None:
    assert replace_events(current, listed) == expected


# -- recovery decisions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "listing", "expected"),
    [
        pytest.param(None, False, informer.Recovery.RESUME, id="server-closed-the-watch"),
        pytest.param(TimeoutError("silent"), False, informer.Recovery.RESUME, id="silent-watch"),
        pytest.param(
            errors.Gone(410, "too old"), False, informer.Recovery.RELIST, id="watch-expired"
        ),
        pytest.param(
            errors.Gone(410, "continue expired"),
            True,
            informer.Recovery.BACK_OFF_RELIST,
            id="list-expired",
        ),
        pytest.param(
            errors.Unavailable(503, "down"), False, informer.Recovery.BACK_OFF, id="server-down"
        ),
        pytest.param(
            errors.TooManyRequests(429, "slow down"),
            False,
            informer.Recovery.BACK_OFF,
            id="throttled",
        ),
        pytest.param(
            errors.Forbidden(403, "rbac"), True, informer.Recovery.BACK_OFF, id="forbidden"
        ),
        pytest.param(
            errors.ApiError(500, "error event"),
            False,
            informer.Recovery.BACK_OFF,
            id="other-error-event",
        ),
        pytest.param(
            msgspec.ValidationError("bad"),
            False,
            informer.Recovery.BACK_OFF_RELIST,
            id="undecodable-event",
        ),
        pytest.param(KeyError("bug"), False, informer.Recovery.BACK_OFF_RELIST, id="bug"),
    ],
)
def test_recovery_after_a_list_or_watch_ends(
    failure: BaseException | None, listing: bool, expected: informer.Recovery
) -> None:
    assert informer.recovery_for(failure, listing=listing) == expected


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        pytest.param(
            errors.TooManyRequests(429, "x", body={"details": {"retryAfterSeconds": 5}}),
            5.0,
            id="429-with-retry-after",
        ),
        pytest.param(errors.TooManyRequests(429, "x", body={"details": {}}), 0.0, id="429-without"),
        pytest.param(errors.TooManyRequests(429, "x", body=b"text"), 0.0, id="429-not-json"),
        pytest.param(
            errors.Unavailable(503, "x", body={"details": {"retryAfterSeconds": 5}}),
            0.0,
            id="not-a-429",
        ),
        pytest.param(None, 0.0, id="no-failure"),
    ],
)
def test_retry_after_is_read_from_a_429s_status(
    failure: BaseException | None, expected: float
) -> None:
    assert informer.retry_after(failure) == expected


# -- codecs -----------------------------------------------------------------------------------


def test_dict_codec_reads_list_pages_and_keys_objects_by_namespace_and_name() -> None:
    codec = informer.DictCodec()
    page = json.dumps(
        {
            "kind": "PodList",
            "metadata": {"resourceVersion": "42", "continue": "t"},
            "items": [pod("a", "40"), pod("b", "41", namespace="other")],
        }
    ).encode()
    decoded = codec.decode_list(page)
    assert decoded.resource_version == "42"
    assert [codec.key(obj) for obj in decoded.items] == ["ns/a", "other/b"]


def test_dict_codec_reads_an_empty_list_whose_items_are_null() -> None:
    decoded = informer.DictCodec().decode_list(b'{"metadata":{"resourceVersion":"7"},"items":null}')
    assert decoded == informer.ListPage("7", [])


def test_struct_codec_decodes_only_the_declared_fields() -> None:
    codec = informer.StructCodec(PodProjection)
    page = json.dumps({"metadata": {"resourceVersion": "42"}, "items": [pod("a", "40")]}).encode()
    decoded = codec.decode_list(page)
    assert decoded.items == [
        PodProjection(metadata=Meta(namespace="ns", name="a", resource_version="40"))
    ]
    event = codec.decode_event(line("MODIFIED", pod("a", "43")))
    assert event.obj is not None
    assert (event.type, event.resource_version, codec.key(event.obj)) == ("MODIFIED", "43", "ns/a")


def test_cluster_scoped_projections_are_keyed_by_name() -> None:
    codec = informer.StructCodec(ClusterProjection)
    event = codec.decode_event(
        line("ADDED", {"metadata": {"name": "filebeat", "resourceVersion": "5"}})
    )
    assert event.obj is not None
    assert codec.key(event.obj) == "filebeat"


@pytest.mark.parametrize(
    "codec", [informer.DictCodec(), informer.StructCodec(PodProjection)], ids=["dict", "struct"]
)
def test_bookmarks_carry_only_a_resource_version(codec: informer.Codec[Any]) -> None:
    bookmark = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "99", "annotations": {"k8s.io/initial-events-end": "true"}},
    }
    assert codec.decode_event(line("BOOKMARK", bookmark)) == informer.WatchEvent("BOOKMARK", "99")


@pytest.mark.parametrize(
    "codec", [informer.DictCodec(), informer.StructCodec(PodProjection)], ids=["dict", "struct"]
)
def test_error_events_carry_the_status_code(codec: informer.Codec[Any]) -> None:
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": "Expired",
        "message": "too old resource version: 1 (5103)",
        "code": 410,
    }
    event = codec.decode_event(line("ERROR", status))
    assert (event.type, event.code, event.reason) == ("ERROR", 410, "Expired")
    assert event.obj is None


def test_dict_codec_gives_list_items_the_kind_that_watch_objects_carry() -> None:
    codec = informer.DictCodec()
    listed = codec.decode_list(
        json.dumps(
            {
                "kind": "ConfigMapList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": "9"},
                "items": [
                    cm := {"metadata": {"namespace": "ns", "name": "a", "resourceVersion": "8"}}
                ],
            }
        ).encode()
    )
    watched = codec.decode_event(line("ADDED", {"kind": "ConfigMap", "apiVersion": "v1", **cm}))
    assert listed.items == [watched.obj]
