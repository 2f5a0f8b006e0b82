"""User-facing error values of the core: field errors rendered the Kubernetes way.

Validation returns `FieldError`s (all of them, never the first only); decoding a SidecarSet of the
wrong shape raises `ModelError`, which carries the one `FieldError` msgspec found. The admission
handlers render both with `str()` and may map `kind` onto a metav1 StatusCause `reason`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from enum import StrEnum

import msgspec

__all__ = ["FieldError", "FieldErrorKind", "ModelError", "Path"]


class FieldErrorKind(StrEnum):
    """The Kubernetes `field.ErrorType` values; the value is the wire `reason` of a StatusCause."""

    NOT_FOUND = "FieldValueNotFound"
    REQUIRED = "FieldValueRequired"
    DUPLICATE = "FieldValueDuplicate"
    INVALID = "FieldValueInvalid"
    NOT_SUPPORTED = "FieldValueNotSupported"
    FORBIDDEN = "FieldValueForbidden"
    TOO_LONG = "FieldValueTooLong"
    TOO_MANY = "FieldValueTooMany"
    TYPE_INVALID = "FieldValueTypeInvalid"

    @property
    def phrase(self) -> str:
        """The phrase Kubernetes prints for this kind (`Invalid value`, `Required value`)."""
        return _TITLES[self]


_TITLES = {
    FieldErrorKind.NOT_FOUND: "Not found",
    FieldErrorKind.REQUIRED: "Required value",
    FieldErrorKind.DUPLICATE: "Duplicate value",
    FieldErrorKind.INVALID: "Invalid value",
    FieldErrorKind.NOT_SUPPORTED: "Unsupported value",
    FieldErrorKind.FORBIDDEN: "Forbidden",
    FieldErrorKind.TOO_LONG: "Too long",
    FieldErrorKind.TOO_MANY: "Too many",
    FieldErrorKind.TYPE_INVALID: "Invalid value",
}

# Kinds that Kubernetes renders without the offending value.
_VALUELESS = frozenset(
    {
        FieldErrorKind.REQUIRED,
        FieldErrorKind.FORBIDDEN,
        FieldErrorKind.TOO_LONG,
    }
)


class Path(msgspec.Struct, frozen=True):
    """A field path from the object root, rendered `spec.containers[0].name`.

    Built by chaining: `Path.root("spec").child("containers").index(0)`. Map keys render as
    `[key]` without quotes, as Kubernetes' `field.Path.Key` does.
    """

    text: str

    @classmethod
    def root(cls, name: str) -> Path:
        return cls(name)

    def child(self, *names: str) -> Path:
        text = self.text
        for name in names:
            text = f"{text}.{name}" if text else name
        return Path(text)

    def index(self, i: int) -> Path:
        return Path(f"{self.text}[{i}]")

    def key(self, k: str) -> Path:
        return Path(f"{self.text}[{k}]")

    def __str__(self) -> str:
        return self.text


class FieldError(msgspec.Struct, frozen=True, kw_only=True):
    """One problem in a user's object: where it is, what kind, why, and the offending value.

    `str()` gives the Kubernetes rendering, e.g.
    `spec.updateStrategy.partition: Invalid value: "120%": must be between 0% and 100%`.
    `value` is a JSON-ish scalar or collection; `msgspec.UNSET` (the default) hides it.
    """

    path: str
    kind: FieldErrorKind
    detail: str = ""
    value: object = msgspec.UNSET

    @classmethod
    def required(cls, path: Path | str, detail: str = "") -> FieldError:
        return cls(path=str(path), kind=FieldErrorKind.REQUIRED, detail=detail)

    @classmethod
    def invalid(cls, path: Path | str, value: object, detail: str) -> FieldError:
        return cls(path=str(path), kind=FieldErrorKind.INVALID, detail=detail, value=value)

    @classmethod
    def forbidden(cls, path: Path | str, detail: str) -> FieldError:
        return cls(path=str(path), kind=FieldErrorKind.FORBIDDEN, detail=detail)

    @classmethod
    def duplicate(cls, path: Path | str, value: object, detail: str = "") -> FieldError:
        return cls(path=str(path), kind=FieldErrorKind.DUPLICATE, detail=detail, value=value)

    @classmethod
    def not_found(cls, path: Path | str, value: object, detail: str = "") -> FieldError:
        return cls(path=str(path), kind=FieldErrorKind.NOT_FOUND, detail=detail, value=value)

    @classmethod
    def not_supported(cls, path: Path | str, value: object, supported: Iterable[str]) -> FieldError:
        quoted = ", ".join(_render_value(s) for s in supported)
        return cls(
            path=str(path),
            kind=FieldErrorKind.NOT_SUPPORTED,
            detail=f"supported values: {quoted}",
            value=value,
        )

    @classmethod
    def too_long(cls, path: Path | str, max_length: int) -> FieldError:
        return cls(
            path=str(path),
            kind=FieldErrorKind.TOO_LONG,
            detail=f"must have at most {max_length} bytes",
        )

    @classmethod
    def type_invalid(cls, path: Path | str, value: object, detail: str) -> FieldError:
        return cls(path=str(path), kind=FieldErrorKind.TYPE_INVALID, detail=detail, value=value)

    def __str__(self) -> str:
        body = self.kind.phrase
        if self.kind not in _VALUELESS and self.value is not msgspec.UNSET:
            body = f"{body}: {_render_value(self.value)}"
        if self.detail:
            body = f"{body}: {self.detail}"
        return f"{self.path}: {body}" if self.path else body


def _render_value(value: object) -> str:
    """Render like Go's `%q` for strings and `%v` for numbers, as field.Error does."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


class ModelError(ValueError):
    """A SidecarSet that cannot be decoded into the model: a field has the wrong JSON type.

    Carries the `FieldError` naming the field, so a webhook can deny with the path.
    """

    def __init__(self, error: FieldError) -> None:
        super().__init__(str(error))
        self.error = error
