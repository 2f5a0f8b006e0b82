"""The SidecarSet's own name, labels and annotations (behaviour.md §11.1).

Kruise's rule for the name (letters, digits and '-' only: no dots) and Kubernetes' rules for
labels and annotations, reported together with every other problem; `check_annotations` also
checks the annotations patchPodMetadata writes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from sidecarset.core import selectors
from sidecarset.core.errors import FieldError, Path
from sidecarset.core.model import SidecarSet

_SIDECARSET_NAME = re.compile(r"[a-zA-Z0-9\-]+")
_SIDECARSET_NAME_MAX = 63
_ANNOTATIONS_MAX_BYTES = 256 * 1024


def check_metadata(sidecarset: SidecarSet) -> Iterator[FieldError]:
    meta = Path.root("metadata")
    name = sidecarset.metadata.name
    if not name:
        yield FieldError.required(meta.child("name"), "name or generateName is required")
    else:
        if _SIDECARSET_NAME.fullmatch(name) is None:
            yield FieldError.invalid(
                meta.child("name"),
                name,
                "sidecarset name must consist of alphanumeric characters or '-'"
                " (e.g. 'example-com', regex used for validation is '^[a-zA-Z0-9\\-]+$')",
            )
        if len(name) > _SIDECARSET_NAME_MAX:
            yield FieldError.invalid(
                meta.child("name"), name, f"must be no more than {_SIDECARSET_NAME_MAX} characters"
            )
    yield from _check_labels(sidecarset.metadata.labels, meta.child("labels"))
    yield from check_annotations(sidecarset.metadata.annotations, meta.child("annotations"))


def _check_labels(labels: Mapping[str, str], path: Path) -> Iterator[FieldError]:
    for key, value in labels.items():
        for problem in selectors.qualified_name_problems(key):
            yield FieldError.invalid(path, key, problem)
        for problem in selectors.label_value_problems(value):
            yield FieldError.invalid(path.key(key), value, problem)


def check_annotations(annotations: Mapping[str, str], path: Path) -> Iterator[FieldError]:
    for key in annotations:
        for problem in selectors.qualified_name_problems(key.lower()):
            yield FieldError.invalid(path, key, problem)
    size = sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())
    if size > _ANNOTATIONS_MAX_BYTES:
        yield FieldError.too_long(path, _ANNOTATIONS_MAX_BYTES)
