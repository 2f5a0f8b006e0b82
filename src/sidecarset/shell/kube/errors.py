"""API errors, mapped once from HTTP status and Kubernetes `Status` bodies.

    ApiError
     ├── BadRequest (400)        ├── Conflict (409)   └── AlreadyExists (409, reason AlreadyExists)
     ├── Unauthorized (401)      ├── Gone (410)       ├── Invalid (422)
     ├── Forbidden (403)         ├── TooManyRequests (429)
     ├── NotFound (404)          └── Unavailable (5xx, connection failures, timeouts)

Callers match on the class; the message is the apiserver's own, for users.
"""

from __future__ import annotations

from collections.abc import Mapping


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, reason: str = "", body: object = None):
        super().__init__(f"{status} {reason}: {message}" if reason else f"{status}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body


class BadRequest(ApiError): ...


class Unauthorized(ApiError): ...


class Forbidden(ApiError): ...


class NotFound(ApiError): ...


class Conflict(ApiError): ...


class AlreadyExists(Conflict): ...


class Gone(ApiError): ...


class Invalid(ApiError): ...


class TooManyRequests(ApiError): ...


class Unavailable(ApiError): ...


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
    429: TooManyRequests,
}


def from_response(status: int, body: object) -> ApiError:
    message, reason = "", ""
    if isinstance(body, Mapping):
        message = str(body.get("message", ""))
        reason = str(body.get("reason", ""))
    elif isinstance(body, bytes | str):
        message = body.decode(errors="replace") if isinstance(body, bytes) else body
        message = message.strip()[:500]
    if status == 409 and reason == "AlreadyExists":
        return AlreadyExists(status, message, reason=reason, body=body)
    cls = _BY_STATUS.get(status, Unavailable if status >= 500 else ApiError)
    return cls(status, message or f"HTTP {status}", reason=reason, body=body)
