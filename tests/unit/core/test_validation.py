"""SidecarSet admission validation (behaviour.md §11) and its deliberate improvements."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecarset.core import defaults, model, validation
from sidecarset.core.model import LabelSelector, SidecarSet
from sidecarset.core.validation import (
    RevisionLookup,
    ValidationPolicy,
    ValidationResult,
    WhitelistRule,
)
from tests.fixtures.invalid_sidecarsets import INVALID_SIDECARSETS, valid_sidecarset

FIXTURES = Path(__file__).parents[2] / "fixtures"
POLICY = ValidationPolicy()
Json = dict[str, Any]


def check(
    obj: Json,
    old: Json | None = None,
    peers: tuple[SidecarSet, ...] = (),
    policy: ValidationPolicy = POLICY,
    revision_lookup: RevisionLookup | None = None,
) -> ValidationResult:
    """Validate as the admission chain does: the defaulting webhook runs first."""
    return validation.validate(
        defaults.apply_defaults(obj),
        None if old is None else defaults.apply_defaults(old),
        peers,
        policy,
        revision_lookup=revision_lookup,
    )


def messages(result: ValidationResult) -> list[str]:
    return [str(e) for e in result.errors]


def peer(obj: Json) -> SidecarSet:
    return model.parse_sidecarset(defaults.apply_defaults(obj))


def with_container(**fields: Any) -> Json:
    obj = valid_sidecarset()
    obj["spec"]["containers"][0].update(fields)
    return obj


def test_the_filebeat_sidecarset_is_valid() -> None:
    manifest = yaml.safe_load((FIXTURES / "filebeat-sidecarset.yaml").read_text())

    assert check(manifest) == ValidationResult()


def test_an_undefaulted_object_validates_like_its_defaulted_form() -> None:
    manifest = yaml.safe_load((FIXTURES / "filebeat-sidecarset.yaml").read_text())

    assert validation.validate(manifest, None, (), POLICY) == ValidationResult()


def test_the_table_has_at_least_thirty_distinct_cases() -> None:
    assert len(INVALID_SIDECARSETS) >= 30
    assert len({case_id for case_id, _, _ in INVALID_SIDECARSETS}) == len(INVALID_SIDECARSETS)


@pytest.mark.parametrize(
    ("sidecarset", "path"),
    [pytest.param(obj, path, id=case_id) for case_id, obj, path in INVALID_SIDECARSETS],
)
def test_invalid_sidecarsets_are_rejected_naming_the_field(sidecarset: Json, path: str) -> None:
    result = check(sidecarset)

    assert not result.allowed
    assert any(m.startswith(path) or f"{path}" in m for m in messages(result)), messages(result)


@pytest.mark.parametrize(
    ("sidecarset", "path"),
    [pytest.param(obj, path, id=case_id) for case_id, obj, path in INVALID_SIDECARSETS],
)
def test_every_rejection_names_a_path_and_a_reason(sidecarset: Json, path: str) -> None:
    for error in check(sidecarset).errors:
        assert error.path
        rendered = str(error)
        assert rendered.startswith(f"{error.path}: ")
        assert len(rendered) > len(error.path) + 10


def test_all_problems_are_reported_together() -> None:
    obj = with_container(name="Bad_Name", image="")
    obj["spec"]["updateStrategy"] = {"partition": "120%"}

    paths = {e.path for e in check(obj).errors}

    assert {
        "spec.containers[0].name",
        "spec.containers[0].image",
        "spec.updateStrategy.partition",
    } <= paths


def test_a_value_of_the_wrong_json_type_is_an_error_not_an_exception() -> None:
    obj = valid_sidecarset()
    obj["spec"]["updateStrategy"] = {"partition": [1]}

    result = validation.validate(obj, None, (), POLICY)

    assert messages(result) == [
        "spec.updateStrategy.partition: Invalid value: expected int | str | null, got array"
    ]


def test_wrongly_typed_container_fields_are_reported_at_their_path() -> None:
    result = check(with_container(ports=[{"containerPort": "eighty"}], stdin="yes"))

    assert (
        'spec.containers[0].ports[0].containerPort: Invalid value: "eighty": must be an integer'
        in (messages(result))
    )
    assert 'spec.containers[0].stdin: Invalid value: "yes": must be a boolean' in messages(result)


def test_partition_with_selector_is_rejected() -> None:
    obj = valid_sidecarset()
    obj["spec"]["updateStrategy"] = {"partition": "10%", "selector": {"matchLabels": {"a": "b"}}}

    assert messages(check(obj)) == [
        'spec.updateStrategy.partition: Invalid value: "10%": partition and selector cannot be'
        " used together"
    ]


def test_zero_percent_partition_with_selector_is_accepted() -> None:
    obj = valid_sidecarset()
    obj["spec"]["updateStrategy"] = {"partition": "0%", "selector": {"matchLabels": {"a": "b"}}}

    assert check(obj).allowed


def test_not_update_strategies_are_not_checked_further() -> None:
    obj = valid_sidecarset()
    obj["spec"]["updateStrategy"] = {"type": "NotUpdate", "partition": "120%"}

    assert check(obj).allowed


def test_percent_above_100_is_rejected_with_the_kubernetes_message() -> None:
    obj = valid_sidecarset()
    obj["spec"]["updateStrategy"] = {"maxUnavailable": "150%"}

    assert messages(check(obj)) == [
        'spec.updateStrategy.maxUnavailable: Invalid value: "150%": must be between 0% and 100%'
    ]


def test_native_sidecars_may_roll_in_place() -> None:
    obj = valid_sidecarset()
    obj["spec"]["initContainers"] = [
        {"name": "proxy", "image": "envoy:1", "restartPolicy": "Always"}
    ]

    assert check(obj).allowed


def test_native_sidecars_may_use_resources_policy_and_hot_upgrade() -> None:
    obj = valid_sidecarset()
    obj["spec"]["initContainers"] = [
        {
            "name": "proxy",
            "image": "envoy:1",
            "restartPolicy": "Always",
            "upgradeStrategy": {"upgradeType": "HotUpgrade", "hotUpgradeEmptyImage": "empty:1"},
            "resourcesPolicy": {
                "targetContainersMode": "sum",
                "resourcesExpr": {"limits": {"cpu": "max(cpu*50%, 50m)"}},
            },
        }
    ]

    assert check(obj).allowed


def test_hot_upgrade_names_leave_room_for_the_twin_suffix() -> None:
    obj = with_container(
        name="a" * 62,
        upgradeStrategy={"upgradeType": "HotUpgrade", "hotUpgradeEmptyImage": "empty:1"},
    )

    assert any("for HotUpgrade" in m for m in messages(check(obj)))


def test_an_init_container_and_a_container_may_not_share_a_name() -> None:
    obj = valid_sidecarset()
    obj["spec"]["initContainers"] = [{"name": "sidecar", "image": "busybox:1"}]

    assert 'spec.containers[0].name: Duplicate value: "sidecar"' in messages(check(obj))


def test_a_memory_expression_may_not_read_cpu() -> None:
    obj = with_container(
        resourcesPolicy={
            "targetContainersMode": "sum",
            "resourcesExpr": {"requests": {"memory": "cpu*2"}},
        }
    )

    assert any(
        m.startswith("spec.containers[0].resourcesPolicy.resourcesExpr.requests.memory")
        and "undefined variable: cpu" in m
        for m in messages(check(obj))
    )


def test_resources_policy_needs_a_known_mode() -> None:
    obj = with_container(
        resourcesPolicy={
            "targetContainersMode": "avg",
            "resourcesExpr": {"requests": {"cpu": "cpu"}},
        }
    )

    assert any(
        m.startswith("spec.containers[0].resourcesPolicy.targetContainersMode: Unsupported")
        for m in messages(check(obj))
    )


def test_an_empty_target_regex_is_admitted_and_stored_as_match_all_as_kruise_does() -> None:
    # Kruise's CRD defaults the field to ".*", and its webhook drops "" (omitempty) so the API
    # server defaults it after mutation: a manifest with "" is admitted there.
    obj = with_container(
        resourcesPolicy={
            "targetContainersMode": "sum",
            "targetContainersNameRegex": "",
            "resourcesExpr": {"limits": {"cpu": "cpu*50%"}},
        }
    )

    assert check(obj).allowed
    stored: Any = defaults.apply_defaults(obj)["spec"]["containers"][0]["resourcesPolicy"]  # type: ignore[index]
    assert stored["targetContainersNameRegex"] == ".*"


def test_transfer_env_needs_a_source_and_a_name() -> None:
    result = check(with_container(transferEnv=[{}]))

    assert {e.path for e in result.errors} == {"spec.containers[0].transferEnv[0]"}
    assert len(result.errors) == 2


def test_transfer_env_from_a_label_is_accepted() -> None:
    obj = with_container(
        transferEnv=[
            {
                "sourceContainerNameFrom": {"fieldRef": {"fieldPath": "metadata.labels['main']"}},
                "envNames": ["TZ", "LANG"],
            }
        ]
    )

    assert check(obj).allowed


# --- revision references ----------------------------------------------------------------------


def pinned() -> Json:
    obj = valid_sidecarset()
    obj["spec"]["injectionStrategy"] = {"revision": {"revisionName": "table-case-abc"}}
    return obj


def test_a_revision_that_cannot_be_found_is_rejected() -> None:
    result = check(pinned(), revision_lookup=RevisionLookup(found=False, detail="not found"))

    assert messages(result) == [
        'spec.injectionStrategy.revision.revisionName: Not found: "table-case-abc": cannot find'
        " the ControllerRevision: not found"
    ]


def test_a_revision_that_resolves_is_accepted() -> None:
    assert check(pinned(), revision_lookup=RevisionLookup(found=True)).allowed


# --- patchPodMetadata and its whitelist -------------------------------------------------------


def patching(key: str = "example.com/log-config", policy: str = "Overwrite") -> Json:
    obj = valid_sidecarset()
    obj["metadata"]["labels"] = {"team": "logging"}
    obj["spec"]["patchPodMetadata"] = [{"annotations": {key: '{"a":1}'}, "patchPolicy": policy}]
    return obj


def whitelist(*exprs: str, selector: LabelSelector | None = None) -> ValidationPolicy:
    rule = WhitelistRule(selector=selector, allowed_annotation_key_exprs=exprs)
    return ValidationPolicy(patch_metadata_whitelist=(rule,))


def test_patching_pod_metadata_without_a_whitelist_is_refused() -> None:
    assert [e.path for e in check(patching()).errors] == ["spec.patchPodMetadata"]


def test_the_defaults_allowed_gate_admits_patches_without_a_whitelist() -> None:
    policy = ValidationPolicy(patch_metadata_allowed_without_whitelist=True)

    assert check(patching(), policy=policy).allowed


def test_whitelisted_keys_are_accepted() -> None:
    assert check(patching(), policy=whitelist(r"example\.com/.*")).allowed


@pytest.mark.parametrize(
    ("expr", "key"),
    [
        pytest.param(r"^example\.com/", "example.com/log", id="anchored-prefix"),
        pytest.param("log-config", "example.com/log-config", id="substring"),
        pytest.param(r"example\.com", "logs.example.com/level", id="inside"),
    ],
)
def test_whitelist_patterns_match_anywhere_in_the_key_as_kruise_does(expr: str, key: str) -> None:
    # Kruise matches with regexp.MatchString: a search, so its admins' rules keep working.
    assert check(patching(key), policy=whitelist(expr)).allowed


def test_the_strict_mode_makes_patterns_match_the_whole_key() -> None:
    rule = WhitelistRule(allowed_annotation_key_exprs=("log-config",))
    strict = ValidationPolicy(patch_metadata_whitelist=(rule,), whitelist_full_match=True)

    result = check(patching(), policy=strict)

    assert [e.path for e in result.errors] == [
        "spec.patchPodMetadata[0].annotations[example.com/log-config]"
    ]
    assert "whole key" in result.errors[0].detail


def test_whitelist_refusals_name_where_the_rules_were_read() -> None:
    source = "ConfigMap ops/kruise-configuration, key SidecarSet_PatchPodMetadata_WhiteList"
    rule = WhitelistRule(allowed_annotation_key_exprs=("other",))
    missing = ValidationPolicy(whitelist_source=source)
    refusing = ValidationPolicy(patch_metadata_whitelist=(rule,), whitelist_source=source)

    for policy in (missing, refusing):
        (error,) = check(patching(), policy=policy).errors
        assert source in error.detail, error.detail


def test_whitelist_rules_apply_only_to_sidecarsets_their_selector_matches() -> None:
    other_team = LabelSelector(match_labels={"team": "mesh"})

    result = check(patching(), policy=whitelist(".*", selector=other_team))

    assert [e.path for e in result.errors] == ["spec.patchPodMetadata"]


def test_the_same_annotation_may_not_be_patched_twice() -> None:
    obj = patching()
    obj["spec"]["patchPodMetadata"].append(obj["spec"]["patchPodMetadata"][0])

    result = check(obj, policy=whitelist(".*"))

    assert [e.kind for e in result.errors] == ["FieldValueDuplicate"]


# --- security policy --------------------------------------------------------------------------


def test_the_administrator_can_allow_privileged_sidecars() -> None:
    obj = with_container(
        securityContext={"privileged": True, "capabilities": {"add": ["NET_ADMIN"]}}
    )
    policy = ValidationPolicy(allow_privileged=True, allowed_capabilities=frozenset({"NET_ADMIN"}))

    assert not check(obj).allowed
    assert check(obj, policy=policy).allowed


def test_baseline_capabilities_need_no_exception() -> None:
    obj = with_container(
        securityContext={"capabilities": {"add": ["NET_BIND_SERVICE", "CAP_CHOWN"]}}
    )

    assert check(obj).allowed


def test_host_paths_need_the_administrators_permission() -> None:
    obj = valid_sidecarset()
    obj["spec"]["volumes"][0] = {"name": "shared", "hostPath": {"path": "/var/log"}}

    assert check(obj, policy=ValidationPolicy(allow_host_path=True)).allowed


def test_unconfined_profiles_are_refused_by_default() -> None:
    obj = with_container(securityContext={"seccompProfile": {"type": "Unconfined"}})

    assert [e.path for e in check(obj).errors] == [
        "spec.containers[0].securityContext.seccompProfile.type"
    ]


# --- UPDATE: immutability and warnings --------------------------------------------------------


def test_adding_a_container_on_update_is_rejected() -> None:
    old = valid_sidecarset()
    new = copy.deepcopy(old)
    new["spec"]["containers"].append({"name": "extra", "image": "busybox:1"})

    result = check(new, old)

    assert [e.path for e in result.errors] == ["spec.containers[1].name"]
    assert "cannot be added or renamed" in messages(result)[0]


def test_changing_the_upgrade_type_is_rejected() -> None:
    old = valid_sidecarset()
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["upgradeStrategy"] = {
        "upgradeType": "HotUpgrade",
        "hotUpgradeEmptyImage": "empty:1",
    }

    assert messages(check(new, old))[0] == (
        'spec.containers[0].upgradeStrategy.upgradeType: Invalid value: "HotUpgrade":'
        " is immutable (was ColdUpgrade)"
    )


def test_a_native_sidecars_upgrade_type_is_immutable_too() -> None:
    old = valid_sidecarset()
    old["spec"]["initContainers"] = [
        {"name": "proxy", "image": "envoy:1", "restartPolicy": "Always"}
    ]
    new = copy.deepcopy(old)
    new["spec"]["initContainers"][0]["upgradeStrategy"] = {
        "upgradeType": "HotUpgrade",
        "hotUpgradeEmptyImage": "empty:1",
    }

    assert [e.path for e in check(new, old).errors] == [
        "spec.initContainers[0].upgradeStrategy.upgradeType"
    ]


def test_an_image_only_change_is_silent() -> None:
    old = valid_sidecarset()
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "busybox:1.37"

    assert check(new, old) == ValidationResult()


def test_a_non_image_change_warns_that_running_pods_keep_the_old_definition() -> None:
    old = yaml.safe_load((FIXTURES / "filebeat-sidecarset.yaml").read_text())
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "docker.elastic.co/beats/filebeat:7.17.0"
    new["spec"]["containers"][0]["env"].append({"name": "LOG_LEVEL", "value": "debug"})

    result = check(new, old)

    assert result.allowed
    assert result.warnings == (
        "spec.containers[filebeat]: changes to fields other than image cannot be applied to"
        " running pods in place; existing pods keep the old definition until they are recreated",
    )


def test_removing_a_container_warns() -> None:
    old = valid_sidecarset()
    old["spec"]["containers"].append({"name": "second", "image": "busybox:1"})
    new = valid_sidecarset()

    result = check(new, old)

    assert result.allowed
    assert [w.split(":")[0] for w in result.warnings] == ["spec.containers[second]"]


def test_changing_a_plain_init_container_warns_once_a_native_sidecar_is_hashed() -> None:
    old = valid_sidecarset()
    old["spec"]["initContainers"] = [
        {"name": "setup", "image": "busybox:1"},
        {"name": "proxy", "image": "envoy:1", "restartPolicy": "Always"},
    ]
    new = copy.deepcopy(old)
    new["spec"]["initContainers"][0]["command"] = ["true"]

    result = check(new, old)

    assert [w.split(":")[0] for w in result.warnings] == ["spec.initContainers[setup]"]


def test_volume_and_strategy_edits_do_not_warn() -> None:
    old = valid_sidecarset()
    new = copy.deepcopy(old)
    new["spec"]["volumes"].append({"name": "extra", "emptyDir": {}})
    new["spec"]["updateStrategy"] = {"maxUnavailable": "50%"}

    assert check(new, old) == ValidationResult()


# --- conflicts with other SidecarSets ---------------------------------------------------------


def other(name: str = "other", **spec: Any) -> Json:
    obj = valid_sidecarset(name)
    obj["spec"].update(spec)
    return obj


def test_a_container_name_taken_by_an_overlapping_sidecarset_is_rejected() -> None:
    result = check(valid_sidecarset(), peers=(peer(other()),))

    assert messages(result) == [
        'spec.containers[0].name: Invalid value: "sidecar": container sidecar already exists in'
        " SidecarSet other, which selects the same pods"
    ]


def test_conflicts_ignore_the_sidecarset_itself() -> None:
    assert check(valid_sidecarset(), peers=(peer(valid_sidecarset()),)).allowed


def test_disjoint_selectors_do_not_conflict() -> None:
    disjoint = other(selector={"matchLabels": {"app": "something-else"}})

    assert check(valid_sidecarset(), peers=(peer(disjoint),)).allowed


def test_different_namespaces_do_not_conflict() -> None:
    mine = valid_sidecarset()
    mine["spec"]["namespace"] = "team-a"

    assert check(mine, peers=(peer(other(namespace="team-b")),)).allowed


def test_exists_on_a_key_the_other_selector_ignores_still_conflicts() -> None:
    # Kruise's heuristic calls these disjoint; a pod labelled app=table-case,tier=x gets both.
    exists = other(selector={"matchExpressions": [{"key": "tier", "operator": "Exists"}]})

    assert not check(valid_sidecarset(), peers=(peer(exists),)).allowed


def test_a_peers_init_container_name_counts_too() -> None:
    clash = other(
        containers=[{"name": "other-main", "image": "busybox:1"}],
        initContainers=[{"name": "sidecar", "image": "busybox:1"}],
        volumes=[],
    )

    assert [e.path for e in check(valid_sidecarset(), peers=(peer(clash),)).errors] == [
        "spec.containers[0].name"
    ]


def test_identical_volumes_may_be_shared_but_different_ones_conflict() -> None:
    same = other(containers=[{"name": "other-main", "image": "busybox:1"}])
    different = other(
        containers=[{"name": "other-main", "image": "busybox:1"}],
        volumes=[{"name": "shared", "configMap": {"name": "c"}}],
    )

    assert check(valid_sidecarset(), peers=(peer(same),)).allowed
    assert [e.path for e in check(valid_sidecarset(), peers=(peer(different),)).errors] == [
        "spec.volumes[0]"
    ]


@pytest.mark.parametrize(
    ("mine", "theirs", "conflict"),
    [
        pytest.param("Overwrite", "MergePatchJson", True, id="overwrite-vs-merge"),
        pytest.param("MergePatchJson", "Overwrite", True, id="merge-vs-overwrite"),
        pytest.param("MergePatchJson", "MergePatchJson", False, id="merge-vs-merge"),
        pytest.param("Retain", "Overwrite", False, id="retain-never-conflicts"),
    ],
)
def test_patch_pod_metadata_conflicts(mine: str, theirs: str, conflict: bool) -> None:
    peer_obj = patching(policy=theirs)
    peer_obj["metadata"]["name"] = "other"
    peer_obj["spec"]["containers"][0]["name"] = "other-main"
    policy = whitelist(".*")

    result = check(patching(policy=mine), peers=(peer(peer_obj),), policy=policy)

    assert (not result.allowed) is conflict


def test_conflicts_are_not_checked_for_an_invalid_object() -> None:
    obj = with_container(image="")

    result = check(obj, peers=(peer(other()),))

    assert [e.path for e in result.errors] == ["spec.containers[0].image"]


# --- canaries ---------------------------------------------------------------------------------


def canary(base: str = "other") -> Json:
    obj = valid_sidecarset("table-case-canary")
    obj["metadata"]["annotations"] = {
        "apps.kruise.io/sidecarset-canary": "true",
        "apps.kruise.io/sidecarset-base": base,
    }
    obj["spec"]["updateStrategy"] = {"type": "NotUpdate"}
    return obj


def test_a_canary_of_an_existing_base_is_valid_and_may_reuse_its_names() -> None:
    assert check(canary(), peers=(peer(other()),)).allowed


def test_a_canary_must_not_roll() -> None:
    obj = canary()
    obj["spec"]["updateStrategy"] = {"type": "RollingUpdate"}

    assert [e.path for e in check(obj, peers=(peer(other()),)).errors] == [
        "spec.updateStrategy.type"
    ]


def test_a_canary_cannot_be_its_own_base() -> None:
    result = check(canary(base="table-case-canary"))

    assert any("cannot be the canary itself" in m for m in messages(result))


def test_the_base_of_a_canary_cannot_be_a_canary() -> None:
    base = canary(base="someone")
    base["metadata"]["name"] = "other"

    result = check(canary(), peers=(peer(base),))

    assert any("cannot itself be a canary" in m for m in messages(result))


def test_a_canarys_base_is_immutable() -> None:
    old = canary(base="first")
    first = other("first")

    result = check(canary(base="other"), old, peers=(peer(first), peer(other())))

    assert any("is immutable" in m for m in messages(result))


# --- inputs -----------------------------------------------------------------------------------


def test_model_values_are_accepted_directly() -> None:
    sidecarset = peer(valid_sidecarset())

    assert validation.validate(sidecarset, sidecarset, (), POLICY) == ValidationResult()


@pytest.mark.parametrize(
    "garbage",
    [
        {},
        {"spec": None},
        {"spec": {"containers": [None]}},
        {"spec": {"containers": [{"ports": "x", "env": [1, None], "resources": []}]}},
        {"spec": {"volumes": [{"name": "v", "secret": "s"}], "containers": [{}]}},
        {"metadata": {"name": 5}},
    ],
)
def test_garbage_is_reported_not_raised(garbage: Json) -> None:
    result = validation.validate(garbage, garbage, (), POLICY)

    assert not result.allowed
