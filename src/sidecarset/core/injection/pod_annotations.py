"""The pod annotations injection writes: `patchPodMetadata` and the injection record.

`patch_metadata` is shared with the rollout, which applies `patchPodMetadata` again on every
in-place update exactly as injection does. The record (behaviour.md §4.4: hash, hash without
image, injected list, working hot-upgrade twins) is what later rounds and re-invocations read
to know what a pod already got.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sidecarset.core import pod_contract
from sidecarset.core.errors import FieldError
from sidecarset.core.injection.merge_patch import MergePatchError, merge_patch
from sidecarset.core.injection.result import InjectionDenied
from sidecarset.core.injection.sidecar_container import BuiltSidecarSet
from sidecarset.core.model import PatchPolicy, SidecarSet

__all__ = ["patch_metadata", "read_hashes", "record_injection"]


def patch_metadata(annotations: Mapping[str, str], sidecarset: SidecarSet) -> dict[str, str]:
    """The pod annotations after the SidecarSet's `patchPodMetadata` (behaviour.md §6.1).

    Retain (and an empty policy) sets absent keys only; Overwrite always sets; MergePatchJson
    merges into a non-empty current value, else sets. Unknown policies do nothing, as in Kruise.
    Raises `InjectionDenied` naming the annotation when a merge meets a non-JSON value.
    """
    result = dict(annotations)
    for entry in sidecarset.spec.patch_pod_metadata:
        policy = entry.patch_policy or PatchPolicy.RETAIN
        for key, value in entry.annotations.items():
            if policy == PatchPolicy.RETAIN:
                result.setdefault(key, value)
            elif policy == PatchPolicy.OVERWRITE:
                result[key] = value
            elif policy == PatchPolicy.MERGE_PATCH_JSON:
                current = result.get(key, "")
                if not current:
                    result[key] = value
                    continue
                try:
                    result[key] = merge_patch(current, value)
                except MergePatchError as exc:
                    raise InjectionDenied(
                        FieldError.invalid(
                            pod_contract.annotation_path(key),
                            current if len(current) <= 200 else current[:200] + "...",
                            f"SidecarSet {sidecarset.name} patchPodMetadata (MergePatchJson)"
                            f" cannot merge {value!r}: {exc}",
                        )
                    ) from None
    return result


def read_hashes(annotations: Mapping[str, str], key: str) -> dict[str, pod_contract.UpgradeSpec]:
    try:
        return pod_contract.read_upgrade_specs(annotations, key)
    except pod_contract.MalformedAnnotation as exc:
        raise InjectionDenied(exc.error) from None


def record_injection(
    final: dict[str, str],
    original: Mapping[str, str],
    injected: Sequence[SidecarSet],
    built: Mapping[str, BuiltSidecarSet],
    *,
    hashes: dict[str, pod_contract.UpgradeSpec],
    hashes_without_image: dict[str, pod_contract.UpgradeSpec],
    timestamp: str,
    listed: Sequence[str],
    warnings: list[str],
) -> None:
    """Write the behaviour.md §4.4 annotations into `final`, keeping other SidecarSets' entries."""
    hot_working: dict[str, str] = {}
    if any(built[s.name].hot_working for s in injected):
        try:
            hot_working = pod_contract.read_working_hot_upgrade(original)
        except pod_contract.MalformedAnnotation as exc:
            # Kruise ignores an unreadable value and writes a fresh map; say so.
            warnings.append(f"{exc}; replaced")
    for sidecarset in injected:
        result = built[sidecarset.name]
        name = sidecarset.name
        own = sidecarset.metadata.annotations
        if pod_contract.HASH_ANNOTATION not in own:
            warnings.append(f"SidecarSet {name} has no {pod_contract.HASH_ANNOTATION} annotation")
        hashes[name] = pod_contract.UpgradeSpec(
            update_timestamp=timestamp,
            hash=own.get(pod_contract.HASH_ANNOTATION, ""),
            sidecarset_name=name,
            sidecar_list=result.sidecar_list,
            controller_revision=sidecarset.status.latest_revision,
        )
        hashes_without_image[name] = pod_contract.UpgradeSpec(
            update_timestamp=timestamp,
            hash=own.get(pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION, ""),
            sidecarset_name=name,
            sidecar_list=result.sidecar_list,
        )
        final.update(result.annotations)
        hot_working.update(result.hot_working)
    final[pod_contract.HASH_ANNOTATION] = pod_contract.write_upgrade_specs(hashes)
    final[pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION] = pod_contract.write_upgrade_specs(
        hashes_without_image
    )
    final[pod_contract.INJECTED_LIST_ANNOTATION] = pod_contract.write_injected_list(
        pod_contract.read_injected_list(original) | set(listed)
    )
    if hot_working:
        final[pod_contract.WORKING_HOT_UPGRADE_ANNOTATION] = pod_contract.write_working_hot_upgrade(
            hot_working
        )
