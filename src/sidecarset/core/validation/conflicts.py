"""Conflicts with the other SidecarSets that select the same pods (behaviour.md §11.9).

Two SidecarSets whose selectors overlap would inject into one pod: a container name, a volume
name with a different definition or an overwritten annotation in common would make that pod
invalid or ambiguous. Checked only when the object is otherwise valid, as Kruise does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sidecarset.core import defaults, pod_contract, selectors
from sidecarset.core.errors import FieldError, Path
from sidecarset.core.model import LabelSelector, PatchPolicy, SidecarSet
from sidecarset.core.validation.containers import pod_names


def _namespace_scope(sidecarset: SidecarSet) -> LabelSelector | None:
    """The namespaces a SidecarSet covers as a Namespace label selector; None means all."""
    if sidecarset.spec.namespace:
        return LabelSelector(
            match_labels={pod_contract.NAMESPACE_NAME_LABEL: sidecarset.spec.namespace}
        )
    return sidecarset.spec.namespace_selector


def _overlapping(first: SidecarSet, second: SidecarSet) -> bool:
    a, b = first.spec.selector, second.spec.selector
    if a is None or b is None or a.is_empty or b.is_empty:
        return False  # an empty pod selector injects nothing (behaviour.md §3.1)
    scope_a, scope_b = _namespace_scope(first), _namespace_scope(second)
    if scope_a is not None and scope_b is not None and not selectors.overlaps(scope_a, scope_b):
        return False
    return selectors.overlaps(a, b)


def _all_pod_names(sidecarset: SidecarSet) -> set[str]:
    return {
        name
        for c in (*sidecarset.spec.init_containers, *sidecarset.spec.containers)
        for name in pod_names(c)
    }


def check_conflicts(sidecarset: SidecarSet, peers: Sequence[SidecarSet]) -> Iterator[FieldError]:
    base = pod_contract.is_canary(sidecarset.metadata.annotations)
    path = Path.root("spec")
    for peer in peers:
        if peer.name == sidecarset.name or peer.name == base:
            continue
        if not _overlapping(sidecarset, peer):
            continue
        taken = _all_pod_names(peer)
        for key, items in (
            ("initContainers", sidecarset.spec.init_containers),
            ("containers", sidecarset.spec.containers),
        ):
            for i, container in enumerate(items):
                clash = sorted(set(pod_names(container)) & taken)
                if clash:
                    yield FieldError.invalid(
                        path.child(key).index(i).child("name"),
                        container.name,
                        f"container {clash[0]} already exists in SidecarSet {peer.name}, which"
                        " selects the same pods",
                    )
        theirs = {v.name: defaults.default_volume(v.body) for v in peer.spec.volumes}
        for i, volume in enumerate(sidecarset.spec.volumes):
            other = theirs.get(volume.name)
            if other is not None and other != defaults.default_volume(volume.body):
                yield FieldError.invalid(
                    path.child("volumes").index(i),
                    volume.name,
                    f"volume {volume.name} is in conflict with SidecarSet {peer.name}: same name,"
                    " different definition",
                )
        yield from _metadata_conflicts(sidecarset, peer, path.child("patchPodMetadata"))


def _metadata_conflicts(
    sidecarset: SidecarSet, peer: SidecarSet, path: Path
) -> Iterator[FieldError]:
    theirs: dict[str, str] = {}
    for patch in peer.spec.patch_pod_metadata:
        if patch.patch_policy in ("", PatchPolicy.RETAIN):
            continue
        for key in patch.annotations:
            theirs[key] = patch.patch_policy
    for i, patch in enumerate(sidecarset.spec.patch_pod_metadata):
        if patch.patch_policy in ("", PatchPolicy.RETAIN):
            continue
        for key in patch.annotations:
            other = theirs.get(key)
            if other is None:
                continue
            if PatchPolicy.OVERWRITE in (patch.patch_policy, other):
                yield FieldError.invalid(
                    path.index(i).child("annotations").key(key),
                    key,
                    f"annotation {key} is in conflict with SidecarSet {peer.name}",
                )
