"""The pod webhook asks not to be called again (`reinvocationPolicy: Never`): a second call
would change nothing, since a pod carrying our injection record is never injected again, so
claiming that reinvocation lets sidecars see later webhooks' containers would be false."""

from __future__ import annotations

import copy
from typing import Any

from sidecarset.app import webhooks_config
from sidecarset.core import injection
from tests.unit.core.test_patches import make_pod, make_sidecarset

NOW = "2025-01-01T00:00:00Z"


def test_the_pod_webhook_is_not_reinvoked() -> None:
    endpoint = webhooks_config.Endpoint(ca_bundle=b"ca", url_base="https://127.0.0.1:1")
    body = webhooks_config.mutating_configuration(endpoint, operator_namespace="ops")

    [pods] = [w for w in body["webhooks"] if "pods" in w["rules"][0]["resources"]]

    assert pods["reinvocationPolicy"] == "Never"


def test_a_second_call_after_another_webhook_added_a_container_changes_nothing() -> None:
    sidecarset = make_sidecarset(
        "logs",
        containers=[
            {"name": "shipper", "image": "shipper:1", "shareVolumePolicy": {"type": "enabled"}}
        ],
    )
    pod = make_pod()
    first = injection.inject(pod, [sidecarset], {}, now=NOW, request_namespace="default")
    injected = injection.apply_injection(pod, first)
    later: dict[str, Any] = copy.deepcopy(injected)
    later["spec"]["containers"].append(
        {
            "name": "added-later",
            "image": "x:1",
            "volumeMounts": [{"name": "extra", "mountPath": "/extra"}],
        }
    )
    later["spec"]["volumes"] = [{"name": "extra", "emptyDir": {}}]

    again = injection.inject(later, [sidecarset], {}, now=NOW, request_namespace="default")

    assert first.changed
    assert not again.changed
