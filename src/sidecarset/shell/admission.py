"""AdmissionReview (admission.k8s.io/v1) transport: decode a request, build a response.

Handlers are `async def handle(request: AdmissionRequest) -> AdmissionResponse`. This module
turns HTTP bodies into requests (a malformed body is a 400 with a message, never a 500), and
responses into the JSON the apiserver expects. A patch is always complete before it is returned.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

MAX_BODY_BYTES = 3 * 1024 * 1024  # the apiserver's own request limit is 3 MiB
MAX_DEPTH = 100
"""Deepest JSON nesting accepted. A Pod or SidecarSet nests about 15 levels; handlers recurse over
objects (copies, hashes), so a deeper body must be refused here, as a 400, before it can raise
RecursionError in a handler (a 500)."""


class MalformedReview(ValueError):
    """The body is not an AdmissionReview v1 we can answer; the message says why."""


@dataclass(frozen=True)
class AdmissionRequest:
    uid: str
    kind: str
    group: str
    version: str
    resource: str
    sub_resource: str
    operation: str
    namespace: str
    name: str
    object: dict[str, Any] | None
    old_object: dict[str, Any] | None
    dry_run: bool
    user: str


@dataclass(frozen=True)
class AdmissionResponse:
    allowed: bool
    patch: Sequence[dict[str, Any]] | None = None
    code: int | None = None
    message: str = ""
    reason: str = ""
    warnings: tuple[str, ...] = ()
    audit: dict[str, str] = field(default_factory=dict)


Handler = Callable[[AdmissionRequest], Awaitable[AdmissionResponse]]


def allowed(*, warnings: Sequence[str] = ()) -> AdmissionResponse:
    return AdmissionResponse(allowed=True, warnings=tuple(warnings))


def patched(ops: Sequence[dict[str, Any]], *, warnings: Sequence[str] = ()) -> AdmissionResponse:
    return AdmissionResponse(allowed=True, patch=list(ops) or None, warnings=tuple(warnings))


def denied(
    message: str, *, code: int = 403, reason: str = "Forbidden", warnings: Sequence[str] = ()
) -> AdmissionResponse:
    return AdmissionResponse(
        allowed=False, code=code, message=message, reason=reason, warnings=tuple(warnings)
    )


def invalid(message: str, *, warnings: Sequence[str] = ()) -> AdmissionResponse:
    return denied(message, code=422, reason="Invalid", warnings=warnings)


def errored(message: str, *, code: int = 500) -> AdmissionResponse:
    """Our own failure (not the user's): the apiserver applies the webhook's failurePolicy."""
    return AdmissionResponse(allowed=False, code=code, message=message, reason="InternalError")


def read_request(
    body: bytes, api_version: str, kind: str, malformed: type[ValueError]
) -> tuple[dict[str, Any], str]:
    """The `request` of a review body and its uid, else `malformed(why)`: bounded in size and
    nesting, of the given apiVersion and kind. Shared by AdmissionReview and ConversionReview."""
    review = _read_object(body, malformed)
    if review.get("apiVersion") != api_version or review.get("kind") != kind:
        raise malformed(f"expected apiVersion {api_version}, kind {kind}")
    request = review.get("request")
    if not isinstance(request, dict):
        raise malformed("request is missing")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise malformed("request.uid is missing")
    return request, uid


def _read_object(body: bytes, malformed: type[ValueError]) -> dict[str, Any]:
    if len(body) > MAX_BODY_BYTES:
        raise malformed(f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
    try:
        review = _DECODER.decode(body)
    except ValueError as err:  # msgspec.DecodeError is one
        raise malformed(f"body is not JSON: {err}") from None
    except RecursionError:
        raise malformed(f"body nests deeper than {MAX_DEPTH} levels") from None
    if _depth(review) > MAX_DEPTH:
        raise malformed(f"body nests deeper than {MAX_DEPTH} levels")
    if not isinstance(review, dict):
        raise malformed("body is not a JSON object")
    return review


def decode(body: bytes) -> AdmissionRequest:
    req, uid = read_request(body, "admission.k8s.io/v1", "AdmissionReview", MalformedReview)

    def section(key: str) -> dict[str, Any]:
        value = req.get(key) or {}
        if not isinstance(value, dict):
            raise MalformedReview(f"request.{key} must be an object")
        return value

    kind, resource, user = section("kind"), section("resource"), section("userInfo")
    obj, old = req.get("object"), req.get("oldObject")
    for key, value in (("object", obj), ("oldObject", old)):
        if value is not None and not isinstance(value, dict):
            raise MalformedReview(f"request.{key} must be an object")
    return AdmissionRequest(
        uid=uid,
        kind=str(kind.get("kind", "")),
        group=str(kind.get("group", "")),
        version=str(kind.get("version", "")),
        resource=str(resource.get("resource", "")),
        sub_resource=str(req.get("subResource") or ""),
        operation=str(req.get("operation", "")),
        namespace=str(req.get("namespace") or ""),
        name=str(req.get("name") or ""),
        object=obj,
        old_object=old,
        dry_run=bool(req.get("dryRun")),
        user=str(user.get("username", "")),
    )


def _depth(value: object) -> int:
    """Nesting depth of decoded JSON (a scalar is 0), level by level without recursion; stops
    past MAX_DEPTH. Every review is walked, so it visits each value once and builds no tuples."""
    level: list[Any] = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level and depth <= MAX_DEPTH:
        depth += 1
        children: list[object] = []
        for item in level:
            children.extend(item.values() if isinstance(item, dict) else item)
        level = [child for child in children if isinstance(child, dict | list)]
    return depth


def encode(uid: str, response: AdmissionResponse) -> bytes:
    body: dict[str, Any] = {"uid": uid, "allowed": response.allowed}
    if response.patch:
        body["patchType"] = "JSONPatch"
        body["patch"] = base64.b64encode(_ENCODER.encode(response.patch)).decode()
    if not response.allowed:
        body["status"] = {
            "code": response.code or 403,
            "message": response.message,
            "reason": response.reason,
        }
    if response.warnings:
        # The apiserver truncates long warnings; keep each short and at most a handful.
        body["warnings"] = [w[:1024] for w in response.warnings[:16]]
    if response.audit:
        body["auditAnnotations"] = response.audit
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": body}
    return _ENCODER.encode(review)


# msgspec's encoder in C: a response carries every injected container, and json.dumps was a
# twentieth of the pod webhook's time. The output is compact JSON, which the apiserver reads alike.
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder()
"""Decodes to plain dicts and lists as json.loads does, several times faster; nesting beyond
what it can follow raises RecursionError, as json.loads does."""
