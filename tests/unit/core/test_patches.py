"""RFC 6902 patches from an Injection: add/replace operations that reproduce apply_injection."""

from __future__ import annotations

from typing import Any

import jsonpatch
import pytest

from sidecarset.core import defaults, injection, model, patches, pod_contract

NOW = "2024-05-01T10:00:00Z"


def make_sidecarset(name: str = "logs", **spec: Any) -> model.SidecarSet:
    spec.setdefault("containers", [{"name": f"{name}-agent", "image": "agent:1"}])
    obj = {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "SidecarSet",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec},
    }
    return model.parse_sidecarset(defaults.apply_defaults(obj))


def make_pod(**spec: Any) -> dict[str, Any]:
    spec.setdefault("containers", [{"name": "app", "image": "app:1"}])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "default", "labels": {"app": "web"}},
        "spec": spec,
    }


def patch_for(
    pod: dict[str, Any], *sidecarsets: model.SidecarSet
) -> tuple[list[dict[str, object]], dict[str, object]]:
    result = injection.inject(pod, sidecarsets, {}, now=NOW, request_namespace="default")
    return patches.for_injection(result), injection.apply_injection(pod, result)


def test_a_leading_sidecar_is_inserted_at_index_zero() -> None:
    ops, _ = patch_for(make_pod(), make_sidecarset())

    assert ops[0]["op"] == "add"
    assert ops[0]["path"] == "/spec/containers/0"


def test_leading_sidecars_are_inserted_in_ascending_final_index() -> None:
    sidecarset = make_sidecarset(
        containers=[{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]
    )

    ops, _ = patch_for(make_pod(), sidecarset)

    assert [op["path"] for op in ops[:2]] == ["/spec/containers/0", "/spec/containers/1"]


def test_a_trailing_sidecar_is_appended() -> None:
    sidecarset = make_sidecarset(
        containers=[{"name": "late", "image": "l", "podInjectPolicy": "AfterAppContainer"}]
    )

    ops, _ = patch_for(make_pod(), sidecarset)

    assert ops[0] == {"op": "add", "path": "/spec/containers/-", "value": ops[0]["value"]}


def test_a_same_named_container_is_replaced_at_its_final_index() -> None:
    sidecarset = make_sidecarset(
        containers=[{"name": "new", "image": "n"}, {"name": "proxy", "image": "proxy:2"}]
    )
    pod = make_pod(containers=[{"name": "app", "image": "a"}, {"name": "proxy", "image": "p"}])

    ops, expected = patch_for(pod, sidecarset)

    assert [(op["op"], op["path"]) for op in ops[:2]] == [
        ("add", "/spec/containers/0"),
        ("replace", "/spec/containers/2"),
    ]
    assert jsonpatch.apply_patch(pod, ops) == expected


def test_a_missing_init_containers_array_is_created_whole() -> None:
    sidecarset = make_sidecarset(
        initContainers=[{"name": "b-init", "image": "i"}, {"name": "a-init", "image": "i"}]
    )

    ops, _ = patch_for(make_pod(), sidecarset)

    creates = [op for op in ops if op["path"] == "/spec/initContainers"]
    assert len(creates) == 1
    value = creates[0]["value"]
    assert isinstance(value, list)
    assert [c["name"] for c in value] == ["a-init", "b-init"]


def test_a_null_volumes_array_is_replaced_by_a_new_one() -> None:
    sidecarset = make_sidecarset(
        containers=[
            {"name": "agent", "image": "a", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}
        ],
        volumes=[{"name": "v", "emptyDir": {}}],
    )
    pod = make_pod(volumes=None)

    ops, expected = patch_for(pod, sidecarset)

    assert {"op": "add", "path": "/spec/volumes", "value": [{"name": "v", "emptyDir": {}}]} in ops
    assert jsonpatch.apply_patch(pod, ops) == expected


def test_a_missing_annotations_map_is_created_with_all_annotations() -> None:
    ops, _ = patch_for(make_pod(), make_sidecarset())

    create = next(op for op in ops if op["path"] == "/metadata/annotations")
    assert create["op"] == "add"
    value = create["value"]
    assert isinstance(value, dict)
    assert pod_contract.INJECTED_LIST_ANNOTATION in value


def test_annotation_keys_are_escaped_and_changed_values_replaced() -> None:
    pod = make_pod()
    pod["metadata"]["annotations"] = {pod_contract.INJECTED_LIST_ANNOTATION: "other"}

    ops, expected = patch_for(pod, make_sidecarset())

    by_path = {op["path"]: op["op"] for op in ops if str(op["path"]).startswith("/metadata")}
    assert by_path["/metadata/annotations/kruise.io~1sidecarset-injected-list"] == "replace"
    assert by_path["/metadata/annotations/kruise.io~1sidecarset-hash"] == "add"
    assert jsonpatch.apply_patch(pod, ops) == expected


@pytest.mark.parametrize(
    ("token", "escaped"),
    [("a/b", "a~1b"), ("a~b", "a~0b"), ("~/", "~0~1"), ("plain", "plain")],
)
def test_pointer_tokens_are_escaped_per_rfc_6901(token: str, escaped: str) -> None:
    assert patches.escape_pointer(token) == escaped


def test_a_pod_without_metadata_or_spec_gets_them_created() -> None:
    sidecarset = make_sidecarset(
        selector={"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}
    )
    pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod"}

    ops, expected = patch_for(pod, sidecarset)

    assert ops[0] == {"op": "add", "path": "/spec", "value": {}}
    assert jsonpatch.apply_patch(pod, ops) == expected


def test_nothing_to_inject_gives_an_empty_patch() -> None:
    pod = make_pod()
    pod["metadata"]["labels"] = {"app": "db"}

    ops, _ = patch_for(pod, make_sidecarset())

    assert ops == []


def test_a_patch_with_every_kind_of_change_reproduces_apply_injection() -> None:
    sidecarsets = [
        make_sidecarset("a", imagePullSecrets=[{"name": "reg"}]),
        make_sidecarset(
            "b",
            containers=[
                {
                    "name": "mesh",
                    "image": "m",
                    "upgradeStrategy": {"upgradeType": "HotUpgrade", "hotUpgradeEmptyImage": "e"},
                }
            ],
            initContainers=[
                {"name": "init", "image": "i", "podInjectPolicy": "BeforeAppContainer"}
            ],
        ),
    ]
    pod = make_pod(
        initContainers=[{"name": "pod-init", "image": "i"}],
        imagePullSecrets=[{"name": "own"}],
    )

    ops, expected = patch_for(pod, *sidecarsets)

    assert {op["op"] for op in ops} <= {"add", "replace"}
    assert jsonpatch.apply_patch(pod, ops) == expected


def test_repeated_pod_pull_secrets_are_removed_by_the_patch_as_apply_injection_does() -> None:
    sidecarset = make_sidecarset("a", imagePullSecrets=[{"name": n} for n in ("s0", "s1", "s2")])
    pod = make_pod(imagePullSecrets=[{"name": n} for n in ("s3", "s2", "s3", "s2", "s3")])

    ops, expected = patch_for(pod, sidecarset)

    patched = jsonpatch.apply_patch(pod, ops)
    assert patched == expected
    assert [s["name"] for s in patched["spec"]["imagePullSecrets"]] == ["s3", "s2", "s0", "s1"]
