"""Label selectors: Kubernetes validation, compilation, matching, and the overlap test.

A `LabelSelector` is validated as metav1 does (qualified-name keys, label values, the four
operators and their value rules), compiled once, then matched against label maps with
Kubernetes semantics (an empty selector matches everything; Kruise's "an empty SidecarSet
selector matches nothing" is the caller's rule). The overlap test decides whether two selectors
can select a common object; validation uses it to find conflicting SidecarSets (behaviour.md §3.3).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

import msgspec

from sidecarset.core.errors import FieldError, Path
from sidecarset.core.model import LabelSelector, LabelSelectorRequirement, SelectorOperator

__all__ = [
    "CompiledSelector",
    "Requirement",
    "compile_selector",
    "dns1123_label_problems",
    "dns1123_subdomain_problems",
    "label_value_problems",
    "matches",
    "matches_or_false",
    "overlaps",
    "qualified_name_problems",
    "validate_selector",
]

# --- Kubernetes name rules (k8s.io/apimachinery/pkg/util/validation) --------------------------

_QUALIFIED_NAME_MAX = 63
_LABEL_VALUE_MAX = 63
_DNS1123_LABEL_MAX = 63
_DNS1123_SUBDOMAIN_MAX = 253
_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = f"{_DNS1123_LABEL_FMT}(\\.{_DNS1123_LABEL_FMT})*"
_QUALIFIED_NAME = re.compile(_QUALIFIED_NAME_FMT)
_LABEL_VALUE = re.compile(_LABEL_VALUE_FMT)
_DNS1123_LABEL = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN = re.compile(_DNS1123_SUBDOMAIN_FMT)


def _regex_error(message: str, fmt: str, *examples: str) -> str:
    shown = ", ".join(f"'{e}'" for e in examples)
    return f"{message} (e.g. {shown}, regex used for validation is '{fmt}')"


def dns1123_label_problems(value: str) -> list[str]:
    """Why `value` is not an RFC 1123 label (container and volume names), or []."""
    problems = []
    if len(value) > _DNS1123_LABEL_MAX:
        problems.append(f"must be no more than {_DNS1123_LABEL_MAX} characters")
    if _DNS1123_LABEL.fullmatch(value) is None:
        problems.append(
            _regex_error(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters"
                " or '-', and must start and end with an alphanumeric character",
                _DNS1123_LABEL_FMT,
                "my-name",
                "123-abc",
            )
        )
    return problems


def dns1123_subdomain_problems(value: str) -> list[str]:
    """Why `value` is not an RFC 1123 subdomain (label key prefixes), or []."""
    problems = []
    if len(value) > _DNS1123_SUBDOMAIN_MAX:
        problems.append(f"must be no more than {_DNS1123_SUBDOMAIN_MAX} characters")
    if _DNS1123_SUBDOMAIN.fullmatch(value) is None:
        problems.append(
            _regex_error(
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric"
                " characters, '-' or '.', and must start and end with an alphanumeric character",
                _DNS1123_SUBDOMAIN_FMT,
                "example.com",
            )
        )
    return problems


def qualified_name_problems(value: str) -> list[str]:
    """Why `value` is not a qualified name (`[prefix/]name`, label and annotation keys), or []."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
        problems: list[str] = []
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            problems = ["prefix part must be non-empty"]
        else:
            problems = [f"prefix part {p}" for p in dns1123_subdomain_problems(prefix)]
    else:
        return [
            "a qualified name "
            + _regex_error(
                "must consist of alphanumeric characters, '-', '_' or '.', and must start and"
                " end with an alphanumeric character",
                _QUALIFIED_NAME_FMT,
                "MyName",
                "my.name",
                "123-abc",
            )
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > _QUALIFIED_NAME_MAX:
        problems.append(f"name part must be no more than {_QUALIFIED_NAME_MAX} characters")
    if name and _QUALIFIED_NAME.fullmatch(name) is None:
        problems.append(
            "name part "
            + _regex_error(
                "must consist of alphanumeric characters, '-', '_' or '.', and must start and"
                " end with an alphanumeric character",
                _QUALIFIED_NAME_FMT,
                "MyName",
                "my.name",
                "123-abc",
            )
        )
    return problems


def label_value_problems(value: str) -> list[str]:
    """Why `value` is not a valid label value, or []."""
    problems = []
    if len(value) > _LABEL_VALUE_MAX:
        problems.append(f"must be no more than {_LABEL_VALUE_MAX} characters")
    if _LABEL_VALUE.fullmatch(value) is None:
        problems.append(
            _regex_error(
                "a valid label must be an empty string or consist of alphanumeric characters,"
                " '-', '_' or '.', and must start and end with an alphanumeric character",
                _LABEL_VALUE_FMT,
                "MyValue",
                "my_value",
                "12345",
            )
        )
    return problems


# --- validation -------------------------------------------------------------------------------

_OPERATORS = tuple(op.value for op in SelectorOperator)


def validate_selector(selector: LabelSelector, path: Path) -> tuple[FieldError, ...]:
    """metav1 `ValidateLabelSelector`: every problem of `selector`, with paths under `path`.

    Emptiness is not a problem here (Kubernetes allows it); SidecarSet rules add that check.
    """
    errors: list[FieldError] = []
    labels_path = path.child("matchLabels")
    for key, value in selector.match_labels.items():
        errors.extend(FieldError.invalid(labels_path, key, p) for p in qualified_name_problems(key))
        errors.extend(
            FieldError.invalid(labels_path, value, p) for p in label_value_problems(value)
        )
    for i, requirement in enumerate(selector.match_expressions):
        item = path.child("matchExpressions").index(i)
        operator = requirement.operator
        if operator in (SelectorOperator.IN, SelectorOperator.NOT_IN):
            if not requirement.values:
                errors.append(
                    FieldError.required(
                        item.child("values"), "must be specified when `operator` is 'In' or 'NotIn'"
                    )
                )
        elif operator in (SelectorOperator.EXISTS, SelectorOperator.DOES_NOT_EXIST):
            if requirement.values:
                errors.append(
                    FieldError.forbidden(
                        item.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    )
                )
        else:
            errors.append(FieldError.not_supported(item.child("operator"), operator, _OPERATORS))
        errors.extend(
            FieldError.invalid(item.child("key"), requirement.key, p)
            for p in qualified_name_problems(requirement.key)
        )
        for j, value in enumerate(requirement.values):
            errors.extend(
                FieldError.invalid(item.child("values").index(j), value, p)
                for p in label_value_problems(value)
            )
    return tuple(errors)


# --- compiled selectors -----------------------------------------------------------------------


class Requirement(msgspec.Struct, frozen=True, kw_only=True):
    """One requirement on one label key; `matchLabels` entries become `In` with one value."""

    key: str
    operator: SelectorOperator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        # Identity tests, not `match`: this runs for every SidecarSet on every pod admission.
        value = labels.get(self.key)
        operator = self.operator
        if operator is SelectorOperator.IN:
            return value is not None and value in self.values
        if operator is SelectorOperator.NOT_IN:
            return value is None or value not in self.values
        if operator is SelectorOperator.EXISTS:
            return value is not None
        if operator is SelectorOperator.DOES_NOT_EXIST:
            return value is None
        raise AssertionError(f"unknown operator {self.operator!r}")


class CompiledSelector(msgspec.Struct, frozen=True, kw_only=True):
    """A valid selector, ready to match. No requirements means "everything"."""

    requirements: tuple[Requirement, ...]

    @property
    def is_empty(self) -> bool:
        return not self.requirements

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def compile_selector(selector: LabelSelector) -> CompiledSelector | None:
    """Compile a selector, or None when Kubernetes would reject it (it then selects nothing).

    Results are memoised per distinct selector, and per selector object: matching runs for every
    SidecarSet on every pod admission and pod event, with the same cached model objects, and a
    lookup by identity skips building the content key (a third of the pod webhook's time with 100
    SidecarSets). The identity memo holds its selectors, so an id is never reused while cached.
    """
    cached = _by_identity.get(id(selector))
    if cached is not None and cached[0] is selector:
        return cached[1]
    compiled = _compile(tuple(sorted(selector.match_labels.items())), selector.match_expressions)
    if len(_by_identity) >= _IDENTITY_MEMO_SIZE:
        _by_identity.clear()
    _by_identity[id(selector)] = (selector, compiled)
    return compiled


_IDENTITY_MEMO_SIZE = 4096
_by_identity: dict[int, tuple[LabelSelector, CompiledSelector | None]] = {}


@functools.lru_cache(maxsize=4096)
def _compile(
    labels: tuple[tuple[str, str], ...], expressions: tuple[LabelSelectorRequirement, ...]
) -> CompiledSelector | None:
    selector = LabelSelector(match_labels=dict(labels), match_expressions=expressions)
    if validate_selector(selector, Path.root("selector")):
        return None
    requirements = [
        Requirement(key=key, operator=SelectorOperator.IN, values=frozenset({value}))
        for key, value in selector.match_labels.items()
    ]
    requirements.extend(
        Requirement(key=r.key, operator=SelectorOperator(r.operator), values=frozenset(r.values))
        for r in selector.match_expressions
    )
    requirements.sort(key=lambda r: (r.key, r.operator, sorted(r.values)))
    return CompiledSelector(requirements=tuple(requirements))


def required_label(selector: LabelSelector | None) -> tuple[str, str] | None:
    """A `key=value` label every object the selector matches must carry (a matchLabels entry,
    or `In` with one value); None when there is none or the selector is invalid. Lets callers
    look candidates up by label instead of matching the selector against everything."""
    if selector is None:
        return None
    compiled = compile_selector(selector)
    if compiled is None:
        return None
    for requirement in compiled.requirements:
        if requirement.operator is SelectorOperator.IN and len(requirement.values) == 1:
            return requirement.key, next(iter(requirement.values))
    return None


def matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool | None:
    """Kubernetes matching; None when the selector is invalid (a caller decides what that means)."""
    compiled = compile_selector(selector)
    return None if compiled is None else compiled.matches(labels)


def matches_or_false(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Kubernetes matching where an invalid selector matches nothing (as Kruise treats it)."""
    return matches(selector, labels) is True


# --- overlap ----------------------------------------------------------------------------------


def overlaps(first: LabelSelector, second: LabelSelector) -> bool:
    """True when some label set satisfies both selectors, decided exactly.

    Kruise (behaviour.md §12.9, `pkg/util/selector.go`) uses a heuristic that is wrong both ways: it
    calls `Exists` on a key the other selector doesn't mention disjoint (a missed conflict), and
    it ignores `NotIn` against `Exists`/`In` subsets. Here requirements are grouped per key and
    each key is checked for a value (or absence) that meets all of them; keys are independent,
    so the selectors overlap exactly when every key can be satisfied. An empty selector matches
    everything; an invalid one matches nothing and so overlaps nothing.
    """
    a, b = compile_selector(first), compile_selector(second)
    if a is None or b is None:
        return False
    by_key: dict[str, list[Requirement]] = {}
    for requirement in (*a.requirements, *b.requirements):
        by_key.setdefault(requirement.key, []).append(requirement)
    return all(_satisfiable(reqs) for reqs in by_key.values())


def _satisfiable(requirements: Iterable[Requirement]) -> bool:
    must_exist = False
    must_be_absent = False
    allowed: frozenset[str] | None = None
    excluded: set[str] = set()
    for r in requirements:
        match r.operator:
            case SelectorOperator.IN:
                must_exist = True
                allowed = r.values if allowed is None else allowed & r.values
            case SelectorOperator.NOT_IN:
                excluded |= r.values
            case SelectorOperator.EXISTS:
                must_exist = True
            case SelectorOperator.DOES_NOT_EXIST:
                must_be_absent = True
    if not must_exist:
        return True  # the label can be absent: NotIn and DoesNotExist both hold then
    if must_be_absent:
        return False
    if allowed is None:
        return True  # any value outside the finitely many excluded ones
    return bool(allowed - excluded)
