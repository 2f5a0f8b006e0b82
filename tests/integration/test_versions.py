"""SidecarSet v1alpha1 and v1beta1 on the real API server (issue 15).

Both versions are served, v1beta1 is stored (as OpenKruise 1.9), and the operator converts
between them. What etcd holds is read from etcd itself (its JSON gateway on 127.0.0.1), not
inferred from the API. The operator and kube-apiserver are restarted with objects of both
versions stored; while the operator is down, reads that need a conversion fail and nothing
is lost.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from sidecarset.core import conversion, pod_contract
from sidecarset.devcluster.binaries import Binaries
from sidecarset.devcluster.controlplane import ControlPlane
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import JSON_PATCH, KubeClient, resource_path
from tests.integration import kubeobjects as k
from tests.integration.conftest import OperatorHandle, temporary_namespace
from tests.integration.test_cli import run_cli
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.usefixtures("operator")

V1ALPHA1, V1BETA1 = conversion.V1ALPHA1, conversion.V1BETA1
HIDDEN = ("resourceVersion", "managedFields", "generation", "uid", "creationTimestamp")


def path(version: str, name: str | None = None) -> str:
    return resource_path(version, "sidecarsets", name=name)


async def get_as(kube: KubeClient, version: str, name: str) -> dict[str, Any]:
    return await kube.get(path(version, name))


async def stored(control_plane: ControlPlane, name: str) -> dict[str, Any] | None:
    """The SidecarSet as etcd holds it (the API server stores CRs as JSON), None if absent."""
    key = base64.b64encode(f"/registry/apps.kruise.io/sidecarsets/{name}".encode()).decode()
    url = f"http://127.0.0.1:{control_plane.state().ports['etcd']}/v3/kv/range"
    async with aiohttp.ClientSession() as session, session.post(url, json={"key": key}) as resp:
        assert resp.status == 200, await resp.text()
        reply = await resp.json()
    kvs = reply.get("kvs") or []
    if not kvs:
        return None
    value: dict[str, Any] = json.loads(base64.b64decode(kvs[0]["value"]))
    return value


def kubectl(control_plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    """The built kubectl, as the cluster's admin."""
    binary = str(Binaries.locate().path("kubectl"))
    return subprocess.run(
        [binary, "--kubeconfig", str(control_plane.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def kubectl_raw(control_plane: ControlPlane, url: str) -> dict[str, Any]:
    done = kubectl(control_plane, "get", "--raw", url)
    assert done.returncode == 0, done.stderr
    body: dict[str, Any] = json.loads(done.stdout)
    return body


def meaning(obj: dict[str, Any]) -> dict[str, Any]:
    """What a user wrote and the operator keeps: labels, annotations, spec (not status)."""
    metadata = obj["metadata"]
    return {
        "labels": metadata.get("labels"),
        "annotations": metadata.get("annotations"),
        "spec": obj["spec"],
    }


def with_filebeat_image(obj: dict[str, Any], image: str) -> dict[str, Any]:
    obj["spec"]["containers"][0]["image"] = image
    return obj


async def test_the_articles_sidecarset_as_v1beta1_injects_identically_and_rolls_in_place(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets
) -> None:
    article = k.load("tests/fixtures/filebeat-sidecarset.yaml")[0]
    async with temporary_namespace(kube, f"{namespace[:50]}-alpha") as twin_namespace:
        suffix = namespace[-5:]
        beta = conversion.to_v1beta1(k.scoped(article, namespace, f"filebeat-beta-{suffix}"))
        alpha = k.scoped(article, twin_namespace, f"filebeat-alpha-{suffix}")
        assert beta["apiVersion"] == V1BETA1
        assert alpha["apiVersion"] == V1ALPHA1
        beta_name = await sidecarsets.create(beta)
        alpha_name = await sidecarsets.create(alpha)
        nginx = k.load("examples/logging/nginx-deployment.yaml")[0]
        nginx["spec"]["replicas"] = 2
        await k.create(kube, nginx, namespace)
        await k.create(kube, nginx, twin_namespace)
        through_beta = await k.ready_pods(kube, namespace, 2)
        through_alpha = await k.ready_pods(kube, twin_namespace, 2)

        def injected(pod: dict[str, Any], name: str) -> str:
            """What injection decided for the pod, without the ServiceAccount token volume the
            API server adds with a random name."""
            annotations = pod["metadata"]["annotations"]
            hashes = pod_contract.read_upgrade_specs(annotations, pod_contract.HASH_ANNOTATION)[
                name
            ]
            without = pod_contract.read_upgrade_specs(
                annotations, pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION
            )
            filebeat = dict(k.container(pod, "filebeat"))
            filebeat["volumeMounts"] = [
                m for m in filebeat["volumeMounts"] if not m["name"].startswith("kube-api-access")
            ]
            return json.dumps(
                [
                    hashes.hash,
                    hashes.sidecar_list,
                    without[name].hash,
                    [c["name"] for c in pod["spec"]["containers"]],
                    filebeat,
                    sorted(
                        v["name"]
                        for v in pod["spec"]["volumes"]
                        if not v["name"].startswith("kube-api-access")
                    ),
                ],
                sort_keys=True,
            )

        beta_seen = {injected(p, beta_name) for p in through_beta}
        alpha_seen = {injected(p, alpha_name) for p in through_alpha}
        assert len(beta_seen) == 1
        assert beta_seen == alpha_seen
        stored_beta = await get_as(kube, V1BETA1, beta_name)
        stored_alpha = await get_as(kube, V1BETA1, alpha_name)
        for key in (pod_contract.HASH_ANNOTATION, pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION):
            assert stored_beta["metadata"]["annotations"][key]
            assert (
                stored_beta["metadata"]["annotations"][key]
                == stored_alpha["metadata"]["annotations"][key]
            )

        # The rollout, driven through v1beta1.
        await kube.patch(
            path(V1BETA1, beta_name),
            [{"op": "replace", "path": "/spec/containers/0/image", "value": k.NEW}],
            content_type=JSON_PATCH,
        )
        after = await wait_for(
            lambda: k.pods(kube, namespace),
            lambda ps: (
                len(ps) == 2
                and all(k.container_status(p, "filebeat").get("image") == k.NEW for p in ps)
            ),
            timeout=90,
            what="filebeat 7.16.3 in both pods",
        )
        assert {p["metadata"]["uid"] for p in after} == {p["metadata"]["uid"] for p in through_beta}
        assert all(k.container_status(p, "nginx")["restartCount"] == 0 for p in after)
        status = await wait_for(
            lambda: get_as(kube, V1BETA1, beta_name),
            lambda s: (s.get("status") or {}).get("updatedReadyPods") == 2,
            timeout=30,
            what="v1beta1 status caught up",
        )
        assert status["status"]["observedGeneration"] == status["metadata"]["generation"]
        assert {c["type"] for c in status["status"]["conditions"]} >= {"Ready", "Progressing"}
        # The twin's pods were left alone.
        untouched = await k.pods(kube, twin_namespace)
        assert all(k.container(p, "filebeat")["image"] == k.OLD for p in untouched)


async def test_both_versions_read_back_across_operator_and_apiserver_restarts(  # noqa: PLR0915 - one scenario, step by step
    kube: KubeClient,
    namespace: str,
    sidecarsets: k.SidecarSets,
    control_plane: ControlPlane,
    operator: OperatorHandle,
) -> None:
    suffix = namespace[-5:]
    from_alpha = {
        "apiVersion": V1ALPHA1,
        "kind": "SidecarSet",
        "metadata": {
            "name": f"alpha-{suffix}",
            "labels": {pod_contract.CUSTOM_VERSION_LABEL: "v1"},
        },
        "spec": {
            "selector": {"matchLabels": {"app": "none"}},
            "namespace": namespace,
            "containers": [{"name": "a", "image": k.OLD}],
        },
    }
    from_beta = {
        "apiVersion": V1BETA1,
        "kind": "SidecarSet",
        "metadata": {"name": f"beta-{suffix}"},
        "spec": {
            "selector": {"matchLabels": {"app": "none"}},
            "namespaceSelector": {"matchLabels": {"team": "x"}},
            "customVersion": "v2",
            "containers": [{"name": "b", "image": k.OLD}],
        },
    }
    alpha_name = await sidecarsets.create(from_alpha)
    beta_name = await sidecarsets.create(from_beta)

    # etcd holds v1beta1 for both; what v1beta1 cannot say is kept in an annotation.
    in_etcd = await stored(control_plane, alpha_name)
    assert in_etcd is not None
    assert in_etcd["apiVersion"] == V1BETA1
    assert "namespace" not in in_etcd["spec"]
    assert in_etcd["spec"]["namespaceSelector"] == {
        "matchLabels": {pod_contract.NAMESPACE_NAME_LABEL: namespace}
    }
    assert in_etcd["spec"]["customVersion"] == "v1"
    assert json.loads(in_etcd["metadata"]["annotations"][conversion.NAMESPACE_ANNOTATION]) == {
        "namespace": namespace
    }
    beta_in_etcd = await stored(control_plane, beta_name)
    assert beta_in_etcd is not None
    assert beta_in_etcd["apiVersion"] == V1BETA1
    raw = await asyncio.to_thread(
        kubectl_raw, control_plane, f"/apis/{V1BETA1}/sidecarsets/{alpha_name}"
    )
    assert raw["spec"]["namespaceSelector"] == in_etcd["spec"]["namespaceSelector"]

    async def both_ways() -> dict[tuple[str, str], dict[str, Any]]:
        return {
            (name, version): meaning(await get_as(kube, version, name))
            for name in (alpha_name, beta_name)
            for version in (V1ALPHA1, V1BETA1)
        }

    before = await both_ways()
    alpha_as_alpha = before[(alpha_name, V1ALPHA1)]
    assert alpha_as_alpha["spec"]["namespace"] == namespace
    assert "namespaceSelector" not in alpha_as_alpha["spec"]
    assert alpha_as_alpha["labels"] == {pod_contract.CUSTOM_VERSION_LABEL: "v1"}
    assert conversion.NAMESPACE_ANNOTATION not in alpha_as_alpha["annotations"]
    beta_as_alpha = before[(beta_name, V1ALPHA1)]
    assert beta_as_alpha["labels"] == {pod_contract.CUSTOM_VERSION_LABEL: "v2"}
    assert "customVersion" not in beta_as_alpha["spec"]
    assert beta_as_alpha["spec"]["namespaceSelector"] == {"matchLabels": {"team": "x"}}

    # The operator down: v1beta1 reads (the stored version) work, v1alpha1 reads fail.
    operator.kill()
    try:
        assert meaning(await get_as(kube, V1BETA1, alpha_name)) == before[(alpha_name, V1BETA1)]
        with pytest.raises(errors.ApiError) as refused:
            await get_as(kube, V1ALPHA1, alpha_name)
        assert "conversion webhook" in str(refused.value)
        # A LIST through v1alpha1 fails the same way or is answered right; never garbled.
        alpha_list: dict[str, Any] | str
        try:
            alpha_list = await kube.get(path(V1ALPHA1))
        except errors.ApiError as err:
            alpha_list = str(err)
        if isinstance(alpha_list, str):
            assert "conversion webhook" in alpha_list
        else:
            by_name = {i["metadata"]["name"]: i for i in alpha_list["items"]}
            for name in (alpha_name, beta_name):
                assert by_name[name]["apiVersion"] == V1ALPHA1
                assert meaning(by_name[name]) == before[(name, V1ALPHA1)]
        listed = await kube.get(path(V1BETA1))
        assert {alpha_name, beta_name} <= {i["metadata"]["name"] for i in listed["items"]}
        with pytest.raises(errors.ApiError):  # a write needing conversion stores nothing
            await kube.create(
                path(V1ALPHA1),
                {**from_alpha, "metadata": {"name": f"down-{suffix}"}},
            )
        assert await stored(control_plane, f"down-{suffix}") is None
    finally:
        operator.start()
    after_operator = await wait_for(
        both_ways, lambda seen: seen == before, timeout=30, what="both versions readable again"
    )
    assert after_operator == before

    # kube-apiserver restarted: everything still readable through both versions.
    await asyncio.to_thread(control_plane.down, names=["kube-apiserver"], progress=lambda _m: None)
    await asyncio.to_thread(control_plane.up, progress=lambda _m: None)
    after_apiserver = await wait_for(
        both_ways, lambda seen: seen == before, timeout=60, what="both versions after a restart"
    )
    assert after_apiserver == before
    assert (await stored(control_plane, alpha_name) or {}).get("apiVersion") == V1BETA1
    # The operator's watches reconnect after a backoff of up to 30 s; the next test must not
    # create pods against its stale cache, so leave a freshly started operator behind.
    operator.kill()
    operator.start()


async def test_the_crd_serves_both_versions_and_points_conversion_at_the_operator(
    kube: KubeClient,
) -> None:
    crd = await kube.get(
        resource_path(
            "apiextensions.k8s.io/v1",
            "customresourcedefinitions",
            name="sidecarsets.apps.kruise.io",
        )
    )
    versions = {v["name"]: (v["served"], v["storage"]) for v in crd["spec"]["versions"]}
    assert versions == {"v1alpha1": (True, False), "v1beta1": (True, True)}
    webhook = crd["spec"]["conversion"]["webhook"]
    assert crd["spec"]["conversion"]["strategy"] == "Webhook"
    assert webhook["clientConfig"]["url"].startswith("https://127.0.0.1:")
    assert webhook["clientConfig"]["caBundle"]
    assert "service" not in webhook["clientConfig"]
    assert "v1beta1" in crd["status"]["storedVersions"]


async def test_a_kruise_v1beta1_manifest_with_a_bad_custom_version_is_refused_clearly(
    kube: KubeClient, namespace: str
) -> None:
    body = with_filebeat_image(
        conversion.to_v1beta1(
            k.scoped(k.load("tests/fixtures/filebeat-sidecarset.yaml")[0], namespace)
        ),
        k.OLD,
    )
    body["spec"]["updateStrategy"] = {"partition": "120%"}
    with pytest.raises(errors.Invalid) as refused:
        await kube.create(path(V1BETA1), body)
    assert "partition" in str(refused.value)


async def test_the_cli_steers_a_v1beta1_sidecarset_and_reads_it_while_the_operator_is_down(
    kube: KubeClient,
    namespace: str,
    sidecarsets: k.SidecarSets,
    control_plane: ControlPlane,
    operator: OperatorHandle,
    tmp_path: Path,
) -> None:
    body = conversion.to_v1beta1(k.sidecarset(f"cli-{namespace[-5:]}", namespace, maxUnavailable=2))
    name = await sidecarsets.create(body)
    await k.create_ready(kube, namespace, k.pod("p1"), k.pod("p2"))
    await wait_for(
        lambda: get_as(kube, V1BETA1, name),
        lambda s: (s.get("status") or {}).get("updatedReadyPods") == 2,
        timeout=60,
        what="two updated ready pods",
    )

    # inject -f with the v1beta1 manifest decides what the webhook decided.
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(yaml.safe_dump_all([body, k.pod("offline")]))
    offline = await run_cli(control_plane, "inject", "-f", str(manifest), "-n", namespace)
    assert offline.code == 0, offline.err
    [injected] = yaml.safe_load_all(offline.out)
    live = (await k.pods(kube, namespace))[0]
    offline_hash = pod_contract.read_upgrade_specs(
        injected["metadata"]["annotations"], pod_contract.HASH_ANNOTATION
    )
    live_hash = pod_contract.read_upgrade_specs(
        live["metadata"]["annotations"], pod_contract.HASH_ANNOTATION
    )
    assert offline_hash[name].hash == live_hash[name].hash

    # plan, pause, a rollout through v1beta1, history and rollback.
    planned = await run_cli(control_plane, "plan", name, "-o", "json")
    assert planned.code == 0, planned.err
    paused = await run_cli(control_plane, "pause", name)
    assert paused.code == 0, paused.err
    assert (await get_as(kube, V1BETA1, name))["spec"]["updateStrategy"]["paused"] is True
    assert (await run_cli(control_plane, "resume", name)).code == 0
    await kube.patch(
        path(V1BETA1, name),
        [{"op": "replace", "path": "/spec/containers/0/image", "value": k.NEW}],
        content_type=JSON_PATCH,
    )
    await wait_for(
        lambda: k.pods(kube, namespace),
        lambda ps: set(k.images(ps).values()) == {k.NEW},
        timeout=120,
        what="both pods on the new sidecar",
    )
    await wait_for(
        lambda: run_cli(control_plane, "history", name, "-o", "json"),
        lambda r: r.code == 0 and len(json.loads(r.out)) == 2,
        timeout=60,
        what="two revisions",
    )
    rolled = await run_cli(control_plane, "rollback", name)
    assert rolled.code == 0, rolled.err
    assert f"containers[filebeat].image: {k.NEW} -> {k.OLD}" in rolled.out
    restored = await get_as(kube, V1BETA1, name)
    assert restored["spec"]["containers"][0]["image"] == k.OLD
    assert restored["apiVersion"] == V1BETA1

    # status reads the stored version, so it answers while the operator is down.
    operator.kill()
    try:
        status = await run_cli(control_plane, "status", name, "-o", "json")
        assert status.code == 0, status.err
        assert name in status.out
    finally:
        operator.start()


async def put_in_etcd(control_plane: ControlPlane, obj: dict[str, Any]) -> None:
    """Store `obj` as it is, bypassing the API server: what Kruise 1.8 or an earlier version of
    this operator (storage v1alpha1) left behind."""
    key = f"/registry/apps.kruise.io/sidecarsets/{obj['metadata']['name']}"
    url = f"http://127.0.0.1:{control_plane.state().ports['etcd']}/v3/kv/put"
    body = {
        "key": base64.b64encode(key.encode()).decode(),
        "value": base64.b64encode(json.dumps(obj).encode()).decode(),
    }
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as resp:
        assert resp.status == 200, await resp.text()


async def test_objects_stored_as_v1alpha1_are_read_at_start_and_migrate_to_v1beta1(
    kube: KubeClient,
    namespace: str,
    sidecarsets: k.SidecarSets,
    control_plane: ControlPlane,
    operator: OperatorHandle,
) -> None:
    """The bootstrap trap: the operator lists SidecarSets through v1beta1, and an object stored
    as v1alpha1 needs the operator's own conversion webhook for that. It starts its server and
    points the CRD at it before its informers, so it starts, reads the object and reports it."""
    name = f"legacy-{namespace[-5:]}"
    legacy = {
        "apiVersion": V1ALPHA1,
        "kind": "SidecarSet",
        "metadata": {
            "name": name,
            "uid": str(uuid.uuid4()),
            "generation": 1,
            "creationTimestamp": "2024-01-01T00:00:00Z",
            "labels": {pod_contract.CUSTOM_VERSION_LABEL: "legacy"},
        },
        "spec": {
            "selector": {"matchLabels": {"inject": "filebeat"}},
            "namespace": namespace,
            "containers": [{"name": "filebeat", "image": k.OLD}],
        },
    }
    operator.kill()
    try:
        await put_in_etcd(control_plane, legacy)
        sidecarsets.names.append(name)
        assert (await stored(control_plane, name) or {}).get("apiVersion") == V1ALPHA1
        with pytest.raises(errors.ApiError, match="conversion webhook"):
            await get_as(kube, V1BETA1, name)  # needs the operator, which is down
    finally:
        operator.start()  # blocks until it is ready: its informers listed through v1beta1
    as_beta = await get_as(kube, V1BETA1, name)
    assert as_beta["spec"]["namespaceSelector"] == {
        "matchLabels": {pod_contract.NAMESPACE_NAME_LABEL: namespace}
    }
    assert as_beta["spec"]["customVersion"] == "legacy"
    as_alpha = await get_as(kube, V1ALPHA1, name)
    assert as_alpha["spec"]["namespace"] == namespace
    assert as_alpha["metadata"]["labels"] == {pod_contract.CUSTOM_VERSION_LABEL: "legacy"}
    await wait_for(
        lambda: get_as(kube, V1BETA1, name),
        lambda s: (s.get("status") or {}).get("observedGeneration") == 1,
        timeout=30,
        what="the controller reporting the legacy SidecarSet",
    )
    [injected] = await k.create_ready(kube, namespace, k.pod("p1"))
    # Injected (after the app: the object was stored without the defaulting webhook).
    assert sorted(c["name"] for c in injected["spec"]["containers"]) == ["app", "filebeat"]

    # Migrating the stored form: one write through v1beta1, and etcd holds v1beta1.
    current = await get_as(kube, V1BETA1, name)
    await kube.replace(path(V1BETA1, name), current)
    migrated = await stored(control_plane, name)
    assert migrated is not None
    assert migrated["apiVersion"] == V1BETA1
    assert "namespace" not in migrated["spec"]
    assert meaning(await get_as(kube, V1ALPHA1, name))["spec"]["namespace"] == namespace


async def test_taking_over_a_kruise_1_9_crd_and_its_objects_as_the_guide_says(
    kube: KubeClient,
    namespace: str,
    sidecarsets: k.SidecarSets,
    control_plane: ControlPlane,
    operator: OperatorHandle,
) -> None:
    """docs/migrating-from-kruise.md, Kruise 1.9: the CRD converts through Kruise's webhook and
    holds objects Kruise wrote as v1beta1; `kubectl apply --server-side --force-conflicts` of
    our CRD, then the operator, and everything reads through both versions."""
    name = f"kruise-{namespace[-5:]}"
    written_by_kruise: dict[str, Any] = {
        "apiVersion": V1BETA1,
        "kind": "SidecarSet",
        "metadata": {
            "name": name,
            "uid": str(uuid.uuid4()),
            "generation": 1,
            "creationTimestamp": "2025-06-01T00:00:00Z",
        },
        "spec": {
            "selector": {"matchLabels": {"inject": "filebeat"}},
            "namespaceSelector": {"matchLabels": {pod_contract.NAMESPACE_NAME_LABEL: namespace}},
            "customVersion": "k1",
            "containers": [{"name": "filebeat", "image": k.OLD}],
        },
    }
    crd = resource_path(
        "apiextensions.k8s.io/v1", "customresourcedefinitions", name="sidecarsets.apps.kruise.io"
    )
    operator.kill()
    try:
        kruise_webhook = {"namespace": "kruise-system", "name": "kruise-webhook-service"}
        await kube.patch(
            crd,
            {
                "spec": {
                    "conversion": {
                        "webhook": {
                            "clientConfig": {
                                "url": None,
                                "service": {**kruise_webhook, "path": "/convert"},
                            }
                        }
                    }
                }
            },
        )
        await put_in_etcd(control_plane, written_by_kruise)
        sidecarsets.names.append(name)
        our_crd = str(k.ROOT / "charts" / "sidecarset" / "crds" / "sidecarsets.yaml")
        applied = await asyncio.to_thread(
            kubectl, control_plane, "apply", "--server-side", "--force-conflicts", "-f", our_crd
        )
        assert applied.returncode == 0, applied.stderr
        # Stored as v1beta1: readable before the operator is back, exactly as Kruise wrote it.
        read = await get_as(kube, V1BETA1, name)
        assert read["spec"] == written_by_kruise["spec"]
    finally:
        operator.start()
    live = await kube.get(crd)
    assert live["spec"]["conversion"]["webhook"]["clientConfig"]["url"].startswith(
        "https://127.0.0.1:"
    )
    as_alpha = await wait_for(
        lambda: get_as(kube, V1ALPHA1, name),
        lambda _obj: True,
        timeout=30,
        what="a v1alpha1 read through the operator's conversion",
    )
    assert as_alpha["metadata"]["labels"] == {pod_contract.CUSTOM_VERSION_LABEL: "k1"}
    assert as_alpha["spec"]["namespaceSelector"] == written_by_kruise["spec"]["namespaceSelector"]
    assert "namespace" not in as_alpha["spec"]  # Kruise's conversion had already dropped it
    [injected] = await k.create_ready(kube, namespace, k.pod("p1"))
    assert sorted(c["name"] for c in injected["spec"]["containers"]) == ["app", "filebeat"]
