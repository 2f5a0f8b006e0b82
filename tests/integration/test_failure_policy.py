"""The default failure policy with every operator replica down (issue 13, docs/deploying.md,
"Failure policy"): `Fail`, except for what the cluster needs to heal. Shown on the real
apiserver with the operator SIGKILLed:

- pods the cluster and the operator need are created: system-critical pods anywhere (the match
  condition; CNI agents and DNS run at those priorities), the operator's own namespace;
- a pod a SidecarSet selects is refused, with a message naming the webhook, never created
  without its sidecar; a Deployment's pods follow once the operator is back (the ReplicaSet
  retries), injected;
- a critical pod admitted without the webhook is not reported as a missed injection.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sidecarset.app import webhooks_config
from sidecarset.devcluster.components import OPERATOR_NAMESPACE
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import KubeClient, resource_path
from tests.integration import kubeobjects as k
from tests.integration.conftest import OperatorHandle, deployment
from tests.integration.waiting import wait_for


def names(pod: dict[str, Any]) -> list[str]:
    return [c["name"] for c in pod["spec"]["containers"]]


def critical(pod: dict[str, Any], priority_class: str) -> dict[str, Any]:
    pod["spec"]["priorityClassName"] = priority_class
    return pod


async def condition(kube: KubeClient, sidecarset: str, kind: str) -> dict[str, Any]:
    found = (await k.get_sidecarset(kube, sidecarset)).get("status", {}).get("conditions") or []
    return next((c for c in found if c["type"] == kind), {})


async def test_with_every_replica_down_the_cluster_heals_and_selected_pods_wait(
    kube: KubeClient, namespace: str, sidecarsets: k.SidecarSets, operator: OperatorHandle
) -> None:
    name = await sidecarsets.create(k.sidecarset(f"down-{namespace[-5:]}", namespace))
    registered = await kube.get(
        resource_path(
            "admissionregistration.k8s.io/v1",
            "mutatingwebhookconfigurations",
            name=webhooks_config.MUTATING_NAME,
        )
    )
    pod_hook = registered["webhooks"][0]
    assert pod_hook["failurePolicy"] == "Fail"
    assert pod_hook["matchConditions"] == [webhooks_config.SKIP_CRITICAL_CONDITION]
    own = f"operator-ns-{namespace[-5:]}"
    # Creation times have second precision: pods of the SidecarSet's own second never count.
    await asyncio.sleep(1.1)
    operator.kill()
    try:
        with pytest.raises(errors.ApiError) as refused:
            await k.create(kube, k.pod("selected"), namespace)
        assert 'failed calling webhook "mutate-pod.sidecarset.kruise.io"' in str(refused.value)
        with pytest.raises(errors.ApiError):
            await k.create(kube, k.pod("unselected", {"inject": "nothing"}), namespace)
        created = {
            pc: await k.create(kube, critical(k.pod(f"crit-{pc}"), pc), namespace)
            for pc in webhooks_config.CRITICAL_PRIORITY_CLASSES
        }
        assert all(names(p) == ["app"] for p in created.values()), created
        mine = await k.create(kube, k.pod(own), OPERATOR_NAMESPACE)
        assert names(mine) == ["app"]
        await k.create(
            kube,
            deployment("web", 2, [{"name": "app", "image": "nginx:1.25"}], {"inject": "filebeat"}),
            namespace,
        )
        await wait_for(
            lambda: kube.get(
                resource_path("v1", "events", namespace=namespace),
                fieldSelector="reason=FailedCreate",
            ),
            lambda events: bool(events["items"]),
            timeout=30,
            what="the ReplicaSet's FailedCreate events",
        )
        assert await k.pods(kube, namespace, "app=web") == []
    finally:
        operator.start()
        await kube.delete(resource_path("v1", "pods", namespace=OPERATOR_NAMESPACE, name=own))
    web = await wait_for(
        lambda: k.pods(kube, namespace, "app=web"),
        lambda pods: len(pods) == 2,
        timeout=60,
        what="the Deployment's pods once the operator is back",
    )
    assert all(names(p) == ["filebeat", "app"] for p in web), [names(p) for p in web]
    # Reconciled after every pod above existed: the critical ones are by design, not missed.
    await wait_for(
        lambda: k.get_sidecarset(kube, name),
        lambda s: s.get("status", {}).get("matchedPods") == 2,
        timeout=30,
        what="status counting the Deployment's two pods",
    )
    missed = await condition(kube, name, "InjectionMissed")
    assert missed.get("status") != "True", missed  # absent, or False/AllInjected
