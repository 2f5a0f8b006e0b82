"""`sidecarset inject -f` end to end in-process: reading files, output, and one-line errors."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from sidecarset.core import pod_contract
from tests.unit.cli.conftest import Outcome

ROOT = Path(__file__).resolve().parents[3]
LOGGING = ROOT / "examples" / "logging"
NOW = "2025-01-31T12:00:00Z"

Run = Callable[..., Outcome]

SIDECARSET = """\
apiVersion: apps.kruise.io/v1alpha1
kind: SidecarSet
metadata:
  name: logs
spec:
  selector:
    matchLabels:
      inject: logs
  namespaceSelector:
    matchLabels:
      team: shop
  containers:
  - name: agent
    image: agent:1.0
"""

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    inject: logs
spec:
  containers:
  - name: web
    image: nginx:1.25
"""


def containers(doc: dict[str, object]) -> list[str]:
    spec = doc["spec"]
    assert isinstance(spec, dict)
    template = spec.get("template", doc)
    return [c["name"] for c in template["spec"]["containers"]]


def test_the_logging_example_prints_nginx_with_filebeat_and_no_sidecarset(
    sidecarset: Run,
) -> None:
    result = sidecarset("inject", "-f", str(LOGGING), "--now", NOW)
    assert result.code == 0, result.err
    docs = list(yaml.safe_load_all(result.out))
    assert [d["kind"] for d in docs] == ["ConfigMap", "Deployment"]  # file name order
    assert containers(docs[1]) == ["filebeat", "nginx"]
    annotations = docs[1]["spec"]["template"]["metadata"]["annotations"]
    assert annotations[pod_contract.INJECTED_LIST_ANNOTATION] == "filebeat"
    assert result.err == ""


def test_output_is_the_same_on_every_run_with_a_fixed_time(sidecarset: Run) -> None:
    first = sidecarset("inject", "-f", str(LOGGING), "--now", NOW)
    second = sidecarset("inject", "-f", str(LOGGING), "--now", NOW)
    assert first.out == second.out


def test_include_sidecarsets_keeps_document_order(sidecarset: Run) -> None:
    files = [LOGGING / "nginx-deployment.yaml", LOGGING / "filebeat-sidecarset.yaml"]
    args = [a for f in files for a in ("-f", str(f))]
    result = sidecarset("inject", *args, "--include-sidecarsets", "--now", NOW)
    assert [d["kind"] for d in yaml.safe_load_all(result.out)] == ["Deployment", "SidecarSet"]


def test_json_output_of_several_documents_is_a_list(sidecarset: Run) -> None:
    result = sidecarset("inject", "-f", str(LOGGING), "-o", "json", "--now", NOW)
    assert result.code == 0, result.err
    listed = json.loads(result.out)
    assert listed["kind"] == "List"
    assert [d["kind"] for d in listed["items"]] == ["ConfigMap", "Deployment"]


def test_standard_input_and_namespace_labels_feed_the_namespace_selector(
    sidecarset: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "ss.yaml").write_text(SIDECARSET)
    monkeypatch.setattr("sys.stdin", io.StringIO(POD))
    plain = sidecarset("inject", "-f", "-", "-f", str(tmp_path / "ss.yaml"))
    assert containers(yaml.safe_load(plain.out)) == ["web"]
    monkeypatch.setattr("sys.stdin", io.StringIO(POD))
    labelled = sidecarset(
        "inject", "-f", "-", "-f", str(tmp_path), "--namespace-labels", "team=shop"
    )
    assert labelled.code == 0, labelled.err
    assert containers(yaml.safe_load(labelled.out)) == ["agent", "web"]


def test_a_json_file_with_a_list_is_read_item_by_item(sidecarset: Run, tmp_path: Path) -> None:
    items = [yaml.safe_load(POD), yaml.safe_load(SIDECARSET)]
    path = tmp_path / "all.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    result = sidecarset("inject", "-f", str(path), "--namespace-labels", "team=shop")
    assert result.code == 0, result.err
    assert containers(yaml.safe_load(result.out)) == ["agent", "web"]


def test_no_sidecarsets_is_a_warning_not_an_error(sidecarset: Run, tmp_path: Path) -> None:
    (tmp_path / "pod.yaml").write_text(POD)
    result = sidecarset("inject", "-f", str(tmp_path / "pod.yaml"))
    assert result.code == 0
    assert yaml.safe_load(result.out)["kind"] == "Pod"
    assert result.err.startswith("warning: no SidecarSets")


# --- errors: one line on stderr, exit 1 (2 for usage) -----------------------------------------


def one_line_error(result: Outcome, code: int = 1) -> str:
    assert result.code == code, result
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_a_missing_file_is_one_line_and_exit_1(sidecarset: Run) -> None:
    line = one_line_error(sidecarset("inject", "-f", "no/such.yaml"))
    assert line == "error: no/such.yaml: no such file or directory"


def test_bad_yaml_names_the_file_document_and_line(sidecarset: Run, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(POD + "---\nkind: Pod\nmetadata: {name: [\n")
    line = one_line_error(sidecarset("inject", "-f", str(path)))
    assert f"{path}: document 2: not valid YAML (line " in line


def test_a_document_that_is_not_an_object_is_named(sidecarset: Run, tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    line = one_line_error(sidecarset("inject", "-f", str(path)))
    assert "document 1: not a Kubernetes object" in line


def test_an_invalid_sidecarset_names_file_and_document(sidecarset: Run, tmp_path: Path) -> None:
    path = tmp_path / "all.yaml"
    path.write_text(POD + "---\n" + SIDECARSET.replace("inject: logs", "inject: '-bad-'"))
    line = one_line_error(sidecarset("inject", "-f", str(path)))
    assert f"{path}: document 2 (SidecarSet logs): SidecarSet 'logs' is invalid" in line


def test_an_empty_directory_is_an_error(sidecarset: Run, tmp_path: Path) -> None:
    line = one_line_error(sidecarset("inject", "-f", str(tmp_path)))
    assert "no .yaml, .yml or .json files" in line


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["inject"], id="no-file"),
        pytest.param(["inject", "-f", str(LOGGING), "-o", "table"], id="table-output"),
        pytest.param(["inject", "-f", str(LOGGING), "--namespace-labels", "x"], id="bad-labels"),
        pytest.param(["inject", "-f", str(LOGGING), "--now", "yesterday"], id="bad-time"),
        pytest.param(
            ["inject", "-f", str(LOGGING), "--from-cluster", "--namespace-labels", "a=b"],
            id="labels-with-cluster",
        ),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(sidecarset: Run, args: list[str]) -> None:
    line = one_line_error(sidecarset(*args), code=2)
    assert line.endswith("(see --help)")


def test_help_shows_examples(sidecarset: Run) -> None:
    result = sidecarset("inject", "--help")
    assert result.code == 0
    assert "Examples:" in result.out
    assert "sidecarset inject -f examples/logging/" in result.out
