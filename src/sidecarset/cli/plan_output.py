"""How `sidecarset plan` prints an `Explanation`: kubectl-like text, or a stable JSON/YAML shape."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from sidecarset.cli import render
from sidecarset.cli.plan_explain import (
    EXAMPLES,
    HOLD_ORDER,
    UPDATE,
    Explanation,
    selector_text,
)
from sidecarset.core import model
from sidecarset.core.podview import PodKey


def _pods(count: int) -> str:
    return f"{count} pod" if count == 1 else f"{count} pods"


def _examples(keys: Sequence[PodKey]) -> str:
    shown = ", ".join(str(k) for k in keys[:EXAMPLES])
    more = len(keys) - EXAMPLES
    return shown + (f" (+{more} more)" if more > 0 else "")


def _budget_lines(expl: Explanation) -> list[str]:
    strategy, budget = expl.strategy, expl.budget
    spec = strategy.max_unavailable
    if spec is None:
        allowed = f"maxUnavailable unset = {budget.max_unavailable}"
    elif isinstance(spec, str):
        allowed = (
            f"maxUnavailable {spec} of {budget.matched} matched pods = "
            f"{budget.max_unavailable} (rounded up)"
        )
    else:
        allowed = f"maxUnavailable {spec}"
    before = len(budget.disrupted)
    disrupted = f"{before} unavailable or updating now"
    if budget.disrupted:
        disrupted += f" ({_examples(budget.disrupted)})"
    lines = [
        f"budget:     {allowed}; {disrupted}; {budget.used} of {budget.max_unavailable} "
        f"once this round's updates land"
    ]
    if strategy.partition not in (None, 0, "0%"):
        lines.append(
            f"partition:  {strategy.partition} of {budget.matched} matched pods = "
            f"{budget.partition} pods kept on the old sidecars"
        )
    return lines


def _strategy_line(strategy: model.SidecarSetUpdateStrategy) -> str:
    parts = [strategy.type or "RollingUpdate"]
    if strategy.paused:
        parts.append("paused")
    if strategy.selector is not None:
        parts.append(f"canary selector {selector_text(strategy.selector)}")
    return "strategy:   " + ", ".join(parts)


def render_table(expl: Explanation) -> str:
    """The plan for people: a header with the arithmetic, then one row per pod."""
    counts = Counter(d.decision for d in expl.decisions if d.decision != UPDATE)
    held = ", ".join(f"{h.value} {counts[h.value]}" for h in HOLD_ORDER if counts[h.value])
    lines = [
        f"SidecarSet {expl.name}: generation {expl.generation}, revision {expl.revision}, "
        f"{expl.budget.matched} matched pods",
        _strategy_line(expl.strategy),
        *_budget_lines(expl),
        f"next round: update {_pods(len(expl.updates))}; hold "
        f"{_pods(len(expl.decisions) - len(expl.updates))}" + (f" ({held})" if held else ""),
        f"state:      {expl.state}" + (f" - {expl.message}" if expl.message else ""),
    ]
    lines += [f"warning:    {w}" for w in expl.warnings]
    if expl.decisions:
        lines += [
            "",
            render.table(
                ("POD", "READY", "DECISION", "WHY"),
                (
                    (
                        d.pod,
                        d.available,
                        f"update #{d.order}" if d.decision == UPDATE else d.decision,
                        d.detail,
                    )
                    for d in expl.decisions
                ),
            ),
        ]
    if expl.missed:
        lines += [
            "",
            f"MISSED INJECTION ({len(expl.missed)}): the selector matches these pods, but "
            "they do not have the sidecars",
            render.table(
                ("POD", "REASON", "DETAIL"), ((n.pod, n.reason, n.detail) for n in expl.missed)
            ),
        ]
    if expl.not_counted:
        lines += [
            "",
            f"NOT COUNTED ({len(expl.not_counted)}): injected, but outside the rollout",
            render.table(
                ("POD", "REASON", "DETAIL"),
                ((n.pod, n.reason, n.detail) for n in expl.not_counted),
            ),
        ]
    return "\n".join(lines)


def to_dict(expl: Explanation) -> dict[str, Any]:
    """The plan for scripts (`-o json|yaml`)."""
    strategy = expl.strategy
    budget = expl.budget
    return {
        "sidecarset": expl.name,
        "generation": expl.generation,
        "revision": expl.revision,
        "strategy": {
            "type": strategy.type or "RollingUpdate",
            "paused": strategy.paused,
            "maxUnavailable": strategy.max_unavailable,
            "partition": strategy.partition,
            "selector": selector_text(strategy.selector) if strategy.selector else None,
        },
        "budget": {
            "matched": budget.matched,
            "maxUnavailable": budget.max_unavailable,
            "partition": budget.partition,
            "disrupted": [str(k) for k in budget.disrupted],
            "used": budget.used,
        },
        "update": [
            {
                "pod": str(d.pod),
                "order": d.order,
                "ready": d.available,
                "images": [
                    {"container": c.container, "from": c.previous, "to": c.image} for c in d.images
                ],
            }
            for d in expl.updates
        ],
        "held": [
            {
                "pod": str(d.pod),
                "reason": d.decision,
                "ready": d.available,
                "detail": d.detail,
                **({"field": d.field} if d.field else {}),
            }
            for d in expl.decisions
            if d.decision != UPDATE
        ],
        "missedInjection": [
            {"pod": str(n.pod), "reason": n.reason, "detail": n.detail} for n in expl.missed
        ],
        "notCounted": [
            {"pod": str(n.pod), "reason": n.reason, "detail": n.detail} for n in expl.not_counted
        ],
        "state": {"summary": expl.state, "message": expl.message},
        "warnings": list(expl.warnings),
    }
