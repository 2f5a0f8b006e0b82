"""The article's pipeline for real: nginx on the real node, Filebeat injected beside it,
shipping every access-log line; then Filebeat upgraded in place, 7.16.2 -> 7.16.3.

With the registry on a pod volume (our example) nothing is lost and nothing is shipped twice.
With the registry in the container's own filesystem (the article's manifest) the new container
starts from nothing and ships every line again: that is measured and asserted too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from sidecarset.devcluster import logpipeline as lp
from sidecarset.devcluster.realnode import RealNode
from sidecarset.shell.kube.client import KubeClient, resource_path
from tests.integration import kubeobjects as k
from tests.integration import realnode as rn

pytestmark = pytest.mark.usefixtures("operator")

PODS = 3


async def upgrade(
    kube: KubeClient,
    namespace: str,
    sidecarsets: k.SidecarSets,
    node: RealNode,
    record_property: Callable[[str, object], None],
    *,
    registry_on_volume: bool,
) -> tuple[lp.UpgradeResult, dict[str, str]]:
    """Deploy the example (3 nginx pods), upgrade Filebeat in place under traffic, count."""
    [example] = k.load("examples/logging/filebeat-sidecarset.yaml")
    label = f"inject-{uuid.uuid4().hex[:6]}"  # only this test's pods
    body = lp.local_sidecarset(
        example,
        name="fb-" + namespace[-12:],
        namespace=namespace,
        registry_on_volume=registry_on_volume,
    )
    body["spec"]["selector"] = {"matchLabels": {label: "true"}}
    name = await sidecarsets.create(body)
    await kube.create(
        resource_path("v1", "configmaps", namespace=namespace), lp.filebeat_configmap()
    )
    app = lp.nginx_deployment(rn.app_image(node.images_dir), PODS, label=label)
    await kube.create(resource_path("apps/v1", "deployments", namespace=namespace), app)
    pods = await lp.nginx_pods(kube, namespace, PODS, timeout=180)
    uids = [p["metadata"]["uid"] for p in await k.pods(kube, namespace, "app=nginx")]
    result = await lp.upgrade_under_traffic(
        kube,
        sidecarset=name,
        pods=pods,
        new_image=rn.FILEBEAT_NEW,
        shipped=lp.store_dirs(node.layout.kubelet_dir, uids),
        progress=lambda _m: None,
    )
    for phase, counts in result.phases.items():
        record_property(phase, counts.line())
    return result, pods


async def test_filebeat_ships_every_line_exactly_once_across_an_in_place_upgrade(
    kube: KubeClient,
    namespace: str,
    sidecarsets: k.SidecarSets,
    real_node: RealNode,
    record_property: Callable[[str, object], None],
) -> None:
    result, pods = await upgrade(
        kube, namespace, sidecarsets, real_node, record_property, registry_on_volume=True
    )
    assert result.total.sent >= PODS * 80
    assert result.total.missing == 0, result.phases
    assert result.phases["before"].duplicates == 0, result.phases  # nothing re-read from start
    # Filebeat is at-least-once: a line the output has written but whose acknowledgement the
    # registry has not recorded when the old container stops is shipped again. Seen: 0 in most
    # runs, 3 of 828 once on a loaded machine; far from the registry-in-container case, where
    # every earlier line comes again.
    assert result.total.duplicates <= max(3, result.total.sent // 100), result.phases
    after = await k.pods(kube, namespace, "app=nginx")
    assert all(rn.statuses(p)["filebeat"]["restartCount"] == 1 for p in after)
    assert all(rn.statuses(p)["nginx"]["restartCount"] == 0 for p in after)
    assert set(pods) == {p["metadata"]["name"] for p in after}


async def test_a_registry_in_the_container_ships_every_line_again_after_the_upgrade(
    kube: KubeClient,
    namespace: str,
    sidecarsets: k.SidecarSets,
    real_node: RealNode,
    record_property: Callable[[str, object], None],
) -> None:
    result, _ = await upgrade(
        kube, namespace, sidecarsets, real_node, record_property, registry_on_volume=False
    )
    # Nothing is lost, but the new container reads each log from the start again: every line
    # written before the upgrade arrives a second time.
    assert result.total.missing == 0, result.phases
    assert result.phases["before"].duplicates == result.phases["before"].sent, result.phases
