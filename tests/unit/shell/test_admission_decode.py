"""admission.decode: every malformed body is a MalformedReview (a 400), never another error."""

from __future__ import annotations

import json

import pytest

from sidecarset.shell import admission


def review(obj: object) -> bytes:
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {"uid": "u", "object": obj},
        }
    ).encode()


def nested(depth: int) -> object:
    value: object = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deeper-than-the-interpreter-recurses"),
        pytest.param(review(nested(admission.MAX_DEPTH)), id="object-past-the-limit"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(review(float("inf")), id="infinity-is-not-json"),
        pytest.param(review(float("nan")), id="nan-is-not-json"),
        pytest.param(review(1).replace(b'"object": 1', b'"object": 1e400'), id="out-of-range"),
        pytest.param(b"x" * (admission.MAX_BODY_BYTES + 1), id="oversized"),
    ],
)
def test_a_malformed_body_is_a_malformed_review(body: bytes) -> None:
    with pytest.raises(admission.MalformedReview):
        admission.decode(body)


def test_an_object_within_the_depth_limit_decodes() -> None:
    decoded = admission.decode(review(nested(admission.MAX_DEPTH - 3)))
    assert decoded.uid == "u"
    assert isinstance(decoded.object, dict)
