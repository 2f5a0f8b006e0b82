"""`validate`: one SidecarSet create or update, every check in order, every problem at once.

The entry point the validating webhook and the offline CLI call; the rule families live in the
sibling modules, and this one only walks the object and gathers their answers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import msgspec

from sidecarset.core.errors import FieldError, ModelError, Path
from sidecarset.core.model import SidecarSet, parse_sidecarset
from sidecarset.core.validation.canary import check_canary
from sidecarset.core.validation.conflicts import check_conflicts
from sidecarset.core.validation.containers import check_all_containers
from sidecarset.core.validation.edits import check_immutable, edit_warnings
from sidecarset.core.validation.fields import JsonMap
from sidecarset.core.validation.metadata import check_metadata
from sidecarset.core.validation.pod_metadata import check_patch_pod_metadata
from sidecarset.core.validation.policy import ValidationPolicy
from sidecarset.core.validation.scope import check_scope
from sidecarset.core.validation.strategy import (
    RevisionLookup,
    check_injection_strategy,
    check_update_strategy,
)
from sidecarset.core.validation.volumes import check_volumes


class ValidationResult(msgspec.Struct, frozen=True, kw_only=True):
    """All problems (admission denies when there is one) and warnings (admitted, shown)."""

    errors: tuple[FieldError, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return not self.errors


def validate(
    new: SidecarSet | JsonMap,
    old: SidecarSet | JsonMap | None,
    peers: Sequence[SidecarSet],
    policy: ValidationPolicy,
    *,
    revision_lookup: RevisionLookup | None = None,
) -> ValidationResult:
    """Validate a SidecarSet being created (`old` None) or updated.

    `peers` are the other SidecarSets in the cluster (the new object's own name is skipped).
    `revision_lookup` is required when `spec.injectionStrategy.revision` names a revision; if
    it is None then, the reference is not checked. Never raises on malformed input: a value of
    the wrong JSON type is reported as an error. Conflicts with peers are only checked when the
    object is otherwise valid, as Kruise does.
    """
    try:
        sidecarset = new if isinstance(new, SidecarSet) else parse_sidecarset(new)
    except ModelError as exc:
        return ValidationResult(errors=(exc.error,))
    previous: SidecarSet | None
    try:
        previous = old if old is None or isinstance(old, SidecarSet) else parse_sidecarset(old)
    except ModelError:
        previous = None  # the stored object cannot be read; judge the new one on its own

    errors = list(check_metadata(sidecarset))
    errors.extend(check_canary(sidecarset, previous, peers))
    errors.extend(_check_spec(sidecarset, policy, revision_lookup))
    warnings: list[str] = []
    if previous is not None:
        errors.extend(check_immutable(sidecarset, previous))
        warnings.extend(edit_warnings(sidecarset, previous))
    if not errors:
        errors.extend(check_conflicts(sidecarset, peers))
    return ValidationResult(errors=tuple(errors), warnings=tuple(warnings))


def _check_spec(
    sidecarset: SidecarSet, policy: ValidationPolicy, revision_lookup: RevisionLookup | None
) -> Iterator[FieldError]:
    spec = sidecarset.spec
    path = Path.root("spec")
    yield from check_scope(sidecarset, path)
    yield from check_injection_strategy(
        sidecarset, path.child("injectionStrategy"), revision_lookup
    )
    yield from check_update_strategy(spec.update_strategy, path.child("updateStrategy"))
    if spec.revision_history_limit is not None and spec.revision_history_limit < 0:
        yield FieldError.invalid(
            path.child("revisionHistoryLimit"),
            spec.revision_history_limit,
            "must be greater than or equal to 0",
        )
    yield from check_volumes(spec.volumes, path.child("volumes"), policy)
    if not spec.init_containers and not spec.containers:
        yield FieldError.required(
            path.child("containers"), "a SidecarSet needs at least one container or initContainer"
        )
    else:
        yield from check_all_containers(sidecarset, path, policy)
    for i, secret in enumerate(spec.image_pull_secrets):
        if not secret.name:
            yield FieldError.required(path.child("imagePullSecrets").index(i).child("name"))
    yield from check_patch_pod_metadata(sidecarset, path.child("patchPodMetadata"), policy)
