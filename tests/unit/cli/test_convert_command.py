"""`sidecarset convert -f`: SidecarSets in the other version, everything else untouched."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from sidecarset.core import conversion, pod_contract
from tests.unit.cli.conftest import Outcome

ROOT = Path(__file__).resolve().parents[3]
Run = Callable[..., Outcome]

MIXED = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: filebeat-config
data:
  filebeat.yml: |
    a: 1
---
apiVersion: apps.kruise.io/v1alpha1
kind: SidecarSet
metadata:
  name: logs
  labels:
    apps.kruise.io/sidecarset-custom-version: v3
spec:
  namespace: shop
  selector:
    matchLabels:
      inject: logs
  containers:
  - name: agent
    image: agent:1.0
"""


def write(tmp_path: Path, text: str, name: str = "in.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_v1alpha1_sidecarset_becomes_v1beta1_and_other_kinds_pass_through(
    sidecarset: Run, tmp_path: Path
) -> None:
    result = sidecarset("convert", "-f", write(tmp_path, MIXED))

    assert result.code == 0, result.err
    config, converted = yaml.safe_load_all(result.out)
    assert config == next(yaml.safe_load_all(MIXED))
    assert converted["apiVersion"] == conversion.V1BETA1
    assert converted["spec"]["namespaceSelector"] == {
        "matchLabels": {pod_contract.NAMESPACE_NAME_LABEL: "shop"}
    }
    assert converted["spec"]["customVersion"] == "v3"
    assert "namespace" not in converted["spec"]
    assert "labels" not in converted["metadata"]
    assert result.err == ""


def test_converting_twice_gives_the_input_back(sidecarset: Run, tmp_path: Path) -> None:
    once = sidecarset("convert", "-f", write(tmp_path, MIXED))
    twice = sidecarset("convert", "-f", write(tmp_path, once.out, "once.yaml"))

    assert twice.code == 0, twice.err
    assert list(yaml.safe_load_all(twice.out)) == list(yaml.safe_load_all(MIXED))


def test_to_converts_only_what_is_not_there_yet(sidecarset: Run, tmp_path: Path) -> None:
    beta = sidecarset("convert", "-f", write(tmp_path, MIXED)).out
    both = write(tmp_path, MIXED + beta.replace("name: logs", "name: other"), "both.yaml")

    result = sidecarset("convert", "-f", both, "--to", "v1beta1", "-o", "json")

    assert result.code == 0, result.err
    items = json.loads(result.out)["items"]
    assert [i["apiVersion"] for i in items if i["kind"] == "SidecarSet"] == [
        conversion.V1BETA1,
        conversion.V1BETA1,
    ]


def test_the_article_reads_from_stdin(sidecarset: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    article = (ROOT / "tests" / "fixtures" / "filebeat-sidecarset.yaml").read_text()
    monkeypatch.setattr("sys.stdin", io.StringIO(article))

    result = sidecarset("convert", "-f", "-", "--to", "v1beta1")

    assert result.code == 0, result.err
    [doc] = yaml.safe_load_all(result.out)
    assert doc["apiVersion"] == conversion.V1BETA1
    assert doc["spec"] == yaml.safe_load(article)["spec"]


def test_an_unknown_version_is_one_clear_line(sidecarset: Run, tmp_path: Path) -> None:
    text = MIXED.replace("apps.kruise.io/v1alpha1", "apps.kruise.io/v2")

    result = sidecarset("convert", "-f", write(tmp_path, text), "--to", "v1beta1")

    assert result.code != 0
    assert result.out == ""
    assert result.err.startswith("error: ")
    assert "document 2 (SidecarSet logs)" in result.err
    assert "unknown SidecarSet apiVersion 'apps.kruise.io/v2'" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_a_bad_target_version_is_refused(sidecarset: Run, tmp_path: Path) -> None:
    result = sidecarset("convert", "-f", write(tmp_path, MIXED), "--to", "v2")

    assert result.code == 2
    assert "v2" in result.err


def test_no_sidecarset_warns_and_prints_the_input(sidecarset: Run, tmp_path: Path) -> None:
    result = sidecarset("convert", "-f", write(tmp_path, MIXED.split("---")[0]))

    assert result.code == 0
    assert "no SidecarSets in the input" in result.err
    assert yaml.safe_load(result.out)["kind"] == "ConfigMap"
