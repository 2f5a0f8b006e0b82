"""The SidecarSet hashes must be byte-identical to Kruise's (behaviour.md §2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecarset.core import defaults, hashing

FIXTURES = Path(__file__).parents[2] / "fixtures"

CONTAINER = {
    "name": "container1",
    "image": "test-image",
}
NATIVE = {**CONTAINER, "restartPolicy": "Always"}
DEFAULTED_DNS = {
    "name": "dns-f",
    "image": "dns:1.0",
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "File",
    "imagePullPolicy": "IfNotPresent",
    "podInjectPolicy": "BeforeAppContainer",
    "upgradeStrategy": {"upgradeType": "ColdUpgrade"},
    "shareVolumePolicy": {"type": "disabled"},
}


def test_plain_container_matches_kruise_vector() -> None:
    spec = {"containers": [CONTAINER]}

    assert hashing.hash_input(spec) == (
        b'{"containers":[{"name":"container1","image":"test-image","resources":{},'
        b'"upgradeStrategy":{},"shareVolumePolicy":{}}]}'
    )
    assert (
        hashing.spec_hash(spec)
        == "w26c4x8fz245642fdv499b464248f974xddx4x55z5dw55bc6x66464fxz77dc78"
    )


def test_plain_container_without_image_matches_kruise_vector() -> None:
    assert (
        hashing.spec_hash_without_image({"containers": [CONTAINER]})
        == "8wzddb4dvv9c6x8zdc77z4z75987424f457dfv6724ddw6zbdx467wz5x24fc759"
    )


def test_native_sidecar_brings_init_containers_into_the_hash() -> None:
    spec = {"containers": [CONTAINER], "initContainers": [NATIVE]}

    assert (
        hashing.spec_hash(spec)
        == "4xwx4d4844vd4v9x79wb4xbxf4xb29475cc4446v8cz2c2f2f5c5bw448vd42z8w"
    )


def test_defaulted_container_matches_kruise_vectors() -> None:
    spec = {"containers": [DEFAULTED_DNS]}

    assert (
        hashing.spec_hash(spec)
        == "6wbd76bd7984x24fb4f44fv9222cw9v9bcf85x766744wddd4zwx927zzz2zb684"
    )
    assert (
        hashing.spec_hash_without_image(spec)
        == "82684vwf9d4cb4wz4vffx4ddfbb47ww4z4wwxdbwb8w2zbb7zvf4524cdd49bv94"
    )


def test_defaulting_a_bare_container_reproduces_the_defaulted_vector() -> None:
    defaulted: dict[str, Any] = defaults.apply_defaults(
        {"spec": {"containers": [{"name": "dns-f", "image": "dns:1.0"}]}}
    )

    assert (
        defaulted["metadata"]["annotations"]["kruise.io/sidecarset-hash"]
        == "6wbd76bd7984x24fb4f44fv9222cw9v9bcf85x766744wddd4zwx927zzz2zb684"
    )


def test_filebeat_sidecarset_hashes_are_pinned() -> None:
    """The article's Filebeat SidecarSet, defaulted, hashed.

    How the values were checked: tests/fixtures/hashcheck/main.go decodes the same manifest into
    the real k8s.io/api Container type (inside a struct with Kruise's SidecarContainer fields and
    tags), applies the k8s.io/kubernetes defaulting functions in the order Kruise's
    `setDefaultContainer` calls them, and hashes `json.Marshal({"containers": ...})` with
    SHA-256 and `rand.SafeEncodeString`. Its output equals ours byte for byte, the hash input
    included; the four upstream vectors above pin the algorithm independently.
    """
    manifest = yaml.safe_load((FIXTURES / "filebeat-sidecarset.yaml").read_text())
    defaulted: dict[str, Any] = defaults.apply_defaults(manifest)
    annotations = defaulted["metadata"]["annotations"]

    assert annotations == {
        "kruise.io/sidecarset-hash": (
            "6xz872x7zdvv42xvd484846xzx77z8zv44v97bx8w722v4x4fvxxx9bd2dz44fbb"
        ),
        "kruise.io/sidecarset-hash-without-image": (
            "79v9dv962c6cd66x868xb55d45c254v54884x7zxv244424df74vw79792d9xz4b"
        ),
    }


def test_kitchen_sink_container_matches_go_byte_for_byte() -> None:
    """Every container field and quirk at once, checked against the Go harness (see fixture).

    Covers field order of every nested type, omitempty versus always-written fields, an absent
    divisor printed as "0", a gRPC service printed as null, quantity spellings Go keeps ("+1",
    "01", "1.500", "1e3") or canonicalises ("1.5Gi" -> "1536Mi", "1000" -> "1k", "1n" -> "1m"),
    HTML-safe escaping, a plain init container hashed because a native one exists, and an
    unknown field dropped.
    """
    vector = json.loads((FIXTURES / "hash_kitchen_sink.json").read_text())
    defaulted: dict[str, Any] = defaults.apply_defaults(vector["sidecarset"])
    spec = defaulted["spec"]

    assert hashing.hash_input(spec).decode() == vector["hashInput"]
    assert hashing.spec_hash(spec) == vector["hash"]
    assert hashing.spec_hash_without_image(spec) == vector["hashWithoutImage"]


def test_absent_containers_hash_as_null_and_empty_containers_as_an_empty_list() -> None:
    native = [{"name": "n", "image": "x:1", "restartPolicy": "Always"}]

    assert hashing.hash_input({"initContainers": native}).startswith(b'{"containers":null,')
    assert hashing.hash_input({"containers": [], "initContainers": native}).startswith(
        b'{"containers":[],'
    )


def test_init_containers_stay_out_of_the_hash_without_a_native_sidecar() -> None:
    with_init = {"containers": [CONTAINER], "initContainers": [{"name": "i", "image": "x"}]}

    assert hashing.spec_hash(with_init) == hashing.spec_hash({"containers": [CONTAINER]})


def test_fields_newer_than_kruises_kubernetes_types_do_not_change_the_hash() -> None:
    # Kruise decodes into k8s.io/api v0.32, which has no lifecycle.stopSignal: Go drops it.
    plain: dict[str, Any] = {
        "name": "a",
        "image": "b",
        "lifecycle": {"preStop": {"sleep": {"seconds": 1}}},
    }
    newer = {**plain, "lifecycle": {**plain["lifecycle"], "stopSignal": "SIGTERM"}}

    assert hashing.spec_hash({"containers": [newer]}) == hashing.spec_hash({"containers": [plain]})


def test_only_image_changes_keep_the_hash_without_image() -> None:
    before = {"containers": [{**CONTAINER, "image": "a:1"}]}
    after = {"containers": [{**CONTAINER, "image": "a:2"}]}

    assert hashing.spec_hash(before) != hashing.spec_hash(after)
    assert hashing.spec_hash_without_image(before) == hashing.spec_hash_without_image(after)


def test_volumes_and_strategies_do_not_change_the_hash() -> None:
    spec: dict[str, Any] = {"containers": [CONTAINER]}
    richer = {**spec, "volumes": [{"name": "v"}], "updateStrategy": {"partition": 3}}

    assert hashing.spec_hash(richer) == hashing.spec_hash(spec)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("<a&b>", '"\\u003ca\\u0026b\\u003e"', id="html"),
        pytest.param("\u2028\u2029", '"\\u2028\\u2029"', id="line-separators"),
        pytest.param("\b\f\n\r\t\x01", '"\\b\\f\\n\\r\\t\\u0001"', id="controls"),
        pytest.param('"\\', '"\\"\\\\"', id="quote-backslash"),
        pytest.param("café ☕", '"café ☕"', id="utf8-unescaped"),
    ],
)
def test_strings_are_escaped_like_go(text: str, expected: str) -> None:
    assert hashing.go_string(text) == expected


def test_safe_encode_maps_hex_digits_like_kubernetes() -> None:
    # ord(c) % 27 into "bcdfghjklmnpqrstvwxz2456789": "0" is 48 % 27 = 21, "4".
    assert hashing.safe_encode("0123456789abcdef") == "456789bcdfvwxz24"


def test_container_problems_name_fields_go_could_not_decode() -> None:
    body = {"name": "a", "ports": [{"containerPort": "80"}], "stdin": "yes", "env": {}}

    assert hashing.container_problems(body) == (
        ("ports[0].containerPort", "must be an integer"),
        ("env", "must be a list"),
        ("stdin", "must be a boolean"),
    )


def test_the_type_table_covers_every_container_field_of_kubernetes_1_32() -> None:
    fields = hashing.known_fields()["SidecarContainer"]

    assert fields[:24] == (
        "name", "image", "command", "args", "workingDir", "ports", "envFrom", "env",
        "resources", "resizePolicy", "restartPolicy", "volumeMounts", "volumeDevices",
        "livenessProbe", "readinessProbe", "startupProbe", "lifecycle",
        "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy",
        "securityContext", "stdin", "stdinOnce", "tty",
    )  # fmt: skip
    assert fields[24:] == (
        "podInjectPolicy", "upgradeStrategy", "shareVolumePolicy", "shareVolumeDevicePolicy",
        "transferEnv", "resourcesPolicy",
    )  # fmt: skip
