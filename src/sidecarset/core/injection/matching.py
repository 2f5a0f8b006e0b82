"""Which SidecarSets a new pod gets (behaviour.md §3.1, §4.1), and which it already has.

Kept apart from building and placement because the answer is a list of SidecarSets and the
reason each other one was passed over: the webhook's response, `sidecarset inject -f` and the
tests all report those reasons.

Where we differ from Kruise on purpose: SidecarSets are considered in name order (Kruise uses
informer list order), a SidecarSet already recorded in the pod with all its containers present
adds nothing again, and one with an invalid selector is passed over with a warning instead of
failing every pod creation in the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum

from sidecarset.core import pod_contract, selectors
from sidecarset.core.injection.pod_json import as_mapping, name_of, objects
from sidecarset.core.model import SidecarSet

__all__ = ["PodSkip", "Skip", "is_active", "is_injected", "select_sidecarsets"]


class PodSkip(StrEnum):
    """Why a pod as a whole is not considered for injection."""

    INACTIVE = "inactive"
    """Phase Succeeded/Failed, or a deletionTimestamp is set."""
    OPTED_OUT = "optedOut"
    """The pod says `sidecarset.kruise.io/inject: "false"`."""


class Skip(StrEnum):
    """Why one SidecarSet adds nothing to this pod."""

    INJECTION_PAUSED = "injectionPaused"
    OTHER_NAMESPACE = "otherNamespace"
    """v1alpha1 `spec.namespace` names another namespace."""
    NAMESPACE_NOT_FOUND = "namespaceNotFound"
    """`namespaceSelector` is set but the namespace's labels are unknown."""
    NAMESPACE_NOT_SELECTED = "namespaceNotSelected"
    EMPTY_SELECTOR = "emptySelector"
    """No (or an empty) `selector`: Kruise never matches such a SidecarSet."""
    INVALID_SELECTOR = "invalidSelector"
    NOT_SELECTED = "notSelected"
    CANARY_BASE = "canaryBase"
    """A matching canary SidecarSet replaces this one (its base) for this pod."""
    ALREADY_INJECTED = "alreadyInjected"


def _skip_reason(
    sidecarset: SidecarSet,
    *,
    namespace: str,
    namespace_labels: Mapping[str, str] | None,
    labels: Mapping[str, str],
) -> Skip | None:
    spec = sidecarset.spec
    if spec.injection_strategy.paused:
        return Skip.INJECTION_PAUSED
    if spec.namespace and spec.namespace != namespace:
        return Skip.OTHER_NAMESPACE
    if spec.namespace_selector is not None:
        if namespace_labels is None:
            return Skip.NAMESPACE_NOT_FOUND
        if selectors.matches(spec.namespace_selector, namespace_labels) is not True:
            return Skip.NAMESPACE_NOT_SELECTED
    if spec.selector is None or spec.selector.is_empty:
        return Skip.EMPTY_SELECTOR
    matched = selectors.matches(spec.selector, labels)
    if matched is None:
        return Skip.INVALID_SELECTOR
    return None if matched else Skip.NOT_SELECTED


def _expected_names(sidecarset: SidecarSet) -> tuple[set[str], set[str]]:
    """The (init container, container) names this SidecarSet puts into a pod."""
    init_names: set[str] = set()
    for sidecar in sidecarset.spec.init_containers:
        if sidecar.is_native_sidecar and sidecar.is_hot_upgrade:
            init_names.update(pod_contract.hot_upgrade_names(sidecar.name))
        else:
            init_names.add(sidecar.name)
    names: set[str] = set()
    for sidecar in sidecarset.spec.containers:
        if sidecar.is_hot_upgrade:
            names.update(pod_contract.hot_upgrade_names(sidecar.name))
        else:
            names.add(sidecar.name)
    return init_names, names


def is_injected(
    sidecarset: SidecarSet,
    pod_spec: Mapping[str, object],
    hashes: Mapping[str, pod_contract.UpgradeSpec],
) -> bool:
    """Already injected: the hash annotation has its entry and all its containers are present."""
    if sidecarset.name not in hashes:
        return False
    init_names, names = _expected_names(sidecarset)
    pod_init = {name_of(c) for c in objects(pod_spec.get("initContainers"))}
    pod_containers = {name_of(c) for c in objects(pod_spec.get("containers"))}
    return init_names <= pod_init and names <= pod_containers


def is_active(pod: Mapping[str, object]) -> bool:
    phase = as_mapping(pod.get("status")).get("phase")
    deleting = as_mapping(pod.get("metadata")).get("deletionTimestamp") is not None
    return phase not in ("Succeeded", "Failed") and not deleting


def select_sidecarsets(
    sidecarsets: Sequence[SidecarSet],
    *,
    namespace: str,
    namespace_labels: Mapping[str, str] | None,
    labels: Mapping[str, str],
) -> tuple[list[SidecarSet], dict[str, Skip], list[str]]:
    """The SidecarSets selecting the pod, by name, canary bases dropped (behaviour.md §3.1)."""
    warnings: list[str] = []
    passed_over: dict[str, Skip] = {}
    selected: list[SidecarSet] = []
    seen: set[str] = set()
    for sidecarset in sorted(sidecarsets, key=lambda s: s.name):
        if sidecarset.name in seen:
            continue
        seen.add(sidecarset.name)
        reason = _skip_reason(
            sidecarset, namespace=namespace, namespace_labels=namespace_labels, labels=labels
        )
        if reason is Skip.INVALID_SELECTOR:
            warnings.append(f"SidecarSet {sidecarset.name}: invalid selector; not injected")
        if reason is None:
            selected.append(sidecarset)
        else:
            passed_over[sidecarset.name] = reason
    bases = {base for s in selected if (base := pod_contract.is_canary(s.metadata.annotations))}
    passed_over.update({s.name: Skip.CANARY_BASE for s in selected if s.name in bases})
    return [s for s in selected if s.name not in bases], passed_over, warnings
