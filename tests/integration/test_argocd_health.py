"""Argo CD's view of a live SidecarSet: the health checks run under Lua 5.1 during a rollout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from sidecarset.shell.kube.client import KubeClient, resource_path
from tests.integration import kubeobjects as k
from tests.integration.waiting import wait_for
from tests.luahealth import OURS, LuaHealthError, article_script, health

pytestmark = pytest.mark.usefixtures("operator")


@pytest_asyncio.fixture(loop_scope="session")
async def rolling_set(kube: KubeClient, namespace: str) -> AsyncIterator[str]:
    name = f"argo-{namespace[-5:]}"
    await k.create(kube, k.sidecarset(name, namespace, maxUnavailable=1))
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
