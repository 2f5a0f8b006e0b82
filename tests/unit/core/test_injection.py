"""Pod injection (behaviour.md §4, §8.1) on plain dicts: matching, building, merging, records."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from sidecarset.core import defaults, injection, model, pod_contract
from sidecarset.core.injection import Placement, PodSkip, Skip

NOW = "2024-05-01T10:00:00Z"
FIXTURES = Path(__file__).parents[2] / "fixtures"
APP = {"app": "web"}


def sidecar(name: str, image: str = "agent:1.0", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": image, **fields}


def make_sidecarset(
    name: str = "logs",
    *,
    containers: list[dict[str, Any]] | None = None,
    selector: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    latest_revision: str = "",
    **spec: Any,
) -> model.SidecarSet:
    obj: dict[str, Any] = {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "SidecarSet",
        "metadata": {"name": name, "annotations": dict(annotations or {})},
        "spec": {
            "selector": {"matchLabels": APP} if selector is None else selector,
            "containers": [sidecar(f"{name}-agent")] if containers is None else containers,
            **spec,
        },
        "status": {"latestRevision": latest_revision},
    }
    return model.parse_sidecarset(defaults.apply_defaults(obj))


def make_pod(
    *containers: dict[str, Any],
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    namespace: str | None = "default",
    **spec: Any,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "web-0", "labels": dict(APP if labels is None else labels)}
    if namespace is not None:
        metadata["namespace"] = namespace
    if annotations is not None:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": list(containers) or [{"name": "app", "image": "app:1"}], **spec},
    }


def run(
    pod: dict[str, Any],
    *sidecarsets: model.SidecarSet,
    namespace_labels: dict[str, str] | None = None,
    request_namespace: str = "default",
) -> tuple[injection.Injection, dict[str, Any]]:
    original = copy.deepcopy(pod)
    result = injection.inject(
        pod,
        sidecarsets,
        {} if namespace_labels is None else namespace_labels,
        now=NOW,
        request_namespace=request_namespace,
    )
    assert pod == original, "inject must not modify its input"
    return result, injection.apply_injection(pod, result)


def names(items: list[dict[str, Any]]) -> list[str]:
    return [item["name"] for item in items]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def container(pod: dict[str, Any], name: str, field: str = "containers") -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in pod["spec"][field] if c["name"] == name)
    return found


def hashes(
    pod: dict[str, Any], key: str = pod_contract.HASH_ANNOTATION
) -> dict[str, pod_contract.UpgradeSpec]:
    return pod_contract.read_upgrade_specs(pod["metadata"]["annotations"], key)


# --- the article's Filebeat example -----------------------------------------------------------


def filebeat_sidecarset() -> model.SidecarSet:
    manifest = yaml.safe_load((FIXTURES / "filebeat-sidecarset.yaml").read_text())
    return model.parse_sidecarset(defaults.apply_defaults(manifest))


def nginx_pod() -> dict[str, Any]:
    """The pod of the article's nginx Deployment template."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "nginx-5674976569-",
            "namespace": "default",
            "labels": {"app": "nginx", "kruise.io/inject-filebeat": "true"},
        },
        "spec": {
            "containers": [
                {
                    "name": "nginx",
                    "image": "nginx:latest",
                    "volumeMounts": [{"mountPath": "/var/log/nginx", "name": "log"}],
                }
            ],
            "volumes": [{"name": "log", "emptyDir": {}}],
        },
    }


def test_filebeat_is_injected_before_nginx_with_its_body_and_the_injected_marker() -> None:
    sidecarset = filebeat_sidecarset()

    result, pod = run(nginx_pod(), sidecarset)

    assert names(pod["spec"]["containers"]) == ["filebeat", "nginx"]
    filebeat = container(pod, "filebeat")
    expected: dict[str, Any] = {
        k: v
        for k, v in sidecarset.spec.containers[0].body.items()
        if k not in injection.SIDECARSET_ONLY_FIELDS
    }
    expected["env"] = [*expected["env"], {"name": "IS_INJECTED", "value": "true"}]
    assert filebeat == expected
    assert container(pod, "nginx") == nginx_pod()["spec"]["containers"][0]
    assert result.matched == ("filebeat-sidecarset",)
    assert result.injected == ("filebeat-sidecarset",)


def test_filebeat_pod_gets_both_volumes_and_its_own_log_volume_wins() -> None:
    _, pod = run(nginx_pod(), filebeat_sidecarset())

    assert pod["spec"]["volumes"] == [
        {"name": "log", "emptyDir": {}},
        {"name": "filebeat-config", "configMap": {"name": "filebeat-config", "defaultMode": 420}},
    ]


def test_filebeat_pod_gets_the_bookkeeping_annotations() -> None:
    sidecarset = filebeat_sidecarset()

    _, pod = run(nginx_pod(), sidecarset)

    annotations = pod["metadata"]["annotations"]
    own = sidecarset.metadata.annotations
    assert annotations[pod_contract.INJECTED_LIST_ANNOTATION] == "filebeat-sidecarset"
    assert json.loads(annotations[pod_contract.HASH_ANNOTATION]) == {
        "filebeat-sidecarset": {
            "updateTimestamp": NOW,
            "hash": own[pod_contract.HASH_ANNOTATION],
            "sidecarSetName": "filebeat-sidecarset",
            "sidecarList": ["filebeat"],
        }
    }
    assert json.loads(annotations[pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION]) == {
        "filebeat-sidecarset": {
            "updateTimestamp": NOW,
            "hash": own[pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION],
            "sidecarSetName": "filebeat-sidecarset",
            "sidecarList": ["filebeat"],
        }
    }


def test_filebeat_is_not_injected_into_pods_without_the_label() -> None:
    pod = nginx_pod()
    del pod["metadata"]["labels"]["kruise.io/inject-filebeat"]

    result, injected = run(pod, filebeat_sidecarset())

    assert not result.changed
    assert injected == pod
    assert result.passed_over == {"filebeat-sidecarset": Skip.NOT_SELECTED}


# --- matching ---------------------------------------------------------------------------------


def test_paused_injection_skips_the_sidecarset() -> None:
    sidecarset = make_sidecarset(injectionStrategy={"paused": True})

    result, _ = run(make_pod(), sidecarset)

    assert not result.changed
    assert result.passed_over == {"logs": Skip.INJECTION_PAUSED}


@pytest.mark.parametrize(
    ("pod_namespace", "request_namespace", "injected"),
    [
        pytest.param("team-a", "", True, id="pod-namespace"),
        pytest.param("team-b", "team-a", False, id="other-namespace"),
        pytest.param(None, "team-a", True, id="request-namespace-when-pod-has-none"),
        pytest.param(None, "", False, id="default-when-neither"),
    ],
)
def test_v1alpha1_namespace_is_compared_literally_with_the_pod_namespace(
    pod_namespace: str | None, request_namespace: str, injected: bool
) -> None:
    sidecarset = make_sidecarset(namespace="team-a")

    result, _ = run(
        make_pod(namespace=pod_namespace), sidecarset, request_namespace=request_namespace
    )

    assert result.changed is injected
    assert result.namespace == (pod_namespace or request_namespace or "default")


def test_namespace_selector_matches_the_namespace_labels() -> None:
    sidecarset = make_sidecarset(namespaceSelector={"matchLabels": {"mesh": "on"}})

    selected, _ = run(make_pod(), sidecarset, namespace_labels={"mesh": "on"})
    other, _ = run(make_pod(), sidecarset, namespace_labels={"mesh": "off"})

    assert selected.injected == ("logs",)
    assert other.passed_over == {"logs": Skip.NAMESPACE_NOT_SELECTED}


def test_namespace_selector_never_matches_an_unknown_namespace() -> None:
    sidecarset = make_sidecarset(namespaceSelector={"matchLabels": {"mesh": "on"}})

    result = injection.inject(make_pod(), [sidecarset], None, now=NOW, request_namespace="")

    assert result.passed_over == {"logs": Skip.NAMESPACE_NOT_FOUND}


def test_an_empty_selector_never_matches() -> None:
    result, _ = run(make_pod(), make_sidecarset(selector={}))

    assert result.passed_over == {"logs": Skip.EMPTY_SELECTOR}


def test_selector_expressions_must_match_the_pod_labels() -> None:
    selector = {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}]}
    sidecarset = make_sidecarset(selector=selector)

    selected, _ = run(make_pod(labels={"tier": "api"}), sidecarset)
    other, _ = run(make_pod(labels={"tier": "db"}), sidecarset)

    assert selected.injected == ("logs",)
    assert other.passed_over == {"logs": Skip.NOT_SELECTED}


def test_an_invalid_selector_is_passed_over_with_a_warning() -> None:
    selector = {"matchExpressions": [{"key": "tier", "operator": "In", "values": []}]}

    result, _ = run(make_pod(), make_sidecarset(selector=selector))

    assert result.passed_over == {"logs": Skip.INVALID_SELECTOR}
    assert any("invalid selector" in w for w in result.warnings)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"status": {"phase": "Succeeded"}}, id="succeeded"),
        pytest.param({"status": {"phase": "Failed"}}, id="failed"),
        pytest.param(
            {"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z", "labels": APP}},
            id="terminating",
        ),
    ],
)
def test_inactive_pods_are_not_injected(change: dict[str, Any]) -> None:
    pod = {**make_pod(), **change}

    result, _ = run(pod, make_sidecarset())

    assert result.pod_skip is PodSkip.INACTIVE
    assert not result.changed


@pytest.mark.parametrize("where", ["annotations", "labels"])
def test_a_pod_saying_inject_false_is_never_injected(where: str) -> None:
    pod = make_pod()
    pod["metadata"].setdefault(where, {})[pod_contract.INJECT_OPT_OUT] = "false"
    sidecarset = make_sidecarset(
        patchPodMetadata=[{"annotations": {"x": "y"}, "patchPolicy": "Overwrite"}]
    )

    result, _ = run(pod, sidecarset)

    assert result.pod_skip is PodSkip.OPTED_OUT
    assert not result.changed


def test_a_canary_sidecarset_replaces_its_base() -> None:
    base = make_sidecarset("mesh")
    canary = make_sidecarset(
        "mesh-canary",
        annotations={pod_contract.CANARY_ANNOTATION: "true", pod_contract.BASE_ANNOTATION: "mesh"},
        updateStrategy={"type": "NotUpdate"},
    )

    result, pod = run(make_pod(), base, canary)

    assert result.matched == ("mesh-canary",)
    assert result.passed_over == {"mesh": Skip.CANARY_BASE}
    assert names(pod["spec"]["containers"]) == ["mesh-canary-agent", "app"]
    assert pod["metadata"]["annotations"][pod_contract.INJECTED_LIST_ANNOTATION] == "mesh-canary"


def test_nothing_matched_leaves_the_pod_unchanged() -> None:
    pod = make_pod(labels={"app": "db"})

    result, injected = run(pod, make_sidecarset("a"), make_sidecarset("b"))

    assert injected == pod
    assert not result.changed


# --- placement and order ----------------------------------------------------------------------


def test_sidecarsets_are_injected_in_name_order_and_containers_in_declaration_order() -> None:
    zeta = make_sidecarset("zeta", containers=[sidecar("z2"), sidecar("z1")])
    alpha = make_sidecarset("alpha", containers=[sidecar("a2"), sidecar("a1")])

    result, pod = run(make_pod(), zeta, alpha)

    assert names(pod["spec"]["containers"]) == ["a2", "a1", "z2", "z1", "app"]
    assert result.matched == ("alpha", "zeta")


def test_before_and_after_app_container_placement() -> None:
    sidecarset = make_sidecarset(
        containers=[
            sidecar("after", podInjectPolicy="AfterAppContainer"),
            sidecar("before", podInjectPolicy="BeforeAppContainer"),
        ]
    )

    result, pod = run(
        make_pod({"name": "a", "image": "a"}, {"name": "b", "image": "b"}), sidecarset
    )

    assert names(pod["spec"]["containers"]) == ["before", "a", "b", "after"]
    assert [(c.name, c.placement, c.index) for c in result.containers] == [
        ("before", Placement.BEFORE_APP, 0),
        ("after", Placement.AFTER_APP, 3),
    ]


def test_a_pod_container_with_a_sidecar_name_is_replaced_in_place() -> None:
    sidecarset = make_sidecarset(containers=[sidecar("proxy", image="proxy:2")])
    pod = make_pod({"name": "app", "image": "app"}, {"name": "proxy", "image": "proxy:old"})

    result, injected = run(pod, sidecarset)

    assert names(injected["spec"]["containers"]) == ["app", "proxy"]
    assert container(injected, "proxy")["image"] == "proxy:2"
    assert [(c.placement, c.index) for c in result.containers] == [(Placement.IN_PLACE, 1)]


def test_init_containers_are_sorted_by_name_and_go_after_the_pods_by_default() -> None:
    first = make_sidecarset("a", initContainers=[sidecar("zz-init")])
    second = make_sidecarset("b", initContainers=[sidecar("aa-init")])
    pod = make_pod(initContainers=[{"name": "pod-init", "image": "i"}])

    _, injected = run(pod, first, second)

    assert names(injected["spec"]["initContainers"]) == ["pod-init", "aa-init", "zz-init"]


def test_init_container_before_app_goes_in_front() -> None:
    sidecarset = make_sidecarset(
        initContainers=[sidecar("setup", podInjectPolicy="BeforeAppContainer")]
    )
    pod = make_pod(initContainers=[{"name": "pod-init", "image": "i"}])

    _, injected = run(pod, sidecarset)

    assert names(injected["spec"]["initContainers"]) == ["setup", "pod-init"]


def test_plain_init_containers_are_injected_but_not_listed_and_native_ones_are_listed() -> None:
    sidecarset = make_sidecarset(
        initContainers=[sidecar("setup"), sidecar("native", restartPolicy="Always")],
        containers=[sidecar("main")],
    )

    _, pod = run(make_pod(), sidecarset)

    assert names(pod["spec"]["initContainers"]) == ["native", "setup"]
    assert hashes(pod)["logs"].sidecar_list == ("main", "native")
    assert env_of(container(pod, "setup", "initContainers"))["IS_INJECTED"] == "true"


def test_sidecarset_only_fields_never_reach_the_pod() -> None:
    sidecarset = make_sidecarset(
        containers=[sidecar("agent", transferEnv=[{"sourceContainerName": "app", "envName": "X"}])]
    )

    _, pod = run(make_pod(), sidecarset)

    assert not set(container(pod, "agent")) & set(injection.SIDECARSET_ONLY_FIELDS)


# --- environment ------------------------------------------------------------------------------


def test_is_injected_is_appended_once_even_when_the_sidecar_declares_it() -> None:
    sidecarset = make_sidecarset(
        containers=[sidecar("agent", env=[{"name": "IS_INJECTED", "value": "yes"}])]
    )

    _, pod = run(make_pod(), sidecarset)

    assert container(pod, "agent")["env"] == [{"name": "IS_INJECTED", "value": "true"}]


def test_transfer_env_copies_whole_variables_from_the_source_container() -> None:
    app = {
        "name": "app",
        "image": "app",
        "env": [
            {"name": "REGION", "value": "eu"},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "OTHER", "value": "x"},
        ],
    }
    transfer = [{"sourceContainerName": "app", "envName": "REGION", "envNames": ["POD_IP", "NONE"]}]
    sidecarset = make_sidecarset(containers=[sidecar("agent", transferEnv=transfer)])

    _, pod = run(make_pod(app), sidecarset)

    assert container(pod, "agent")["env"] == [
        {"name": "IS_INJECTED", "value": "true"},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "REGION", "value": "eu"},
    ]


@pytest.mark.parametrize("source", ["labels", "annotations"])
def test_transfer_env_reads_the_source_container_name_from_pod_metadata(source: str) -> None:
    app = {"name": "main", "image": "app", "env": [{"name": "REGION", "value": "eu"}]}
    pod = make_pod(app)
    pod["metadata"].setdefault(source, {})["app.example/main"] = "main"
    field_ref = {"fieldPath": f"metadata.{source}['app.example/main']"}
    transfer = [{"sourceContainerNameFrom": {"fieldRef": field_ref}, "envName": "REGION"}]
    sidecarset = make_sidecarset(containers=[sidecar("agent", transferEnv=transfer)])

    _, injected = run(pod, sidecarset)

    assert env_of(container(injected, "agent"))["REGION"] == "eu"


def test_transferred_env_never_overrides_the_sidecars_own_definition() -> None:
    app = {"name": "app", "image": "app", "env": [{"name": "REGION", "value": "eu"}]}
    transfer = [{"sourceContainerName": "app", "envName": "REGION"}]
    own = [{"name": "REGION", "value": "us"}]
    sidecarset = make_sidecarset(containers=[sidecar("agent", env=own, transferEnv=transfer)])

    _, pod = run(make_pod(app), sidecarset)

    assert env_of(container(pod, "agent"))["REGION"] == "us"


# --- shared volumes and devices ---------------------------------------------------------------


def test_shared_volume_mounts_come_from_app_containers_and_skip_taken_paths() -> None:
    app = {
        "name": "app",
        "image": "app",
        "volumeMounts": [
            {"name": "data", "mountPath": "/data"},
            {"name": "logs", "mountPath": "/var/log"},
        ],
    }
    marked = {
        "name": "old-sidecar",
        "image": "s",
        "env": [{"name": "IS_INJECTED", "value": "true"}],
        "volumeMounts": [{"name": "secret", "mountPath": "/secret"}],
    }
    own = [{"name": "cfg", "mountPath": "/var/log"}]
    sidecarset = make_sidecarset(
        containers=[sidecar("agent", volumeMounts=own, shareVolumePolicy={"type": "enabled"})],
        volumes=[{"name": "cfg", "configMap": {"name": "cfg"}}],
    )

    _, pod = run(make_pod(app, marked), sidecarset)

    assert container(pod, "agent")["volumeMounts"] == [
        {"name": "cfg", "mountPath": "/var/log"},
        {"name": "data", "mountPath": "/data"},
    ]


def test_subpath_expr_variables_are_copied_with_the_shared_mount() -> None:
    app = {
        "name": "app",
        "image": "app",
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "volumeMounts": [{"name": "logs", "mountPath": "/logs", "subPathExpr": "$(POD_NAME)/x"}],
    }
    sidecarset = make_sidecarset(
        containers=[sidecar("agent", shareVolumePolicy={"type": "enabled"})]
    )

    _, pod = run(make_pod(app), sidecarset)

    agent = container(pod, "agent")
    assert agent["volumeMounts"] == app["volumeMounts"]
    assert agent["env"][-1] == app["env"][0]


def test_shared_volume_devices_are_copied_unless_their_path_is_taken() -> None:
    app = {
        "name": "app",
        "image": "app",
        "volumeDevices": [
            {"name": "blk", "devicePath": "/dev/xvda"},
            {"name": "blk2", "devicePath": "/mnt"},
        ],
    }
    own_mounts = [{"name": "cfg", "mountPath": "/mnt"}]
    sidecarset = make_sidecarset(
        containers=[
            sidecar("agent", volumeMounts=own_mounts, shareVolumeDevicePolicy={"type": "enabled"})
        ],
        volumes=[{"name": "cfg", "emptyDir": {}}],
    )

    _, pod = run(make_pod(app), sidecarset)

    assert container(pod, "agent")["volumeDevices"] == [{"name": "blk", "devicePath": "/dev/xvda"}]


def test_only_volumes_a_sidecar_mounts_are_injected() -> None:
    sidecarset = make_sidecarset(
        containers=[sidecar("agent", volumeMounts=[{"name": "used", "mountPath": "/u"}])],
        volumes=[{"name": "used", "emptyDir": {}}, {"name": "unused", "emptyDir": {}}],
    )

    _, pod = run(make_pod(), sidecarset)

    assert names(pod["spec"]["volumes"]) == ["used"]


def test_pod_volumes_win_and_the_first_sidecarset_wins_between_sidecarsets() -> None:
    mount = [{"name": "shared", "mountPath": "/s"}]
    first = make_sidecarset(
        "a",
        containers=[sidecar("a-agent", volumeMounts=mount)],
        volumes=[{"name": "shared", "hostPath": {"path": "/a"}}],
    )
    second = make_sidecarset(
        "b",
        containers=[sidecar("b-agent", volumeMounts=mount)],
        volumes=[{"name": "shared", "hostPath": {"path": "/b"}}],
    )

    _, fresh = run(make_pod(), second, first)
    _, owned = run(make_pod(volumes=[{"name": "shared", "emptyDir": {}}]), first, second)

    assert [v["hostPath"]["path"] for v in fresh["spec"]["volumes"]] == ["/a"]
    assert owned["spec"]["volumes"] == [{"name": "shared", "emptyDir": {}}]


def test_a_volume_declared_nowhere_gives_a_warning() -> None:
    sidecarset = make_sidecarset(
        containers=[sidecar("agent", volumeMounts=[{"name": "ghost", "mountPath": "/g"}])]
    )

    result, _ = run(make_pod(), sidecarset)

    assert any("'ghost'" in w for w in result.warnings)


def test_image_pull_secrets_are_appended_once() -> None:
    first = make_sidecarset("a", imagePullSecrets=[{"name": "reg"}, {"name": "mine"}])
    second = make_sidecarset("b", imagePullSecrets=[{"name": "reg"}, {"name": "other"}])
    pod = make_pod(imagePullSecrets=[{"name": "mine"}])

    result, injected = run(pod, first, second)

    assert injected["spec"]["imagePullSecrets"] == [
        {"name": "mine"},
        {"name": "reg"},
        {"name": "other"},
    ]
    assert result.image_pull_secrets == ("reg", "other")


def test_image_pull_secrets_are_merged_as_a_set_in_kruises_order() -> None:
    # Kruise's mergeSidecarSecrets: the pod's names first (each once), then the SidecarSet's new
    # ones. s2, s3, s3 with s0, s1, s2 gives four names.
    sidecarset = make_sidecarset("a", imagePullSecrets=[{"name": n} for n in ("s0", "s1", "s2")])
    pod = make_pod(imagePullSecrets=[{"name": n} for n in ("s2", "s3", "s3")])

    result, injected = run(pod, sidecarset)

    assert [s["name"] for s in injected["spec"]["imagePullSecrets"]] == ["s2", "s3", "s0", "s1"]
    assert result.image_pull_secrets == ("s0", "s1")
    assert result.duplicate_pull_secrets == (2,)


def test_a_pods_repeated_pull_secrets_stay_when_nothing_is_injected() -> None:
    # Kruise merges the secrets only when it injects containers; so do we.
    sidecarset = make_sidecarset("a", imagePullSecrets=[{"name": "s0"}])
    pod = make_pod(labels={"app": "other"}, imagePullSecrets=[{"name": "s3"}, {"name": "s3"}])

    result, injected = run(pod, sidecarset)

    assert not result.changed
    assert injected["spec"]["imagePullSecrets"] == [{"name": "s3"}, {"name": "s3"}]


# --- resourcesPolicy --------------------------------------------------------------------------


def with_resources(name: str, limits: dict[str, str], requests: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "image": name,
        "resources": {"limits": limits, "requests": requests},
    }


def policy(mode: str, regex: str = ".*") -> dict[str, Any]:
    expr = "max(cpu*50%, 50m)"
    return {
        "targetContainersMode": mode,
        "targetContainersNameRegex": regex,
        "resourcesExpr": {"limits": {"cpu": expr}, "requests": {"cpu": expr}},
    }


@pytest.mark.parametrize(
    ("mode", "limit", "requested"),
    [pytest.param("sum", "300m", "75m", id="sum"), pytest.param("max", "200m", "50m", id="max")],
)
def test_resources_policy_computes_resources_from_the_targets(
    mode: str, limit: str, requested: str
) -> None:
    pod = make_pod(
        with_resources("a", {"cpu": "200m"}, {"cpu": "50m"}),
        with_resources("b", {"cpu": "400m"}, {"cpu": "100m"}),
    )
    sidecarset = make_sidecarset(containers=[sidecar("agent", resourcesPolicy=policy(mode))])

    _, injected = run(pod, sidecarset)

    assert container(injected, "agent")["resources"] == {
        "limits": {"cpu": limit},
        "requests": {"cpu": requested},
    }


def test_a_target_without_a_limit_leaves_the_limit_unset() -> None:
    pod = make_pod(
        with_resources("a", {"cpu": "200m"}, {"cpu": "50m"}),
        with_resources("b", {}, {"cpu": "100m"}),
    )
    sidecarset = make_sidecarset(containers=[sidecar("agent", resourcesPolicy=policy("sum"))])

    _, injected = run(pod, sidecarset)

    assert container(injected, "agent")["resources"] == {"requests": {"cpu": "75m"}}


def test_resources_targets_exclude_sidecars_and_include_native_init_containers() -> None:
    pod = make_pod(
        with_resources("app", {"cpu": "200m"}, {"cpu": "100m"}),
        with_resources("agent", {"cpu": "8"}, {"cpu": "8"}),
        initContainers=[
            {
                **with_resources("native", {"cpu": "400m"}, {"cpu": "100m"}),
                "restartPolicy": "Always",
            },
            with_resources("plain", {"cpu": "8"}, {"cpu": "8"}),
        ],
    )
    sidecarset = make_sidecarset(containers=[sidecar("agent", resourcesPolicy=policy("sum"))])

    _, injected = run(pod, sidecarset)

    assert container(injected, "agent")["resources"] == {
        "limits": {"cpu": "300m"},
        "requests": {"cpu": "100m"},
    }


def test_no_resources_target_denies_the_pod() -> None:
    sidecarset = make_sidecarset(
        containers=[sidecar("agent", resourcesPolicy=policy("sum", regex="^nothing$"))]
    )

    with pytest.raises(injection.InjectionDenied, match="no containers match"):
        run(make_pod(), sidecarset)


# --- hot upgrade ------------------------------------------------------------------------------


def hot(name: str = "mesh", empty: str = "empty:1") -> dict[str, Any]:
    return sidecar(
        name,
        image="mesh:1",
        upgradeStrategy={"upgradeType": "HotUpgrade", "hotUpgradeEmptyImage": empty},
    )


def test_a_hot_upgrade_sidecar_is_injected_as_a_working_and_an_idle_twin() -> None:
    _, pod = run(make_pod(), make_sidecarset(containers=[hot()]))

    assert names(pod["spec"]["containers"]) == ["mesh-1", "mesh-2", "app"]
    working, idle = container(pod, "mesh-1"), container(pod, "mesh-2")
    assert (working["image"], idle["image"]) == ("mesh:1", "empty:1")
    for twin in ("mesh-1", "mesh-2"):
        assert env_of(container(pod, twin)) == {
            "IS_INJECTED": "true",
            "SIDECARSET_VERSION": {
                "fieldRef": {
                    "fieldPath": f"metadata.annotations['{pod_contract.version_annotation(twin)}']"
                }
            },
            "SIDECARSET_VERSION_ALT": {
                "fieldRef": {
                    "fieldPath": "metadata.annotations"
                    f"['{pod_contract.version_alt_annotation(twin)}']"
                }
            },
        }


def test_hot_upgrade_annotations_mark_the_first_twin_working() -> None:
    _, pod = run(make_pod(), make_sidecarset(containers=[hot()]))

    annotations = pod["metadata"]["annotations"]
    assert annotations[pod_contract.version_annotation("mesh-1")] == "1"
    assert annotations[pod_contract.version_alt_annotation("mesh-1")] == "0"
    assert annotations[pod_contract.version_annotation("mesh-2")] == "0"
    assert annotations[pod_contract.version_alt_annotation("mesh-2")] == "1"
    assert annotations[pod_contract.WORKING_HOT_UPGRADE_ANNOTATION] == '{"mesh":"mesh-1"}'
    assert hashes(pod)["logs"].sidecar_list == ("mesh",)


def test_hot_upgrade_working_annotation_keeps_other_sidecars() -> None:
    pod = make_pod(annotations={pod_contract.WORKING_HOT_UPGRADE_ANNOTATION: '{"envoy":"envoy-2"}'})

    _, injected = run(pod, make_sidecarset(containers=[hot()]))

    working = injected["metadata"]["annotations"][pod_contract.WORKING_HOT_UPGRADE_ANNOTATION]
    assert working == '{"envoy":"envoy-2","mesh":"mesh-1"}'


def test_a_hot_upgrade_sidecar_without_empty_image_warns_and_has_no_image() -> None:
    result, pod = run(make_pod(), make_sidecarset(containers=[hot(empty="")]))

    assert "image" not in container(pod, "mesh-2")
    assert any("hotUpgradeEmptyImage" in w for w in result.warnings)


def test_a_native_hot_upgrade_init_container_becomes_init_twins() -> None:
    native = {**hot("proxy"), "restartPolicy": "Always"}
    sidecarset = make_sidecarset(initContainers=[native], updateStrategy={"type": "NotUpdate"})

    _, pod = run(make_pod(), sidecarset)

    assert names(pod["spec"]["initContainers"]) == ["proxy-1", "proxy-2"]


# --- patchPodMetadata -------------------------------------------------------------------------


def patched(existing: dict[str, str], *entries: dict[str, Any]) -> dict[str, str]:
    sidecarset = make_sidecarset(patchPodMetadata=list(entries))
    _, pod = run(make_pod(annotations=existing), sidecarset)
    return {
        k: v for k, v in pod["metadata"]["annotations"].items() if not k.startswith("kruise.io/")
    }


def test_retain_sets_only_absent_annotations() -> None:
    entry = {"annotations": {"a": "new", "b": "new"}}

    assert patched({"a": "old"}, entry) == {"a": "old", "b": "new"}


def test_overwrite_always_sets() -> None:
    entry = {"annotations": {"a": "new"}, "patchPolicy": "Overwrite"}

    assert patched({"a": "old"}, entry) == {"a": "new"}


@pytest.mark.parametrize(
    ("existing", "patch", "merged"),
    [
        pytest.param('{"log-agent":1}', '{"envoy":2}', '{"envoy":2,"log-agent":1}', id="spec"),
        pytest.param('{"a":1,"b":2}', '{"a":null}', '{"b":2}', id="null-removes"),
        pytest.param('{"z":{"y":1,"x":2}}', '{"a":1.0}', '{"a":1.0,"z":{"y":1,"x":2}}', id="raw"),
        pytest.param('{"a":{"y":1}}', '{"a":{"x":null,"w":2}}', '{"a":{"w":2,"y":1}}', id="deep"),
        pytest.param("[1]", '{"a":{"b":null}}', '{"a":{}}', id="non-object-doc"),
        pytest.param('{"a":1}', "[1, null]", "[1,null]", id="array-patch"),
        pytest.param("", '{"b":1}', '{"b":1}', id="empty-value-is-set"),
    ],
)
def test_merge_patch_json_merges_as_kruise_does(existing: str, patch: str, merged: str) -> None:
    entry = {"annotations": {"k": patch}, "patchPolicy": "MergePatchJson"}

    assert patched({"k": existing}, entry) == {"k": merged}


def test_merge_patch_json_onto_a_non_json_value_denies_naming_the_annotation() -> None:
    entry = {"annotations": {"k": '{"a":1}'}, "patchPolicy": "MergePatchJson"}

    with pytest.raises(injection.InjectionDenied) as caught:
        patched({"k": "plain text"}, entry)

    assert caught.value.error.path == "metadata.annotations[k]"


def test_metadata_patches_apply_in_sidecarset_order() -> None:
    first = make_sidecarset("a", patchPodMetadata=[{"annotations": {"k": '{"a":1}'}}])
    second = make_sidecarset(
        "b", patchPodMetadata=[{"annotations": {"k": '{"b":2}'}, "patchPolicy": "MergePatchJson"}]
    )

    _, pod = run(make_pod(), second, first)

    assert pod["metadata"]["annotations"]["k"] == '{"a":1,"b":2}'


# --- bookkeeping ------------------------------------------------------------------------------


def test_hash_entries_record_the_revision_and_the_sorted_sidecar_list() -> None:
    sidecarset = make_sidecarset(
        containers=[sidecar("b"), sidecar("a")], latest_revision="logs-5d8f"
    )

    _, pod = run(make_pod(), sidecarset)

    entry = hashes(pod)["logs"]
    assert entry.controller_revision == "logs-5d8f"
    assert entry.sidecar_list == ("a", "b")
    assert entry.update_timestamp == NOW
    assert hashes(pod, pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION)["logs"].controller_revision == ""


def test_existing_entries_for_other_sidecarsets_are_preserved_and_legacy_ones_upgraded() -> None:
    existing = {
        pod_contract.HASH_ANNOTATION: '{"old":"old-hash"}',
        pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION: '{"old":"old-hash-2"}',
        pod_contract.INJECTED_LIST_ANNOTATION: "old",
    }

    _, pod = run(make_pod(annotations=existing), make_sidecarset())

    annotations = pod["metadata"]["annotations"]
    assert json.loads(annotations[pod_contract.HASH_ANNOTATION])["old"] == {
        "updateTimestamp": None,
        "hash": "old-hash",
        "sidecarSetName": "old",
        "sidecarList": None,
    }
    assert set(hashes(pod)) == {"logs", "old"}
    assert annotations[pod_contract.INJECTED_LIST_ANNOTATION] == "logs,old"


def test_a_malformed_hash_annotation_denies_the_pod_naming_it() -> None:
    pod = make_pod(annotations={pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION: "{oops"})

    with pytest.raises(injection.InjectionDenied) as caught:
        run(pod, make_sidecarset())

    assert (
        caught.value.error.path
        == f"metadata.annotations[{pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION}]"
    )


def test_only_new_or_changed_annotations_are_reported() -> None:
    pod = make_pod(annotations={"keep": "1", pod_contract.INJECTED_LIST_ANNOTATION: "x"})

    result, _ = run(pod, make_sidecarset())

    assert set(result.annotations) == {
        pod_contract.HASH_ANNOTATION,
        pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION,
        pod_contract.INJECTED_LIST_ANNOTATION,
    }
    assert result.overwritten_annotations == (pod_contract.INJECTED_LIST_ANNOTATION,)


# --- idempotency ------------------------------------------------------------------------------


def test_injecting_an_injected_pod_changes_nothing() -> None:
    sidecarsets = [
        make_sidecarset("a", containers=[hot()], patchPodMetadata=[{"annotations": {"k": "v"}}]),
        make_sidecarset("b", initContainers=[sidecar("init")], imagePullSecrets=[{"name": "r"}]),
    ]
    _, once = run(make_pod(), *sidecarsets)

    again, twice = run(once, *sidecarsets)

    assert not again.changed
    assert twice == once
    assert again.passed_over == {"a": Skip.ALREADY_INJECTED, "b": Skip.ALREADY_INJECTED}


def test_a_pod_missing_a_listed_sidecar_is_injected_again() -> None:
    sidecarset = make_sidecarset(containers=[sidecar("one"), sidecar("two")])
    _, once = run(make_pod(), sidecarset)
    once["spec"]["containers"] = [c for c in once["spec"]["containers"] if c["name"] != "two"]

    again, twice = run(once, sidecarset)

    assert again.injected == ("logs",)
    # "one" is replaced where it stands; the missing "two" goes in front as a new sidecar.
    assert names(twice["spec"]["containers"]) == ["two", "one", "app"]


# --- choose_revision --------------------------------------------------------------------------


def pinned(policy_name: str = "Always", **update_strategy: Any) -> model.SidecarSet:
    return make_sidecarset(
        injectionStrategy={"revision": {"revisionName": "logs-old", "policy": policy_name}},
        updateStrategy=update_strategy,
    )


HISTORIC = make_sidecarset("logs", containers=[sidecar("logs-agent", image="agent:0.9")])


def test_without_a_pinned_revision_the_live_sidecarset_is_injected() -> None:
    live = make_sidecarset()

    assert not injection.wants_pinned_revision(live)
    assert injection.choose_revision(live, None, pod_labels={}, draw=0.0) is live


def test_a_pinned_revision_with_policy_always_is_injected() -> None:
    live = pinned()

    assert injection.wants_pinned_revision(live)
    assert injection.choose_revision(live, HISTORIC, pod_labels={}, draw=0.9) is HISTORIC


def test_a_failed_revision_lookup_fails_the_choice() -> None:
    failure = injection.RevisionLookupFailed(reason="controllerrevisions not found")

    with pytest.raises(injection.RevisionChoiceError, match="not found"):
        injection.choose_revision(pinned(), failure, pod_labels={}, draw=0.0)


@pytest.mark.parametrize(
    ("update_strategy", "labels", "draw", "historic"),
    [
        pytest.param({"paused": True}, {}, 0.99, True, id="paused"),
        pytest.param({"selector": {"matchLabels": {"c": "y"}}}, {}, 0.99, True, id="unselected"),
        pytest.param({"selector": {"matchLabels": {"c": "y"}}}, {"c": "y"}, 0.0, False, id="sel"),
        pytest.param({"partition": 3}, {}, 0.0, False, id="int-partition"),
        pytest.param({"partition": "30%"}, {}, 0.29, True, id="below-percent"),
        pytest.param({"partition": "30%"}, {}, 0.30, False, id="at-percent"),
        pytest.param({"partition": "0%"}, {}, 0.0, False, id="zero-percent"),
    ],
)
def test_partial_policy_follows_the_update_strategy(
    update_strategy: dict[str, Any], labels: dict[str, str], draw: float, historic: bool
) -> None:
    live = pinned("Partial", **update_strategy)

    chosen = injection.choose_revision(live, HISTORIC, pod_labels=labels, draw=draw)

    assert chosen is (HISTORIC if historic else live)


def test_partial_policy_with_an_unreadable_partition_fails() -> None:
    live = pinned("Partial")
    live = msgspec.structs.replace(
        live,
        spec=msgspec.structs.replace(
            live.spec,
            update_strategy=msgspec.structs.replace(live.spec.update_strategy, partition="x%"),
        ),
    )

    with pytest.raises(injection.RevisionChoiceError, match="percentage"):
        injection.choose_revision(live, HISTORIC, pod_labels={}, draw=0.0)


# --- names across the two container lists -----------------------------------------------------


def test_a_sidecar_named_like_one_of_the_pods_init_containers_denies_naming_both() -> None:
    pod = make_pod(initContainers=[{"name": "filebeat", "image": "setup:1"}])
    sidecarset = make_sidecarset(containers=[sidecar("filebeat")])

    with pytest.raises(injection.InjectionDenied) as caught:
        run(pod, sidecarset)

    assert caught.value.error.path == "spec.containers[0].name"  # BeforeAppContainer
    assert "SidecarSet logs injects 'filebeat'" in str(caught.value)
    assert "spec.initContainers" in str(caught.value)


def test_an_init_sidecar_named_like_an_app_container_denies() -> None:
    pod = make_pod({"name": "agent", "image": "app:1"})
    sidecarset = make_sidecarset(containers=[], initContainers=[sidecar("agent")])

    with pytest.raises(
        injection.InjectionDenied, match=r"already used in the pod's spec\.containers"
    ):
        run(pod, sidecarset)


def test_two_sidecarsets_injecting_one_name_into_both_lists_deny() -> None:
    init = make_sidecarset("a", containers=[], initContainers=[sidecar("shared")])
    main = make_sidecarset("b", containers=[sidecar("shared")])

    with pytest.raises(injection.InjectionDenied, match="'shared'"):
        run(make_pod(), init, main)


def test_a_same_list_name_still_replaces_the_pods_container_as_kruise_does() -> None:
    pod = make_pod({"name": "app", "image": "app:1"}, {"name": "filebeat", "image": "old:1"})
    sidecarset = make_sidecarset(containers=[sidecar("filebeat", image="new:2")])

    _, injected = run(pod, sidecarset)

    assert [c["name"] for c in injected["spec"]["containers"]] == ["app", "filebeat"]
    assert container(injected, "filebeat")["image"] == "new:2"
