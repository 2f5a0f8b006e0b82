"""A SidecarSet written as v1beta1 is defaulted, validated, hashed and injected exactly as its
v1alpha1 twin: every decision reads the internal form (`conversion.to_internal`)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import jsonpatch

from sidecarset.app import cached_objects, offline
from sidecarset.app.settings import OperatorSettings
from sidecarset.app.sidecarset_webhook import SidecarSetAdmission
from sidecarset.core import conversion, pod_contract
from sidecarset.shell import admission
from sidecarset.shell.store import Store
from tests.fixtures.admission_reviews import review
from tests.unit.private_loop import run

NOW = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)

V1ALPHA1_TWIN: dict[str, Any] = {
    "apiVersion": conversion.V1ALPHA1,
    "kind": "SidecarSet",
    "metadata": {"name": "logs", "labels": {pod_contract.CUSTOM_VERSION_LABEL: "v1"}},
    "spec": {
        "selector": {"matchLabels": {"inject": "logs"}},
        "namespace": "default",
        "containers": [
            {
                "name": "agent",
                "image": "agent:1.0",
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
                "resources": {"limits": {"cpu": "0.5"}},
            }
        ],
        "volumes": [{"name": "shared", "emptyDir": {}}],
    },
}
V1BETA1_TWIN = conversion.to_v1beta1(V1ALPHA1_TWIN)
DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web", "inject": "logs"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]},
        },
    },
}


def inject_with(sidecarset: dict[str, Any]) -> dict[str, Any]:
    entries = offline.sidecarsets_from_manifests(
        [offline.Manifest(source="sidecarset.yaml", index=1, body=sidecarset)]
    )
    injected = offline.inject_manifest(
        offline.Manifest(source="deploy.yaml", index=1, body=DEPLOYMENT),
        entries,
        {pod_contract.NAMESPACE_NAME_LABEL: "default"},
        default_namespace="default",
        revisions=list,
        now=NOW,
    )
    assert injected.changed
    template: dict[str, Any] = injected.body["spec"]["template"]
    return template


def test_the_v1beta1_twin_really_is_v1beta1() -> None:
    assert V1BETA1_TWIN["apiVersion"] == conversion.V1BETA1
    assert "namespace" not in V1BETA1_TWIN["spec"]
    assert V1BETA1_TWIN["spec"]["customVersion"] == "v1"


def test_a_pod_injected_through_v1beta1_gets_the_same_hashes() -> None:
    through_alpha = inject_with(V1ALPHA1_TWIN)
    through_beta = inject_with(V1BETA1_TWIN)

    hashes = pod_contract.read_upgrade_specs(
        through_beta["metadata"]["annotations"], pod_contract.HASH_ANNOTATION
    )
    assert hashes["logs"].hash  # not empty: the comparison below compares something
    assert through_beta == through_alpha


def test_the_sidecarset_hash_annotations_are_the_same() -> None:
    [alpha] = offline.sidecarsets_from_manifests(
        [offline.Manifest(source="a.yaml", index=1, body=V1ALPHA1_TWIN)]
    )
    [beta] = offline.sidecarsets_from_manifests(
        [offline.Manifest(source="b.yaml", index=1, body=V1BETA1_TWIN)]
    )

    assert beta.sidecarset == alpha.sidecarset
    assert beta.raw["metadata"]["annotations"][pod_contract.HASH_ANNOTATION]
    assert beta.raw == alpha.raw


def admission_handler() -> SidecarSetAdmission:
    async def build() -> SidecarSetAdmission:
        sidecarsets: Store[cached_objects.SidecarSetEntry] = Store("sidecarsets")
        revisions: Store[dict[str, Any]] = Store("revisions")
        await sidecarsets.replace({})
        await revisions.replace({})
        return SidecarSetAdmission(
            sidecarsets=sidecarsets, revisions=revisions, settings=OperatorSettings()
        )

    return run(build())


def call(handler: Any, obj: dict[str, Any]) -> admission.AdmissionResponse:
    sent = review(obj, "SidecarSet", "sidecarsets", "")
    response: admission.AdmissionResponse = run(
        handler(admission.decode(json.dumps(sent).encode()))
    )
    return response


def test_defaulting_a_v1beta1_object_patches_it_in_v1beta1() -> None:
    handler = admission_handler()

    alpha = jsonpatch.apply_patch(
        V1ALPHA1_TWIN, list(call(handler.mutate, V1ALPHA1_TWIN).patch or [])
    )
    beta = jsonpatch.apply_patch(V1BETA1_TWIN, list(call(handler.mutate, V1BETA1_TWIN).patch or []))

    assert "namespace" not in beta["spec"]
    assert beta["spec"]["customVersion"] == "v1"
    assert beta["metadata"]["annotations"][pod_contract.HASH_ANNOTATION]
    assert conversion.to_v1alpha1(beta) == alpha


def test_a_v1beta1_object_is_refused_with_the_same_errors() -> None:
    handler = admission_handler()
    broken = copy.deepcopy(V1ALPHA1_TWIN)
    broken["spec"]["containers"][0]["image"] = ""
    broken["spec"]["updateStrategy"] = {"partition": "120%"}

    alpha = call(handler.validate, broken)
    beta = call(handler.validate, conversion.to_v1beta1(broken))

    assert not alpha.allowed
    assert "image" in alpha.message
    assert (beta.allowed, beta.message) == (alpha.allowed, alpha.message)


def test_a_v1beta1_custom_version_of_the_wrong_type_is_refused_clearly() -> None:
    handler = admission_handler()
    wrong = {**V1BETA1_TWIN, "spec": {**V1BETA1_TWIN["spec"], "customVersion": 7}}

    answer = call(handler.validate, wrong)

    assert not answer.allowed
    assert "spec.customVersion must be a string" in answer.message
