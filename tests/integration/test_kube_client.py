"""The API client's own HTTP/1.1 transport against the real API server: kept-alive connections,
chunked and gzip-compressed answers, and metadata-only answers to writes."""

from __future__ import annotations

import json

import msgspec

from sidecarset.devcluster.controlplane import ControlPlane
from sidecarset.shell.kube.client import STRATEGIC_MERGE_PATCH, KubeClient, resource_path


async def test_sequential_requests_share_one_connection(control_plane: ControlPlane) -> None:
    client = await KubeClient.from_kubeconfig(str(control_plane.kubeconfig))
    async with client:
        for _ in range(20):
            await client.get(resource_path("v1", "namespaces", name="default"))
        assert client._http.opened == 1


async def test_a_large_answer_arrives_whole(kube: KubeClient) -> None:
    # The OpenAPI document is megabytes, sent chunked (and gzip-compressed by a server that
    # compresses large answers: the client accepts gzip).
    raw = await kube.raw("GET", "/openapi/v2")
    document = json.loads(raw)
    assert document["swagger"] == "2.0"
    assert "io.k8s.api.core.v1.Pod" in document["definitions"]
    assert len(raw) > 1_000_000


async def test_a_metadata_only_write_answers_with_the_metadata_alone(
    kube: KubeClient, namespace: str
) -> None:
    collection = resource_path("v1", "configmaps", namespace=namespace)
    big = {"metadata": {"name": "meta"}, "data": {"big": "x" * 10_000}}
    await kube.create(collection, big)
    path = f"{collection}/meta"
    patch = msgspec.json.encode({"metadata": {"labels": {"patched": "yes"}}})
    answer = json.loads(
        await kube.raw(
            "PATCH", path, body=patch, content_type=STRATEGIC_MERGE_PATCH, metadata_only=True
        )
    )
    assert answer["kind"] == "PartialObjectMetadata"
    assert answer["metadata"]["labels"] == {"patched": "yes"}
    assert "data" not in answer
    stored = await kube.get(path)
    assert stored["metadata"]["labels"] == {"patched": "yes"}
    assert stored["data"]["big"] == "x" * 10_000
