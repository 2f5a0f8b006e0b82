"""Decoding SidecarSets into the model, and FieldError rendering."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import yaml

from sidecarset.core import model
from sidecarset.core.errors import FieldError, FieldErrorKind, ModelError
from sidecarset.core.errors import Path as FieldPath

FIXTURES = Path(__file__).parents[2] / "fixtures"


def filebeat() -> dict[str, object]:
    loaded = yaml.safe_load((FIXTURES / "filebeat-sidecarset.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_filebeat_manifest_decodes_with_typed_views() -> None:
    sidecarset = model.parse_sidecarset(filebeat())

    container = sidecarset.spec.containers[0]
    assert sidecarset.name == "filebeat-sidecarset"
    assert sidecarset.spec.selector == model.LabelSelector(
        match_labels={"kruise.io/inject-filebeat": "true"}
    )
    assert container.name == "filebeat"
    assert container.image == "docker.elastic.co/beats/filebeat:7.16.2"
    assert [m.mount_path for m in container.volume_mounts] == ["/usr/share/filebeat", "/var/log"]
    assert container.env[0].value_from == {
        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}
    }
    assert [v.name for v in sidecarset.spec.volumes] == ["filebeat-config", "log"]


def test_container_and_volume_bodies_are_carried_verbatim() -> None:
    manifest = filebeat()
    sidecarset = model.parse_sidecarset(manifest)

    spec = manifest["spec"]
    assert isinstance(spec, dict)
    assert sidecarset.spec.containers[0].body == spec["containers"][0]
    assert sidecarset.spec.volumes[0].body == {
        "configMap": {"name": "filebeat-config"},
        "name": "filebeat-config",
    }


def test_bodies_are_copies_of_the_input() -> None:
    manifest = filebeat()
    sidecarset = model.parse_sidecarset(manifest)

    manifest["spec"]["containers"][0]["image"] = "changed"  # type: ignore[index]

    assert sidecarset.spec.containers[0].body["image"] == "docker.elastic.co/beats/filebeat:7.16.2"


def test_every_spec_field_decodes_from_its_wire_name() -> None:
    sidecarset = model.parse_sidecarset(
        {
            "metadata": {"name": "s", "generation": 3, "resourceVersion": "7", "uid": "u"},
            "spec": {
                "selector": {"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]}]},
                "namespace": "ns",
                "namespaceSelector": {"matchLabels": {"team": "a"}},
                "initContainers": [{"name": "i", "image": "i", "restartPolicy": "Always"}],
                "containers": [
                    {
                        "name": "c",
                        "image": "c",
                        "podInjectPolicy": "AfterAppContainer",
                        "upgradeStrategy": {
                            "upgradeType": "HotUpgrade",
                            "hotUpgradeEmptyImage": "empty",
                        },
                        "shareVolumePolicy": {"type": "enabled"},
                        "shareVolumeDevicePolicy": {"type": "enabled"},
                        "transferEnv": [
                            {
                                "sourceContainerNameFrom": {
                                    "fieldRef": {"fieldPath": "metadata.labels['x']"}
                                },
                                "envNames": ["A"],
                            }
                        ],
                        "resourcesPolicy": {
                            "targetContainersMode": "sum",
                            "resourcesExpr": {"limits": {"cpu": "cpu*50%"}},
                        },
                    }
                ],
                "updateStrategy": {
                    "type": "RollingUpdate",
                    "paused": True,
                    "partition": "20%",
                    "maxUnavailable": 2,
                    "priorityStrategy": {
                        "weightPriority": [
                            {"weight": 5, "matchSelector": {"matchLabels": {"a": "b"}}}
                        ]
                    },
                    "scatterStrategy": [{"key": "zone", "value": "*"}],
                },
                "injectionStrategy": {
                    "paused": True,
                    "revision": {"customVersion": "v1", "policy": "Partial"},
                },
                "imagePullSecrets": [{"name": "pull"}],
                "revisionHistoryLimit": 5,
                "patchPodMetadata": [{"annotations": {"k": "v"}, "patchPolicy": "Overwrite"}],
            },
            "status": {"observedGeneration": 3, "matchedPods": 4, "collisionCount": 0},
        }
    )

    spec = sidecarset.spec
    assert sidecarset.metadata.generation == 3
    assert spec.namespace == "ns"
    assert spec.init_containers[0].is_native_sidecar
    container = spec.containers[0]
    assert container.is_hot_upgrade
    assert container.upgrade_strategy.hot_upgrade_empty_image == "empty"
    assert container.transfer_env[0].source_container_name_from == model.SourceContainerNameSource(
        field_ref=model.ObjectFieldSelector(field_path="metadata.labels['x']")
    )
    assert container.resources_policy is not None
    assert container.resources_policy.resources_expr.limits == model.ResourceExprValues(
        cpu="cpu*50%"
    )
    assert spec.update_strategy.partition == "20%"
    assert spec.update_strategy.max_unavailable == 2
    assert spec.update_strategy.priority_strategy is not None
    assert spec.update_strategy.priority_strategy.weight_priority[0].weight == 5
    assert spec.update_strategy.scatter_strategy == (model.ScatterTerm(key="zone", value="*"),)
    assert spec.injection_strategy.revision == model.SidecarSetInjectRevision(
        custom_version="v1", policy="Partial"
    )
    assert spec.image_pull_secrets == (model.LocalObjectReference(name="pull"),)
    assert spec.revision_history_limit == 5
    assert spec.patch_pod_metadata[0].patch_policy == "Overwrite"
    assert sidecarset.status.matched_pods == 4
    assert sidecarset.status.collision_count == 0


def test_nulls_count_as_absent() -> None:
    sidecarset = model.parse_sidecarset(
        {"metadata": {"name": "s", "labels": None}, "spec": {"selector": None, "containers": None}}
    )

    assert sidecarset.metadata.labels == {}
    assert sidecarset.spec.selector is None
    assert sidecarset.spec.containers == ()


def test_unknown_update_strategy_types_are_kept_for_validation_to_judge() -> None:
    sidecarset = model.parse_sidecarset({"spec": {"updateStrategy": {"type": "Sometimes"}}})

    assert sidecarset.spec.update_strategy.type == "Sometimes"
    assert not sidecarset.spec.update_strategy.is_not_update


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        pytest.param(
            {"spec": {"updateStrategy": {"partition": 1.5}}},
            "spec.updateStrategy.partition: Invalid value: 1.5:"
            " expected int | str | null, got float",
            id="partition-float",
        ),
        pytest.param(
            {"spec": {"containers": [{"name": 3}]}},
            "spec.containers[0].name: Invalid value: 3: expected str, got int",
            id="container-name-int",
        ),
        pytest.param(
            {"spec": {"selector": {"matchExpressions": [{"key": "a", "values": "x"}]}}},
            'spec.selector.matchExpressions[0].values: Invalid value: "x": expected array, got str',
            id="values-string",
        ),
        pytest.param(
            {"metadata": {"labels": {"a": 1}}},
            "metadata.labels: Invalid value: expected str, got int",
            id="label-value-int",
        ),
        pytest.param(
            {"status": {"conditions": [{"type": "Ready"}]}},
            "status.conditions[0].status: Required value",
            id="condition-status-missing",
        ),
        pytest.param(
            {"spec": {"containers": "filebeat"}},
            'spec.containers: Invalid value: "filebeat": expected array, got str',
            id="containers-string",
        ),
    ],
)
def test_wrong_json_types_raise_a_model_error_naming_the_field(
    obj: dict[str, object], message: str
) -> None:
    with pytest.raises(ModelError) as caught:
        model.parse_sidecarset(obj)

    assert str(caught.value) == message


def test_a_non_object_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="expected a JSON object"):
        model.parse_sidecarset([])  # type: ignore[arg-type]


def test_model_values_are_frozen() -> None:
    sidecarset = model.parse_sidecarset(filebeat())

    with pytest.raises(AttributeError):
        sidecarset.spec.containers[0].name = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("error", "rendered"),
    [
        pytest.param(
            FieldError.invalid(
                "spec.updateStrategy.partition", "120%", "must be between 0% and 100%"
            ),
            'spec.updateStrategy.partition: Invalid value: "120%": must be between 0% and 100%',
            id="invalid-string",
        ),
        pytest.param(
            FieldError.invalid("spec.x", 3, "too big"),
            "spec.x: Invalid value: 3: too big",
            id="invalid-int",
        ),
        pytest.param(
            FieldError.required("spec.selector", "no selector defined for SidecarSet"),
            "spec.selector: Required value: no selector defined for SidecarSet",
            id="required",
        ),
        pytest.param(
            FieldError.not_supported(
                "spec.updateStrategy.type", "X", ["RollingUpdate", "NotUpdate"]
            ),
            'spec.updateStrategy.type: Unsupported value: "X": supported values: "RollingUpdate",'
            ' "NotUpdate"',
            id="not-supported",
        ),
        pytest.param(
            FieldError.duplicate("spec.containers[1].name", "a"),
            'spec.containers[1].name: Duplicate value: "a"',
            id="duplicate",
        ),
        pytest.param(
            FieldError.forbidden("spec.volumes[0].hostPath", "not allowed"),
            "spec.volumes[0].hostPath: Forbidden: not allowed",
            id="forbidden",
        ),
        pytest.param(
            FieldError.invalid("spec.y", None, "bad"),
            "spec.y: Invalid value: null: bad",
            id="null-value",
        ),
        pytest.param(
            FieldError.invalid("spec.z", msgspec.UNSET, "bad"),
            "spec.z: Invalid value: bad",
            id="omitted-value",
        ),
    ],
)
def test_field_errors_render_the_kubernetes_way(error: FieldError, rendered: str) -> None:
    assert str(error) == rendered


def test_field_error_kinds_are_kubernetes_reasons() -> None:
    assert FieldErrorKind.INVALID.value == "FieldValueInvalid"
    assert FieldErrorKind.NOT_SUPPORTED.phrase == "Unsupported value"


def test_paths_build_like_kubernetes_field_paths() -> None:
    path = FieldPath.root("spec").child("containers").index(0).child("env").key("A")

    assert str(path) == "spec.containers[0].env[A]"
