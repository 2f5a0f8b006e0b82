"""`updateStrategy` and `injectionStrategy` (behaviour.md §11.3).

How the controller rolls the sidecars out and which revision new pods get: counts and
percentages, the update selector, priorities, scatter, and the pinned revision, whose existence
the caller looks up (`RevisionLookup`) because it lives in the API.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import msgspec

from sidecarset.core import selectors
from sidecarset.core.errors import FieldError, Path
from sidecarset.core.model import (
    RevisionPolicy,
    ScatterTerm,
    SidecarSet,
    SidecarSetUpdateStrategy,
    UpdatePriorityStrategy,
    UpdateStrategyType,
)
from sidecarset.core.validation.scope import check_selector


class RevisionLookup(msgspec.Struct, frozen=True, kw_only=True):
    """Whether `injectionStrategy.revision` resolved to a ControllerRevision (behaviour.md §4.6).

    The caller looks it up; an API failure must not be passed as `found=False`.
    """

    found: bool
    detail: str = ""


def check_injection_strategy(
    sidecarset: SidecarSet, path: Path, revision_lookup: RevisionLookup | None
) -> Iterator[FieldError]:
    revision = sidecarset.spec.injection_strategy.revision
    if revision is None:
        return
    rpath = path.child("revision")
    if revision.revision_name is None and revision.custom_version is None:
        yield FieldError.required(
            rpath, "revisionName and customVersion cannot be empty simultaneously"
        )
    elif revision_lookup is not None and not revision_lookup.found:
        field = "revisionName" if revision.revision_name is not None else "customVersion"
        value = (
            revision.revision_name
            if revision.revision_name is not None
            else revision.custom_version
        )
        detail = "cannot find the ControllerRevision"
        if revision_lookup.detail:
            detail = f"{detail}: {revision_lookup.detail}"
        yield FieldError.not_found(rpath.child(field), value, detail)
    if revision.policy and revision.policy not in tuple(RevisionPolicy):
        yield FieldError.not_supported(
            rpath.child("policy"), revision.policy, [p.value for p in RevisionPolicy]
        )


_PERCENT = re.compile(r"[0-9]+%")


def _check_int_or_percent(value: int | str, path: Path) -> Iterator[FieldError]:
    if isinstance(value, str):
        if _PERCENT.fullmatch(value) is None:
            yield FieldError.invalid(
                path, value, "must be an integer or percentage (e.g '5%', regex '^[0-9]+%$')"
            )
        elif int(value[:-1]) > 100:
            yield FieldError.invalid(path, value, "must be between 0% and 100%")
    elif value < 0:
        yield FieldError.invalid(path, value, "must be greater than or equal to 0")


def _partition_holds_pods(partition: int | str | None) -> bool:
    if partition is None:
        return False
    if isinstance(partition, str):
        return _PERCENT.fullmatch(partition) is None or int(partition[:-1]) != 0
    return partition != 0


def check_update_strategy(strategy: SidecarSetUpdateStrategy, path: Path) -> Iterator[FieldError]:
    types = [t.value for t in UpdateStrategyType]
    if strategy.type and strategy.type not in types:
        yield FieldError.not_supported(path.child("type"), strategy.type, types)
    if strategy.is_not_update:
        return  # Kruise ignores the rest of the strategy then, and so does the controller
    if strategy.selector is not None:
        yield from check_selector(strategy.selector, path.child("selector"))
        if _partition_holds_pods(strategy.partition):
            yield FieldError.invalid(
                path.child("partition"),
                strategy.partition,
                "partition and selector cannot be used together",
            )
    if strategy.partition is not None:
        yield from _check_int_or_percent(strategy.partition, path.child("partition"))
    if strategy.max_unavailable is not None:
        yield from _check_int_or_percent(strategy.max_unavailable, path.child("maxUnavailable"))
    if strategy.priority_strategy is not None:
        yield from _check_priority_strategy(
            strategy.priority_strategy, path.child("priorityStrategy")
        )
    yield from _check_scatter_strategy(strategy.scatter_strategy, path.child("scatterStrategy"))


def _check_priority_strategy(priority: UpdatePriorityStrategy, path: Path) -> Iterator[FieldError]:
    if priority.weight_priority and priority.order_priority:
        yield FieldError.forbidden(path, "only one of weightPriority and orderPriority can be used")
    for i, term in enumerate(priority.weight_priority):
        tpath = path.child("weightPriority").index(i)
        if not 0 <= term.weight <= 100:
            yield FieldError.invalid(
                tpath.child("weight"), term.weight, "must be in the range 0-100"
            )
        yield from check_selector(term.match_selector, tpath.child("matchSelector"))
    for i, order in enumerate(priority.order_priority):
        if not order.ordered_key:
            yield FieldError.required(path.child("orderPriority").index(i).child("orderedKey"))
        else:
            for problem in selectors.qualified_name_problems(order.ordered_key):
                yield FieldError.invalid(
                    path.child("orderPriority").index(i).child("orderedKey"),
                    order.ordered_key,
                    problem,
                )


def _check_scatter_strategy(terms: Sequence[ScatterTerm], path: Path) -> Iterator[FieldError]:
    seen: set[tuple[str, str]] = set()
    for i, scatter in enumerate(terms):
        tpath = path.index(i)
        if not scatter.key:
            yield FieldError.required(tpath.child("key"))
        if not scatter.value:
            yield FieldError.required(tpath.child("value"))
        if (scatter.key, scatter.value) in seen:
            yield FieldError.duplicate(tpath, f"{scatter.key}={scatter.value}")
        seen.add((scatter.key, scatter.value))
