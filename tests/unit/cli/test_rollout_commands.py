"""`history` and `rollback` decisions on plain data: current marker, target, patch, changes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sidecarset.cli import rollout
from sidecarset.cli.errors import CliError
from sidecarset.core import defaults, model, revisions

OLD = "agent:1.0"
NEW = "agent:2.0"


def sidecarset_raw(image: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "web"}},
        "containers": [{"name": "agent", "image": image}],
        "volumes": [{"name": "shared", "emptyDir": {}}],
    }
    body.update(spec)
    return defaults.apply_defaults(
        {
            "apiVersion": "apps.kruise.io/v1alpha1",
            "kind": "SidecarSet",
            "metadata": {"name": "logs", "resourceVersion": "42"},
            "spec": body,
        }
    )


def revision_object(number: int, raw: dict[str, Any]) -> dict[str, Any]:
    ss = model.parse_sidecarset(raw)
    return {
        "metadata": {
            "name": f"logs-{number}",
            "labels": {"kruise.io/sidecarset-name": "logs"},
            "creationTimestamp": f"2025-01-0{number}T00:00:00Z",
        },
        "data": json.loads(revisions.revision_data(ss)),
        "revision": number,
    }


def history(live_image: str) -> list[rollout.Revision]:
    live = model.parse_sidecarset(sidecarset_raw(live_image))
    objects = [
        revision_object(2, sidecarset_raw(NEW)),
        revision_object(1, sidecarset_raw(OLD)),
    ]
    return rollout.revision_history(live, objects)


def test_history_is_oldest_first_and_marks_the_revision_of_the_live_spec() -> None:
    found = history(NEW)
    assert [(r.number, r.current, r.images) for r in found] == [
        (1, False, ("agent=agent:1.0",)),
        (2, True, ("agent=agent:2.0",)),
    ]
    assert rollout.history_table(found).splitlines() == [
        "REVISION   NAME     CURRENT   CREATED                IMAGES",
        "1          logs-1   -         2025-01-01T00:00:00Z   agent=agent:1.0",
        "2          logs-2   *         2025-01-02T00:00:00Z   agent=agent:2.0",
    ]


def test_rollback_defaults_to_the_newest_revision_other_than_the_current() -> None:
    assert rollout.choose_target(history(NEW), None).number == 1
    # Right after a rollback, before the controller renumbers revision 1: undo goes to 2.
    assert rollout.choose_target(history(OLD), None).number == 2


def test_rollback_to_a_missing_revision_lists_the_recorded_ones() -> None:
    with pytest.raises(CliError, match="no revision 7; the recorded revisions are 1, 2"):
        rollout.choose_target(history(NEW), 7)


def test_rollback_needs_the_live_spec_recorded_unless_a_revision_is_given() -> None:
    found = history("agent:3.0")
    with pytest.raises(CliError, match="not in the revision history yet"):
        rollout.choose_target(found, None)
    assert rollout.choose_target(found, 1).number == 1


def test_the_rollback_patch_restores_the_revision_fields_conditionally() -> None:
    target = rollout.choose_target(history(NEW), None)
    patch = rollout.rollback_patch(sidecarset_raw(NEW), target)
    assert patch["metadata"] == {"resourceVersion": "42"}
    assert set(patch["spec"]) == set(rollout.RESTORED_FIELDS)
    assert patch["spec"]["containers"][0]["image"] == OLD
    assert patch["spec"]["initContainers"] is None  # null removes it in a merge patch


def test_changes_name_the_image_and_other_fields() -> None:
    live = sidecarset_raw(NEW, volumes=[{"name": "extra", "emptyDir": {}}])
    live["spec"]["containers"][0]["args"] = ["-v"]
    target = rollout.choose_target(history(NEW), 1)
    assert rollout.spec_changes(live["spec"], target.spec) == [
        f"containers[agent].image: {NEW} -> {OLD}",
        "containers[agent]: args changed",
        "volumes[shared]: added",
        "volumes[extra]: removed",
    ]


def test_a_revisions_canonical_encoding_is_not_a_change() -> None:
    target = rollout.choose_target(history(NEW), 2)
    assert rollout.spec_changes(sidecarset_raw(NEW)["spec"], target.spec) == []
