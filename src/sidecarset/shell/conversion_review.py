"""ConversionReview (apiextensions.k8s.io/v1) transport: decode a request, answer it.

The API server sends a CRD's conversion webhook every object it must read or write in another
version than the one it has. A converter is `convert(obj, desired_api_version) -> obj`, raising
ValueError with a message when it cannot; one failure fails the whole review (the API server then
fails the read or write, and stores nothing), so a review is never half converted. A malformed
body is a 400 with a message, never a 500.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from sidecarset.shell.admission import read_request

API_VERSION = "apiextensions.k8s.io/v1"

Converter = Callable[[Mapping[str, Any], str], dict[str, Any]]


class MalformedConversionReview(ValueError):
    """The body is not a ConversionReview v1 we can answer; the message says why."""


@dataclass(frozen=True)
class ConversionRequest:
    uid: str
    desired_api_version: str
    objects: list[dict[str, Any]]


@dataclass(frozen=True)
class ConversionOutcome:
    """What `answer` did: the encoded response, and why it failed ("" when it did not)."""

    body: bytes
    failure: str = ""

    @property
    def succeeded(self) -> bool:
        return not self.failure


def decode(body: bytes) -> ConversionRequest:
    request, uid = read_request(body, API_VERSION, "ConversionReview", MalformedConversionReview)
    desired = request.get("desiredAPIVersion")
    if not isinstance(desired, str) or not desired:
        raise MalformedConversionReview("request.desiredAPIVersion is missing")
    objects = request.get("objects") or []
    if not isinstance(objects, list) or not all(isinstance(o, dict) for o in objects):
        raise MalformedConversionReview("request.objects must be a list of objects")
    return ConversionRequest(uid=uid, desired_api_version=desired, objects=objects)


def answer(request: ConversionRequest, convert: Converter) -> ConversionOutcome:
    """Convert every object, or none: the first failure names the object and why."""
    converted: list[dict[str, Any]] = []
    for index, obj in enumerate(request.objects):
        try:
            converted.append(convert(obj, request.desired_api_version))
        except (ValueError, RecursionError) as err:
            metadata = obj.get("metadata")
            name = metadata.get("name") if isinstance(metadata, dict) else None
            which = f"{obj.get('kind') or 'object'} {name!r}" if name else f"object {index}"
            message = f"cannot convert {which} to {request.desired_api_version}: {err}"
            return ConversionOutcome(_encode(request.uid, [], message), failure=message)
    return ConversionOutcome(_encode(request.uid, converted, None))


def failed(uid: str, message: str) -> bytes:
    """A response failing the whole review (our own trouble, not the object's)."""
    return _encode(uid, [], message)


def _encode(uid: str, converted: list[dict[str, Any]], failure: str | None) -> bytes:
    result: dict[str, Any] = (
        {"status": "Success"} if failure is None else {"status": "Failure", "message": failure}
    )
    response = {"uid": uid, "convertedObjects": converted, "result": result}
    return _ENCODER.encode(
        {"apiVersion": API_VERSION, "kind": "ConversionReview", "response": response}
    )


_ENCODER = msgspec.json.Encoder()
