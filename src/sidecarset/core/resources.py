"""A sidecar's `resources` computed from its `resourcesPolicy` at injection (behaviour.md §4.8).

`compute_resources` aggregates the pod's target containers (sum or max per resource, a missing
limit meaning "unlimited") and evaluates the policy's expressions with the engine of
`resources_expr`, applying Kruise's variable and unit rules. Used by `injection`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from fractions import Fraction

from sidecarset.core import resources_expr
from sidecarset.core.model import ResourceExprValues, ResourcesPolicy, TargetContainersMode
from sidecarset.core.resources_expr import ExpressionError, Quantity, QuantityFormat

__all__ = ["RESOURCE_NAMES", "ResourcesError", "compute_resources", "evaluate"]

RESOURCE_NAMES = ("cpu", "memory")
"""The resources `resourcesExpr` can compute (Kruise ignores every other resource)."""

_ZERO = Quantity(value=Fraction(0), format=QuantityFormat.DECIMAL_SI)
_MEMORY_WORD = re.compile(r"\bmemory\b", re.ASCII)


class ResourcesError(ValueError):
    """The resources cannot be computed for this pod; the message names the expression."""


def evaluate(expr: str, aggregate: Quantity) -> Quantity:
    """Evaluate one resource expression against the aggregated target value.

    The variable is `memory` when that word occurs in the expression, otherwise `cpu`: Kruise's
    rule, so a memory expression without the word is computed in cpu units. A plain-number result
    becomes cores (cpu, milli precision) or whole bytes (memory). Raises `ExpressionError`.
    """
    variable = "memory" if _MEMORY_WORD.search(expr) else "cpu"
    result = resources_expr.parse_expression(expr).evaluate({variable: aggregate})
    if isinstance(result, Quantity):
        return result
    if variable == "cpu":
        return Quantity.from_milli(_truncate(result * 1000))
    return Quantity(value=Fraction(_truncate(result)), format=QuantityFormat.DECIMAL_SI)


def _truncate(number: float) -> int:
    """Go's `int64(f)`: toward zero. A non-finite value is an error here, not undefined."""
    if number != number or number in (float("inf"), float("-inf")):
        raise ExpressionError("calculation overflowed")
    return int(number)


def _resource_list(container: Mapping[str, object], kind: str) -> Mapping[str, object]:
    resources = container.get("resources")
    if not isinstance(resources, Mapping):
        return {}
    values = resources.get(kind)
    return values if isinstance(values, Mapping) else {}


def _quantity(container: Mapping[str, object], kind: str, name: str) -> Quantity | None:
    raw = _resource_list(container, kind).get(name)
    if raw is None:
        return None
    try:
        return resources_expr.quantity_from_json(raw)
    except resources_expr.QuantityError as exc:
        raise ResourcesError(
            f"container {container.get('name')!r} resources.{kind}.{name}: {exc}"
        ) from None


def _combine(values: Sequence[Quantity], mode: str) -> Quantity:
    if mode == TargetContainersMode.MAX:
        best = values[0]
        for value in values[1:]:
            if value.value > best.value:
                best = value
        return best
    total = _ZERO
    for value in values:
        # Go's Quantity.Add: a zero receiver takes the other operand's format.
        fmt = value.format if total.value == 0 else total.format
        total = Quantity(value=total.value + value.value, format=fmt)
    return total


def _aggregate(
    targets: Sequence[Mapping[str, object]], mode: str
) -> tuple[dict[str, Quantity], dict[str, Quantity]]:
    """Per-resource limits and requests over the targets; an absent limit is "unlimited"."""
    limits: dict[str, Quantity] = {}
    requests: dict[str, Quantity] = {}
    if mode not in (TargetContainersMode.SUM, TargetContainersMode.MAX):
        return limits, requests
    for name in RESOURCE_NAMES:
        target_limits = [_quantity(c, "limits", name) for c in targets]
        present = [q for q in target_limits if q is not None]
        if len(present) == len(target_limits):
            limits[name] = _combine(present, mode)
        target_requests = [q for c in targets if (q := _quantity(c, "requests", name)) is not None]
        if target_requests:
            total = _combine(target_requests, mode)
            # Kruise's sum drops a zero total (it then evaluates against an unset value, 0).
            if total.value != 0 or mode == TargetContainersMode.MAX:
                requests[name] = total
    return limits, requests


def compute_resources(
    policy: ResourcesPolicy, targets: Sequence[Mapping[str, object]]
) -> dict[str, object]:
    """The sidecar's `resources` body computed from `policy` over the target containers.

    A limit whose aggregate is unlimited (some target has none) stays unset; requests are always
    computed, from 0 when no target requests the resource. An unknown `targetContainersMode`
    aggregates nothing, as in Kruise. Raises `ResourcesError` naming the failing expression or
    the unreadable target quantity.
    """
    limits, requests = _aggregate(targets, policy.target_containers_mode)
    body: dict[str, object] = {}
    exprs = policy.resources_expr
    computed_limits = _evaluate_all(exprs.limits, limits, "limits", unlimited=True)
    if computed_limits:
        body["limits"] = computed_limits
    computed_requests = _evaluate_all(exprs.requests, requests, "requests", unlimited=False)
    if computed_requests:
        body["requests"] = computed_requests
    return body


def _evaluate_all(
    exprs: ResourceExprValues | None,
    aggregated: Mapping[str, Quantity],
    kind: str,
    *,
    unlimited: bool,
) -> dict[str, str]:
    result: dict[str, str] = {}
    if exprs is None:
        return result
    for name, expr in (("cpu", exprs.cpu), ("memory", exprs.memory)):
        if not expr:
            continue
        aggregate = aggregated.get(name)
        if aggregate is None:
            if unlimited:
                continue
            aggregate = _ZERO
        try:
            result[name] = evaluate(expr, aggregate).to_json()
        except ExpressionError as exc:
            raise ResourcesError(f"resourcesExpr.{kind}.{name} {expr!r}: {exc}") from None
    return result
