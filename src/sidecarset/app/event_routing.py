"""Object events -> the SidecarSet keys to reconcile. Never calls the API, never decides.

Pods map to the SidecarSets named in their injected-list annotation, on the old AND the new
object (so a pod that stops being injected, or is deleted, still wakes its SidecarSets; Kruise
ignores deletions, which leaves status stale). A pod that a SidecarSet's selector matches but
that carries no injected-list (created while the webhook was down) maps to that SidecarSet too,
so missed injections are counted. Namespace label changes wake SidecarSets with a
namespaceSelector; revisions wake the SidecarSet named in their label. A pod update that
changes nothing but its `SidecarSetUpgradable` condition is routed apart
(`upgradable_condition_keys`), to rounds a few seconds apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from sidecarset.app.cached_objects import NamespaceView, SidecarSetEntry
from sidecarset.core import pod_contract, selectors
from sidecarset.core.podview import PodView
from sidecarset.shell.store import Added, Deleted, Event, Store, Updated


def _objects(event: Event[Any]) -> list[Any]:
    match event:
        case Added(new=new):
            return [new]
        case Updated(old=old, new=new):
            return [old, new]
        case Deleted(old=old):
            return [old]


def sidecarset_keys(event: Event[SidecarSetEntry]) -> Iterable[str]:
    """Every SidecarSet event but an update of its status alone: each of our own status writes
    would otherwise wake one more round. (Kruise wakes on generation changes only; label and
    annotation edits count here, as they carry the hashes and the custom version.)"""
    if isinstance(event, Updated) and _without_status(event.old.raw) == _without_status(
        event.new.raw
    ):
        return []
    return [event.key]


def _without_status(raw: dict[str, Any]) -> tuple[object, object]:
    metadata = {
        k: v
        for k, v in (raw.get("metadata") or {}).items()
        if k not in ("resourceVersion", "managedFields")
    }
    return metadata, raw.get("spec")


UNINJECTED_BY_LABEL = "uninjected-by-label"
"""Pod index: pods without any injection record, by `key=value` label."""


def label_index_value(key: str, value: str) -> str:
    """How a label is filed in `UNINJECTED_BY_LABEL` (`=` cannot appear in a label key)."""
    return f"{key}={value}"


def injected_names(pod: PodView) -> frozenset[str]:
    return pod_contract.read_injected_list(pod.annotations)


def changes_nothing_but_upgradable_condition(old: PodView, new: PodView) -> bool:
    """The update changed nothing a round reads (the `PodView` projection) but, perhaps, the
    pod's `SidecarSetUpgradable` condition and its resourceVersion.

    That condition is our own record, written after each pod update with spare rate, and no
    decision waits for it. Waking a round on it cost a round per updated pod: the condition
    writes trail a big rollout (about 200 s at 10,000 pods), each bringing a round over every
    pod."""
    if old.spec != new.spec or old.status.container_statuses != new.status.container_statuses:
        return False
    if old.metadata != msgspec.structs.replace(
        new.metadata, resource_version=old.metadata.resource_version
    ):
        return False
    return _without_upgradable(old) == _without_upgradable(new)


def _without_upgradable(pod: PodView) -> object:
    status = pod.status
    conditions = tuple(c for c in status.conditions if c.type != pod_contract.UPGRADABLE_CONDITION)
    return msgspec.structs.replace(status, conditions=conditions)


def pod_keys(sidecarsets: Store[SidecarSetEntry]) -> Callable[[Event[PodView]], Iterable[str]]:
    """Every pod event but an update of nothing a round reads beyond the pod's
    `SidecarSetUpgradable` condition (those go to `upgradable_condition_keys`)."""

    def keys(event: Event[PodView]) -> Iterable[str]:
        if isinstance(event, Updated) and changes_nothing_but_upgradable_condition(
            event.old, event.new
        ):
            return []
        return _pod_sidecarsets(sidecarsets, event)

    return keys


def upgradable_condition_keys(
    sidecarsets: Store[SidecarSetEntry],
) -> Callable[[Event[PodView]], Iterable[str]]:
    """Only the updates `pod_keys` leaves out. The controller gathers them into a round every
    few seconds (`CONDITION_EVENT_BATCH` in `app/controller.py`): no decision waits for them, but
    a round lets go of the pod objects the previous one judged (kept until then: at 10,000 pods,
    a rollout's trailing conditions held about 40 MB of old pod copies) and checks a
    not-upgradable pod's verdict again."""

    def keys(event: Event[PodView]) -> Iterable[str]:
        if isinstance(event, Updated) and changes_nothing_but_upgradable_condition(
            event.old, event.new
        ):
            return _pod_sidecarsets(sidecarsets, event)
        return []

    return keys


def _pod_sidecarsets(sidecarsets: Store[SidecarSetEntry], event: Event[PodView]) -> list[str]:
    names: set[str] = set()
    for pod in _objects(event):
        injected = injected_names(pod)
        names |= injected
        if not injected:
            for entry in sidecarsets.values():
                ss = entry.sidecarset
                if (
                    ss is not None
                    and ss.spec.selector is not None
                    and selectors.matches_or_false(ss.spec.selector, pod.labels)
                ):
                    names.add(entry.name)
    return sorted(n for n in names if n in sidecarsets)


def namespace_keys(
    sidecarsets: Store[SidecarSetEntry],
) -> Callable[[Event[NamespaceView]], Iterable[str]]:
    def keys(event: Event[NamespaceView]) -> Iterable[str]:
        if isinstance(event, Updated) and event.old.metadata.labels == event.new.metadata.labels:
            return []
        return sorted(
            entry.name
            for entry in sidecarsets.values()
            if entry.sidecarset is not None and entry.sidecarset.spec.namespace_selector is not None
        )

    return keys


def revision_keys(event: Event[dict[str, Any]]) -> Iterable[str]:
    names = set()
    for obj in _objects(event):
        name = ((obj.get("metadata") or {}).get("labels") or {}).get(
            pod_contract.SIDECARSET_NAME_LABEL
        )
        if name:
            names.add(name)
    return sorted(names)
