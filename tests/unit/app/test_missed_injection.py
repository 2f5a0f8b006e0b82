"""SidecarSetReconciler.missed_injection: which uninjected pods count as missed."""

from __future__ import annotations

from typing import Any

import pytest

from sidecarset.app.cached_objects import NamespaceView, SidecarSetEntry
from sidecarset.app.controller import (
    _injected_index,
    _uninjected_index,
    _uninjected_label_index,
)
from sidecarset.app.event_routing import UNINJECTED_BY_LABEL
from sidecarset.app.reconciler import SidecarSetReconciler
from sidecarset.app.writer import Writer
from sidecarset.core import pod_contract
from sidecarset.core.model import SidecarSet, parse_sidecarset
from sidecarset.core.podview import PodView, podview_from_dict
from sidecarset.shell.store import Store
from tests.unit.private_loop import run

BORN = "2025-01-01T12:00:00Z"
LATER = "2025-01-01T12:00:01Z"
EARLIER = "2025-01-01T11:59:59Z"


def sidecarset() -> SidecarSet:
    return parse_sidecarset(
        {
            "metadata": {"name": "logs", "creationTimestamp": BORN},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "containers": [{"name": "filebeat", "image": "filebeat:1"}],
            },
        }
    )


def pod(
    name: str,
    *,
    namespace: str = "shop",
    created: str = LATER,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    priority_class: str = "",
) -> PodView:
    body: dict[str, Any] = {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": created,
            "labels": {"app": "web", **(labels or {})},
            "annotations": annotations or {},
        },
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
        "status": {"phase": "Running"},
    }
    if priority_class:
        body["spec"]["priorityClassName"] = priority_class
    return podview_from_dict(body)


async def missed(
    *pods: PodView,
    excluded: tuple[str, ...] = (),
    critical_skipped: bool = True,
    by_label: bool = True,
) -> list[str]:
    store: Store[PodView] = Store("pods")
    store.add_index("injected", _injected_index)
    store.add_index("uninjected", _uninjected_index)
    if by_label:  # as the controller indexes its pod store
        store.add_index(UNINJECTED_BY_LABEL, _uninjected_label_index)
    await store.replace({f"{p.namespace}/{p.name}": p for p in pods})
    namespaces: Store[NamespaceView] = Store("namespaces")
    await namespaces.replace({})
    reconciler = SidecarSetReconciler(
        sidecarsets=Store[SidecarSetEntry]("sidecarsets"),
        pods=store,
        namespaces=namespaces,
        revision_store=Store[dict[str, Any]]("revisions"),
        writer=Writer(None, store, namespace="ops"),  # type: ignore[arg-type]
        excluded_namespaces=excluded,
        critical_pods_skipped=critical_skipped,
    )
    return sorted(str(p.key) for p in reconciler.missed_injection(sidecarset()))


@pytest.mark.parametrize(
    ("candidate", "counted"),
    [
        pytest.param(pod("late"), True, id="created-after-the-sidecarset"),
        pytest.param(pod("old", created=EARLIER), False, id="older-than-the-sidecarset"),
        pytest.param(pod("same", created=BORN), False, id="created-in-the-same-second"),
        pytest.param(pod("other", labels={"app": "db"}), False, id="not-selected"),
        pytest.param(
            pod("out", labels={pod_contract.INJECT_OPT_OUT: "false"}), False, id="opted-out"
        ),
        pytest.param(
            pod("done", annotations={pod_contract.INJECTED_LIST_ANNOTATION: "logs"}),
            False,
            id="injected",
        ),
        pytest.param(pod("sys", namespace="kube-system"), False, id="excluded-namespace"),
        pytest.param(pod("cni", priority_class="system-node-critical"), False, id="node-critical"),
        pytest.param(
            pod("dns", priority_class="system-cluster-critical"), False, id="cluster-critical"
        ),
        pytest.param(pod("batch", priority_class="high"), True, id="other-priority-class"),
    ],
)
def test_only_pods_admitted_without_the_webhook_count_as_missed(
    candidate: PodView, counted: bool
) -> None:
    found = run(missed(candidate, excluded=("kube-system",)))
    assert found == ([str(candidate.key)] if counted else [])


def test_critical_pods_count_as_missed_when_the_webhook_sees_them() -> None:
    """With --no-skip-critical-pods they go to the webhook like any pod: missing it is missed."""
    cni = pod("cni", priority_class="system-node-critical")
    assert run(missed(cni, critical_skipped=False)) == [str(cni.key)]


def test_the_label_index_finds_exactly_what_reading_every_uninjected_pod_finds() -> None:
    pods = [
        pod("late"),
        pod("other", labels={"app": "db"}),
        pod("out", labels={pod_contract.INJECT_OPT_OUT: "false"}),
        pod("done", annotations={pod_contract.INJECTED_LIST_ANNOTATION: "logs"}),
        pod("old", created=EARLIER),
        pod("more", labels={"tier": "fe"}),
    ]

    indexed = run(missed(*pods))

    assert indexed == run(missed(*pods, by_label=False))
    assert indexed == ["shop/late", "shop/more"]


def test_uninjected_pods_are_filed_under_each_label_and_injected_ones_nowhere() -> None:
    assert sorted(_uninjected_label_index(pod("a", labels={"tier": "fe"}))) == [
        "app=web",
        "tier=fe",
    ]
    injected = pod("b", annotations={pod_contract.INJECTED_LIST_ANNOTATION: "logs"})
    assert _uninjected_label_index(injected) == []
