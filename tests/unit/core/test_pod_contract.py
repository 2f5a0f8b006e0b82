"""The pod-side Kruise wire formats: keys, readers (current and legacy) and Go-identical writers."""

from __future__ import annotations

import json

import pytest

from sidecarset.core import pod_contract
from sidecarset.core.errors import FieldErrorKind

# As Kruise's webhook writes it (Go json.Marshal of map[string]SidecarSetUpgradeSpec).
GO_HASH_ANNOTATION = (
    '{"filebeat":{"updateTimestamp":"2022-03-02T12:17:10Z","hash":"w26c4x8fz245642f",'
    '"sidecarSetName":"filebeat","sidecarList":["filebeat"],"controllerRevision":"filebeat-7d9b"},'
    '"mesh":{"updateTimestamp":"2022-03-02T12:17:10Z","hash":"8wzddb4d","sidecarSetName":"mesh",'
    '"sidecarList":["envoy","pilot"]}}'
)


def test_hash_annotation_round_trips_the_go_format_byte_for_byte() -> None:
    entries = pod_contract.read_upgrade_specs(
        {pod_contract.HASH_ANNOTATION: GO_HASH_ANNOTATION}, pod_contract.HASH_ANNOTATION
    )

    assert pod_contract.write_upgrade_specs(entries) == GO_HASH_ANNOTATION


def test_hash_annotation_entries_are_typed() -> None:
    entries = pod_contract.read_upgrade_specs(
        {pod_contract.HASH_ANNOTATION: GO_HASH_ANNOTATION}, pod_contract.HASH_ANNOTATION
    )

    assert entries["filebeat"] == pod_contract.UpgradeSpec(
        update_timestamp="2022-03-02T12:17:10Z",
        hash="w26c4x8fz245642f",
        sidecarset_name="filebeat",
        sidecar_list=("filebeat",),
        controller_revision="filebeat-7d9b",
    )
    assert entries["mesh"].controller_revision == ""


def test_legacy_hash_annotation_reads_as_entries_with_name_and_hash_only() -> None:
    annotations = {pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION: '{"a":"hash-a","b":"hash-b"}'}

    entries = pod_contract.read_upgrade_specs(
        annotations, pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION
    )

    assert entries == {
        "a": pod_contract.UpgradeSpec(hash="hash-a", sidecarset_name="a"),
        "b": pod_contract.UpgradeSpec(hash="hash-b", sidecarset_name="b"),
    }


def test_legacy_entries_are_written_back_as_go_writes_upgraded_entries() -> None:
    entries = pod_contract.read_upgrade_specs(
        {pod_contract.HASH_ANNOTATION: '{"a":"h"}'}, pod_contract.HASH_ANNOTATION
    )

    written = pod_contract.write_upgrade_specs(entries)

    assert written == (
        '{"a":{"updateTimestamp":null,"hash":"h","sidecarSetName":"a","sidecarList":null}}'
    )


@pytest.mark.parametrize("value", ["", "null"], ids=["empty", "json-null"])
def test_empty_hash_annotation_reads_as_no_entries(value: str) -> None:
    assert (
        pod_contract.read_upgrade_specs(
            {pod_contract.HASH_ANNOTATION: value}, pod_contract.HASH_ANNOTATION
        )
        == {}
    )


def test_missing_hash_annotation_reads_as_no_entries() -> None:
    assert pod_contract.read_upgrade_specs({}, pod_contract.HASH_ANNOTATION) == {}


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("not json", id="not-json"),
        pytest.param('["a"]', id="array"),
        pytest.param('{"a":1}', id="number-value"),
        pytest.param('{"a":"h","b":{"hash":"x"}}', id="mixed-forms"),
        pytest.param('{"a":{"hash":7}}', id="hash-not-a-string"),
        pytest.param('{"a":{"sidecarList":"c"}}', id="list-not-an-array"),
        pytest.param('{"a":{"updateTimestamp":"yesterday"}}', id="bad-timestamp"),
    ],
)
def test_unparsable_hash_annotation_raises_an_error_naming_the_annotation(value: str) -> None:
    with pytest.raises(pod_contract.MalformedAnnotation) as caught:
        pod_contract.read_upgrade_specs(
            {pod_contract.HASH_ANNOTATION: value}, pod_contract.HASH_ANNOTATION
        )

    assert caught.value.annotation == pod_contract.HASH_ANNOTATION
    assert caught.value.error.path == "metadata.annotations[kruise.io/sidecarset-hash]"
    assert caught.value.error.kind is FieldErrorKind.INVALID


def test_timestamps_are_normalised_to_utc_whole_seconds_as_go_rewrites_them() -> None:
    value = '{"a":{"updateTimestamp":"2024-01-01T10:00:00.75+02:00","hash":"h"}}'

    entries = pod_contract.read_upgrade_specs(
        {pod_contract.HASH_ANNOTATION: value}, pod_contract.HASH_ANNOTATION
    )

    assert entries["a"].update_timestamp == "2024-01-01T08:00:00Z"


def test_go_zero_time_reads_as_null() -> None:
    value = '{"a":{"updateTimestamp":"0001-01-01T00:00:00Z","hash":"h"}}'

    entries = pod_contract.read_upgrade_specs(
        {pod_contract.HASH_ANNOTATION: value}, pod_contract.HASH_ANNOTATION
    )

    assert entries["a"].update_timestamp is None


def test_unknown_fields_of_an_entry_are_ignored_like_go() -> None:
    value = '{"a":{"hash":"h","future":true}}'

    entries = pod_contract.read_upgrade_specs(
        {pod_contract.HASH_ANNOTATION: value}, pod_contract.HASH_ANNOTATION
    )

    assert entries["a"].hash == "h"


def test_entries_are_written_in_sidecarset_name_order() -> None:
    entries = {
        "zeta": pod_contract.UpgradeSpec(hash="z", sidecarset_name="zeta"),
        "alpha": pod_contract.UpgradeSpec(hash="a", sidecarset_name="alpha"),
    }

    assert list(json.loads(pod_contract.write_upgrade_specs(entries))) == ["alpha", "zeta"]


def test_json_escapes_html_characters_as_go_does() -> None:
    assert (
        pod_contract.dump_json({"k": "<a & b>\u2028é"})
        == '{"k":"\\u003ca \\u0026 b\\u003e\\u2028é"}'
    )


def test_normalize_timestamp_rejects_what_go_rejects() -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        pod_contract.normalize_timestamp("2024-01-01 10:00:00")


def test_injected_list_reads_names_and_ignores_empty_items() -> None:
    annotations = {pod_contract.INJECTED_LIST_ANNOTATION: "b,,a"}

    assert pod_contract.read_injected_list(annotations) == frozenset({"a", "b"})


def test_injected_list_is_written_sorted_without_duplicates() -> None:
    assert pod_contract.write_injected_list(["mesh", "filebeat", "mesh"]) == "filebeat,mesh"


def test_working_hot_upgrade_annotation_round_trips_with_sorted_keys() -> None:
    working = pod_contract.read_working_hot_upgrade(
        {pod_contract.WORKING_HOT_UPGRADE_ANNOTATION: '{"mesh":"mesh-2","envoy":"envoy-1"}'}
    )

    assert working == {"mesh": "mesh-2", "envoy": "envoy-1"}
    assert pod_contract.write_working_hot_upgrade(working) == '{"envoy":"envoy-1","mesh":"mesh-2"}'


def test_unparsable_working_hot_upgrade_annotation_raises() -> None:
    with pytest.raises(pod_contract.MalformedAnnotation):
        pod_contract.read_working_hot_upgrade({pod_contract.WORKING_HOT_UPGRADE_ANNOTATION: "{"})


def test_hot_upgrade_names_and_version_keys_follow_kruise() -> None:
    assert pod_contract.hot_upgrade_names("envoy") == ("envoy-1", "envoy-2")
    assert pod_contract.version_annotation("envoy-1") == "version.sidecarset.kruise.io/envoy-1"
    assert (
        pod_contract.version_alt_annotation("envoy-1") == "versionalt.sidecarset.kruise.io/envoy-1"
    )
    assert (
        pod_contract.version_field_path("envoy-2")
        == "metadata.annotations['version.sidecarset.kruise.io/envoy-2']"
    )
    assert (
        pod_contract.version_alt_field_path("envoy-2")
        == "metadata.annotations['versionalt.sidecarset.kruise.io/envoy-2']"
    )


def test_inplace_update_state_reads_kruise_output_and_writes_go_field_order() -> None:
    value = (
        '{"test-sidecarset": {"revision":"new-revision","lastContainerStatuses":'
        '{"sidecar-mesh":{"imageID":"envoy@sha256:1ba0"}}}}'
    )

    states = pod_contract.read_inplace_update_state(
        {pod_contract.INPLACE_UPDATE_STATE_ANNOTATION: value}
    )

    assert states["test-sidecarset"].last_image_ids == {"sidecar-mesh": "envoy@sha256:1ba0"}
    assert pod_contract.write_inplace_update_state(states) == (
        '{"test-sidecarset":{"revision":"new-revision","updateTimestamp":null,'
        '"lastContainerStatuses":{"sidecar-mesh":{"imageID":"envoy@sha256:1ba0"}}}}'
    )


def test_inplace_update_state_writes_an_unknown_image_id_as_an_empty_object() -> None:
    states = {
        "s": pod_contract.InPlaceUpdateState(
            revision="r", update_timestamp="2024-01-01T00:00:00Z", last_image_ids={"c": ""}
        )
    }

    assert pod_contract.write_inplace_update_state(states) == (
        '{"s":{"revision":"r","updateTimestamp":"2024-01-01T00:00:00Z",'
        '"lastContainerStatuses":{"c":{}}}}'
    )


def test_malformed_inplace_update_state_raises() -> None:
    with pytest.raises(pod_contract.MalformedAnnotation):
        pod_contract.read_inplace_update_state(
            {pod_contract.INPLACE_UPDATE_STATE_ANNOTATION: '{"s":[1]}'}
        )


def test_upgradable_message_round_trips_sorted() -> None:
    upgradable = pod_contract.read_upgradable_message('{"b":false,"a":true}')

    assert upgradable == {"a": True, "b": False}
    assert pod_contract.write_upgradable_message(upgradable) == '{"a":true,"b":false}'


def test_upgradable_condition_is_true_only_when_every_sidecarset_says_true() -> None:
    assert pod_contract.upgradable_condition({"a": True, "b": True}) == (
        "True",
        "AllSidecarsetUpgradable",
    )
    assert pod_contract.upgradable_condition({"a": True, "b": False}) == (
        "False",
        "UpdateImmutableField",
    )


@pytest.mark.parametrize(
    ("annotations", "base"),
    [
        pytest.param(
            {pod_contract.CANARY_ANNOTATION: "true", pod_contract.BASE_ANNOTATION: "b"},
            "b",
            id="canary",
        ),
        pytest.param(
            {pod_contract.CANARY_ANNOTATION: "True", pod_contract.BASE_ANNOTATION: "b"},
            None,
            id="case",
        ),
        pytest.param({pod_contract.CANARY_ANNOTATION: "true"}, None, id="no-base"),
        pytest.param({pod_contract.BASE_ANNOTATION: "b"}, None, id="not-canary"),
    ],
)
def test_canary_needs_exactly_true_and_a_base(
    annotations: dict[str, str], base: str | None
) -> None:
    assert pod_contract.is_canary(annotations) == base


@pytest.mark.parametrize(
    ("labels", "annotations", "opted_out"),
    [
        pytest.param({}, {pod_contract.INJECT_OPT_OUT: "false"}, True, id="annotation"),
        pytest.param({pod_contract.INJECT_OPT_OUT: "false"}, {}, True, id="label"),
        pytest.param({}, {pod_contract.INJECT_OPT_OUT: "False"}, True, id="case-insensitive"),
        pytest.param({}, {pod_contract.INJECT_OPT_OUT: "true"}, False, id="true"),
        pytest.param({}, {}, False, id="absent"),
    ],
)
def test_pods_opt_out_with_inject_false(
    labels: dict[str, str], annotations: dict[str, str], opted_out: bool
) -> None:
    assert pod_contract.is_injection_opted_out(labels, annotations) is opted_out
