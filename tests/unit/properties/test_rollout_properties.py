"""Invariants of rollout planning, ordering and status over arbitrary pod populations."""

from __future__ import annotations

from collections import Counter

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecarset.core import ordering, pod_classification, pod_contract, rollout, status
from sidecarset.core.model import SidecarSet
from sidecarset.core.pod_classification import PodStateKind
from sidecarset.core.podview import PodKey, PodView
from sidecarset.core.rollout import Hold
from tests.unit.podbuilders import (
    HOT_EMPTY,
    NOW,
    hot_pod,
    hot_sidecarset,
    make_pod,
    make_sidecarset,
    outdated_pod,
    updated_pod,
    updating_pod,
)

KINDS = (
    "outdated",
    "outdated-unready",
    "outdated-pending",
    "updating",
    "updated",
    "updated-unready",
    "older-rolling",
    "not-upgradable",
    "foreign",
    "terminating",
)


@st.composite
def pods(draw: st.DrawFn) -> list[PodView]:
    kinds = draw(st.lists(st.sampled_from(KINDS), max_size=25))
    result = []
    for i, kind in enumerate(kinds):
        labels = {"app": "sidecar", "zone": draw(st.sampled_from("abc"))}
        if draw(st.booleans()):
            labels["canary"] = "true"
        if draw(st.booleans()):
            labels["rank"] = f"r-{draw(st.integers(0, 5))}"
        name = f"pod-{i:02d}"
        restarts = draw(st.integers(0, 3))
        common = {"labels": labels, "restarts": restarts, "node": draw(st.sampled_from(["", "n"]))}
        match kind:
            case "outdated":
                pod = outdated_pod(name, **common)
            case "outdated-unready":
                pod = outdated_pod(name, ready=False, sidecar_ready=False, **common)
            case "outdated-pending":
                pod = outdated_pod(name, phase="Pending", ready=False, **common)
            case "updating":
                pod = updating_pod(name, **common)
            case "updated":
                pod = updated_pod(name, **common)
            case "updated-unready":
                pod = updated_pod(name, ready=False, sidecar_ready=False, **common)
            case "older-rolling":
                pod = updating_pod(name, pod_hash="older", **common)
            case "not-upgradable":
                pod = outdated_pod(name, without_image="without-old", **common)
            case "foreign":
                pod = make_pod(name, sidecarset="other", **common)
            case _:
                pod = outdated_pod(name, deleting=True, **common)
        result.append(pod)
    return result


INT_OR_PERCENT = st.one_of(st.integers(0, 12), st.integers(0, 120).map(lambda p: f"{p}%"))


@st.composite
def sidecarsets(draw: st.DrawFn) -> SidecarSet:
    strategy: dict[str, object] = {}
    if draw(st.booleans()):
        strategy["maxUnavailable"] = draw(INT_OR_PERCENT)
    if draw(st.booleans()):
        strategy["partition"] = draw(INT_OR_PERCENT)
    if draw(st.booleans()):
        strategy["selector"] = {"matchLabels": {"canary": "true"}}
    if draw(st.integers(0, 9)) == 0:
        strategy["paused"] = True
    priority = draw(st.sampled_from(["none", "weight", "order"]))
    if priority == "weight":
        strategy["priorityStrategy"] = {
            "weightPriority": [{"weight": 10, "matchSelector": {"matchLabels": {"zone": "a"}}}]
        }
    elif priority == "order":
        strategy["priorityStrategy"] = {"orderPriority": [{"orderedKey": "rank"}]}
    if draw(st.booleans()):
        strategy["scatterStrategy"] = [{"key": "zone", "value": draw(st.sampled_from(["a", "*"]))}]
    return make_sidecarset(strategy=strategy)


@st.composite
def rounds(draw: st.DrawFn) -> tuple[SidecarSet, list[PodView], frozenset[PodKey]]:
    population = draw(pods())
    pending = draw(st.sets(st.sampled_from([p.key for p in population]))) if population else set()
    return draw(sidecarsets()), population, frozenset(pending)


def _disrupted(
    sidecarset: SidecarSet, pods: list[PodView], pending: frozenset[PodKey]
) -> set[PodKey]:
    """Unavailable or mid-update pods, judged from the pods alone (the module docstring's rule)."""
    found = set()
    for pod in rollout.matched_pods(sidecarset, pods):
        state = pod_classification.classify(sidecarset, pod)
        if (
            (state.updated and not state.available)
            or state.kind is PodStateKind.IN_FLIGHT
            or state.hot_upgrade_pending
            or pod.key in pending
        ):
            found.add(pod.key)
    return found


@settings(max_examples=300, deadline=None)
@given(rounds())
def test_a_plan_never_grows_the_disruption_past_the_budget(
    case: tuple[SidecarSet, list[PodView], frozenset[PodKey]],
) -> None:
    sidecarset, population, pending = case
    plan = rollout.plan_round(sidecarset, population, NOW, pending=pending)
    before = _disrupted(sidecarset, population, pending)
    by_key = {pod.key: pod for pod in population}
    made_unavailable = {
        update.pod
        for update in plan.update
        if update.images
        or not pod_classification.classify(sidecarset, by_key[update.pod]).available
    }
    after = before | made_unavailable
    assert len(after) <= max(plan.budget.max_unavailable, len(before))


@settings(max_examples=300, deadline=None)
@given(rounds())
def test_every_matched_pod_is_updated_or_held_for_a_reason(
    case: tuple[SidecarSet, list[PodView], frozenset[PodKey]],
) -> None:
    sidecarset, population, pending = case
    plan = rollout.plan_round(sidecarset, population, NOW, pending=pending)
    matched = {pod.key for pod in rollout.matched_pods(sidecarset, population)}
    updated = set(plan.updated_keys)
    assert len(updated) == len(plan.update)
    assert updated.isdisjoint(plan.held)
    assert updated | set(plan.held) == matched
    assert set(plan.blocked) <= matched


@settings(max_examples=300, deadline=None)
@given(rounds())
def test_partition_and_canary_selector_hold_back_exactly_their_pods(
    case: tuple[SidecarSet, list[PodView], frozenset[PodKey]],
) -> None:
    sidecarset, population, pending = case
    strategy = sidecarset.spec.update_strategy
    plan = rollout.plan_round(sidecarset, population, NOW, pending=pending)
    matched = rollout.matched_pods(sidecarset, population)
    holds = Counter(plan.held.values())
    if strategy.paused:
        assert plan.update == ()
        return

    def selected(pod: PodView) -> bool:
        return strategy.selector is None or pod.labels.get("canary") == "true"

    outdated = [p for p in matched if not pod_classification.classify(sidecarset, p).updated]
    unselected = {p.key for p in outdated if not selected(p)}
    assert {k for k, h in plan.held.items() if h is Hold.NOT_SELECTED} == unselected
    assert all(selected(pod) for pod in matched if pod.key in set(plan.updated_keys))

    waiting = [
        p
        for p in outdated
        if selected(p)
        and p.key not in pending
        and pod_classification.classify(sidecarset, p).kind is PodStateKind.CANDIDATE
        and p.key not in {f.pod for f in plan.flip}
    ]
    partition = rollout.partition_count(strategy.partition, len(matched))
    assert partition is not None
    assert holds[Hold.PARTITION] == min(partition, len(waiting))
    ordered = ordering.order(waiting, strategy, matched)
    kept = ordered[len(ordered) - holds[Hold.PARTITION] :] if holds[Hold.PARTITION] else ()
    assert {p.key for p in kept} == {k for k, h in plan.held.items() if h is Hold.PARTITION}


@settings(max_examples=200, deadline=None)
@given(rounds())
def test_status_counters_nest(case: tuple[SidecarSet, list[PodView], frozenset[PodKey]]) -> None:
    sidecarset, population, pending = case
    plan = rollout.plan_round(sidecarset, population, NOW, pending=pending)
    result = status.compute_status(
        sidecarset, plan, latest_revision="r", collision_count=0, now=NOW
    )
    assert result.updated_ready_pods <= result.updated_pods <= result.matched_pods
    assert result.updated_ready_pods <= result.ready_pods <= result.matched_pods
    assert {c.type for c in result.conditions} == {"Ready", "Progressing", "Stalled"}


@settings(max_examples=300, deadline=None)
@given(rounds(), st.randoms(use_true_random=False))
def test_ordering_is_a_stable_permutation_independent_of_input_order(
    case: tuple[SidecarSet, list[PodView], frozenset[PodKey]], rnd: object
) -> None:
    sidecarset, population, _ = case
    strategy = sidecarset.spec.update_strategy
    ordered = ordering.order(population, strategy, population)
    assert sorted(p.key for p in ordered) == sorted(p.key for p in population)
    shuffled = list(population)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert [p.key for p in ordering.order(shuffled, strategy, shuffled)] == [p.key for p in ordered]
    if not strategy.scatter_strategy:
        again = ordering.order(ordered, strategy, population)
        assert [p.key for p in again] == [p.key for p in ordered]


@settings(max_examples=100, deadline=None)
@given(rounds(), st.randoms(use_true_random=False))
def test_plans_do_not_depend_on_the_pod_order(
    case: tuple[SidecarSet, list[PodView], frozenset[PodKey]], rnd: object
) -> None:
    sidecarset, population, pending = case
    shuffled = list(population)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    first = rollout.plan_round(sidecarset, population, NOW, pending=pending)
    second = rollout.plan_round(sidecarset, shuffled, NOW, pending=pending)
    assert first == second


HOT_KINDS = ("idle", "pending-flip", "starting", "broken", "older-pending", "done")


@st.composite
def hot_rounds(draw: st.DrawFn) -> tuple[SidecarSet, list[PodView]]:
    population = []
    for i, kind in enumerate(draw(st.lists(st.sampled_from(HOT_KINDS), max_size=15))):
        name = f"hot-{i:02d}"
        match kind:
            case "idle":
                pod = hot_pod(name)
            case "pending-flip":
                pod = hot_pod(name, working="mesh-2", images=("mesh:v1", "mesh:v2"), pod_hash="bbb")
            case "starting":
                pod = hot_pod(
                    name,
                    working="mesh-2",
                    images=("mesh:v1", "mesh:v2"),
                    status_images=("mesh:v1", HOT_EMPTY),
                    recorded={"mesh-2": "id-2"},
                    pod_hash="bbb",
                )
            case "broken":
                pod = hot_pod(
                    name,
                    working="mesh-2",
                    images=("mesh:v1", "mesh:bad"),
                    ready=(True, False),
                    pod_ready=False,
                    pod_hash="older",
                )
            case "older-pending":
                pod = hot_pod(name, working="mesh-2", images=("mesh:v1", "mesh:v0"), pod_hash="old")
            case _:
                pod = hot_pod(name, images=("mesh:v2", HOT_EMPTY), pod_hash="bbb")
        population.append(pod)
    budget = draw(st.integers(0, 4))
    return hot_sidecarset(strategy={"maxUnavailable": budget}), population


@settings(max_examples=200, deadline=None)
@given(hot_rounds())
def test_hot_upgrade_plans_never_grow_the_disruption_past_the_budget(
    case: tuple[SidecarSet, list[PodView]],
) -> None:
    sidecarset, population = case
    plan = rollout.plan_round(sidecarset, population, NOW)
    before = _disrupted(sidecarset, population, frozenset())
    by_key = {pod.key: pod for pod in population}
    made_unavailable = {
        update.pod
        for update in plan.update
        if update.images
        or not pod_classification.classify(sidecarset, by_key[update.pod]).available
    }
    assert len(before | made_unavailable) <= max(plan.budget.max_unavailable, len(before))
    flipped = {flip.pod for flip in plan.flip}
    assert flipped <= before
    assert flipped.isdisjoint(plan.updated_keys)


@settings(max_examples=500, deadline=None)
@given(rounds(), st.integers(0, 6))
def test_a_write_limit_takes_the_first_updates_and_holds_the_rest_for_the_next_round(
    case: tuple[SidecarSet, list[PodView], frozenset[PodKey]], limit: int
) -> None:
    """With `write_limit`, a round's updates are the first ones the unlimited round makes, in
    the same order. Pods the walk would have built an update for wait `nextRound` instead; no
    other pod's hold changes, except that a pod held for the budget may now wait `nextRound`
    (the capped round spent less of it). A round left with such pods is requeued."""
    sidecarset, population, pending = case
    full = rollout.plan_round(sidecarset, population, NOW, pending=pending)
    capped = rollout.plan_round(sidecarset, population, NOW, pending=pending, write_limit=limit)
    assert capped.update == full.update[:limit]
    assert capped.flip == full.flip
    assert capped.budget.used <= full.budget.used
    built = {Hold.NOT_UPGRADABLE, Hold.BUDGET}
    for key, hold in capped.held.items():
        if hold is Hold.NEXT_ROUND:
            assert key in full.updated_keys or full.held[key] in built
        else:
            assert full.held[key] is hold
    if len(full.update) < limit:
        assert capped == full
    if any(hold is Hold.NEXT_ROUND for hold in capped.held.values()):
        assert capped.requeue_after is not None


def _edited(sidecarset: SidecarSet, *, image: str | None = None, hash_: str = "ccc") -> SidecarSet:
    """The SidecarSet after an edit of its first sidecar's image (and so of its hash)."""
    spec = sidecarset.spec
    if image is not None:
        first = spec.containers[0]
        first = msgspec.structs.replace(first, image=image, body={**first.body, "image": image})
        spec = msgspec.structs.replace(spec, containers=(first, *spec.containers[1:]))
    annotations = {**sidecarset.metadata.annotations, pod_contract.HASH_ANNOTATION: hash_}
    metadata = msgspec.structs.replace(sidecarset.metadata, annotations=annotations)
    return msgspec.structs.replace(sidecarset, spec=spec, metadata=metadata)


@settings(max_examples=300, deadline=None)
@given(rounds(), st.sampled_from(["image", "hash", "strategy", "none"]))
def test_a_round_after_an_edit_plans_as_a_fresh_judge_would(
    case: tuple[SidecarSet, list[PodView], frozenset[PodKey]], edit: str
) -> None:
    """Judgements kept from a round before an edit (facts kept when only images and the hash
    change) give the plan that judging every pod afresh gives."""
    sidecarset, population, pending = case
    judgements = pod_classification.Judgements()
    rollout.plan_round(sidecarset, population, NOW, pending=pending, judgements=judgements)
    match edit:
        case "image":
            edited = _edited(sidecarset, image="test-image:v9")
        case "hash":
            edited = _edited(sidecarset)
        case "strategy":
            strategy = msgspec.structs.replace(sidecarset.spec.update_strategy, paused=False)
            spec = msgspec.structs.replace(sidecarset.spec, update_strategy=strategy)
            edited = msgspec.structs.replace(_edited(sidecarset), spec=spec)
        case _:
            edited = sidecarset
    kept = rollout.plan_round(edited, population, NOW, pending=pending, judgements=judgements)
    assert kept == rollout.plan_round(edited, population, NOW, pending=pending)


@settings(max_examples=150, deadline=None)
@given(hot_rounds(), st.sampled_from(["mesh:v3", "mesh:v1", None]))
def test_a_hot_round_after_an_image_edit_plans_as_a_fresh_judge_would(
    case: tuple[SidecarSet, list[PodView]], image: str | None
) -> None:
    sidecarset, population = case
    judgements = pod_classification.Judgements()
    rollout.plan_round(sidecarset, population, NOW, judgements=judgements)
    edited = _edited(sidecarset, image=image)
    kept = rollout.plan_round(edited, population, NOW, judgements=judgements)
    assert kept == rollout.plan_round(edited, population, NOW)
