"""`patchPodMetadata` and the administrator's whitelist for it (behaviour.md §11.6, §6.3).

Patching pod annotations reaches into pods the SidecarSet's author does not own, so only keys
the whitelist allows may be patched, and every patch must be one a pod would accept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping

from sidecarset.core import selectors
from sidecarset.core.errors import FieldError, Path
from sidecarset.core.model import PatchPolicy, SidecarSet
from sidecarset.core.validation.metadata import check_annotations
from sidecarset.core.validation.policy import ValidationPolicy, WhitelistRule


def check_patch_pod_metadata(
    sidecarset: SidecarSet, path: Path, policy: ValidationPolicy
) -> Iterator[FieldError]:
    patches = sidecarset.spec.patch_pod_metadata
    if not patches:
        return
    yield from _check_whitelist(sidecarset, path, policy)
    seen: set[str] = set()
    policies = [p.value for p in PatchPolicy]
    for i, patch in enumerate(patches):
        ppath = path.index(i)
        if not patch.annotations:
            yield FieldError.required(
                ppath.child("annotations"), "no annotations defined for patchPodMetadata"
            )
        yield from check_annotations(patch.annotations, ppath.child("annotations"))
        if patch.patch_policy and patch.patch_policy not in policies:
            yield FieldError.not_supported(ppath.child("patchPolicy"), patch.patch_policy, policies)
        for key, value in patch.annotations.items():
            apath = ppath.child("annotations").key(key)
            if key in seen:
                yield FieldError.duplicate(
                    apath, key, "the same annotation is patched by two entries"
                )
            seen.add(key)
            if patch.patch_policy == PatchPolicy.MERGE_PATCH_JSON and not _is_json_object(value):
                yield FieldError.invalid(
                    apath,
                    value,
                    "MergePatchJson values must be JSON objects (pods would be rejected)",
                )


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _check_whitelist(
    sidecarset: SidecarSet, path: Path, policy: ValidationPolicy
) -> Iterator[FieldError]:
    source = policy.whitelist_source
    if policy.patch_metadata_whitelist is None:
        if not policy.patch_metadata_allowed_without_whitelist:
            yield FieldError.forbidden(
                path, f"patching pod metadata needs a whitelist ({source}), which is not set"
            )
        return
    patterns = list(
        _whitelist_patterns(policy.patch_metadata_whitelist, sidecarset.metadata.labels)
    )
    if not patterns:
        if not policy.patch_metadata_allowed_without_whitelist:
            yield FieldError.forbidden(
                path, f"no whitelist rule ({source}) applies to this SidecarSet's labels"
            )
        return
    for i, patch in enumerate(sidecarset.spec.patch_pod_metadata):
        for key in patch.annotations:
            if not any(_allows(p, key, full=policy.whitelist_full_match) for p in patterns):
                yield FieldError.forbidden(
                    path.index(i).child("annotations").key(key),
                    f"annotation key is not allowed by the whitelist ({source}"
                    + (
                        "; patterns must match the whole key)"
                        if policy.whitelist_full_match
                        else ")"
                    ),
                )


def _allows(pattern: re.Pattern[str], key: str, *, full: bool) -> bool:
    return (pattern.fullmatch(key) if full else pattern.search(key)) is not None


def _whitelist_patterns(
    rules: Iterable[WhitelistRule], labels: Mapping[str, str]
) -> Iterator[re.Pattern[str]]:
    for rule in rules:
        if rule.selector is not None and not selectors.matches_or_false(rule.selector, labels):
            continue
        for expr in rule.allowed_annotation_key_exprs:
            try:
                yield re.compile(expr)
            except re.error:
                continue  # an administrator's broken pattern allows nothing
