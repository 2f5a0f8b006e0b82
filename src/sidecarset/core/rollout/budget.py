"""Partition and maxUnavailable as pod counts (behaviour.md §7.4, Kruise's
CalculatePartitionReplicas and intstr scaling): the arithmetic, apart from the round that uses it
so its rounding rules can be read and tested on their own.
"""

from __future__ import annotations

import re

from sidecarset.core.errors import FieldError
from sidecarset.core.model import IntOrString

__all__ = ["bad_value", "max_unavailable_count", "partition_count"]

_PERCENT = re.compile(r"^([0-9]+)%$")


def _scaled(value: IntOrString, total: int) -> tuple[int, bool] | None:
    """(count, was_percent), percentages rounded up; None for an unreadable value."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return (value, False) if value >= 0 else None
    match = _PERCENT.match(value)
    if match is None:
        return None
    percent = int(match.group(1))
    return (percent * total + 99) // 100, True


def partition_count(partition: IntOrString | None, matched: int) -> int | None:
    """How many waiting pods to keep on the old version (Kruise CalculatePartitionReplicas).

    An int as is; a percentage of `matched` rounded up, except that a percentage other than
    exactly "100%" that rounds up to all pods (with more than one) keeps one pod fewer, so
    "99%" of 5 pods is 4; clamped to [0, matched]. Unset is 0; None for an unreadable value.
    """
    if partition is None:
        return 0
    scaled = _scaled(partition, matched)
    if scaled is None:
        return None
    count, percent = scaled
    if percent and matched > 1 and count == matched and partition != "100%":
        count = matched - 1
    return max(0, min(count, matched))


def max_unavailable_count(max_unavailable: IntOrString | None, matched: int) -> int | None:
    """The unavailability budget: an int as is, or a percentage of `matched` rounded up (so 5% of
    5 pods is 1). Unset is 1; None for an unreadable value."""
    if max_unavailable is None:
        return 1
    scaled = _scaled(max_unavailable, matched)
    return None if scaled is None else scaled[0]


def bad_value(field: str, value: object, consequence: str) -> str:
    """The warning for an unreadable `updateStrategy` count, saying what is done instead."""
    error = FieldError.invalid(
        f"spec.updateStrategy.{field}",
        value,
        f'must be a non-negative integer or a percentage such as "20%"; {consequence}',
    )
    return str(error)
