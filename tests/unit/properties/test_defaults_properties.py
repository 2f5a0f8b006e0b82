"""Defaulting, hashing and validation invariants over generated SidecarSets (style section 8).

Defaulting is idempotent and never mutates its input; the hash annotations it writes are the hash
of the spec it returns, so they survive another defaulting pass; validation of anything
JSON-shaped returns errors instead of raising.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sidecarset.core import defaults, hashing, model, resources_expr, validation
from sidecarset.core.errors import ModelError

JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(max_size=8)
)
ANY_JSON = st.recursive(
    JSON_LEAF,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)
QUANTITY = st.sampled_from(["100m", "0.5", "1.5Gi", "1000", "+1", "01", "1e3", "1n", "2", "x"])
IMAGES = st.sampled_from(["busybox", "busybox:1.36", "nginx:latest", "", "Bad Image", "a@b"])


def maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly well-typed values, sometimes arbitrary JSON in their place."""
    return st.one_of(value, value, value, ANY_JSON)


CONTAINER = st.fixed_dictionaries(
    {"name": maybe(st.sampled_from(["a", "b", "proxy", "Bad"]))},
    optional={
        "image": maybe(IMAGES),
        "restartPolicy": maybe(st.sampled_from(["Always", "Never"])),
        "ports": maybe(
            st.lists(
                st.fixed_dictionaries(
                    {"containerPort": maybe(st.integers(0, 70000))},
                    optional={"protocol": st.sampled_from(["TCP", "UDP", ""])},
                ),
                max_size=2,
            )
        ),
        "env": maybe(
            st.lists(
                st.fixed_dictionaries(
                    {"name": st.sampled_from(["A", "B", "1X"])},
                    optional={
                        "value": st.text(max_size=4),
                        "valueFrom": maybe(
                            st.fixed_dictionaries(
                                {
                                    "fieldRef": st.fixed_dictionaries(
                                        {"fieldPath": st.text(max_size=12)}
                                    )
                                }
                            )
                        ),
                    },
                ),
                max_size=2,
            )
        ),
        "resources": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "limits": maybe(st.dictionaries(st.sampled_from(["cpu", "memory"]), QUANTITY)),
                    "requests": maybe(
                        st.dictionaries(st.sampled_from(["cpu", "memory"]), QUANTITY)
                    ),
                },
            )
        ),
        "livenessProbe": maybe(
            st.fixed_dictionaries(
                {
                    "httpGet": st.fixed_dictionaries(
                        {"port": st.integers(0, 9) | st.text(max_size=4)}
                    )
                },
                optional={"periodSeconds": st.integers(0, 5)},
            )
        ),
        "volumeMounts": maybe(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "name": st.sampled_from(["v", "w"]),
                        "mountPath": st.sampled_from(["/a", "/b"]),
                    }
                ),
                max_size=2,
            )
        ),
        "upgradeStrategy": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "upgradeType": st.sampled_from(["ColdUpgrade", "HotUpgrade", "Warm"]),
                    "hotUpgradeEmptyImage": IMAGES,
                },
            )
        ),
        "resourcesPolicy": maybe(
            st.fixed_dictionaries(
                {
                    "targetContainersMode": st.sampled_from(["sum", "max", "avg"]),
                    "resourcesExpr": st.fixed_dictionaries(
                        {},
                        optional={
                            "limits": st.fixed_dictionaries(
                                {"cpu": st.sampled_from(["cpu*50%", "max(cpu, 5m)", "cpu*", "1/0"])}
                            )
                        },
                    ),
                }
            )
        ),
        "securityContext": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "privileged": st.booleans(),
                    "capabilities": st.fixed_dictionaries(
                        {"add": st.lists(st.sampled_from(["NET_ADMIN", "CHOWN"]), max_size=2)}
                    ),
                },
            )
        ),
        "extra": ANY_JSON,
    },
)
SELECTOR = maybe(
    st.fixed_dictionaries(
        {},
        optional={
            "matchLabels": st.dictionaries(st.sampled_from(["app", "x y"]), st.text(max_size=4)),
            "matchExpressions": st.lists(
                st.fixed_dictionaries(
                    {
                        "key": st.sampled_from(["app", "tier"]),
                        "operator": st.sampled_from(["In", "NotIn", "Exists", "Near"]),
                    },
                    optional={"values": st.lists(st.text(max_size=3), max_size=2)},
                ),
                max_size=2,
            ),
        },
    )
)
_SIDECARSET = st.fixed_dictionaries(
    {
        "metadata": maybe(
            st.fixed_dictionaries(
                {"name": maybe(st.sampled_from(["s", "other", "bad.name"]))},
                optional={
                    "annotations": maybe(st.dictionaries(st.text(max_size=5), st.text(max_size=5)))
                },
            )
        ),
        "spec": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "selector": SELECTOR,
                    "namespaceSelector": SELECTOR,
                    "containers": maybe(st.lists(maybe(CONTAINER), max_size=3)),
                    "initContainers": maybe(st.lists(maybe(CONTAINER), max_size=2)),
                    "volumes": maybe(
                        st.lists(
                            st.fixed_dictionaries(
                                {"name": st.sampled_from(["v", "w"])},
                                optional={
                                    "emptyDir": st.just({}),
                                    "hostPath": st.fixed_dictionaries({"path": st.just("/x")}),
                                    "secret": maybe(
                                        st.fixed_dictionaries({"secretName": st.just("s")})
                                    ),
                                },
                            ),
                            max_size=2,
                        )
                    ),
                    "updateStrategy": maybe(
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "type": st.sampled_from(["RollingUpdate", "NotUpdate", "X"]),
                                "partition": maybe(
                                    st.integers(-2, 5) | st.sampled_from(["10%", "120%", "x"])
                                ),
                                "maxUnavailable": maybe(st.integers(0, 3) | st.just("50%")),
                                "selector": SELECTOR,
                            },
                        )
                    ),
                    "injectionStrategy": maybe(
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "revision": maybe(
                                    st.fixed_dictionaries(
                                        {}, optional={"revisionName": st.just("r")}
                                    )
                                )
                            },
                        )
                    ),
                    "patchPodMetadata": maybe(
                        st.lists(
                            st.fixed_dictionaries(
                                {
                                    "annotations": st.dictionaries(
                                        st.sampled_from(["a", "b/c"]), st.text(max_size=4)
                                    )
                                },
                                optional={
                                    "patchPolicy": st.sampled_from(
                                        ["Retain", "Overwrite", "MergePatchJson", ""]
                                    )
                                },
                            ),
                            max_size=2,
                        )
                    ),
                    "revisionHistoryLimit": maybe(st.integers(-1, 20)),
                },
            )
        ),
    }
)


@st.composite
def sidecarsets(draw: st.DrawFn) -> dict[str, Any]:
    """Named, so hypothesis reports `sidecarsets()` instead of the whole nested strategy."""
    drawn: dict[str, Any] = draw(_SIDECARSET)
    return drawn


SIDECARSET = sidecarsets()


@given(SIDECARSET)
def test_defaulting_is_idempotent(obj: dict[str, Any]) -> None:
    once = defaults.apply_defaults(obj)

    assert defaults.apply_defaults(once) == once


@given(SIDECARSET)
def test_defaulting_never_mutates_its_input(obj: dict[str, Any]) -> None:
    before = copy.deepcopy(obj)

    defaults.apply_defaults(obj)

    assert obj == before


@given(SIDECARSET)
def test_hash_annotations_are_the_hash_of_the_defaulted_spec(obj: dict[str, Any]) -> None:
    defaulted = defaults.apply_defaults(obj)
    spec = defaulted["spec"] if isinstance(defaulted["spec"], dict) else {}
    annotations = (
        defaulted["metadata"]["annotations"] if isinstance(defaulted["metadata"], dict) else None
    )

    if annotations is not None:
        assert annotations["kruise.io/sidecarset-hash"] == hashing.spec_hash(spec)
        assert annotations["kruise.io/sidecarset-hash-without-image"] == (
            hashing.spec_hash_without_image(spec)
        )


@given(SIDECARSET)
def test_hashes_are_stable_under_repeated_defaulting(obj: dict[str, Any]) -> None:
    once: dict[str, Any] = defaults.apply_defaults(obj)
    twice: dict[str, Any] = defaults.apply_defaults(once)

    if isinstance(once["spec"], dict):
        assert hashing.spec_hash(twice["spec"]) == hashing.spec_hash(once["spec"])


@given(SIDECARSET, SIDECARSET)
def test_validation_never_raises(new: dict[str, Any], old: dict[str, Any]) -> None:
    result = validation.validate(new, old, (), validation.ValidationPolicy())

    assert all(str(e) for e in result.errors)


@given(SIDECARSET, SIDECARSET)
def test_validation_of_defaulted_objects_against_peers_never_raises(
    new: dict[str, Any], other: dict[str, Any]
) -> None:
    peers: list[model.SidecarSet] = []
    try:
        peers.append(model.parse_sidecarset(defaults.apply_defaults(other)))
    except ModelError:
        pass

    result = validation.validate(
        defaults.apply_defaults(new), None, peers, validation.ValidationPolicy()
    )

    assert isinstance(result, validation.ValidationResult)


@given(st.text(alphabet="0123456789.eEinumkKMGTP+-% ()*/,cpumemoryax", max_size=16))
def test_expressions_and_quantities_fail_only_with_their_own_errors(text: str) -> None:
    try:
        resources_expr.parse_expression(text).evaluate({"cpu": 1.0, "memory": 1.0})
    except resources_expr.ExpressionError:
        pass
    try:
        resources_expr.parse_quantity(text).round_up_milli().to_json()
    except resources_expr.QuantityError:
        pass
