"""v1alpha1 -> v1beta1 -> v1alpha1 and v1beta1 -> v1alpha1 -> v1beta1 are the identity.

Over generated SidecarSets as the API server holds them: metadata with a name, labels and
annotations that are absent or non-empty (the API drops empty maps) and free of the reserved
`conversion.sidecarset.kruise.io/` annotations (which only the conversion writes), a spec with
a selector and the generated containers, volumes and strategies of the defaulting properties,
and a status with our conditions. v1beta1 objects include those the conversion itself wrote
(with a recorded namespace) and ones whose recorded namespace went stale by a v1beta1 edit.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sidecarset.core import conversion, model, pod_contract
from sidecarset.core.errors import ModelError
from tests.unit.properties.test_defaults_properties import SIDECARSET

NAMES = st.sampled_from(["", "default", "team-a", "kube-system"])
LABEL_KEYS = st.sampled_from(["app", "team", pod_contract.CUSTOM_VERSION_LABEL])
PLAIN_ANNOTATIONS = st.sampled_from(["note", "apps.kruise.io/sidecarset-canary", "x/y"])
SELECTORS = st.fixed_dictionaries(
    {},
    optional={
        "matchLabels": st.dictionaries(
            st.sampled_from(["env", pod_contract.NAMESPACE_NAME_LABEL]), NAMES, max_size=2
        ),
        "matchExpressions": st.lists(
            st.fixed_dictionaries(
                {"key": st.just("env"), "operator": st.sampled_from(["In", "Exists"])}
            ),
            max_size=1,
        ),
    },
)
CONDITIONS = st.lists(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["Ready", "Progressing", "Stalled"]),
            "status": st.sampled_from(["True", "False", "Unknown"]),
        },
        optional={
            "reason": st.sampled_from(["Rolling", "RolloutComplete", "Paused"]),
            "message": st.text(max_size=10),
            "lastTransitionTime": st.just("2026-01-02T03:04:05Z"),
            "observedGeneration": st.integers(0, 9),
        },
    ),
    max_size=3,
    unique_by=lambda c: c["type"],
)
STATUS = st.fixed_dictionaries(
    {},
    optional={
        "observedGeneration": st.integers(0, 9),
        "matchedPods": st.integers(0, 9),
        "updatedPods": st.integers(0, 9),
        "readyPods": st.integers(0, 9),
        "updatedReadyPods": st.integers(0, 9),
        "latestRevision": st.sampled_from(["s-5d8f", ""]),
        "collisionCount": st.integers(0, 3),
        "conditions": CONDITIONS,
    },
)


@st.composite
def v1alpha1_sidecarsets(draw: st.DrawFn) -> dict[str, Any]:
    base = draw(SIDECARSET)
    spec = base["spec"] if isinstance(base.get("spec"), dict) else {}
    spec = {**spec, "selector": {"matchLabels": {"app": "web"}}}
    if draw(st.booleans()):
        spec["namespace"] = draw(NAMES)
    if draw(st.booleans()):
        spec["namespaceSelector"] = draw(SELECTORS)
    metadata: dict[str, Any] = {"name": "s", "generation": draw(st.integers(1, 5))}
    labels = draw(st.dictionaries(LABEL_KEYS, NAMES, max_size=3))
    if labels:
        metadata["labels"] = labels
    annotations = draw(st.dictionaries(PLAIN_ANNOTATIONS, st.text(max_size=5), max_size=2))
    if annotations:
        metadata["annotations"] = annotations
    obj = {"apiVersion": conversion.V1ALPHA1, "kind": "SidecarSet", "metadata": metadata}
    obj["spec"] = spec
    if draw(st.booleans()):
        obj["status"] = draw(STATUS)
    return obj


@st.composite
def v1beta1_sidecarsets(draw: st.DrawFn) -> dict[str, Any]:
    """Written through v1beta1, or stored by the conversion, maybe edited since."""
    alpha = draw(v1alpha1_sidecarsets())
    if draw(st.booleans()):
        stored = conversion.to_v1beta1(alpha)
        if draw(st.booleans()):  # a later v1beta1 apply changes the selector
            stored["spec"]["namespaceSelector"] = draw(SELECTORS)
        return stored
    spec = {k: v for k, v in alpha["spec"].items() if k != "namespace"}
    if draw(st.booleans()):
        spec["customVersion"] = draw(NAMES)
    return {**alpha, "apiVersion": conversion.V1BETA1, "spec": spec}


@given(v1alpha1_sidecarsets())
def test_v1alpha1_round_trip_is_the_identity(obj: dict[str, Any]) -> None:
    converted = conversion.to_v1beta1(obj)

    assert converted["apiVersion"] == conversion.V1BETA1
    assert "namespace" not in converted["spec"]
    assert conversion.to_v1alpha1(converted) == obj


@given(v1beta1_sidecarsets())
def test_v1beta1_round_trip_is_the_identity(obj: dict[str, Any]) -> None:
    converted = conversion.to_v1alpha1(obj)

    assert converted["apiVersion"] == conversion.V1ALPHA1
    assert "customVersion" not in converted.get("spec", {})
    assert conversion.to_v1beta1(converted) == obj


@given(v1alpha1_sidecarsets())
def test_both_versions_mean_the_same_sidecarset(obj: dict[str, Any]) -> None:
    """Where the namespace is a selector in v1beta1, both scope pods the same way."""
    try:
        internal = model.parse_sidecarset(obj)
    except ModelError:  # ill-typed generated bodies: parsing is not what is tested here
        return
    via_beta = model.parse_sidecarset(conversion.to_internal(conversion.to_v1beta1(obj)))

    assert via_beta == internal
    assert via_beta.custom_version == internal.custom_version
