"""Small helpers to create objects and read pods in integration tests (no fakes: real API)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import JSON_PATCH, KubeClient, resource_path
from tests.integration.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
SIDECARSETS = resource_path("apps.kruise.io/v1alpha1", "sidecarsets")
STORED = "apps.kruise.io/v1beta1"
"""SidecarSets are read and patched through the stored version, as the operator and the CLI do:
no conversion webhook is needed, so the helpers work while a test has the operator down.
Manifests are still created in the version they are written in (v1alpha1 mostly)."""
OLD = "docker.elastic.co/beats/filebeat:7.16.2"
NEW = "docker.elastic.co/beats/filebeat:7.16.3"

_PLURALS = {
    "ConfigMap": ("v1", "configmaps"),
    "Deployment": ("apps/v1", "deployments"),
    "Pod": ("v1", "pods"),
    "SidecarSet": ("apps.kruise.io/v1alpha1", "sidecarsets"),
}


def load(path: str | Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((ROOT / path).read_text()) if doc]


async def create(
    kube: KubeClient, obj: dict[str, Any], namespace: str | None = None
) -> dict[str, Any]:
    api_version, plural = _PLURALS[obj["kind"]]
    if obj["kind"] == "SidecarSet":
        api_version = obj.get("apiVersion") or api_version  # either served version
    ns = None if obj["kind"] == "SidecarSet" else namespace
    return await kube.create(resource_path(api_version, plural, namespace=ns), obj)


def scoped(sidecarset: dict[str, Any], namespace: str, name: str | None = None) -> dict[str, Any]:
    """A copy of a SidecarSet limited to one test namespace (SidecarSets are cluster-scoped)."""
    scoped_copy = copy.deepcopy(sidecarset)
    scoped_copy["metadata"]["name"] = name or f"{sidecarset['metadata']['name']}-{namespace}"[:63]
    scoped_copy["spec"]["namespaceSelector"] = {
        "matchLabels": {"kubernetes.io/metadata.name": namespace}
    }
    return scoped_copy


def sidecarset(
    name: str,
    namespace: str | None,
    pod_selector: dict[str, str] | None = None,
    *,
    container: str = "filebeat",
    image: str = OLD,
    **strategy: Any,
) -> dict[str, Any]:
    """A one-sidecar SidecarSet selecting `pod_selector` (default `inject=filebeat`) in
    `namespace` only (None: every namespace), with `strategy` as its updateStrategy."""
    spec: dict[str, Any] = {
        "selector": {"matchLabels": pod_selector or {"inject": "filebeat"}},
        "containers": [{"name": container, "image": image}],
        "updateStrategy": strategy,
    }
    if namespace is not None:
        spec["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "SidecarSet",
        "metadata": {"name": name},
        "spec": spec,
    }


def pod(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """An nginx pod labelled `inject=filebeat` (and `labels`)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"inject": "filebeat", **(labels or {})}},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
    }


async def set_image(
    kube: KubeClient, name: str, image: str, *, field: str = "containers", index: int = 0
) -> None:
    """Change only one sidecar's image (a merge patch would replace the whole list)."""
    await kube.patch(
        resource_path(STORED, "sidecarsets", name=name),
        [{"op": "replace", "path": f"/spec/{field}/{index}/image", "value": image}],
        content_type=JSON_PATCH,
    )


async def patch_strategy(kube: KubeClient, name: str, **strategy: Any) -> None:
    await kube.patch(
        resource_path(STORED, "sidecarsets", name=name),
        {"spec": {"updateStrategy": strategy}},
    )


async def delete_sidecarset(kube: KubeClient, name: str) -> None:
    try:
        await kube.delete(resource_path(STORED, "sidecarsets", name=name))
    except errors.NotFound:
        pass


class SidecarSets:
    """The SidecarSets one test creates; `delete_all` removes them afterwards (they are
    cluster-scoped: deleting the test's namespace leaves them behind)."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube
        self.names: list[str] = []

    async def create(self, body: dict[str, Any], *, seen: bool = True) -> str:
        """Create the SidecarSet and, unless `seen` is False, wait until the operator has
        reconciled it. The webhook answers from the same informer cache as the reconciler, so
        a pod created before the operator saw its SidecarSet would be admitted without the
        sidecar: on a loaded machine the watch event can lag the create by seconds. Tests
        whose operator is down, or that only check admission, pass `seen=False`."""
        await create(self.kube, body)
        name = str(body["metadata"]["name"])
        self.names.append(name)
        if seen:
            await wait_seen(self.kube, name)
        return name

    async def delete_all(self) -> None:
        for name in self.names:
            await delete_sidecarset(self.kube, name)


async def wait_seen(kube: KubeClient, name: str) -> None:
    """Wait until the operator has reconciled SidecarSet `name`: its caches (which the webhook
    reads too) hold it, so pods created from now on get its sidecars. Right after the create,
    the watch event may not have reached the operator yet (seconds on a loaded machine)."""
    await wait_for(
        lambda: get_sidecarset(kube, name),
        lambda s: (s.get("status") or {}).get("observedGeneration") == s["metadata"]["generation"],
        timeout=60,
        what=f"the operator to reconcile SidecarSet {name}",
    )


async def get_sidecarset(kube: KubeClient, name: str) -> dict[str, Any]:
    return await kube.get(resource_path(STORED, "sidecarsets", name=name))


async def pods(kube: KubeClient, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    params = {"labelSelector": selector} if selector else {}
    body = await kube.get(resource_path("v1", "pods", namespace=namespace), **params)
    return [p for p in body["items"] if not p["metadata"].get("deletionTimestamp")]


def is_ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == name)


def container_status(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in pod["status"]["containerStatuses"] if s["name"] == name)


async def ready_pods(
    kube: KubeClient, namespace: str, count: int, *, timeout: float = 120.0
) -> list[dict[str, Any]]:
    """The namespace's pods once there are exactly `count`, all Ready."""
    return await wait_for(
        lambda: pods(kube, namespace),
        lambda ps: len(ps) == count and all(is_ready(p) for p in ps),
        timeout=timeout,
        what=f"{count} ready pods",
    )


async def create_ready(kube: KubeClient, namespace: str, *bodies: dict[str, Any]) -> list[Any]:
    """Create the pods in `namespace` (its only pods) and wait until all are Ready."""
    for body in bodies:
        await create(kube, body, namespace)
    return await ready_pods(kube, namespace, len(bodies))


def images(pods_: list[dict[str, Any]], name: str = "filebeat") -> dict[str, str]:
    """Each pod's spec image of container `name`, by pod name."""
    return {p["metadata"]["name"]: container(p, name)["image"] for p in pods_}


async def sidecarset_event(
    kube: KubeClient, name: str, reason: str, *, timeout: float = 60.0
) -> dict[str, Any]:
    """The operator's Event with `reason` on SidecarSet `name` (recorded in `default`), once it
    exists."""
    found = await wait_for(
        lambda: kube.get(
            resource_path("v1", "events", namespace="default"),
            fieldSelector=f"involvedObject.name={name}",
        ),
        lambda listed: any(e["reason"] == reason for e in listed["items"]),
        timeout=timeout,
        what=f"{reason} event",
    )
    return next(e for e in found["items"] if e["reason"] == reason)
