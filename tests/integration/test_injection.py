"""Pod injection and SidecarSet admission through the real kube-apiserver (issue 3)."""

from __future__ import annotations

import copy
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from sidecarset.core import pod_contract
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import KubeClient, resource_path
from tests.fixtures.invalid_sidecarsets import INVALID_SIDECARSETS
from tests.integration import kubeobjects as k
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.usefixtures("operator")


@pytest_asyncio.fixture(loop_scope="session")
async def logging_example(kube: KubeClient, namespace: str) -> AsyncIterator[dict[str, Any]]:
    """examples/logging applied to the test namespace (the SidecarSet scoped to it)."""
    docs = {
        d["kind"]: d
        for d in k.load("examples/logging/filebeat-sidecarset.yaml")
        + k.load("examples/logging/filebeat-config.yaml")
        + k.load("examples/logging/nginx-deployment.yaml")
    }
    sidecarset = k.scoped(docs["SidecarSet"], namespace)
    await k.create(kube, sidecarset)
    await k.wait_seen(kube, sidecarset["metadata"]["name"])
    await k.create(kube, docs["ConfigMap"], namespace)
    deployment = copy.deepcopy(docs["Deployment"])
    deployment["spec"]["replicas"] = 3
    await k.create(kube, deployment, namespace)
    yield sidecarset
    await k.delete_sidecarset(kube, sidecarset["metadata"]["name"])


async def test_every_nginx_pod_gets_the_filebeat_sidecar_and_its_volumes(
    kube: KubeClient, namespace: str, logging_example: dict[str, Any]
) -> None:
    pods = await wait_for(
        lambda: k.pods(kube, namespace, "app=nginx"),
        lambda ps: len(ps) == 3 and all(k.is_ready(p) for p in ps),
        timeout=60,
        what="3 ready nginx pods",
    )
    name = logging_example["metadata"]["name"]
    for pod in pods:
        names = [c["name"] for c in pod["spec"]["containers"]]
        assert names == ["filebeat", "nginx"]  # BeforeAppContainer by default
        filebeat, nginx = k.container(pod, "filebeat"), k.container(pod, "nginx")
        assert filebeat["image"] == "docker.elastic.co/beats/filebeat:7.16.2"
        assert {"name": pod_contract.INJECTED_ENV, "value": "true"} in filebeat["env"]
        mounts = {m["name"]: m["mountPath"] for m in filebeat["volumeMounts"]}
        assert mounts["log"] == "/var/log/app"
        assert mounts["filebeat-registry"] == "/usr/share/filebeat/data"
        assert nginx["volumeMounts"][0] == {"name": "log", "mountPath": "/var/log/nginx"}
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert volumes["log"] == {"name": "log", "emptyDir": {}}  # the pod's own wins
        assert volumes["filebeat-config"]["configMap"]["name"] == "filebeat-config"
        assert "filebeat-registry" in volumes
        annotations = pod["metadata"]["annotations"]
        assert annotations[pod_contract.INJECTED_LIST_ANNOTATION] == name
        hashes = pod_contract.read_upgrade_specs(annotations, pod_contract.HASH_ANNOTATION)
        ss = await k.get_sidecarset(kube, name)
        assert hashes[name].hash == ss["metadata"]["annotations"][pod_contract.HASH_ANNOTATION]
        assert hashes[name].sidecar_list == ("filebeat",)
        without = pod_contract.read_upgrade_specs(
            annotations, pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION
        )
        assert (
            without[name].hash
            == (ss["metadata"]["annotations"][pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION])
        )
        assert k.container_status(pod, "nginx")["restartCount"] == 0


async def test_pods_outside_the_selector_are_untouched(
    kube: KubeClient, namespace: str, logging_example: dict[str, Any]
) -> None:
    await k.create(
        kube,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "plain", "labels": {"app": "other"}},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
        },
        namespace,
    )
    pod = await kube.get(resource_path("v1", "pods", namespace=namespace, name="plain"))
    assert [c["name"] for c in pod["spec"]["containers"]] == ["app"]
    assert pod_contract.INJECTED_LIST_ANNOTATION not in (pod["metadata"].get("annotations") or {})


async def test_pods_in_other_namespaces_are_untouched(
    kube: KubeClient, namespace: str, logging_example: dict[str, Any]
) -> None:
    other = f"{namespace}-x"[:63]
    await kube.create(resource_path("v1", "namespaces"), {"metadata": {"name": other}})
    try:
        await wait_for(
            lambda: kube.get(
                resource_path("v1", "serviceaccounts", namespace=other, name="default")
            ),
            lambda _sa: True,
            timeout=30,
            what="default ServiceAccount",
        )
        await k.create(
            kube,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "labelled", "labels": {"kruise.io/inject-filebeat": "true"}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
            },
            other,
        )
        pod = await kube.get(resource_path("v1", "pods", namespace=other, name="labelled"))
        assert [c["name"] for c in pod["spec"]["containers"]] == ["app"]
    finally:
        await kube.delete(resource_path("v1", "namespaces", name=other))


async def test_the_opt_out_label_keeps_a_pod_uninjected(
    kube: KubeClient, namespace: str, logging_example: dict[str, Any]
) -> None:
    await k.create(
        kube,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "opted-out",
                "labels": {
                    "kruise.io/inject-filebeat": "true",
                    pod_contract.INJECT_OPT_OUT: "false",
                },
            },
            "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
        },
        namespace,
    )
    pod = await kube.get(resource_path("v1", "pods", namespace=namespace, name="opted-out"))
    assert [c["name"] for c in pod["spec"]["containers"]] == ["app"]


async def test_the_articles_kruise_manifest_applies_unchanged(
    kube: KubeClient, namespace: str
) -> None:
    article = k.load("tests/fixtures/filebeat-sidecarset.yaml")[0]
    sidecarset = k.scoped(article, namespace)
    created = await k.create(kube, sidecarset)
    try:
        annotations = created["metadata"]["annotations"]
        assert pod_contract.HASH_ANNOTATION in annotations
        assert created["spec"]["updateStrategy"]["maxUnavailable"] == 1
        assert created["spec"]["containers"][0]["podInjectPolicy"] == "BeforeAppContainer"
    finally:
        await k.delete_sidecarset(kube, sidecarset["metadata"]["name"])


@pytest.mark.parametrize(
    ("case", "sidecarset", "field"), INVALID_SIDECARSETS, ids=[c[0] for c in INVALID_SIDECARSETS]
)
async def test_an_invalid_sidecarset_is_rejected_naming_the_field(
    kube: KubeClient, case: str, sidecarset: dict[str, Any], field: str
) -> None:
    body = copy.deepcopy(sidecarset)
    body.setdefault("apiVersion", "apps.kruise.io/v1alpha1")
    body.setdefault("kind", "SidecarSet")
    body.setdefault("metadata", {}).setdefault("name", f"invalid-{case}"[:63].lower())
    with pytest.raises(errors.ApiError) as raised:
        await kube.create(k.SIDECARSETS, body)
    assert raised.value.status in (400, 403, 422), raised.value
    assert field in raised.value.message, raised.value.message


async def webhook_url(kube: KubeClient) -> str:
    config = await kube.get(
        resource_path(
            "admissionregistration.k8s.io/v1",
            "mutatingwebhookconfigurations",
            name="sidecarset-mutating",
        )
    )
    return str(config["webhooks"][0]["clientConfig"]["url"])


async def test_a_malformed_admission_review_gets_a_400_and_the_server_keeps_serving(
    kube: KubeClient, namespace: str
) -> None:
    url = await webhook_url(kube)
    ssl_context = ssl.create_default_context()
    ssl_context.check_hostname = False
    ssl_context.verify_mode = ssl.CERT_NONE
    async with aiohttp.ClientSession() as session:
        for body in (
            b"not json",
            b"[]",
            b'{"apiVersion": "admission.k8s.io/v1"}',
            json.dumps(
                {
                    "apiVersion": "admission.k8s.io/v1",
                    "kind": "AdmissionReview",
                    "request": {"uid": 5},
                }
            ).encode(),
        ):
            async with session.post(url, data=body, ssl=ssl_context) as resp:
                assert resp.status == 400
                assert "malformed AdmissionReview" in (await resp.json())["error"]
    await k.create(
        kube,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "after"},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
        },
        namespace,
    )
