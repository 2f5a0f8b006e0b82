"""Argo CD's view of a live SidecarSet: the health checks run under Lua 5.1 during a rollout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from sidecarset.core import conversion
from sidecarset.shell.kube.client import JSON_PATCH, KubeClient, resource_path
from tests.integration import kubeobjects as k
from tests.integration.waiting import wait_for
from tests.luahealth import OURS, LuaHealthError, article_script, health

pytestmark = pytest.mark.usefixtures("operator")


@pytest_asyncio.fixture(loop_scope="session")
async def rolling_set(kube: KubeClient, namespace: str) -> AsyncIterator[str]:
    name = f"argo-{namespace[-5:]}"
    await k.create(kube, k.sidecarset(name, namespace, maxUnavailable=1))
    await k.wait_seen(kube, name)
    for i in range(6):
        await k.create(kube, k.pod(f"p{i}"), namespace)
    await wait_for(
        lambda: k.get_sidecarset(kube, name),
        lambda ss: ss.get("status", {}).get("updatedReadyPods") == 6,
        timeout=90,
        what="6 pods injected and ready",
    )
    yield name
    await k.delete_sidecarset(kube, name)


async def test_the_shipped_check_follows_a_rollout(kube: KubeClient, rolling_set: str) -> None:
    script = OURS.read_text()
    assert health(script, await k.get_sidecarset(kube, rolling_set))["status"] == "Healthy"
    await k.set_image(kube, rolling_set, k.NEW)
    seen: list[str] = []
    for _ in range(1200):
        obj = await k.get_sidecarset(kube, rolling_set)
        seen.append(health(script, obj)["status"])
        status = obj.get("status", {})
        if (
            status.get("observedGeneration") == obj["metadata"]["generation"]
            and status.get("updatedReadyPods") == 6 == status.get("updatedPods")
            and seen[-1] == "Healthy"
        ):
            break
        await asyncio.sleep(0.05)
    assert "Progressing" in seen, seen
    assert seen[-1] == "Healthy", seen
    assert set(seen) <= {"Healthy", "Progressing"}, seen


async def test_the_shipped_check_reports_suspended_when_paused(
    kube: KubeClient, rolling_set: str
) -> None:
    path = resource_path("apps.kruise.io/v1alpha1", "sidecarsets", name=rolling_set)
    await kube.patch(path, {"spec": {"updateStrategy": {"paused": True}}})
    obj = await k.get_sidecarset(kube, rolling_set)
    assert health(OURS.read_text(), obj) == {
        "status": "Suspended",
        "message": "SidecarSet rollout is paused",
    }


async def test_the_articles_check_cannot_evaluate_a_live_sidecarset(
    kube: KubeClient, rolling_set: str
) -> None:
    obj: dict[str, Any] = await k.get_sidecarset(kube, rolling_set)
    with pytest.raises(LuaHealthError, match="attempt to compare"):
        health(article_script(), obj)


@pytest.mark.parametrize("version", ["apps.kruise.io/v1alpha1", "apps.kruise.io/v1beta1"])
async def test_the_shipped_check_reads_both_versions_alike(
    kube: KubeClient, namespace: str, version: str
) -> None:
    """Argo CD keys health checks by group and kind, so one script sees live objects of either
    version; created and rolled through `version`, read through both."""
    name = f"argo-{version[-7:]}-{namespace[-5:]}"
    body = k.sidecarset(name, namespace, maxUnavailable=1)
    if version.endswith("v1beta1"):
        body = conversion.to_v1beta1(body)
    await k.create(kube, body)
    try:
        for i in range(3):
            await k.create(kube, k.pod(f"p{i}"), namespace)
        script = OURS.read_text()
        paths = {v: resource_path(v, "sidecarsets", name=name) for v in conversion.VERSIONS}

        async def both() -> dict[str, dict[str, str]]:
            """The check's answer through each version, for one resourceVersion (retried
            while the object changes between the two reads)."""
            for _ in range(50):
                objs = {v: await kube.get(p) for v, p in paths.items()}
                if len({o["metadata"]["resourceVersion"] for o in objs.values()}) == 1:
                    return {v: health(script, o) for v, o in objs.items()}
            raise AssertionError(f"{name} changed between every two reads")

        first = await wait_for(
            both,
            lambda seen: all(h["status"] == "Healthy" for h in seen.values()),
            timeout=90,
            what="Healthy through both versions",
        )
        assert first[conversion.V1ALPHA1] == first[conversion.V1BETA1]
        await kube.patch(
            paths[version],
            [{"op": "replace", "path": "/spec/containers/0/image", "value": k.NEW}],
            content_type=JSON_PATCH,
        )
        seen: list[dict[str, dict[str, str]]] = []
        for _ in range(600):
            seen.append(await both())
            if seen[-1][version]["status"] == "Healthy" and len(seen) > 1:
                obj = await kube.get(paths[version])
                if (obj.get("status") or {}).get("updatedReadyPods") == 3:
                    break
            await asyncio.sleep(0.05)
        assert all(s[conversion.V1ALPHA1] == s[conversion.V1BETA1] for s in seen), seen
        assert any(s[version]["status"] == "Progressing" for s in seen), seen
        assert seen[-1][version]["status"] == "Healthy", seen
        await kube.patch(paths[version], {"spec": {"updateStrategy": {"paused": True}}})
        assert {h["status"] for h in (await both()).values()} == {"Suspended"}
    finally:
        await k.delete_sidecarset(kube, name)
