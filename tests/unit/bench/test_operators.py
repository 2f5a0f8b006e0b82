"""The peer comparison's operators: Kruise's webhook configurations get the names its release
gives them, and a missing kruise-manager is one clear sentence pointing at the build."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bench import operators


def test_webhook_configurations_are_prefixed_and_the_service_dropped() -> None:
    docs: list[Any] = [
        {
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "mutating-webhook-configuration"},
        },
        {
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "validating-webhook-configuration", "namespace": "kruise-system"},
        },
        {"kind": "Service", "metadata": {"name": "webhook-service"}},
        None,
    ]
    got = operators.kruise_webhook_configurations(docs)
    assert [d["metadata"]["name"] for d in got] == [
        operators.KRUISE_MUTATING,
        "kruise-validating-webhook-configuration",
    ]
    assert all("namespace" not in d["metadata"] for d in got)
    assert docs[1]["metadata"]["namespace"] == "kruise-system"  # input left alone


def test_a_missing_kruise_manager_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(operators.PeerMissing) as err:
        operators.Kruise(tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert "make bench PEER=kruise" in message
    assert str(tmp_path / operators.KRUISE) in message


def test_our_default_limit_is_the_equal_setting() -> None:
    assert operators.Sidecarset().limits() == {"equal": operators.EQUAL}
    assert operators.EQUAL == operators.OUR_DEFAULT
    assert operators.Limit(30, 50) == operators.KRUISE_DEFAULT
