"""The pod webhook's candidate index: it only skips SidecarSets that cannot select the pod, so
the answer is the one injection gives with every SidecarSet."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sidecarset.app import cached_objects
from sidecarset.app.inject_webhook import PodInjector, inject_pod
from sidecarset.core import defaults
from sidecarset.shell.store import Store
from tests.unit.private_loop import run

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def sidecarset(name: str, selector: dict[str, Any]) -> cached_objects.SidecarSetEntry:
    body = {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "SidecarSet",
        "metadata": {"name": name},
        "spec": {"selector": selector, "containers": [{"name": name, "image": f"{name}:1"}]},
    }
    return cached_objects.entry(defaults.apply_defaults(body))


SIDECARSETS = {
    "by-app": sidecarset("by-app", {"matchLabels": {"app": "web"}}),
    "by-tier": sidecarset(
        "by-tier", {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe"]}]}
    ),
    "any-of": sidecarset(
        "any-of",
        {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "db"]}]},
    ),
    "not-in": sidecarset(
        "not-in", {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["db"]}]}
    ),
    "invalid": sidecarset("invalid", {"matchLabels": {"bad key!": "x"}}),
    "other": sidecarset("other", {"matchLabels": {"app": "other"}}),
}


def injector(store: Store[cached_objects.SidecarSetEntry]) -> PodInjector:
    run(store.replace(SIDECARSETS))
    return PodInjector(
        sidecarsets=store,
        namespaces=Store("namespaces"),
        revisions=Store("revisions"),
        client=None,
        now=lambda: NOW,
    )


def pod(labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "default", "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "main:1"}]},
    }


@pytest.mark.parametrize(
    "labels",
    [
        pytest.param({"app": "web", "tier": "fe"}, id="two-indexed"),
        pytest.param({"app": "db"}, id="only-unindexed"),
        pytest.param({}, id="no-labels"),
    ],
)
def test_candidates_inject_what_all_sidecarsets_would(labels: dict[str, str]) -> None:
    webhook = injector(Store("sidecarsets"))
    candidates = webhook.candidates(pod(labels))
    with_candidates = inject_pod(
        pod(labels),
        candidates,
        {},
        revisions=list,
        now=NOW,
        request_namespace="default",
        draw=float,
    )
    with_all = inject_pod(
        pod(labels),
        list(SIDECARSETS.values()),
        {},
        revisions=list,
        now=NOW,
        request_namespace="default",
        draw=float,
    )
    assert with_candidates.injected == with_all.injected
    assert with_candidates.containers == with_all.containers
    assert with_candidates.annotations == with_all.annotations
    assert with_candidates.warnings == with_all.warnings


def test_only_sidecarsets_requiring_a_missing_label_are_skipped() -> None:
    webhook = injector(Store("sidecarsets"))
    names = {e.name for e in webhook.candidates(pod({"app": "web"}))}
    assert names == {"by-app", "any-of", "not-in", "invalid"}


def test_a_new_sidecarset_is_a_candidate_at_once() -> None:
    store: Store[cached_objects.SidecarSetEntry] = Store("sidecarsets")
    webhook = injector(store)
    assert "late" not in {e.name for e in webhook.candidates(pod({"app": "late"}))}
    run(store.put("late", sidecarset("late", {"matchLabels": {"app": "late"}})))
    assert "late" in {e.name for e in webhook.candidates(pod({"app": "late"}))}
