"""Rolling sidecar images out in place, a round at a time (behaviour.md §7, §8.2, §8.3).

`round_plan` decides which matched pods change this round and why every other waits (partition,
canary selector, the maxUnavailable budget, with `budget` doing the counts); `in_place_update`
says exactly what one pod's update or hot-upgrade reset writes. The package re-exports both.
"""

from sidecarset.core.rollout.budget import max_unavailable_count, partition_count
from sidecarset.core.rollout.in_place_update import (
    ImageChange,
    PodConditionUpdate,
    PodUpdate,
    flip_update,
    pod_update,
    upgradable_condition_update,
    verdicts_condition_update,
)
from sidecarset.core.rollout.round_plan import (
    PENDING_WRITE_RECHECK,
    PROGRESS_RECHECK,
    Budget,
    Hold,
    RoundPlan,
    matched_pods,
    plan_round,
)

__all__ = [
    "PENDING_WRITE_RECHECK",
    "PROGRESS_RECHECK",
    "Budget",
    "Hold",
    "ImageChange",
    "PodConditionUpdate",
    "PodUpdate",
    "RoundPlan",
    "flip_update",
    "matched_pods",
    "max_unavailable_count",
    "partition_count",
    "plan_round",
    "pod_update",
    "upgradable_condition_update",
    "verdicts_condition_update",
]
