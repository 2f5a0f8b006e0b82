"""Small helpers to create objects and read pods in integration tests (no fakes: real API)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import KubeClient, resource_path

ROOT = Path(__file__).resolve().parents[2]
SIDECARSETS = resource_path("apps.kruise.io/v1alpha1", "sidecarsets")

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


async def delete_sidecarset(kube: KubeClient, name: str) -> None:
    try:
        await kube.delete(resource_path("apps.kruise.io/v1alpha1", "sidecarsets", name=name))
    except errors.NotFound:
        pass


async def get_sidecarset(kube: KubeClient, name: str) -> dict[str, Any]:
    return await kube.get(resource_path("apps.kruise.io/v1alpha1", "sidecarsets", name=name))


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
