"""v1alpha1 <-> v1beta1: the mappings OpenKruise 1.9 documents, and what we keep that it loses."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from sidecarset.core import conversion, model, pod_contract
from sidecarset.core.conversion import (
    CUSTOM_VERSION_LABEL_ANNOTATION,
    NAMESPACE_ANNOTATION,
    V1ALPHA1,
    V1BETA1,
    ConversionError,
)

SELECTOR = {"matchLabels": {"app": "web"}}


def alpha(spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": V1ALPHA1,
        "kind": "SidecarSet",
        "metadata": {"name": "s", **metadata},
        "spec": {"selector": SELECTOR, **spec},
    }


def beta(spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {**alpha(spec, **metadata), "apiVersion": V1BETA1}


def test_namespace_becomes_a_selector_on_the_namespace_name_label() -> None:
    converted = conversion.to_v1beta1(alpha({"namespace": "team-a"}))

    assert converted["apiVersion"] == V1BETA1
    assert "namespace" not in converted["spec"]
    assert converted["spec"]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "team-a"}
    }
    # Upstream stops there; we also record where the selector came from.
    assert json.loads(converted["metadata"]["annotations"][NAMESPACE_ANNOTATION]) == {
        "namespace": "team-a"
    }


def test_the_recorded_namespace_comes_back_as_namespace() -> None:
    original = alpha({"namespace": "team-a"}, labels={"x": "1"})

    back = conversion.to_v1alpha1(conversion.to_v1beta1(original))

    assert back == original
    assert "annotations" not in back["metadata"]


def test_a_namespace_selector_passes_through_both_ways() -> None:
    original = alpha({"namespaceSelector": {"matchLabels": {"env": "prod"}}})

    converted = conversion.to_v1beta1(original)

    assert converted["spec"]["namespaceSelector"] == {"matchLabels": {"env": "prod"}}
    assert "annotations" not in converted["metadata"]
    assert conversion.to_v1alpha1(converted) == original


def test_custom_version_label_becomes_spec_custom_version_and_back() -> None:
    original = alpha({}, labels={pod_contract.CUSTOM_VERSION_LABEL: "v7", "team": "a"})

    converted = conversion.to_v1beta1(original)

    assert converted["spec"]["customVersion"] == "v7"
    assert converted["metadata"]["labels"] == {"team": "a"}
    assert conversion.to_v1alpha1(converted) == original


def test_an_empty_custom_version_label_survives() -> None:
    # Upstream drops it (customVersion "" is omitted); the raw JSON keeps the empty string.
    original = alpha({}, labels={pod_contract.CUSTOM_VERSION_LABEL: ""})

    converted = conversion.to_v1beta1(original)

    assert converted["spec"]["customVersion"] == ""
    assert "labels" not in converted["metadata"]
    assert conversion.to_v1alpha1(converted) == original


def test_a_custom_version_label_on_a_v1beta1_object_is_kept_aside() -> None:
    # Upstream overwrites it with spec.customVersion; it means nothing in v1beta1, so in
    # v1alpha1 it waits in an annotation and comes back on the way back.
    original = beta({"customVersion": "v2"}, labels={pod_contract.CUSTOM_VERSION_LABEL: "stray"})

    converted = conversion.to_v1alpha1(original)

    assert converted["metadata"]["labels"] == {pod_contract.CUSTOM_VERSION_LABEL: "v2"}
    assert converted["metadata"]["annotations"] == {CUSTOM_VERSION_LABEL_ANNOTATION: "stray"}
    assert conversion.to_v1beta1(converted) == original


def test_a_selector_edited_through_v1beta1_wins_over_the_recorded_namespace() -> None:
    stored = conversion.to_v1beta1(alpha({"namespace": "team-a"}))
    stored["spec"]["namespaceSelector"] = {"matchLabels": {"env": "prod"}}

    read = conversion.to_v1alpha1(stored)

    assert "namespace" not in read["spec"]
    assert read["spec"]["namespaceSelector"] == {"matchLabels": {"env": "prod"}}
    assert NAMESPACE_ANNOTATION in read["metadata"]["annotations"]  # stale, left alone
    assert conversion.to_v1beta1(read) == stored


def test_namespace_and_selector_together_are_both_kept() -> None:
    # Invalid (validation refuses it), but an object stored before validation must convert.
    original = alpha({"namespace": "a", "namespaceSelector": {"matchLabels": {"e": "p"}}})

    converted = conversion.to_v1beta1(original)

    assert converted["spec"]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "a"}
    }
    assert conversion.to_v1alpha1(converted) == original


def test_status_and_everything_else_pass_through_untouched() -> None:
    status = {
        "observedGeneration": 3,
        "matchedPods": 2,
        "updatedPods": 1,
        "readyPods": 2,
        "updatedReadyPods": 1,
        "latestRevision": "s-abc",
        "collisionCount": 1,
        "conditions": [{"type": "Ready", "status": "False", "reason": "Rolling"}],
    }
    original = {
        **alpha({"containers": [{"name": "c", "image": "i", "futureField": {"x": 1}}]}),
        "status": status,
    }
    original["metadata"]["resourceVersion"] = "42"

    converted = conversion.to_v1beta1(original)

    assert converted["status"] == status
    assert converted["spec"]["containers"] == original["spec"]["containers"]
    assert converted["metadata"]["resourceVersion"] == "42"


def test_convert_checks_kind_and_versions() -> None:
    with pytest.raises(ConversionError, match=re.escape("cannot convert to 'apps.kruise.io/v2'")):
        conversion.convert(alpha({}), "apps.kruise.io/v2")
    with pytest.raises(ConversionError, match="not a SidecarSet"):
        conversion.convert({"apiVersion": V1ALPHA1, "kind": "CloneSet"}, V1BETA1)
    unknown = re.escape("unknown SidecarSet apiVersion 'apps.kruise.io/v9'")
    with pytest.raises(ConversionError, match=unknown):
        conversion.convert({**alpha({}), "apiVersion": "apps.kruise.io/v9"}, V1BETA1)
    same = alpha({"namespace": "x"})
    assert conversion.convert(same, V1ALPHA1) == same


def test_a_non_string_custom_version_is_a_clear_error() -> None:
    with pytest.raises(ConversionError, match=re.escape("spec.customVersion must be a string")):
        conversion.to_v1alpha1(beta({"customVersion": 3}))


def test_internal_form_parses_the_same_from_both_versions() -> None:
    v1alpha1 = alpha({"namespace": "team-a"}, labels={pod_contract.CUSTOM_VERSION_LABEL: "v1"})
    v1beta1 = conversion.to_v1beta1(v1alpha1)

    from_alpha = model.parse_sidecarset(conversion.to_internal(v1alpha1))
    from_beta = model.parse_sidecarset(conversion.to_internal(v1beta1))

    assert from_alpha == from_beta
    assert from_beta.spec.namespace == "team-a"
    assert from_beta.custom_version == "v1"


def test_a_kruise_written_v1beta1_object_reads_with_its_selector() -> None:
    # Written by Kruise 1.9 (no annotation of ours): the selector is kept as it is.
    kruise = beta(
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "team-a"}},
            "customVersion": "v3",
        }
    )

    internal = model.parse_sidecarset(conversion.to_internal(kruise))

    assert internal.spec.namespace == ""
    assert internal.spec.namespace_selector == model.LabelSelector(
        match_labels={"kubernetes.io/metadata.name": "team-a"}
    )
    assert internal.custom_version == "v3"
