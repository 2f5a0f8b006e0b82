"""Offline injection (`app/offline.py`) on plain data: the webhook's decision on manifests."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import jsonpatch
import pytest

from sidecarset.app import offline
from sidecarset.core import injection, patches, pod_contract, revisions

NOW = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)


def sidecarset_doc(name: str = "logs", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "selector": {"matchLabels": {"inject": "logs"}},
        "containers": [
            {
                "name": "agent",
                "image": "agent:1.0",
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
            }
        ],
        "volumes": [{"name": "shared", "emptyDir": {}}],
    }
    body.update(spec)
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "SidecarSet",
        "metadata": {"name": name},
        "spec": body,
    }


def template(labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "web", "inject": "logs", **(labels or {})}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]},
    }


def deployment(name: str = "web", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, **meta},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template()},
    }


def manifest(body: dict[str, Any], index: int = 1) -> offline.Manifest:
    return offline.Manifest(source="deploy.yaml", index=index, body=body)


def inject(
    body: dict[str, Any],
    *sidecarsets: dict[str, Any],
    namespace_labels: dict[str, str] | None = None,
) -> offline.InjectedManifest:
    entries = offline.sidecarsets_from_manifests(
        [manifest(s, i) for i, s in enumerate(sidecarsets, start=2)]
    )
    return offline.inject_manifest(
        manifest(body),
        entries,
        namespace_labels if namespace_labels is not None else {},
        default_namespace="default",
        revisions=list,
        now=NOW,
    )


def test_a_deployment_template_gets_the_sidecar_volume_and_annotations() -> None:
    result = inject(deployment(), sidecarset_doc())
    tpl = result.body["spec"]["template"]
    assert [c["name"] for c in tpl["spec"]["containers"]] == ["agent", "web"]
    agent = tpl["spec"]["containers"][0]
    assert {"name": pod_contract.INJECTED_ENV, "value": "true"} in agent["env"]
    assert tpl["spec"]["volumes"] == [{"name": "shared", "emptyDir": {}}]
    annotations = tpl["metadata"]["annotations"]
    assert annotations[pod_contract.INJECTED_LIST_ANNOTATION] == "logs"
    entry = pod_contract.read_upgrade_specs(annotations, pod_contract.HASH_ANNOTATION)["logs"]
    assert entry.update_timestamp == "2025-01-31T12:00:00Z"
    assert entry.hash  # the defaulted SidecarSet's hash, as the defaulting webhook sets it


def test_pods_record_the_revision_name_the_controller_gives_a_new_sidecarset() -> None:
    [entry] = offline.sidecarsets_from_manifests([manifest(sidecarset_doc())])
    assert entry.sidecarset is not None
    expected = revisions.decide_revision(entry.sidecarset, [], collision_count=0).name
    result = inject(deployment(), sidecarset_doc())
    annotations = result.body["spec"]["template"]["metadata"]["annotations"]
    recorded = pod_contract.read_upgrade_specs(annotations, pod_contract.HASH_ANNOTATION)["logs"]
    assert recorded.controller_revision == expected
    assert expected.startswith("logs-")


def test_the_input_manifest_is_left_unchanged() -> None:
    body = deployment()
    before = copy.deepcopy(body)
    inject(body, sidecarset_doc())
    assert body == before


def test_the_template_equals_the_webhook_patch_applied_to_the_same_pod() -> None:
    body = deployment()
    result = inject(body, sidecarset_doc())
    assert result.injection is not None
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**body["spec"]["template"]["metadata"], "namespace": "default"},
        "spec": body["spec"]["template"]["spec"],
    }
    patched = jsonpatch.apply_patch(pod, patches.for_injection(result.injection))
    tpl = result.body["spec"]["template"]
    assert patched["spec"] == tpl["spec"]
    assert patched["metadata"]["annotations"] == tpl["metadata"]["annotations"]


def test_a_pod_created_from_an_injected_template_is_already_injected() -> None:
    once = inject(deployment(), sidecarset_doc())
    twice = inject(once.body, sidecarset_doc())
    assert twice.injection is not None
    assert not twice.injection.changed
    assert twice.injection.passed_over == {"logs": injection.Skip.ALREADY_INJECTED}
    assert twice.body == once.body


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        pytest.param("StatefulSet", ("spec", "template"), id="statefulset"),
        pytest.param("DaemonSet", ("spec", "template"), id="daemonset"),
        pytest.param("Job", ("spec", "template"), id="job"),
        pytest.param("CronJob", ("spec", "jobTemplate", "spec", "template"), id="cronjob"),
        pytest.param("Pod", (), id="pod"),
    ],
)
def test_every_workload_kind_is_injected_at_its_pod_template(
    kind: str, path: tuple[str, ...]
) -> None:
    tpl = template()
    body: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": {"name": "w"}}
    node = body
    for key in path[:-1]:
        node = node.setdefault(key, {})
    if path:
        node[path[-1]] = tpl
    else:
        body.update(tpl)
        body["metadata"]["name"] = "w"
    result = inject(body, sidecarset_doc())
    node = result.body
    for key in path:
        node = node[key]
    assert [c["name"] for c in node["spec"]["containers"]] == ["agent", "web"]


def test_other_kinds_and_unselected_templates_come_back_unchanged() -> None:
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}}
    assert inject(config, sidecarset_doc()).body is config
    other = deployment()
    other["spec"]["template"]["metadata"]["labels"] = {"app": "web"}
    result = inject(other, sidecarset_doc())
    assert result.body == other
    assert not result.changed


def test_a_namespace_selector_matches_the_given_namespace_labels() -> None:
    scoped = sidecarset_doc(namespaceSelector={"matchLabels": {"team": "shop"}})
    assert not inject(deployment(), scoped, namespace_labels={"team": "blog"}).changed
    assert inject(deployment(), scoped, namespace_labels={"team": "shop"}).changed


def test_an_opted_out_template_is_not_injected() -> None:
    body = deployment()
    body["spec"]["template"]["metadata"]["annotations"] = {pod_contract.INJECT_OPT_OUT: "false"}
    result = inject(body, sidecarset_doc())
    assert not result.changed
    assert result.injection is not None
    assert result.injection.pod_skip is injection.PodSkip.OPTED_OUT


def test_an_invalid_sidecarset_names_its_file_and_document() -> None:
    bad = sidecarset_doc(selector={"matchLabels": {"bad key!": "x"}})
    with pytest.raises(
        offline.ManifestError, match=r"^deploy\.yaml: document 2 \(SidecarSet logs\)"
    ):
        inject(deployment(), bad)


def test_a_sidecarset_defined_twice_is_an_error() -> None:
    with pytest.raises(offline.ManifestError, match="defined more than once"):
        inject(deployment(), sidecarset_doc(), sidecarset_doc())


def test_a_template_that_is_not_an_object_names_the_field() -> None:
    body = deployment()
    body["spec"]["template"] = "oops"
    with pytest.raises(
        offline.ManifestError, match=r"document 1 \(Deployment web\): spec\.template"
    ):
        inject(body, sidecarset_doc())


def test_a_pinned_revision_that_cannot_be_found_is_refused_as_the_webhook_would() -> None:
    pinned = sidecarset_doc(injectionStrategy={"revision": {"revisionName": "logs-123"}})
    with pytest.raises(offline.ManifestError, match=r"the webhook would refuse its pods.*logs-123"):
        inject(deployment(), pinned)


def test_file_sidecarsets_replace_cluster_ones_of_the_same_name() -> None:
    cluster = offline.sidecarsets_from_manifests(
        [
            manifest(sidecarset_doc("logs")),
            manifest(sidecarset_doc("other", containers=[{"name": "other", "image": "other:1"}])),
        ]
    )
    newer = sidecarset_doc("logs", containers=[{"name": "agent", "image": "agent:2.0"}])
    merged = offline.sidecarsets_from_manifests([manifest(newer)], cluster=cluster)
    assert [e.name for e in merged] == ["logs", "other"]
    logs = merged[0].sidecarset
    assert logs is not None
    assert logs.spec.containers[0].body["image"] == "agent:2.0"
