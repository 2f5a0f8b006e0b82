"""The peer comparison's operators: Kruise's webhook configurations get the names its release
gives them, and a missing kruise-manager is one clear sentence pointing at the build."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from bench import harness, operators


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


@pytest.mark.parametrize(("text", "split"), [(None, False), ("0", False), ("1", True)])
def test_our_operator_runs_as_one_or_two_processes_as_asked(
    monkeypatch: pytest.MonkeyPatch, text: str | None, split: bool
) -> None:
    if text is None:
        monkeypatch.delenv(operators.SPLIT_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(operators.SPLIT_VARIABLE, text)
    ours = operators.operator_by_name("sidecarset")
    assert isinstance(ours, operators.Sidecarset)
    assert ours.split is split
    assert (ours.processes() != "one process") is split


def test_a_bad_split_setting_is_one_clear_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(operators.SPLIT_VARIABLE, "yes")
    with pytest.raises(ValueError, match=r"SIDECARSET_PEER_SPLIT='yes': expected 0 .* or 1"):
        operators.operator_by_name("sidecarset")


def test_readings_of_several_processes_are_summed() -> None:
    """A split operator's CPU and memory are its two processes' together."""
    me = os.getpid()
    one, two = harness.memory(me), harness.memory([me, me])
    assert two["VmHWM"] == pytest.approx(2 * one["VmHWM"], rel=0.05)
    assert harness.cpu_seconds([me, me]) >= 2 * harness.cpu_seconds(me) - 0.05
