"""The JSON merge patch behind `patchPodMetadata: MergePatchJson`, on its own.

Examples pin the output text Kruise (Go's evanphx/json-patch `MergePatch`) produces, quirks
included; properties check it against the RFC 7386 algorithm and a patch computed as the
difference of two documents.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecarset.core.injection.merge_patch import MergePatchError, merge_patch

# --- examples ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "patch", "merged"),
    [
        pytest.param('{"b":1,"a":2}', '{"c":3}', '{"a":2,"b":1,"c":3}', id="keys-sorted"),
        pytest.param('{"a":1}', '{"a":"x"}', '{"a":"x"}', id="value-replaced"),
        pytest.param('{"a":1,"b":2}', '{"b":null}', '{"a":1}', id="null-deletes"),
        pytest.param('{"a":1}', '{"z":null}', '{"a":1}', id="null-on-absent-key-is-no-op"),
        pytest.param(
            '{"a":{"x":1,"y":2}}', '{"a":{"y":null,"z":3}}', '{"a":{"x":1,"z":3}}', id="nested"
        ),
        pytest.param("{}", '{"a":{"b":null,"c":1}}', '{"a":{"c":1}}', id="new-object-pruned"),
        pytest.param('{"a":5}', '{"a":{"x":null,"y":1}}', '{"a":{"y":1}}', id="object-over-scalar"),
        pytest.param('{"a":{"x":1}}', '{"a":5}', '{"a":5}', id="scalar-over-object"),
        pytest.param('{"a":[1,2]}', '{"a":[3]}', '{"a":[3]}', id="arrays-replaced-whole"),
        pytest.param('{"a":1}', '{"b":[null,{"c":null}]}', '{"a":1,"b":[null,{}]}', id="in-array"),
        pytest.param('{"a":1.0}', '{"b":1e3}', '{"a":1.0,"b":1e3}', id="number-literals-kept"),
        pytest.param(
            '{"z":{"b":1,"a":2},"y":1}', '{"y":2}', '{"y":2,"z":{"b":1,"a":2}}', id="untouched"
        ),
        pytest.param('{"a":1}', "[1, null]", "[1,null]", id="array-patch-replaces"),
        pytest.param("[1]", '{"a":null,"b":1}', '{"b":1}', id="object-patch-on-array"),
        pytest.param('"text"', '{"a":1}', '{"a":1}', id="object-patch-on-string"),
        pytest.param('{"a":"<&>"}', '{"b":1}', '{"a":"\\u003c\\u0026\\u003e","b":1}', id="html"),
    ],
)
def test_merges_as_go_does(document: str, patch: str, merged: str) -> None:
    assert merge_patch(document, patch) == merged


def test_an_array_over_an_object_is_not_pruned_as_in_go() -> None:
    # Go's merge returns the patch value as is when it is not an object but the current one
    # is; null members inside it survive (a new key would have been pruned).
    assert merge_patch('{"a":{"x":1}}', '{"a":[{"k":null}]}') == '{"a":[{"k":null}]}'


@pytest.mark.parametrize(
    ("document", "patch", "message"),
    [
        pytest.param("plain text", '{"a":1}', "Expecting value", id="document-not-json"),
        pytest.param('{"a":1}', "{", "Expecting", id="patch-not-json"),
        pytest.param("null", '{"a":1}', "current value is null", id="null-document"),
        pytest.param('{"a":1}', "null", "patch is null", id="null-patch"),
        pytest.param('{"a":1}', '"x"', "neither an object nor an array", id="scalar-patch"),
        pytest.param('{"a":NaN}', '{"b":1}', "NaN is not JSON", id="nan"),
    ],
)
def test_fails_where_go_fails(document: str, patch: str, message: str) -> None:
    with pytest.raises(MergePatchError, match=message):
        merge_patch(document, patch)


# --- properties -------------------------------------------------------------------------------

KEYS = st.text(alphabet="abxyz", min_size=1, max_size=2)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**6), max_value=10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet="ab<é", max_size=3)
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=3),
    max_leaves=12,
)
DOCUMENTS = st.dictionaries(KEYS, VALUES, max_size=4)
# Patches whose arrays hold scalars only: there Go and RFC 7386 agree (Go also prunes null
# members of objects inside a new array, see the example above).
PATCH_VALUES = st.recursive(
    SCALARS | st.lists(SCALARS, max_size=3),
    lambda children: st.dictionaries(KEYS, children, max_size=3),
    max_leaves=12,
)
PATCHES = st.dictionaries(KEYS, PATCH_VALUES, max_size=4)


def _dump(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _rfc7386(target: Any, patch: Any) -> Any:
    """The algorithm as RFC 7386 section 2 writes it."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = _rfc7386(result.get(name), value)
    return result


def _diff(source: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """A merge patch that turns `source` into `target` (what `CreateMergePatch` computes)."""
    patch: dict[str, Any] = {name: None for name in source if name not in target}
    for name, value in target.items():
        if name not in source:
            patch[name] = value
        elif isinstance(value, dict) and isinstance(source[name], dict):
            inner = _diff(source[name], value)
            if inner:
                patch[name] = inner
        elif value != source[name] or type(value) is not type(source[name]):
            patch[name] = value
    return patch


def _without_nulls(value: Any) -> Any:
    """Merge patches cannot create a null member: a null in a patch means delete."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


@given(DOCUMENTS, PATCHES)
def test_agrees_with_rfc_7386(document: dict[str, Any], patch: dict[str, Any]) -> None:
    merged = json.loads(merge_patch(_dump(document), _dump(patch)))

    assert merged == _rfc7386(document, patch)


@given(DOCUMENTS, DOCUMENTS.map(_without_nulls))
def test_a_difference_patch_turns_the_source_into_the_target(
    source: dict[str, Any], target: dict[str, Any]
) -> None:
    patch = _diff(source, target)

    assert json.loads(merge_patch(_dump(source), _dump(patch))) == target


@given(DOCUMENTS, PATCHES)
def test_applying_a_patch_twice_changes_nothing_more(
    document: dict[str, Any], patch: dict[str, Any]
) -> None:
    once = merge_patch(_dump(document), _dump(patch))

    assert merge_patch(once, _dump(patch)) == once


@given(DOCUMENTS.filter(bool), st.data())
def test_a_null_deletes_exactly_its_key(document: dict[str, Any], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(document)))

    merged = json.loads(merge_patch(_dump(document), _dump({key: None})))

    assert merged == {k: v for k, v in document.items() if k != key}


@given(DOCUMENTS, PATCHES)
def test_the_merged_object_has_sorted_keys(document: dict[str, Any], patch: dict[str, Any]) -> None:
    merged = json.loads(merge_patch(_dump(document), _dump(patch)), object_pairs_hook=list)

    assert [key for key, _ in merged] == sorted(key for key, _ in merged)
