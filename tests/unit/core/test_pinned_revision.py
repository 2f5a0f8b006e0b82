"""Resolving a pinned revision (behaviour.md §4.6) and reading ControllerRevisions as records.

Both moved from `app/` into core: they read ControllerRevision objects handed to them, so they
are tested here on plain dicts, without a store or an API server.
"""

from __future__ import annotations

import json
from typing import Any

from sidecarset.core import defaults, model, pod_contract, revisions
from sidecarset.core.injection import (
    RevisionLookupFailed,
    find_revision,
    resolve_pinned_revision,
)


def live_raw(revision: dict[str, Any] | None = None) -> dict[str, Any]:
    strategy = {"revision": revision} if revision is not None else {}
    return defaults.apply_defaults(
        {
            "apiVersion": "apps.kruise.io/v1alpha1",
            "kind": "SidecarSet",
            "metadata": {
                "name": "logs",
                "annotations": {pod_contract.HASH_ANNOTATION: "live-hash"},
            },
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "containers": [{"name": "agent", "image": "agent:2.0"}],
                "injectionStrategy": strategy,
            },
        }
    )


def controller_revision(
    name: str, number: int, image: str, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {pod_contract.SIDECARSET_NAME_LABEL: "logs", **(labels or {})},
            "annotations": {pod_contract.HASH_ANNOTATION: f"hash-of-{name}"},
        },
        "revision": number,
        "data": {"spec": {"containers": [{"name": "agent", "image": image}]}},
    }


STORED = [
    controller_revision("logs-a", 1, "agent:1.0", {pod_contract.CUSTOM_VERSION_LABEL: "stable"}),
    controller_revision("logs-b", 2, "agent:1.5", {pod_contract.CUSTOM_VERSION_LABEL: "stable"}),
    controller_revision("logs-c", 3, "agent:2.0"),
]


def parse(raw: dict[str, Any]) -> model.SidecarSet:
    return model.parse_sidecarset(raw)


def test_nothing_pinned_resolves_to_none() -> None:
    raw = live_raw()

    assert find_revision(parse(raw), STORED) is None
    assert resolve_pinned_revision(raw, parse(raw), STORED) is None


def test_a_revision_name_restores_that_revision_with_its_hash_and_name() -> None:
    raw = live_raw({"revisionName": "logs-a"})

    historic = resolve_pinned_revision(raw, parse(raw), STORED)

    assert isinstance(historic, model.SidecarSet)
    assert [c.image for c in historic.spec.containers] == ["agent:1.0"]
    assert historic.metadata.annotations[pod_contract.HASH_ANNOTATION] == "hash-of-logs-a"
    assert historic.status.latest_revision == "logs-a"
    assert raw["spec"]["containers"][0]["image"] == "agent:2.0"  # the live object is untouched


def test_a_custom_version_picks_its_newest_revision() -> None:
    raw = live_raw({"customVersion": "stable"})

    found = find_revision(parse(raw), STORED)

    assert isinstance(found, dict)
    assert found["metadata"]["name"] == "logs-b"


def test_a_missing_revision_is_a_failure_naming_it_not_an_exception() -> None:
    by_name = live_raw({"revisionName": "logs-gone"})
    by_version = live_raw({"customVersion": "canary"})

    missing_name = resolve_pinned_revision(by_name, parse(by_name), STORED)
    missing_version = resolve_pinned_revision(by_version, parse(by_version), STORED)

    assert isinstance(missing_name, RevisionLookupFailed)
    assert "'logs-gone'" in missing_name.reason
    assert isinstance(missing_version, RevisionLookupFailed)
    assert "'canary'" in missing_version.reason


def test_an_unreadable_revision_is_a_failure() -> None:
    raw = live_raw({"revisionName": "logs-bad"})
    bad = controller_revision("logs-bad", 4, "agent:1.0")
    bad["data"] = {"spec": {"containers": "not a list"}}

    failed = resolve_pinned_revision(raw, parse(raw), [bad])

    assert isinstance(failed, RevisionLookupFailed)
    assert "'logs-bad' is unreadable" in failed.reason


def test_revision_records_keep_only_the_sidecarsets_own_revisions() -> None:
    other = controller_revision("mesh-a", 1, "mesh:1")
    other["metadata"]["labels"][pod_contract.SIDECARSET_NAME_LABEL] = "mesh"

    records = revisions.revision_records("logs", [*STORED, other])

    assert [(r.name, r.revision) for r in records] == [("logs-a", 1), ("logs-b", 2), ("logs-c", 3)]
    assert json.loads(records[0].data) == STORED[0]["data"]
    assert records[0].labels[pod_contract.CUSTOM_VERSION_LABEL] == "stable"
