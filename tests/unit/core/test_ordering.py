"""ordering: default order, priorityStrategy and scatterStrategy (behaviour.md §7.3)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sidecarset.core import ordering
from sidecarset.core.model import SidecarSetUpdateStrategy
from sidecarset.core.podview import PodView
from tests.unit.podbuilders import CREATED, NOW, make_pod, make_sidecarset


def _strategy(**fields: object) -> SidecarSetUpdateStrategy:
    return make_sidecarset(strategy=fields).spec.update_strategy


def _names(pods: tuple[PodView, ...]) -> list[str]:
    return [pod.name for pod in pods]


def _order(*pods: PodView, **strategy: object) -> list[str]:
    return _names(ordering.order(pods, _strategy(**strategy), pods))


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param({"node": ""}, {"node": "node-1"}, id="unscheduled-before-scheduled"),
        pytest.param({"phase": "Pending"}, {"phase": "Running"}, id="pending-before-running"),
        pytest.param({"phase": "Unknown"}, {"phase": "Running"}, id="unknown-before-running"),
        pytest.param({"ready": False}, {"ready": True}, id="not-ready-before-ready"),
        pytest.param(
            {"ready_since": NOW - timedelta(minutes=1)},
            {"ready_since": NOW - timedelta(hours=1)},
            id="recently-ready-before-long-ready",
        ),
        pytest.param({}, {"ready_since": NOW}, id="ready-without-time-first"),
        pytest.param({"restarts": 3}, {"restarts": 1}, id="more-restarts-first"),
        pytest.param(
            {"created": CREATED}, {"created": CREATED - timedelta(days=1)}, id="newer-first"
        ),
        pytest.param({"created": None}, {"created": CREATED}, id="no-creation-time-first"),
    ],
)
def test_the_default_order_puts_the_first_pod_first(
    first: dict[str, object], second: dict[str, object]
) -> None:
    # Names are chosen so the name tie-break would give the opposite order.
    a = make_pod("z-first", **first)
    b = make_pod("a-second", **second)
    assert _order(b, a) == ["z-first", "a-second"]
    assert _order(a, b) == ["z-first", "a-second"]


def test_pods_equal_under_every_rule_are_ordered_by_namespace_then_name() -> None:
    pods = [
        make_pod("b", namespace="y"),
        make_pod("a", namespace="y"),
        make_pod("c", namespace="x"),
    ]
    assert [(p.namespace, p.name) for p in ordering.order(pods, _strategy(), pods)] == [
        ("x", "c"),
        ("y", "a"),
        ("y", "b"),
    ]


def test_weight_priority_updates_heavier_pods_first() -> None:
    strategy = {
        "priorityStrategy": {
            "weightPriority": [
                {"weight": 50, "matchSelector": {"matchLabels": {"tier": "canary"}}},
                {"weight": 10, "matchSelector": {"matchLabels": {"zone": "a"}}},
            ]
        }
    }
    heavy = make_pod("c", labels={"tier": "canary"})
    both = make_pod("d", labels={"tier": "canary", "zone": "a"})
    light = make_pod("a", labels={"zone": "a"})
    none = make_pod("b", labels={})
    assert _order(none, light, heavy, both, **strategy) == ["d", "c", "a", "b"]


def test_a_weight_term_with_an_invalid_selector_counts_for_nothing() -> None:
    strategy = {
        "priorityStrategy": {
            "weightPriority": [
                {
                    "weight": 50,
                    "matchSelector": {"matchExpressions": [{"key": "x", "operator": "Bogus"}]},
                }
            ]
        }
    }
    assert _order(make_pod("b", labels={"x": "1"}), make_pod("a"), **strategy) == ["a", "b"]


def test_order_priority_takes_lower_levels_first_then_higher_suffixes() -> None:
    strategy = {
        "priorityStrategy": {"orderPriority": [{"orderedKey": "first"}, {"orderedKey": "second"}]}
    }
    pods = [
        make_pod("p1", labels={"second": "sts-9"}),
        make_pod("p2", labels={"first": "sts-2"}),
        make_pod("p3", labels={"first": "sts-10"}),
        make_pod("p4", labels={"first": "no-digits"}),
    ]
    assert _order(*pods, **strategy) == ["p3", "p2", "p4", "p1"]


def test_order_priority_puts_pods_without_any_key_after_keyed_pods() -> None:
    # Kruise gives unkeyed pods level -1, which sorts them FIRST (behaviour.md §12.14); ours: last.
    strategy = {"priorityStrategy": {"orderPriority": [{"orderedKey": "rank"}]}}
    unkeyed = make_pod("a-unkeyed", labels={})
    keyed = make_pod("b-keyed", labels={"rank": "1"})
    assert _order(unkeyed, keyed, **strategy) == ["b-keyed", "a-unkeyed"]


def test_priority_outranks_the_default_order() -> None:
    strategy = {"priorityStrategy": {"orderPriority": [{"orderedKey": "rank"}]}}
    not_ready_unkeyed = make_pod("a", ready=False, labels={})
    ready_keyed = make_pod("b", labels={"rank": "1"})
    assert _order(not_ready_unkeyed, ready_keyed, **strategy) == ["b", "a"]


@pytest.mark.parametrize(
    ("value", "suffix"),
    [
        pytest.param("sts-10", 10, id="trailing-number"),
        pytest.param("10", 10, id="all-digits"),
        pytest.param("abc", 0, id="no-digits"),
        pytest.param("", 0, id="empty"),
        pytest.param("v1-2", 2, id="only-the-trailing-run"),
        pytest.param("x" + "9" * 30, 0, id="beyond-int64"),
    ],
)
def test_order_suffix_reads_the_trailing_integer(value: str, suffix: int) -> None:
    assert ordering.order_suffix(value) == suffix


def test_scatter_spreads_three_of_ten_pods_to_positions_one_six_and_ten() -> None:
    pods = [
        make_pod(f"pod-{i}", labels={"app": "sidecar", **({"zone": "a"} if i < 3 else {})})
        for i in range(10)
    ]
    ordered = ordering.order(pods, _strategy(scatterStrategy=[{"key": "zone", "value": "a"}]), pods)
    positions = [i + 1 for i, pod in enumerate(ordered) if pod.labels.get("zone") == "a"]
    assert positions == [1, 6, 10]


def test_scatter_leaves_the_order_alone_when_fewer_than_two_pods_carry_the_term() -> None:
    pods = [make_pod(f"pod-{i}", labels={"zone": "a"} if i == 0 else {}) for i in range(5)]
    plain = ordering.order(pods, _strategy(), pods)
    scattered = ordering.order(
        pods, _strategy(scatterStrategy=[{"key": "zone", "value": "a"}]), pods
    )
    assert _names(plain) == _names(scattered)


def test_star_scatter_terms_expand_to_the_sorted_values_on_matched_pods() -> None:
    pods = [make_pod("a", labels={"zone": "b"}), make_pod("b", labels={"zone": "a"}), make_pod("c")]
    terms = ordering.expand_scatter_terms(
        _strategy(scatterStrategy=[{"key": "zone", "value": "*"}]).scatter_strategy, pods
    )
    assert [(t.key, t.value) for t in terms] == [("zone", "a"), ("zone", "b")]


def test_duplicate_scatter_terms_are_applied_once() -> None:
    strategy = _strategy(
        scatterStrategy=[{"key": "zone", "value": "a"}, {"key": "zone", "value": "*"}]
    )
    pods = [make_pod("a", labels={"zone": "a"})]
    terms = ordering.expand_scatter_terms(strategy.scatter_strategy, pods)
    assert [(t.key, t.value) for t in terms] == [("zone", "a")]


def test_the_order_does_not_depend_on_the_input_order() -> None:
    pods = [
        make_pod(f"pod-{i}", ready=i % 3 != 0, restarts=i % 2, labels={"zone": "abc"[i % 3]})
        for i in range(12)
    ]
    strategy = _strategy(scatterStrategy=[{"key": "zone", "value": "*"}])
    forward = ordering.order(pods, strategy, pods)
    backward = ordering.order(list(reversed(pods)), strategy, list(reversed(pods)))
    assert _names(forward) == _names(backward)


def test_kept_sort_keys_give_the_same_order_and_follow_the_priority(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    weights = {
        "priorityStrategy": {
            "weightPriority": [{"weight": 5, "matchSelector": {"matchLabels": {"tier": "a"}}}]
        }
    }
    pods = (
        make_pod("c", restarts=2),
        make_pod("a", labels={"tier": "a"}),
        make_pod("b", ready=False),
    )
    keys = ordering.SortKeys()
    plain = ordering.order(pods, _strategy(), pods)
    assert ordering.order(pods, _strategy(), pods, keys) == plain
    computed: list[str] = []
    original = ordering.sort_key

    def counting(pod: PodView, priority: object = None) -> ordering.SortKey:
        computed.append(pod.name)
        return original(pod, priority)  # type: ignore[arg-type]

    monkeypatch.setattr(ordering, "sort_key", counting)
    assert ordering.order(pods, _strategy(), pods, keys) == plain
    assert computed == []
    weighted = ordering.order(pods, _strategy(**weights), pods, keys)
    assert _names(weighted)[0] == "a"
    assert sorted(computed) == ["a", "b", "c"]
