"""The bundled CRD serves v1alpha1 and v1beta1 (stored) and converts through the operator."""

from __future__ import annotations

import base64
from typing import Any

import yaml

from sidecarset.app import run, webhooks_config

CRD = yaml.safe_load(run.CRD_PATH.read_text())


def version(name: str) -> dict[str, Any]:
    [found] = [v for v in CRD["spec"]["versions"] if v["name"] == name]
    assert isinstance(found, dict)
    return found


def spec_properties(name: str) -> dict[str, Any]:
    props: dict[str, Any] = version(name)["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]
    return props


def test_both_versions_are_served_and_v1beta1_is_stored_as_kruise_1_9_does() -> None:
    assert [(v["name"], v["served"], v["storage"]) for v in CRD["spec"]["versions"]] == [
        ("v1alpha1", True, False),
        ("v1beta1", True, True),
    ]


def test_the_schemas_differ_only_in_namespace_and_custom_version() -> None:
    alpha, beta = spec_properties("v1alpha1"), spec_properties("v1beta1")

    assert set(alpha) - set(beta) == {"namespace"}
    assert set(beta) - set(alpha) == {"customVersion"}
    assert all(alpha[k] == beta[k] for k in set(alpha) & set(beta))
    status = [version(v)["schema"]["openAPIV3Schema"]["properties"]["status"] for v in VERSIONS]
    assert status[0] == status[1]
    assert "conditions" in status[1]["properties"]  # ours survive a conversion
    assert (
        version("v1alpha1")["additionalPrinterColumns"]
        == (version("v1beta1")["additionalPrinterColumns"])
    )


VERSIONS = ("v1alpha1", "v1beta1")


def test_conversion_goes_to_the_operators_webhook_path() -> None:
    conversion = CRD["spec"]["conversion"]
    assert conversion["strategy"] == "Webhook"
    assert conversion["webhook"]["conversionReviewVersions"] == ["v1"]
    service = conversion["webhook"]["clientConfig"]["service"]
    assert service["path"] == webhooks_config.SIDECARSET_CONVERT_PATH


def test_the_conversion_patch_replaces_a_service_with_a_url_and_back() -> None:
    local = webhooks_config.Endpoint(ca_bundle=b"CA", url_base="https://127.0.0.1:9443")
    in_cluster = webhooks_config.Endpoint(
        ca_bundle=b"CA", service_namespace="ops", service_name="sidecarset-webhook"
    )

    by_url = webhooks_config.crd_conversion(local)["spec"]["conversion"]["webhook"]
    by_service = webhooks_config.crd_conversion(in_cluster)["spec"]["conversion"]["webhook"]

    assert by_url["clientConfig"] == {
        "caBundle": base64.b64encode(b"CA").decode(),
        "url": "https://127.0.0.1:9443" + webhooks_config.SIDECARSET_CONVERT_PATH,
        "service": None,  # a merge patch: removes the chart's placeholder
    }
    assert by_service["clientConfig"]["url"] is None
    assert by_service["clientConfig"]["service"] == {
        "namespace": "ops",
        "name": "sidecarset-webhook",
        "path": webhooks_config.SIDECARSET_CONVERT_PATH,
        "port": 443,
    }


def test_sidecarset_admission_covers_both_versions() -> None:
    endpoint = webhooks_config.Endpoint(ca_bundle=b"CA", url_base="https://127.0.0.1:1")
    mutating = webhooks_config.mutating_configuration(endpoint, operator_namespace="ops")
    validating = webhooks_config.validating_configuration(endpoint)
    rules = [
        rule
        for config in (mutating, validating)
        for hook in config["webhooks"]
        for rule in hook["rules"]
        if rule["resources"] == ["sidecarsets"]
    ]
    assert len(rules) == 2
    assert all(rule["apiVersions"] == ["v1alpha1", "v1beta1"] for rule in rules)
