"""Builders of SidecarSets and pods for the rollout, candidate and status tests.

The defaults mirror Kruise's own strategy tests (`sidecarset_strategy_test.go`): a SidecarSet
`test-sidecarset` with hash `bbb` whose sidecar `test-sidecar` moves from `test-image:v1` to
`test-image:v2`, and pods with an `nginx` app container next to it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sidecarset.core import pod_contract
from sidecarset.core.model import SidecarSet, parse_sidecarset
from sidecarset.core.podview import PodView, podview_from_dict

SET = "test-sidecarset"
SIDECAR = "test-sidecar"
V1 = "test-image:v1"
V2 = "test-image:v2"
V1_ID = "docker-pullable://test-image@sha256:" + "1" * 64
V2_ID = "docker-pullable://test-image@sha256:" + "2" * 64
NGINX_ID = "docker-pullable://nginx@sha256:" + "a" * 64
NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
CREATED = NOW - timedelta(days=1)


def make_sidecarset(
    *,
    name: str = SET,
    hash_: str = "bbb",
    hash_without_image: str = "without-aaa",
    containers: Sequence[Mapping[str, object]] | None = None,
    init_containers: Sequence[Mapping[str, object]] = (),
    strategy: Mapping[str, object] | None = None,
    patch_pod_metadata: Sequence[Mapping[str, object]] = (),
    injection_strategy: Mapping[str, object] | None = None,
    revision_history_limit: int | None = None,
    labels: Mapping[str, str] | None = None,
    volumes: Sequence[Mapping[str, object]] = (),
    resource_version: str = "100",
    generation: int = 3,
) -> SidecarSet:
    spec: dict[str, object] = {
        "selector": {"matchLabels": {"app": "sidecar"}},
        "containers": list(containers) if containers is not None else [sidecar_spec()],
        "updateStrategy": dict(strategy or {}),
    }
    if init_containers:
        spec["initContainers"] = list(init_containers)
    if patch_pod_metadata:
        spec["patchPodMetadata"] = list(patch_pod_metadata)
    if injection_strategy is not None:
        spec["injectionStrategy"] = dict(injection_strategy)
    if revision_history_limit is not None:
        spec["revisionHistoryLimit"] = revision_history_limit
    if volumes:
        spec["volumes"] = list(volumes)
    return parse_sidecarset(
        {
            "apiVersion": "apps.kruise.io/v1alpha1",
            "kind": "SidecarSet",
            "metadata": {
                "name": name,
                "generation": generation,
                "resourceVersion": resource_version,
                "labels": dict(labels or {}),
                "annotations": {
                    pod_contract.HASH_ANNOTATION: hash_,
                    pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION: hash_without_image,
                },
            },
            "spec": spec,
            "status": {"latestRevision": f"{name}-rev"},
        }
    )


def sidecar_spec(
    name: str = SIDECAR, image: str = V2, *, hot_empty_image: str | None = None, **extra: object
) -> dict[str, object]:
    body: dict[str, object] = {"name": name, "image": image, **extra}
    if hot_empty_image is not None:
        body["upgradeStrategy"] = {
            "upgradeType": "HotUpgrade",
            "hotUpgradeEmptyImage": hot_empty_image,
        }
    return body


def hash_entries(entries: Mapping[str, str], *, sidecars: Sequence[str] = (SIDECAR,)) -> str:
    return json.dumps(
        {
            name: {"hash": h, "sidecarSetName": name, "sidecarList": list(sidecars)}
            for name, h in entries.items()
        }
    )


def container(name: str, image: str) -> dict[str, object]:
    return {"name": name, "image": image}


def status(
    name: str, image: str, image_id: str, *, ready: bool = True, restarts: int = 0
) -> dict[str, object]:
    return {
        "name": name,
        "image": image,
        "imageID": image_id,
        "ready": ready,
        "restartCount": restarts,
    }


def make_pod_dict(
    name: str,
    *,
    namespace: str = "default",
    pod_hash: str = "aaa",
    without_image: str = "without-aaa",
    sidecarset: str = SET,
    spec_image: str = V1,
    status_image: str | None = None,
    status_image_id: str | None = None,
    recorded_image_id: str | None = None,
    sidecar_ready: bool = True,
    ready: bool = True,
    phase: str = "Running",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    node: str = "node-1",
    created: datetime | None = CREATED,
    ready_since: datetime | None = None,
    restarts: int = 0,
    deleting: bool = False,
) -> dict[str, object]:
    """A pod injected by `sidecarset`, its sidecar on `spec_image`.

    The sidecar's status shows `status_image`/`status_image_id` (default: what v1 or v2 would
    show for `spec_image`); `recorded_image_id` is the imageID our last in-place update recorded.
    """
    status_image = status_image if status_image is not None else spec_image
    if status_image_id is None:
        status_image_id = V2_ID if status_image == V2 else V1_ID
    meta_annotations = {
        pod_contract.HASH_ANNOTATION: hash_entries({sidecarset: pod_hash}),
        pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION: hash_entries({sidecarset: without_image}),
        pod_contract.INJECTED_LIST_ANNOTATION: sidecarset,
    }
    if recorded_image_id is not None:
        meta_annotations[pod_contract.INPLACE_UPDATE_STATE_ANNOTATION] = json.dumps(
            {
                sidecarset: {
                    "revision": pod_hash,
                    "updateTimestamp": "2025-01-01T00:00:00Z",
                    "lastContainerStatuses": {SIDECAR: {"imageID": recorded_image_id}},
                }
            }
        )
    meta_annotations.update(annotations or {})
    metadata: dict[str, object] = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-{name}",
        "resourceVersion": "7",
        "labels": dict(labels if labels is not None else {"app": "sidecar"}),
        "annotations": meta_annotations,
    }
    if created is not None:
        metadata["creationTimestamp"] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    if deleting:
        metadata["deletionTimestamp"] = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions: list[dict[str, object]] = [
        {"type": "Ready", "status": "True" if ready else "False"}
    ]
    if ready_since is not None:
        conditions[0]["lastTransitionTime"] = ready_since.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metadata": metadata,
        "spec": {
            "nodeName": node,
            "containers": [container("nginx", "nginx:1.15.1"), container(SIDECAR, spec_image)],
        },
        "status": {
            "phase": phase,
            "conditions": conditions,
            "containerStatuses": [
                status("nginx", "nginx:1.15.1", NGINX_ID, restarts=restarts),
                status(SIDECAR, status_image, status_image_id, ready=sidecar_ready),
            ],
        },
    }


def make_pod(name: str, **kwargs: Any) -> PodView:
    return podview_from_dict(make_pod_dict(name, **kwargs))


def outdated_pod(name: str, **kwargs: object) -> PodView:
    """Not updated: hash `aaa`, sidecar on v1 and running it."""
    return make_pod(name, **kwargs)


def updating_pod(name: str, **kwargs: object) -> PodView:
    """Updated to `bbb` (spec v2, v1's imageID recorded) but the kubelet still runs v1."""
    defaults: dict[str, object] = {
        "pod_hash": "bbb",
        "spec_image": V2,
        "status_image": V1,
        "status_image_id": V1_ID,
        "recorded_image_id": V1_ID,
    }
    return make_pod(name, **{**defaults, **kwargs})


def failing_pod(name: str, since: datetime | None = None) -> PodView:
    """Updated an hour before NOW (or at `since`), and its sidecar not ready ever since."""
    when = since or NOW - timedelta(hours=1)
    return updating_pod(
        name,
        sidecar_ready=False,
        ready=False,
        ready_since=when,
        annotations={
            pod_contract.HASH_ANNOTATION: json.dumps(
                {
                    SET: {
                        "updateTimestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "hash": "bbb",
                        "sidecarSetName": SET,
                        "sidecarList": [SIDECAR],
                    }
                }
            )
        },
    )


def updated_pod(name: str, **kwargs: object) -> PodView:
    """Updated to `bbb` and running v2."""
    defaults: dict[str, object] = {"pod_hash": "bbb", "spec_image": V2, "recorded_image_id": V1_ID}
    return make_pod(name, **{**defaults, **kwargs})


def kruise_factory_pods(count: int, upgraded: int, upgraded_ready: int) -> list[PodView]:
    """Kruise's factoryPods(count, upgraded, upgradedAndReady): the first `upgraded` pods are
    updated, the first `upgraded_ready` of those also run the new image."""
    pods = []
    for i in range(count):
        name = f"pod-{i}"
        if i < upgraded_ready:
            pods.append(updated_pod(name))
        elif i < upgraded:
            pods.append(updating_pod(name))
        else:
            pods.append(outdated_pod(name))
    return pods


HOT = "mesh"
HOT_EMPTY = "empty:1.0"


def hot_sidecarset(image: str = "mesh:v2", **kwargs: Any) -> SidecarSet:
    return make_sidecarset(
        containers=[sidecar_spec(HOT, image, hot_empty_image=HOT_EMPTY)],
        **kwargs,
    )


def hot_pod(
    name: str,
    *,
    working: str = "mesh-1",
    images: tuple[str, str] = ("mesh:v1", HOT_EMPTY),
    status_images: tuple[str, str] | None = None,
    image_ids: tuple[str, str] = ("id-1", "id-2"),
    ready: tuple[bool, bool] = (True, True),
    pod_ready: bool = True,
    pod_hash: str = "aaa",
    recorded: Mapping[str, str] | None = None,
    versions: Mapping[str, str] | None = None,
) -> PodView:
    """A pod with the hot twins `mesh-1`/`mesh-2` (images in that order)."""
    status_images = status_images or images
    annotations = {
        pod_contract.HASH_ANNOTATION: hash_entries({SET: pod_hash}, sidecars=[HOT]),
        pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION: hash_entries(
            {SET: "without-aaa"}, sidecars=[HOT]
        ),
        pod_contract.INJECTED_LIST_ANNOTATION: SET,
        pod_contract.WORKING_HOT_UPGRADE_ANNOTATION: json.dumps({HOT: working}),
        **(versions or {}),
    }
    if recorded:
        annotations[pod_contract.INPLACE_UPDATE_STATE_ANNOTATION] = json.dumps(
            {
                SET: {
                    "revision": pod_hash,
                    "updateTimestamp": "2025-01-01T00:00:00Z",
                    "lastContainerStatuses": {k: {"imageID": v} for k, v in recorded.items()},
                }
            }
        )
    return podview_from_dict(
        {
            "metadata": {
                "name": name,
                "namespace": "default",
                "uid": f"uid-{name}",
                "resourceVersion": "9",
                "labels": {"app": "sidecar"},
                "annotations": annotations,
                "creationTimestamp": "2024-12-31T12:00:00Z",
            },
            "spec": {
                "nodeName": "node-1",
                "containers": [
                    container("nginx", "nginx:1.15.1"),
                    container("mesh-1", images[0]),
                    container("mesh-2", images[1]),
                ],
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True" if pod_ready else "False"}],
                "containerStatuses": [
                    status("nginx", "nginx:1.15.1", NGINX_ID),
                    status("mesh-1", status_images[0], image_ids[0], ready=ready[0]),
                    status("mesh-2", status_images[1], image_ids[1], ready=ready[1]),
                ],
            },
        }
    )
