"""podview: the Pod projection decisions read, decoded straight from Pod JSON."""

from __future__ import annotations

import gc
import json
from datetime import UTC, datetime

import msgspec
import pytest

from sidecarset.core.errors import ModelError
from sidecarset.core.podview import PodKey, PodView, podview_from_dict

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "web-0",
        "namespace": "shop",
        "uid": "u-1",
        "resourceVersion": "42",
        "labels": {"app": "web"},
        "annotations": {"kruise.io/sidecarset-injected-list": "filebeat"},
        "creationTimestamp": "2025-01-01T10:00:00Z",
        "managedFields": [{"manager": "kubectl"}],
    },
    "spec": {
        "nodeName": "node-1",
        "containers": [{"name": "app", "image": "web:1", "env": [{"name": "A", "value": "1"}]}],
        "initContainers": [{"name": "proxy", "image": "envoy:1", "restartPolicy": "Always"}],
        "volumes": [{"name": "v", "emptyDir": {}}],
    },
    "status": {
        "phase": "Running",
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2025-01-01T10:01:00Z"},
            {"type": "SidecarSetUpgradable", "status": "True", "message": '{"filebeat":true}'},
        ],
        "containerStatuses": [
            {
                "name": "app",
                "image": "docker.io/library/web:1",
                "imageID": "docker-pullable://web@sha256:abc",
                "ready": True,
                "restartCount": 2,
                "started": True,
                "state": {"running": {"startedAt": "2025-01-01T10:00:30Z"}},
            }
        ],
        "initContainerStatuses": [
            {"name": "proxy", "image": "envoy:1", "imageID": "x", "ready": True, "restartCount": 0}
        ],
    },
}


def test_pod_json_decodes_straight_into_a_podview() -> None:
    pod = msgspec.json.decode(json.dumps(POD).encode(), type=PodView)
    assert pod.key == PodKey("shop", "web-0")
    assert str(pod.key) == "shop/web-0"
    assert pod.metadata.resource_version == "42"
    assert pod.metadata.creation_timestamp == datetime(2025, 1, 1, 10, tzinfo=UTC)
    assert pod.spec.init_containers[0].is_native_sidecar
    status = pod.container_status("app")
    assert status is not None
    assert (status.image_id, status.restart_count, status.started) == (
        "docker-pullable://web@sha256:abc",
        2,
        True,
    )
    assert pod.is_running_and_ready
    assert pod.ready_condition is not None
    assert pod.ready_condition.last_transition_time == datetime(2025, 1, 1, 10, 1, tzinfo=UTC)
    assert pod.upgradable_condition is not None


def test_a_dict_and_the_json_stream_give_the_same_view() -> None:
    assert podview_from_dict(POD) == msgspec.json.decode(json.dumps(POD).encode(), type=PodView)


def test_nulls_count_as_absent() -> None:
    pod = podview_from_dict({"metadata": {"name": "x", "labels": None, "creationTimestamp": None}})
    assert pod.labels == {}
    assert pod.metadata.creation_timestamp is None


def test_a_wrongly_typed_field_is_reported_with_its_path() -> None:
    with pytest.raises(ModelError, match=r"status\.containerStatuses\[0\]\.ready"):
        podview_from_dict({"status": {"containerStatuses": [{"ready": "yes"}]}})


def test_podviews_are_not_tracked_by_the_garbage_collector() -> None:
    pod = podview_from_dict(POD)
    assert not gc.is_tracked(pod)
    assert not gc.is_tracked(pod.spec)


def test_terminating_and_finished_pods_are_inactive() -> None:
    assert not podview_from_dict(
        {"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}}
    ).is_active
    assert not podview_from_dict({"status": {"phase": "Failed"}}).is_active
    assert podview_from_dict({"status": {"phase": "Pending"}}).is_active
