"""Label selector validation, matching and the exact overlap test."""

from __future__ import annotations

import pytest

from sidecarset.core import selectors
from sidecarset.core.errors import Path
from sidecarset.core.model import LabelSelector, LabelSelectorRequirement


def sel(
    labels: dict[str, str] | None = None, *exprs: tuple[str, str, tuple[str, ...]]
) -> LabelSelector:
    return LabelSelector(
        match_labels=labels or {},
        match_expressions=tuple(
            LabelSelectorRequirement(key=k, operator=op, values=v) for k, op, v in exprs
        ),
    )


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        pytest.param(sel({"app": "web"}), {"app": "web", "x": "y"}, True, id="match-labels"),
        pytest.param(sel({"app": "web"}), {"app": "db"}, False, id="match-labels-miss"),
        pytest.param(sel(None, ("tier", "In", ("a", "b"))), {"tier": "b"}, True, id="in"),
        pytest.param(sel(None, ("tier", "In", ("a",))), {}, False, id="in-absent"),
        pytest.param(sel(None, ("tier", "NotIn", ("a",))), {}, True, id="notin-absent"),
        pytest.param(sel(None, ("tier", "NotIn", ("a",))), {"tier": "a"}, False, id="notin-hit"),
        pytest.param(sel(None, ("tier", "Exists", ())), {"tier": ""}, True, id="exists"),
        pytest.param(sel(None, ("tier", "DoesNotExist", ())), {"tier": "x"}, False, id="dne"),
        pytest.param(sel(), {"anything": "x"}, True, id="empty-matches-everything"),
    ],
)
def test_selectors_match_like_kubernetes(
    selector: LabelSelector, labels: dict[str, str], expected: bool
) -> None:
    assert selectors.matches(selector, labels) is expected


def test_an_invalid_selector_matches_nothing() -> None:
    invalid = sel(None, ("tier", "Near", ("a",)))

    assert selectors.matches(invalid, {"tier": "a"}) is None
    assert selectors.matches_or_false(invalid, {"tier": "a"}) is False
    assert selectors.compile_selector(invalid) is None


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        pytest.param(
            sel({"bad key!": "v"}),
            'spec.selector.matchLabels: Invalid value: "bad key!": name part must consist of',
            id="label-key",
        ),
        pytest.param(
            sel({"k": "v v"}),
            'spec.selector.matchLabels: Invalid value: "v v": a valid label must be',
            id="label-value",
        ),
        pytest.param(
            sel(None, ("k", "Near", ())),
            'spec.selector.matchExpressions[0].operator: Unsupported value: "Near"',
            id="operator",
        ),
        pytest.param(
            sel(None, ("k", "In", ())),
            "spec.selector.matchExpressions[0].values: Required value",
            id="in-needs-values",
        ),
        pytest.param(
            sel(None, ("k", "Exists", ("x",))),
            "spec.selector.matchExpressions[0].values: Forbidden",
            id="exists-takes-no-values",
        ),
        pytest.param(
            sel(None, ("example.com/a/b", "Exists", ())),
            'spec.selector.matchExpressions[0].key: Invalid value: "example.com/a/b"',
            id="two-slashes",
        ),
        pytest.param(
            sel({"Example.com/app": "x"}),
            "prefix part a lowercase RFC 1123 subdomain",
            id="uppercase-prefix",
        ),
    ],
)
def test_invalid_selectors_are_reported_with_paths(selector: LabelSelector, message: str) -> None:
    errors = selectors.validate_selector(selector, Path.root("spec").child("selector"))

    assert any(message in str(e) for e in errors), [str(e) for e in errors]


def test_valid_selectors_have_no_problems() -> None:
    valid = sel({"app.kubernetes.io/name": "web"}, ("tier", "NotIn", ("a", "b")))

    assert selectors.validate_selector(valid, Path.root("selector")) == ()


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        pytest.param(sel({"a": "h"}), sel({"b": "i"}), True, id="different-keys-overlap"),
        pytest.param(sel({"a": "h"}), sel({"a": "i"}), False, id="same-key-different-value"),
        pytest.param(sel({"a": "h"}), sel({"a": "h"}), True, id="identical"),
        pytest.param(
            sel({"a": "h"}), sel(None, ("c", "Exists", ())), True,
            id="exists-on-an-unmentioned-key-overlaps",
        ),
        pytest.param(
            sel({"a": "h"}), sel(None, ("a", "NotIn", ("h",))), False, id="notin-excludes-value"
        ),
        pytest.param(
            sel(None, ("a", "In", ("h", "i"))), sel(None, ("a", "NotIn", ("h",))), True,
            id="notin-leaves-a-value",
        ),
        pytest.param(
            sel(None, ("a", "Exists", ())), sel(None, ("a", "DoesNotExist", ())), False,
            id="exists-vs-does-not-exist",
        ),
        pytest.param(
            sel(None, ("a", "NotIn", ("x",))), sel(None, ("a", "DoesNotExist", ())), True,
            id="notin-and-absent",
        ),
        pytest.param(
            sel(None, ("a", "In", ("x", "y"))), sel(None, ("a", "In", ("y", "z"))), True,
            id="in-sets-intersect",
        ),
        pytest.param(
            sel(None, ("a", "In", ("x",))), sel(None, ("a", "In", ("z",))), False,
            id="in-sets-disjoint",
        ),
        pytest.param(sel(), sel({"a": "b"}), True, id="empty-selects-everything"),
        pytest.param(
            sel(None, ("a", "Near", ())), sel({"a": "b"}), False, id="invalid-selects-nothing"
        ),
    ],
)  # fmt: skip
def test_overlap_is_decided_exactly(
    first: LabelSelector, second: LabelSelector, expected: bool
) -> None:
    assert selectors.overlaps(first, second) is expected
    assert selectors.overlaps(second, first) is expected


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        pytest.param("my-name", True, id="simple"),
        pytest.param("My_Name.1", True, id="mixed"),
        pytest.param("example.com/name", True, id="prefixed"),
        pytest.param("", False, id="empty"),
        pytest.param("-x", False, id="leading-dash"),
        pytest.param("/name", False, id="empty-prefix"),
        pytest.param("a" * 64, False, id="too-long"),
    ],
)
def test_qualified_names(value: str, valid: bool) -> None:
    assert (not selectors.qualified_name_problems(value)) is valid


def test_dns1123_labels_are_lowercase() -> None:
    assert selectors.dns1123_label_problems("filebeat") == []
    assert selectors.dns1123_label_problems("FileBeat") != []
