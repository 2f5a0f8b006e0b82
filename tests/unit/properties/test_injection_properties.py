"""Injection invariants over generated pods and SidecarSets (style section 8).

Injection is idempotent; its JSON patch applies cleanly, only adds or replaces, and gives exactly
`apply_injection`; the pod's own containers survive unchanged and in order unless a sidecar of
the same name replaces them; every injected container carries IS_INJECTED=true exactly once.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from sidecarset.core import defaults, injection, model, patches, pod_contract

NOW = "2024-05-01T10:00:00Z"
LABELS = st.dictionaries(
    st.sampled_from(["app", "tier"]), st.sampled_from(["web", "db"]), max_size=2
)
VOLUME_NAMES = st.sampled_from(["data", "logs", "cfg", "sock"])
PATHS = st.sampled_from(["/a", "/b", "/c", "/var/log"])
CONTAINER_NAMES = ["app", "web", "proxy", "agent", "mesh", "init", "setup"]
ENV_NAMES = st.sampled_from(["A", "B", "POD_NAME", "IS_INJECTED"])
FLAGS = st.booleans()
ENV = st.lists(
    st.builds(lambda n, v: {"name": n, "value": v}, ENV_NAMES, st.sampled_from(["1", "true"])),
    max_size=3,
)
MOUNTS = st.lists(
    st.builds(
        lambda n, p, e: {
            "name": n,
            "mountPath": p,
            **({"subPathExpr": "$(POD_NAME)"} if e else {}),
        },
        VOLUME_NAMES,
        PATHS,
        FLAGS,
    ),
    max_size=2,
)
CPUS = st.sampled_from(["100m", "1", "250m"])
ONE_IN_FOUR = st.integers(0, 3)
POD_INIT_NAMES = st.lists(st.sampled_from(["init", "setup", "pre"]), max_size=2, unique=True)
POD_NAMES = st.lists(st.sampled_from(CONTAINER_NAMES), min_size=1, max_size=3, unique=True)
POD_VOLUMES = st.lists(VOLUME_NAMES, max_size=2, unique=True)
SECRETS = st.sampled_from(["reg", "own"])
NAMESPACES = st.sampled_from(["default", "team"])
INJECT_POLICIES = st.sampled_from(["BeforeAppContainer", "AfterAppContainer"])
MODES = st.sampled_from(["sum", "max"])
PATCH_POLICIES = st.sampled_from(["Retain", "Overwrite", "MergePatchJson"])
SET_NAMES = st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3, unique=True)
SIDECAR_POOL = st.permutations(["proxy", "agent", "mesh", "log", "dns", "trace", "web"])
SIDECAR_COUNTS = st.integers(1, 2)


@st.composite
def pod_container(draw: st.DrawFn, name: str) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "image": f"{name}:1"}
    if draw(FLAGS):
        body["env"] = draw(ENV)
    if draw(FLAGS):
        body["volumeMounts"] = draw(MOUNTS)
    if draw(FLAGS):
        body["volumeDevices"] = [{"name": draw(VOLUME_NAMES), "devicePath": draw(PATHS)}]
    if draw(FLAGS):
        body["resources"] = {"limits": {"cpu": draw(CPUS)}, "requests": {"cpu": "50m"}}
    if draw(FLAGS) and name in ("init", "setup"):
        body["restartPolicy"] = "Always"
    return body


JSON_VALUES = st.sampled_from(['{"a":1}', '{"b":{"c":2}}', '{"a":null}', "[1]", "plain"])
POD_ANNOTATIONS = st.dictionaries(st.sampled_from(["k", "x/y"]), JSON_VALUES, max_size=2)
PATCHED_ANNOTATIONS = st.dictionaries(st.sampled_from(["k", "x/y"]), JSON_VALUES, min_size=1)


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(POD_NAMES)
    spec: dict[str, Any] = {"containers": [draw(pod_container(n)) for n in names]}
    if draw(FLAGS):
        spec["initContainers"] = [draw(pod_container(n)) for n in draw(POD_INIT_NAMES)]
    if draw(FLAGS):
        spec["volumes"] = [{"name": n, "emptyDir": {}} for n in draw(POD_VOLUMES)]
    if draw(FLAGS):
        spec["imagePullSecrets"] = [{"name": draw(SECRETS)}]
    metadata: dict[str, Any] = {"name": "p", "labels": draw(LABELS)}
    if draw(FLAGS):
        metadata["namespace"] = draw(NAMESPACES)
    if draw(FLAGS):
        annotations = draw(POD_ANNOTATIONS)
        if draw(FLAGS):
            annotations[pod_contract.HASH_ANNOTATION] = '{"legacy":"h"}'
            annotations[pod_contract.INJECTED_LIST_ANNOTATION] = "legacy"
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


@st.composite
def sidecar(draw: st.DrawFn, name: str, *, init: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "image": f"{name}:2"}
    body["podInjectPolicy"] = draw(INJECT_POLICIES)
    if draw(FLAGS):
        body["env"] = draw(ENV)
    if draw(FLAGS):
        body["volumeMounts"] = draw(MOUNTS)
    if draw(FLAGS):
        body["shareVolumePolicy"] = {"type": "enabled"}
    if draw(FLAGS):
        body["shareVolumeDevicePolicy"] = {"type": "enabled"}
    if draw(FLAGS):
        body["transferEnv"] = [{"sourceContainerName": "app", "envNames": ["A", "B"]}]
    if init and draw(FLAGS):
        body["restartPolicy"] = "Always"
    if draw(ONE_IN_FOUR) == 0:
        body["upgradeStrategy"] = {"upgradeType": "HotUpgrade", "hotUpgradeEmptyImage": "empty"}
    if draw(ONE_IN_FOUR) == 0:
        body["resourcesPolicy"] = {
            "targetContainersMode": draw(MODES),
            "targetContainersNameRegex": ".*",
            "resourcesExpr": {"limits": {"cpu": "cpu*50%"}, "requests": {"cpu": "max(cpu, 10m)"}},
        }
    return body


@st.composite
def sidecarsets(draw: st.DrawFn) -> list[model.SidecarSet]:
    pool = iter(draw(SIDECAR_POOL))
    result = []
    for set_name in draw(SET_NAMES):
        containers = [draw(sidecar(next(pool), init=False)) for _ in range(draw(SIDECAR_COUNTS))]
        init_name = draw(st.sampled_from(["", "init", "setup", f"{set_name}-init"]))
        init_containers = [draw(sidecar(init_name, init=True))] if init_name else []
        selector = draw(LABELS) if draw(FLAGS) else {"app": "web"}
        spec: dict[str, Any] = {
            "selector": {"matchLabels": selector},
            "containers": containers,
            "initContainers": init_containers,
            "volumes": [{"name": n, "hostPath": {"path": f"/{set_name}"}} for n in ["data", "cfg"]],
            "imagePullSecrets": [{"name": draw(SECRETS) if draw(FLAGS) else set_name}],
            "updateStrategy": {"type": "NotUpdate"},
        }
        if draw(FLAGS):
            spec["patchPodMetadata"] = [
                {"annotations": draw(PATCHED_ANNOTATIONS), "patchPolicy": draw(PATCH_POLICIES)}
            ]
        status = {"latestRevision": f"{set_name}-r"}
        obj = {"metadata": {"name": set_name}, "spec": spec, "status": status}
        result.append(model.parse_sidecarset(defaults.apply_defaults(obj)))
    return result


def injected(
    pod: dict[str, Any], sets: list[model.SidecarSet]
) -> tuple[injection.Injection, dict[str, object]]:
    try:
        result = injection.inject(pod, sets, {}, now=NOW, request_namespace="default")
    except injection.InjectionDenied:
        reject()
    return result, injection.apply_injection(pod, result)


PROPERTY_SETTINGS = settings(max_examples=120, suppress_health_check=[HealthCheck.filter_too_much])


@PROPERTY_SETTINGS
@given(pods(), sidecarsets())
def test_injecting_twice_equals_injecting_once(
    pod: dict[str, Any], sets: list[model.SidecarSet]
) -> None:
    _, once = injected(pod, sets)

    again = injection.inject(
        once, sets, {}, now="2030-01-01T00:00:00Z", request_namespace="default"
    )

    assert not again.changed
    assert injection.apply_injection(once, again) == once


@PROPERTY_SETTINGS
@given(pods(), sidecarsets())
def test_the_json_patch_applies_cleanly_and_equals_apply_injection(
    pod: dict[str, Any], sets: list[model.SidecarSet]
) -> None:
    result, expected = injected(pod, sets)
    original = copy.deepcopy(pod)

    ops = patches.for_injection(result)

    assert jsonpatch.apply_patch(pod, ops) == expected
    assert pod == original


@PROPERTY_SETTINGS
@given(pods(), sidecarsets())
def test_patch_operations_only_add_or_replace(
    pod: dict[str, Any], sets: list[model.SidecarSet]
) -> None:
    result, _ = injected(pod, sets)

    assert {op["op"] for op in patches.for_injection(result)} <= {"add", "replace"}


@PROPERTY_SETTINGS
@given(pods(), sidecarsets())
def test_pod_containers_stay_unchanged_and_in_order_unless_a_sidecar_replaces_them(
    pod: dict[str, Any], sets: list[model.SidecarSet]
) -> None:
    result, after = injected(pod, sets)
    spec = after["spec"]
    assert isinstance(spec, dict)

    for field, placed in (
        ("containers", result.containers),
        ("initContainers", result.init_containers),
    ):
        replaced = {c.name for c in placed if c.placement is injection.Placement.IN_PLACE}
        new = {c.name for c in placed if c.placement is not injection.Placement.IN_PLACE}
        own = pod["spec"].get(field) or []
        survivors = [c for c in spec.get(field) or [] if c["name"] not in new]
        assert [c["name"] for c in survivors] == [c["name"] for c in own]
        for before, now in zip(own, survivors, strict=True):
            if before["name"] not in replaced:
                assert now == before


@PROPERTY_SETTINGS
@given(pods(), sidecarsets())
def test_every_injected_container_is_marked_injected_exactly_once(
    pod: dict[str, Any], sets: list[model.SidecarSet]
) -> None:
    result, _ = injected(pod, sets)

    for placed in (*result.containers, *result.init_containers):
        env = placed.body.get("env")
        assert isinstance(env, list)
        marks = [e for e in env if e.get("name") == pod_contract.INJECTED_ENV]
        assert marks == [{"name": pod_contract.INJECTED_ENV, "value": "true"}]


@PROPERTY_SETTINGS
@given(pods(), sidecarsets())
def test_every_injected_sidecarset_is_listed_and_has_both_hash_entries(
    pod: dict[str, Any], sets: list[model.SidecarSet]
) -> None:
    result, after = injected(pod, sets)
    metadata = after.get("metadata")
    assert isinstance(metadata, dict)
    annotations = metadata.get("annotations") or {}

    for name in result.injected:
        assert name in annotations[pod_contract.INJECTED_LIST_ANNOTATION].split(",")
        assert name in json.loads(annotations[pod_contract.HASH_ANNOTATION])
        assert name in json.loads(annotations[pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION])
