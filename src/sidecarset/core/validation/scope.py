"""Which pods and namespaces a SidecarSet selects (behaviour.md §11.2).

An empty selector would select nothing (behaviour.md §3.1), so it is refused here instead of
being admitted and silently doing nothing; the strategy checks reuse `check_selector`.
"""

from __future__ import annotations

from collections.abc import Iterator

from sidecarset.core import selectors
from sidecarset.core.errors import FieldError, Path
from sidecarset.core.model import LabelSelector, SidecarSet


def check_scope(sidecarset: SidecarSet, path: Path) -> Iterator[FieldError]:
    spec = sidecarset.spec
    if spec.selector is None:
        yield FieldError.required(path.child("selector"), "no selector defined for SidecarSet")
    else:
        yield from check_selector(spec.selector, path.child("selector"))
    if spec.namespace_selector is not None:
        yield from check_selector(spec.namespace_selector, path.child("namespaceSelector"))
        if spec.namespace:
            yield FieldError.forbidden(
                path.child("namespaceSelector"),
                "namespace and namespaceSelector are mutually exclusive",
            )
    if spec.namespace:
        for problem in selectors.dns1123_label_problems(spec.namespace):
            yield FieldError.invalid(path.child("namespace"), spec.namespace, problem)


def check_selector(selector: LabelSelector, path: Path) -> Iterator[FieldError]:
    yield from selectors.validate_selector(selector, path)
    if selector.is_empty:
        yield FieldError.invalid(
            path, {}, "empty selector is not valid for sidecarset (it would match nothing)"
        )
