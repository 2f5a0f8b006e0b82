"""Readers for the schemaless parts of a SidecarSet (container bodies, volume sources).

The CRD leaves them untyped, so any field may hold a value of the wrong JSON type. Every reader
here treats such a value as absent: the checks never raise, and the type problem itself is
reported once, by `hashing.container_problems` or the caller's own check. `check_enum` is the
one check every rule family shares.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from sidecarset.core.errors import FieldError, Path

JsonMap = Mapping[str, object]


def str_field(body: JsonMap, key: str) -> str:
    """The string at `key`; "" when absent or not a string."""
    value = body.get(key)
    return value if isinstance(value, str) else ""


def int_field(body: JsonMap, key: str) -> int | None:
    """The integer at `key` (a whole float counts, a bool does not); None otherwise."""
    value = body.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def map_field(body: JsonMap, key: str) -> JsonMap | None:
    """The object at `key`; None when absent or not an object."""
    value = body.get(key)
    return value if isinstance(value, Mapping) else None


def object_items(body: JsonMap, key: str) -> Iterator[tuple[int, JsonMap]]:
    """The objects in the list at `key`, with their index in the list; other items are skipped."""
    value = body.get(key)
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, Mapping):
                yield i, item


def str_list(body: JsonMap, key: str) -> list[str]:
    """The strings in the list at `key`; other items are skipped."""
    value = body.get(key)
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def has_field(body: JsonMap, key: str) -> bool:
    """Whether `key` is set to anything but null."""
    return body.get(key) is not None


def check_enum(
    body: JsonMap, key: str, path: Path, supported: Sequence[str]
) -> Iterator[FieldError]:
    """An optional string field that, when set, must be one of `supported`."""
    value = str_field(body, key)
    if value and value not in supported:
        yield FieldError.not_supported(path.child(key), value, supported)
