"""Quantities as apimachinery writes them, and the resourcesPolicy expression language."""

from __future__ import annotations

import pytest

from sidecarset.core import resources_expr
from sidecarset.core.resources_expr import ExpressionError, Quantity, QuantityError


@pytest.mark.parametrize(
    ("text", "written"),
    [
        pytest.param("100m", "100m", id="milli"),
        pytest.param("0.1", "100m", id="fraction"),
        pytest.param("1.5Gi", "1536Mi", id="binary-fraction"),
        pytest.param("1000", "1k", id="decimal-canonical"),
        pytest.param("1024Mi", "1Gi", id="binary-canonical"),
        pytest.param("200Mi", "200Mi", id="binary-kept"),
        pytest.param("1.500", "1.500", id="kept-as-written"),
        pytest.param("+1", "+1", id="sign-kept"),
        pytest.param("01", "01", id="leading-zero-kept"),
        pytest.param("1e3", "1e3", id="exponent-kept"),
        pytest.param("12e2", "1200", id="exponent-canonical"),
        pytest.param("0.0001", "100u", id="micro"),
        pytest.param("1.1Ki", "1126400m", id="inexact-binary-is-decimal"),
        pytest.param(".5", "500m", id="leading-dot"),
        pytest.param("2000m", "2", id="whole-milli"),
    ],
)
def test_quantities_are_written_as_go_writes_them(text: str, written: str) -> None:
    assert resources_expr.parse_quantity(text).to_json() == written


@pytest.mark.parametrize(
    ("text", "written"),
    [
        pytest.param("1n", "1m", id="nano-rounds-up"),
        pytest.param("0.0001", "1m", id="micro-rounds-up"),
        pytest.param("100m", "100m", id="already-milli"),
        pytest.param("1.500", "1.500", id="cached-spelling-survives"),
    ],
)
def test_milli_round_up_matches_defaulting(text: str, written: str) -> None:
    assert resources_expr.parse_quantity(text).round_up_milli().to_json() == written


@pytest.mark.parametrize("text", ["", "1x", "abc", "1.2.3", "1Gii", "--1"])
def test_malformed_quantities_are_rejected(text: str) -> None:
    with pytest.raises(QuantityError):
        resources_expr.parse_quantity(text)


def test_json_numbers_are_quantities_too() -> None:
    assert resources_expr.quantity_from_json(2).to_json() == "2"
    assert resources_expr.quantity_from_json(0.25).to_json() == "250m"


@pytest.mark.parametrize(
    ("expr", "cpu", "expected"),
    [
        pytest.param("cpu*50%", Quantity.from_milli(600), "300m", id="percent"),
        pytest.param("max(cpu*50%, 50m)", Quantity.from_milli(60), "50m", id="max-floor"),
        pytest.param("min(cpu, 1)", Quantity.from_milli(2500), "1", id="min-cap"),
        pytest.param("(cpu + 100m) / 2", Quantity.from_milli(300), "200m", id="parens"),
    ],
)
def test_expressions_evaluate_with_kruise_arithmetic(
    expr: str, cpu: Quantity, expected: str
) -> None:
    result = resources_expr.parse_expression(expr).evaluate({"cpu": cpu})

    assert isinstance(result, Quantity)
    assert result.to_json() == expected


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        pytest.param("cpu*", "unexpected", id="dangling-operator"),
        pytest.param("(cpu", r"expected '\)'", id="unbalanced"),
        pytest.param("cpu*10x", "invalid number", id="unknown-unit"),
        pytest.param("max(cpu)", "exactly 2 arguments", id="arity"),
        pytest.param("avg(cpu, 1)", "unknown function", id="unknown-function"),
        pytest.param("cpu - 2", "negative", id="negative"),
        pytest.param("cpu / 0", "division by zero", id="div-zero"),
        pytest.param("1Gi * 1Gi", "two quantities", id="quantity-product"),
        pytest.param("memory * 2", "undefined variable", id="wrong-variable"),
        pytest.param("cpu $ 2", "unexpected character", id="bad-character"),
    ],
)
def test_bad_expressions_explain_themselves(expr: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        resources_expr.parse_expression(expr).evaluate({"cpu": 1.0})


def test_expressions_report_the_variables_they_read() -> None:
    assert resources_expr.parse_expression("max(memory*20%, 64Mi)").variables == {"memory"}
