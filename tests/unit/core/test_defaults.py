"""SidecarSet defaulting (behaviour.md §1.7)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecarset.core import defaults, hashing
from sidecarset.core.model import PodInjectPolicy

FIXTURES = Path(__file__).parents[2] / "fixtures"


def default_one(container: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = defaults.apply_defaults({"spec": {"containers": [container]}})
    first: dict[str, Any] = result["spec"]["containers"][0]
    return first


def test_filebeat_defaults_fill_every_documented_field() -> None:
    manifest = yaml.safe_load((FIXTURES / "filebeat-sidecarset.yaml").read_text())

    result: dict[str, Any] = defaults.apply_defaults(manifest)

    spec = result["spec"]
    container = spec["containers"][0]
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "maxUnavailable": 1, "partition": 0}
    assert spec["revisionHistoryLimit"] == 10
    assert container["podInjectPolicy"] == "BeforeAppContainer"
    assert container["upgradeStrategy"] == {"upgradeType": "ColdUpgrade"}
    assert container["shareVolumePolicy"] == {"type": "disabled"}
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "File"
    assert container["livenessProbe"]["timeoutSeconds"] == 1
    assert container["readinessProbe"]["failureThreshold"] == 3
    assert spec["volumes"][0]["configMap"] == {"name": "filebeat-config", "defaultMode": 420}
    assert spec["volumes"][1] == {"name": "log", "emptyDir": {}}


def test_defaults_never_mutate_the_input() -> None:
    manifest = yaml.safe_load((FIXTURES / "filebeat-sidecarset.yaml").read_text())
    before = copy.deepcopy(manifest)

    defaults.apply_defaults(manifest)

    assert manifest == before


def test_defaulting_twice_changes_nothing() -> None:
    manifest = yaml.safe_load((FIXTURES / "filebeat-sidecarset.yaml").read_text())
    once = defaults.apply_defaults(manifest)

    assert defaults.apply_defaults(once) == once


def test_init_containers_default_to_after_app_containers() -> None:
    result: dict[str, Any] = defaults.apply_defaults(
        {"spec": {"initContainers": [{"name": "i", "image": "x"}]}}
    )

    assert result["spec"]["initContainers"][0]["podInjectPolicy"] == "AfterAppContainer"


def test_explicit_values_are_kept() -> None:
    container = default_one(
        {
            "name": "c",
            "image": "x",
            "imagePullPolicy": "Never",
            "podInjectPolicy": "AfterAppContainer",
            "upgradeStrategy": {"upgradeType": "HotUpgrade", "hotUpgradeEmptyImage": "e"},
            "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 3},
        }
    )

    assert container["imagePullPolicy"] == "Never"
    assert container["podInjectPolicy"] == "AfterAppContainer"
    assert container["upgradeStrategy"]["upgradeType"] == "HotUpgrade"
    assert container["livenessProbe"]["periodSeconds"] == 3


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        pytest.param("nginx", "Always", id="no-tag"),
        pytest.param("nginx:latest", "Always", id="latest"),
        pytest.param("nginx:1.25", "IfNotPresent", id="tag"),
        pytest.param("nginx@sha256:" + "a" * 64, "IfNotPresent", id="digest"),
        pytest.param("nginx:latest@sha256:" + "a" * 64, "Always", id="latest-and-digest"),
        pytest.param("registry.local:5000/team/app", "Always", id="registry-port-no-tag"),
        pytest.param("Nginx:1", "IfNotPresent", id="uppercase-is-unparsable"),
        pytest.param("", "IfNotPresent", id="empty"),
    ],
)
def test_image_pull_policy_follows_the_tag_rule(image: str, policy: str) -> None:
    assert defaults.image_pull_policy(image) == policy


def test_ports_default_to_tcp() -> None:
    container = default_one({"name": "c", "image": "x", "ports": [{"containerPort": 80}]})

    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]


def test_http_probes_and_lifecycle_hooks_get_path_and_scheme() -> None:
    container = default_one(
        {
            "name": "c",
            "image": "x",
            "readinessProbe": {"httpGet": {"port": 80}},
            "lifecycle": {"preStop": {"httpGet": {"port": 80}}},
        }
    )

    assert container["readinessProbe"] == {
        "httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    assert container["lifecycle"]["preStop"]["httpGet"] == {
        "port": 80,
        "path": "/",
        "scheme": "HTTP",
    }


def test_startup_probes_are_not_defaulted_as_in_kruise() -> None:
    container = default_one({"name": "c", "image": "x", "startupProbe": {"httpGet": {"port": 80}}})

    assert container["startupProbe"] == {"httpGet": {"port": 80}}


def test_field_refs_default_to_api_version_v1() -> None:
    container = default_one(
        {
            "name": "c",
            "image": "x",
            "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "transferEnv": [
                {
                    "sourceContainerNameFrom": {"fieldRef": {"fieldPath": "metadata.labels['a']"}},
                    "envName": "X",
                }
            ],
        }
    )

    assert container["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    assert container["transferEnv"][0]["sourceContainerNameFrom"]["fieldRef"]["apiVersion"] == "v1"


def test_resource_quantities_round_up_to_milli_and_print_as_go_does() -> None:
    container = default_one(
        {
            "name": "c",
            "image": "x",
            "resources": {"limits": {"cpu": "0.5", "memory": "1.5Gi"}, "requests": {"cpu": "1n"}},
        }
    )

    assert container["resources"] == {
        "limits": {"cpu": "500m", "memory": "1536Mi"},
        "requests": {"cpu": "1m"},
    }


def test_resources_policy_gets_the_crd_default_regex() -> None:
    container = default_one(
        {
            "name": "c",
            "image": "x",
            "resourcesPolicy": {"targetContainersMode": "max", "resourcesExpr": {}},
        }
    )

    assert container["resourcesPolicy"]["targetContainersNameRegex"] == ".*"


@pytest.mark.parametrize(
    ("volume", "expected"),
    [
        pytest.param({"name": "v"}, {"name": "v", "emptyDir": {}}, id="no-source-is-emptydir"),
        pytest.param(
            {"name": "v", "secret": {"secretName": "s"}},
            {"name": "v", "secret": {"secretName": "s", "defaultMode": 420}},
            id="secret",
        ),
        pytest.param(
            {"name": "v", "hostPath": {"path": "/x"}},
            {"name": "v", "hostPath": {"path": "/x", "type": ""}},
            id="host-path",
        ),
        pytest.param(
            {
                "name": "v",
                "downwardAPI": {
                    "items": [{"path": "l", "fieldRef": {"fieldPath": "metadata.labels"}}]
                },
            },
            {
                "name": "v",
                "downwardAPI": {
                    "defaultMode": 420,
                    "items": [
                        {
                            "path": "l",
                            "fieldRef": {"fieldPath": "metadata.labels", "apiVersion": "v1"},
                        }
                    ],
                },
            },
            id="downward-api",
        ),
        pytest.param(
            {"name": "v", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}},
            {
                "name": "v",
                "projected": {
                    "defaultMode": 420,
                    "sources": [{"serviceAccountToken": {"path": "t", "expirationSeconds": 3600}}],
                },
            },
            id="projected-token",
        ),
    ],
)
def test_volumes_get_kubernetes_defaults(volume: dict[str, Any], expected: dict[str, Any]) -> None:
    assert defaults.default_volume(volume) == expected


def test_patch_policy_defaults_to_retain() -> None:
    result: dict[str, Any] = defaults.apply_defaults(
        {"spec": {"patchPodMetadata": [{"annotations": {"a": "b"}}]}}
    )

    assert result["spec"]["patchPodMetadata"][0]["patchPolicy"] == "Retain"


def test_revision_policy_defaults_to_always_only_when_a_revision_is_set() -> None:
    with_revision: dict[str, Any] = defaults.apply_defaults(
        {"spec": {"injectionStrategy": {"revision": {"customVersion": "v1"}}}}
    )
    without: dict[str, Any] = defaults.apply_defaults(
        {"spec": {"injectionStrategy": {"paused": True}}}
    )

    assert with_revision["spec"]["injectionStrategy"]["revision"]["policy"] == "Always"
    assert without["spec"]["injectionStrategy"] == {"paused": True}


def test_explicit_strategy_values_are_kept() -> None:
    result: dict[str, Any] = defaults.apply_defaults(
        {"spec": {"updateStrategy": {"type": "NotUpdate", "partition": "10%", "maxUnavailable": 0}}}
    )

    assert result["spec"]["updateStrategy"] == {
        "type": "NotUpdate",
        "partition": "10%",
        "maxUnavailable": 0,
    }


def test_hash_annotations_are_overwritten_and_other_annotations_kept() -> None:
    result: dict[str, Any] = defaults.apply_defaults(
        {
            "metadata": {
                "annotations": {"kruise.io/sidecarset-hash": "stale", "team": "infra"},
            },
            "spec": {"containers": [{"name": "c", "image": "x:1"}]},
        }
    )

    annotations = result["metadata"]["annotations"]
    assert annotations["team"] == "infra"
    assert annotations["kruise.io/sidecarset-hash"] == hashing.spec_hash(result["spec"])
    assert annotations["kruise.io/sidecarset-hash-without-image"] == (
        hashing.spec_hash_without_image(result["spec"])
    )


def test_values_of_the_wrong_type_are_left_for_validation() -> None:
    result: dict[str, Any] = defaults.apply_defaults(
        {"spec": {"containers": "oops", "volumes": [3]}}
    )

    assert result["spec"]["containers"] == "oops"
    assert result["spec"]["volumes"] == [3]


def test_default_container_takes_the_position_default_from_the_caller() -> None:
    container = defaults.default_container(
        {"name": "c", "image": "x"}, inject_policy=PodInjectPolicy.AFTER_APP_CONTAINER
    )

    assert container["podInjectPolicy"] == "AfterAppContainer"
