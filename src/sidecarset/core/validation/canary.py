"""A canary SidecarSet and its base (behaviour.md §11.8).

The base is another SidecarSet, so this check reads the peers, as the conflict checks do; unlike
them, it runs on every review, not only when the object is otherwise valid.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sidecarset.core import pod_contract
from sidecarset.core.errors import FieldError, Path
from sidecarset.core.model import SidecarSet, UpdateStrategyType


def check_canary(
    sidecarset: SidecarSet, previous: SidecarSet | None, peers: Sequence[SidecarSet]
) -> Iterator[FieldError]:
    base = pod_contract.is_canary(sidecarset.metadata.annotations)
    if base is None:
        return
    path = Path.root("metadata").child("annotations").key(pod_contract.BASE_ANNOTATION)
    if base == sidecarset.name:
        yield FieldError.invalid(path, base, "the base SidecarSet cannot be the canary itself")
    if (
        previous is not None
        and previous.metadata.annotations.get(pod_contract.BASE_ANNOTATION) != base
    ):
        yield FieldError.invalid(path, base, "is immutable: a canary cannot change its base")
    found = next((p for p in peers if p.name == base), None)
    if found is None and base != sidecarset.name:
        yield FieldError.not_found(path, base, "the base SidecarSet does not exist")
    elif found is not None and pod_contract.is_canary(found.metadata.annotations) is not None:
        yield FieldError.invalid(path, base, "the base SidecarSet cannot itself be a canary")
    if not sidecarset.spec.update_strategy.is_not_update:
        yield FieldError.invalid(
            Path.root("spec").child("updateStrategy", "type"),
            sidecarset.spec.update_strategy.type or UpdateStrategyType.ROLLING_UPDATE.value,
            "a canary SidecarSet must use NotUpdate (it only injects new pods)",
        )
