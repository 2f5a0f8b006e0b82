"""The admission handlers on generated input: never an exception (which the server would turn
into a 500), every refusal a 4xx with a message, every patch applies to the object it was made
for and injects no container twice."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonpatch
import yaml
from hypothesis import given
from hypothesis import strategies as st

from sidecarset.app import cached_objects
from sidecarset.app.inject_webhook import PodInjector
from sidecarset.app.settings import OperatorSettings
from sidecarset.app.sidecarset_webhook import SidecarSetAdmission
from sidecarset.core import defaults
from sidecarset.shell import admission
from sidecarset.shell.store import Store
from tests.fixtures.admission_reviews import (
    POD,
    SIDECARSET_SPEC_CHANGES,
    maybe,
    review,
    unique_names,
)
from tests.unit.private_loop import run

ARTICLE = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "fixtures" / "filebeat-sidecarset.yaml").read_text()
)


def live_sidecarsets() -> dict[str, dict[str, Any]]:
    """What the stores hold: the article's Filebeat SidecarSet and a hot-upgrade one, both
    selecting the generated pods' `fuzz: "true"`."""
    filebeat = copy.deepcopy(ARTICLE)
    filebeat["spec"]["selector"] = {"matchLabels": {"fuzz": "true"}}
    hot: dict[str, Any] = {
        "metadata": {"name": "hot"},
        "spec": {
            "selector": {"matchLabels": {"fuzz": "true"}},
            "containers": [
                {
                    "name": "proxy",
                    "image": "proxy:v1",
                    "upgradeStrategy": {
                        "upgradeType": "HotUpgrade",
                        "hotUpgradeEmptyImage": "proxy:empty",
                    },
                }
            ],
        },
    }
    return {s["metadata"]["name"]: defaults.apply_defaults(s) for s in (filebeat, hot)}


async def handlers() -> tuple[PodInjector, SidecarSetAdmission]:
    sidecarsets: Store[cached_objects.SidecarSetEntry] = Store("sidecarsets")
    namespaces: Store[cached_objects.NamespaceView] = Store("namespaces")
    revisions: Store[dict[str, Any]] = Store("revisions")
    await sidecarsets.replace({k: cached_objects.entry(v) for k, v in live_sidecarsets().items()})
    await namespaces.replace({})
    await revisions.replace({})
    injector = PodInjector(
        sidecarsets=sidecarsets, namespaces=namespaces, revisions=revisions, client=None
    )
    validator = SidecarSetAdmission(
        sidecarsets=sidecarsets, revisions=revisions, settings=OperatorSettings()
    )
    return injector, validator


def answer(handler: admission.Handler, sent: dict[str, Any]) -> admission.AdmissionResponse:
    request = admission.decode(json.dumps(sent).encode())
    response = run(handler(request))
    if not response.allowed:
        assert response.code is not None
        assert 400 <= response.code < 500, response
        assert response.message.strip(), response
    if response.patch:
        patched = jsonpatch.apply_patch(sent["request"]["object"], list(response.patch))
        if sent["request"]["resource"]["resource"] == "pods" and unique_names(
            sent["request"]["object"]
        ):
            assert unique_names(patched), "a container was injected twice"
    return response


@given(pod=POD)
def test_a_generated_pod_is_answered_never_raised_on(pod: dict[str, Any]) -> None:
    injector, _ = run(handlers())
    answer(injector.handle, review(pod, "Pod", "pods", "default"))


BASE = live_sidecarsets()["filebeat-sidecarset"]


@given(
    changes=SIDECARSET_SPEC_CHANGES,
    metadata=maybe(st.just(BASE["metadata"])),
    update=st.booleans(),
    version=st.sampled_from(["apps.kruise.io/v1alpha1", "apps.kruise.io/v1beta1"]),
)
def test_a_generated_sidecarset_is_answered_never_raised_on(
    changes: dict[str, Any], metadata: Any, update: bool, version: str
) -> None:
    _, validator = run(handlers())
    obj = {**BASE, "apiVersion": version, "metadata": metadata, "spec": {**BASE["spec"], **changes}}
    extra = {"operation": "UPDATE", "oldObject": BASE} if update else {}
    for handler in (validator.mutate, validator.validate):
        answer(handler, review(obj, "SidecarSet", "sidecarsets", "", **extra))
