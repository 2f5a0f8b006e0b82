"""The order in which waiting pods get their sidecars updated (behaviour.md §7.3).

One stable sort whose key is `(priority, default order, namespace, name)`, followed, when a
`scatterStrategy` is set, by Kruise's scatter pass, which interleaves pods sharing a label value
across the order. `rollout.plan_round` takes pods from the front of this order; partition holds
back the back of it.

Differences from Kruise, on purpose:

* Pods equal under every rule are ordered by namespace/name, so plans reproduce (Kruise sorts the
  default order with an unstable sort).
* `orderPriority`: pods carrying none of the ordered keys sort AFTER every keyed pod. Kruise gives
  them level -1, which puts them first, contrary to its documentation (behaviour.md §12.14).
* `scatterStrategy` with `value: "*"` expands to the label values found on the matched pods in
  sorted order, and the group-density comparison is exact; Kruise uses pod list order and
  float32 arithmetic. Orders only differ where Kruise's depend on list order or rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from sidecarset.core import selectors
from sidecarset.core.model import (
    ScatterTerm,
    SidecarSetUpdateStrategy,
    UpdatePriorityStrategy,
)
from sidecarset.core.podview import PodView

__all__ = [
    "SortKey",
    "default_key",
    "expand_scatter_terms",
    "order",
    "order_suffix",
    "priority_key",
    "scatter",
    "sort_key",
]

SortKey = tuple[object, ...]
"""A sort key; compare keys only with keys made by the same function."""

_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}
"""Kubernetes' podPhaseToOrdinal; phases not listed (Succeeded, Failed, "") count as Pending."""

_INT64_MAX = 2**63 - 1


def order(
    candidates: Sequence[PodView],
    strategy: SidecarSetUpdateStrategy,
    matched: Sequence[PodView],
    keys: SortKeys | None = None,
) -> tuple[PodView, ...]:
    """The candidates in update order: first to update first. A permutation of `candidates`.

    `matched` is every matched pod of the SidecarSet (candidates included): scatter terms with
    `value: "*"` expand over it, and scatter densities are measured against it. `keys`, kept by
    the caller from round to round, spares computing again the sort keys of unchanged pods.
    """
    priority = strategy.priority_strategy
    if keys is None:
        ordered = sorted(candidates, key=lambda pod: sort_key(pod, priority))
    else:
        by_key = sorted(zip(keys.of(candidates, priority), candidates, strict=True), key=_first)
        ordered = [pod for _, pod in by_key]
    terms = expand_scatter_terms(strategy.scatter_strategy, matched)
    if terms:
        ordered = scatter(ordered, terms, matched)
    return tuple(ordered)


def _first(pair: tuple[SortKey, PodView]) -> SortKey:
    return pair[0]


class SortKeys:
    """Each pod's `sort_key`, kept while the pod is the very same object and the priority
    strategy reads the same: at the start of a large rollout every pod is a candidate, and
    computing its key is most of ordering them. Keeps only the pods of its latest call."""

    def __init__(self) -> None:
        self._priority: UpdatePriorityStrategy | None = None
        self._by_pod: dict[int, tuple[PodView, SortKey]] = {}

    def of(self, pods: Sequence[PodView], priority: UpdatePriorityStrategy | None) -> list[SortKey]:
        known = self._by_pod if priority == self._priority else {}
        kept: dict[int, tuple[PodView, SortKey]] = {}
        keys: list[SortKey] = []
        for pod in pods:
            hit = known.get(id(pod))
            if hit is None or hit[0] is not pod:
                hit = (pod, sort_key(pod, priority))
            kept[id(pod)] = hit
            keys.append(hit[1])
        self._priority, self._by_pod = priority, kept
        return keys


def sort_key(pod: PodView, priority: UpdatePriorityStrategy | None = None) -> SortKey:
    """Priority first, then the default order, then namespace/name."""
    return (priority_key(pod, priority), default_key(pod), pod.namespace, pod.name)


def default_key(pod: PodView) -> SortKey:
    """Kubernetes' ActivePods order, smaller first.

    Unscheduled before scheduled; Pending < Unknown < Running; not Ready before Ready; among
    Ready pods, no ready time first, then the most recently Ready; higher max restart count
    first (native sidecar restarts included, as current Kubernetes counts them); then no
    creation time first, then the newest.
    """
    scheduled = 1 if pod.spec.node_name else 0
    phase = _PHASE_ORDINAL.get(pod.status.phase, 0)
    # The Ready condition is looked up once: every pod of a new rollout is keyed at once.
    condition = pod.ready_condition
    ready, ready_since = False, (0, 0.0)
    if condition is not None and condition.status == "True":
        ready, ready_since = True, _newest_first(condition.last_transition_time)
    return (
        scheduled,
        phase,
        1 if ready else 0,
        ready_since,
        -_max_restarts(pod),
        _newest_first(pod.metadata.creation_timestamp),
    )


def _newest_first(when: datetime | None) -> tuple[int, float]:
    """Kubernetes' afterOrZero as a key: a zero time first, then later times before earlier."""
    if when is None:
        return (0, 0.0)
    return (1, -when.timestamp())


def _max_restarts(pod: PodView) -> int:
    most = 0
    for status in pod.status.container_statuses:
        most = max(most, status.restart_count)
    if pod.status.init_container_statuses:
        natives = {c.name for c in pod.spec.init_containers if c.is_native_sidecar}
        for status in pod.status.init_container_statuses:
            if status.name in natives:
                most = max(most, status.restart_count)
    return most


def priority_key(pod: PodView, priority: UpdatePriorityStrategy | None) -> SortKey:
    """`priorityStrategy` as a key, smaller first.

    weightPriority: the sum of the weights of the terms whose matchSelector matches the pod's
    labels, higher first (a term with an invalid selector counts for nothing). orderPriority
    (used only without weightPriority, as in Kruise): the index of the first term whose key the
    pod carries, lower first; then the trailing integer of that label's value, higher first.
    Pods with none of the keys come after all others.
    """
    if priority is None:
        return ()
    if priority.weight_priority:
        weight = sum(
            term.weight
            for term in priority.weight_priority
            if selectors.matches_or_false(term.match_selector, pod.labels)
        )
        return (-weight,)
    if priority.order_priority:
        for level, term in enumerate(priority.order_priority):
            value = pod.labels.get(term.ordered_key)
            if value is not None:
                return (level, -order_suffix(value))
        return (len(priority.order_priority), 0)
    return ()


def order_suffix(value: str) -> int:
    """The trailing decimal integer of a label value (`sts-10` -> 10); 0 when there is none.

    As Kruise's strconv.ParseInt, a value beyond int64 gives 0.
    """
    digits = len(value) - len(value.rstrip("0123456789"))
    if digits == 0:
        return 0
    number = int(value[len(value) - digits :])
    return number if number <= _INT64_MAX else 0


# --- scatter ----------------------------------------------------------------------------------


def expand_scatter_terms(
    terms: Sequence[ScatterTerm], matched: Sequence[PodView]
) -> tuple[ScatterTerm, ...]:
    """Replace each `value: "*"` term by one term per value of that key on the matched pods
    (sorted), and drop duplicate key=value terms, keeping the first."""
    expanded: list[ScatterTerm] = []
    seen: set[tuple[str, str]] = set()
    for term in terms:
        if term.value == "*":
            values = sorted({pod.labels[term.key] for pod in matched if term.key in pod.labels})
            new = [ScatterTerm(key=term.key, value=value) for value in values]
        else:
            new = [term]
        for item in new:
            if (item.key, item.value) not in seen:
                seen.add((item.key, item.value))
                expanded.append(item)
    return tuple(expanded)


def scatter(
    ordered: Sequence[PodView], terms: Sequence[ScatterTerm], matched: Sequence[PodView]
) -> list[PodView]:
    """Kruise's scatter pass: for each term, in descending order of how many of the ordered pods
    carry it, spread those pods evenly through the order, keeping one of them for the very end.

    A term changes nothing unless at least two ordered pods carry it and at least two don't.
    """
    result = list(ordered)
    if len(result) <= 1 or not terms:
        return result
    for term in _terms_by_frequency(terms, result):
        result = _scatter_by(term, result, matched)
    return result


def _carries(pod: PodView, term: ScatterTerm) -> bool:
    # Go reads a missing label as "", so a term with an empty value matches pods without the key.
    return pod.labels.get(term.key, "") == term.value


def _terms_by_frequency(terms: Sequence[ScatterTerm], pods: Sequence[PodView]) -> list[ScatterTerm]:
    if len(terms) == 1:
        return list(terms)
    counts: dict[tuple[str, str], int] = {}
    present: list[ScatterTerm] = []
    for term in terms:
        count = sum(1 for pod in pods if pod.labels.get(term.key) == term.value)
        if count and (term.key, term.value) not in counts:
            counts[(term.key, term.value)] = count
            present.append(term)
    return sorted(present, key=lambda t: -counts[(t.key, t.value)])


class _Group(msgspec.Struct, frozen=True):
    count: int
    matched_size: int
    unmatched_size: int
    unmatched_remainder: int = 0


def _round_half_away(numerator: int, denominator: int) -> int:
    """Go's math.Round(a/b) for non-negative a and positive b."""
    return (2 * numerator + denominator) // (2 * denominator)


def _group(matched: int, unmatched: int) -> _Group:
    count = min(matched, unmatched)
    return _Group(
        count=count,
        matched_size=_round_half_away(matched, count),
        unmatched_size=_round_half_away(unmatched, count),
    )


def _group_by_density(
    total_matched: int, total_unmatched: int, update_matched: int, update_unmatched: int
) -> _Group:
    update_group = _group(update_matched, update_unmatched)
    # total_unmatched/total_matched >= update_unmatched/update_matched, without division.
    if total_unmatched * update_matched >= update_unmatched * total_matched:
        return update_group
    total_group = _group(total_matched, total_unmatched)
    count = min(
        update_matched // total_group.matched_size,
        update_unmatched // total_group.unmatched_size,
    )
    return _Group(
        count=count,
        matched_size=total_group.matched_size,
        unmatched_size=total_group.unmatched_size,
        unmatched_remainder=update_unmatched - count * total_group.unmatched_size,
    )


def _scatter_by(
    term: ScatterTerm, ordered: Sequence[PodView], matched: Sequence[PodView]
) -> list[PodView]:
    carrying = [pod for pod in ordered if _carries(pod, term)]
    others = [pod for pod in ordered if not _carries(pod, term)]
    if len(carrying) <= 1 or len(others) <= 1:
        return list(ordered)
    total_carrying = sum(1 for pod in matched if _carries(pod, term))
    # Candidates are matched pods, so the totals are at least the candidate counts; taking the
    # maximum keeps the arithmetic defined should a caller pass candidates outside `matched`.
    total_carrying = max(total_carrying, len(carrying))
    total_others = max(len(matched) - total_carrying, len(others))

    last = carrying.pop()
    total_carrying -= 1
    group = _group_by_density(total_carrying, total_others, len(carrying), len(others))
    result = others[: group.unmatched_remainder]
    others = others[group.unmatched_remainder :]
    for _ in range(group.count):
        result += carrying[: group.matched_size]
        carrying = carrying[group.matched_size :]
        result += others[: group.unmatched_size]
        others = others[group.unmatched_size :]
    result += carrying + others
    result.append(last)
    return result
