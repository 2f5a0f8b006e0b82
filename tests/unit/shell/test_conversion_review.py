"""ConversionReview transport: requests decoded strictly, answers all-or-nothing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from sidecarset.core import conversion
from sidecarset.shell import conversion_review
from sidecarset.shell.conversion_review import MalformedConversionReview


def review(objects: list[Any], desired: str = conversion.V1BETA1) -> bytes:
    return json.dumps(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "ConversionReview",
            "request": {"uid": "u-1", "desiredAPIVersion": desired, "objects": objects},
        }
    ).encode()


def sidecarset(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": conversion.V1ALPHA1,
        "kind": "SidecarSet",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, **spec},
    }


def response(body: bytes) -> dict[str, Any]:
    decoded = json.loads(body)
    assert decoded["apiVersion"] == "apiextensions.k8s.io/v1"
    assert decoded["kind"] == "ConversionReview"
    answer: dict[str, Any] = decoded["response"]
    assert answer["uid"] == "u-1"
    return answer


def test_every_object_is_converted_in_order() -> None:
    request = conversion_review.decode(review([sidecarset("a", namespace="x"), sidecarset("b")]))

    answered = conversion_review.answer(request, conversion.convert)

    body = response(answered.body)
    assert answered.succeeded
    assert body["result"] == {"status": "Success"}
    assert [o["metadata"]["name"] for o in body["convertedObjects"]] == ["a", "b"]
    assert all(o["apiVersion"] == conversion.V1BETA1 for o in body["convertedObjects"])
    assert body["convertedObjects"][0]["spec"]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "x"}
    }


def test_one_failure_fails_the_whole_review_naming_the_object() -> None:
    request = conversion_review.decode(
        review([sidecarset("good"), {**sidecarset("bad"), "apiVersion": "apps.kruise.io/v7"}])
    )

    answered = conversion_review.answer(request, conversion.convert)

    body = response(answered.body)
    assert not answered.succeeded
    assert body["convertedObjects"] == []
    assert body["result"]["status"] == "Failure"
    assert "SidecarSet 'bad'" in body["result"]["message"]
    assert "apps.kruise.io/v7" in body["result"]["message"]


def test_an_empty_review_succeeds() -> None:
    answered = conversion_review.answer(conversion_review.decode(review([])), conversion.convert)

    assert response(answered.body)["convertedObjects"] == []


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{", "body is not JSON"),
        (b"[]", "body is not a JSON object"),
        (b'{"apiVersion": "v1", "kind": "ConversionReview"}', "expected apiVersion"),
        (
            b'{"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview"}',
            "request is missing",
        ),
        (
            b'{"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",'
            b' "request": {"uid": "u"}}',
            "request.desiredAPIVersion is missing",
        ),
        (
            b'{"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",'
            b' "request": {"uid": "u", "desiredAPIVersion": "x", "objects": [1]}}',
            "request.objects must be a list of objects",
        ),
    ],
)
def test_a_malformed_review_says_why(body: bytes, why: str) -> None:
    with pytest.raises(MalformedConversionReview, match=why):
        conversion_review.decode(body)


def test_a_converter_raising_value_error_is_a_failure_not_a_crash() -> None:
    def broken(obj: Mapping[str, Any], version: str) -> dict[str, Any]:
        raise ValueError("nope")

    answered = conversion_review.answer(conversion_review.decode(review([sidecarset("a")])), broken)

    assert "nope" in response(answered.body)["result"]["message"]
