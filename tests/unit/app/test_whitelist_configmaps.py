"""The validating webhook's patchPodMetadata whitelist: read from Kruise's `kruise-configuration`
(and our `sidecarset-configuration`) as held by the informers, matched as Kruise matches."""

from __future__ import annotations

import json
from typing import Any

from sidecarset.app.cached_objects import SidecarSetEntry
from sidecarset.app.settings import OperatorSettings
from sidecarset.app.sidecarset_webhook import SidecarSetAdmission
from sidecarset.shell import admission
from sidecarset.shell.store import Store
from tests.fixtures.admission_reviews import review
from tests.unit.private_loop import run

NAMESPACE = "sidecarset-system"

# A Kruise administrator's whitelist as Kruise documents it: an anchored prefix rule, which
# Kruise applies as a search (regexp.MatchString).
KRUISE_WHITELIST = {
    "rules": [
        {
            "selector": {"matchLabels": {"team": "logging"}},
            "allowedAnnotationKeyExprs": [r"^example\.com/"],
        }
    ]
}


def configmap(name: str, whitelist: object) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {"SidecarSet_PatchPodMetadata_WhiteList": json.dumps(whitelist)},
    }


def sidecarset(key: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "SidecarSet",
        "metadata": {"name": "logs", "labels": {"team": "logging"}},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "containers": [{"name": "filebeat", "image": "filebeat:1"}],
            "patchPodMetadata": [{"annotations": {key: "on"}, "patchPolicy": "Overwrite"}],
        },
    }


def validate(key: str, *configmaps: dict[str, Any], **settings: Any) -> admission.AdmissionResponse:
    async def go() -> admission.AdmissionResponse:
        stores = []
        for cm in configmaps:
            store: Store[dict[str, Any]] = Store("configmaps")
            await store.replace({f"{NAMESPACE}/{cm['metadata']['name']}": cm})
            stores.append(store)
        sidecarsets: Store[SidecarSetEntry] = Store("sidecarsets")
        await sidecarsets.replace({})
        revisions: Store[dict[str, Any]] = Store("revisions")
        await revisions.replace({})
        handler = SidecarSetAdmission(
            sidecarsets=sidecarsets,
            revisions=revisions,
            configmaps=stores,
            settings=OperatorSettings(namespace=NAMESPACE, **settings),
        )
        sent = review(sidecarset(key), "SidecarSet", "sidecarsets", "")
        return await handler.validate(admission.decode(json.dumps(sent).encode()))

    return run(go())


def test_a_kruise_configuration_whitelist_admits_what_kruise_admits() -> None:
    response = validate("example.com/log", configmap("kruise-configuration", KRUISE_WHITELIST))

    assert response.allowed, response.message


def test_a_key_outside_the_kruise_whitelist_is_refused_naming_kruise_configuration() -> None:
    response = validate("other.io/log", configmap("kruise-configuration", KRUISE_WHITELIST))

    assert not response.allowed
    assert f"ConfigMap {NAMESPACE}/kruise-configuration" in response.message, response.message
    assert "sidecarset-configuration" not in response.message


def test_our_own_configmap_is_still_read_and_named() -> None:
    response = validate("other.io/log", configmap("sidecarset-configuration", KRUISE_WHITELIST))

    assert not response.allowed
    assert f"ConfigMap {NAMESPACE}/sidecarset-configuration" in response.message
    assert validate(
        "example.com/x", configmap("sidecarset-configuration", KRUISE_WHITELIST)
    ).allowed


def test_rules_from_both_configmaps_apply() -> None:
    ours = {"rules": [{"allowedAnnotationKeyExprs": [r"^ours\.io/"]}]}
    both = (
        configmap("kruise-configuration", KRUISE_WHITELIST),
        configmap("sidecarset-configuration", ours),
    )

    assert validate("example.com/log", *both).allowed
    assert validate("ours.io/log", *both).allowed


def test_without_any_whitelist_the_message_names_both_configmaps_looked_for() -> None:
    response = validate("example.com/log")

    assert not response.allowed
    assert f"{NAMESPACE}/kruise-configuration" in response.message
    assert f"{NAMESPACE}/sidecarset-configuration" in response.message


def test_the_strict_mode_is_opt_in() -> None:
    kruise = configmap("kruise-configuration", KRUISE_WHITELIST)

    response = validate("example.com/log", kruise, whitelist_full_match=True)

    assert not response.allowed
    assert "whole key" in response.message


def test_an_unreadable_whitelist_names_its_configmap() -> None:
    broken = configmap("kruise-configuration", {})
    broken["data"]["SidecarSet_PatchPodMetadata_WhiteList"] = "{not json"

    response = validate("example.com/log", broken)

    assert not response.allowed
    assert f"ConfigMap {NAMESPACE}/kruise-configuration key" in response.message
