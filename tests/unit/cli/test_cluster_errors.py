"""Cluster commands fail with one line naming what was attempted and what to check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sidecarset.cli.connection import Cluster
from sidecarset.shell.kube import errors
from tests.unit.cli.conftest import Outcome
from tests.unit.cli.test_inject_command import one_line_error

Run = Callable[..., Outcome]

# Port 1 on loopback: nothing listens, the connection is refused at once (no network needed).
UNREACHABLE = """\
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
users:
- name: u
  user: {token: t}
"""

COMMANDS = [
    pytest.param(["status"], id="status"),
    pytest.param(["status", "filebeat"], id="status-name"),
    pytest.param(["plan", "filebeat"], id="plan"),
    pytest.param(["pause", "filebeat"], id="pause"),
    pytest.param(["resume", "filebeat"], id="resume"),
    pytest.param(["history", "filebeat"], id="history"),
    pytest.param(["rollback", "filebeat"], id="rollback"),
]


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    path = tmp_path / "kubeconfig"
    path.write_text(UNREACHABLE)
    return path


@pytest.mark.parametrize("args", COMMANDS)
def test_an_unreachable_api_server_is_one_line(
    sidecarset: Run, kubeconfig: Path, args: list[str]
) -> None:
    line = one_line_error(sidecarset(*args, "--kubeconfig", str(kubeconfig)))
    assert "the API server at https://127.0.0.1:1 is unreachable" in line
    assert line.endswith("is the cluster running, and are --kubeconfig and --context right?")


def test_global_options_before_the_command_work_too(sidecarset: Run, kubeconfig: Path) -> None:
    line = one_line_error(sidecarset("--kubeconfig", str(kubeconfig), "status"))
    assert "cannot list SidecarSets" in line


def test_a_missing_kubeconfig_is_one_line(sidecarset: Run, kubeconfig: Path) -> None:
    line = one_line_error(sidecarset("status", "--kubeconfig", str(kubeconfig) + ".missing"))
    assert line == (
        f"error: kubeconfig {kubeconfig}.missing not found; pass --kubeconfig or set KUBECONFIG"
    )


def test_an_unknown_context_is_one_line(sidecarset: Run, kubeconfig: Path) -> None:
    line = one_line_error(
        sidecarset("status", "--kubeconfig", str(kubeconfig), "--context", "nope")
    )
    assert line.startswith(f"error: cannot load kubeconfig {kubeconfig}: ")
    assert "nope" in line


def test_the_inject_from_cluster_path_fails_the_same_way(sidecarset: Run, kubeconfig: Path) -> None:
    examples = Path(__file__).resolve().parents[3] / "examples" / "logging"
    line = one_line_error(
        sidecarset("inject", "-f", str(examples), "--from-cluster", "--kubeconfig", str(kubeconfig))
    )
    assert "unreachable" in line


class _Client:
    host = "https://api.example:6443"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(
            errors.Forbidden(403, 'pods is forbidden: User "dev" cannot list pods'),
            'cannot list pods: forbidden: pods is forbidden: User "dev" cannot list pods',
            id="forbidden",
        ),
        pytest.param(
            errors.Unauthorized(401, "Unauthorized"),
            "cannot list pods: unauthorized (Unauthorized); check the credentials of your "
            "kubeconfig context",
            id="unauthorized",
        ),
        pytest.param(
            errors.Unavailable(503, "etcdserver: leader changed"),
            "cannot list pods: 503: etcdserver: leader changed",
            id="server-error",
        ),
    ],
)
def test_api_errors_read_as_what_failed_and_why(error: errors.ApiError, expected: str) -> None:
    cluster = Cluster(_Client())  # type: ignore[arg-type]
    assert str(cluster.failure("list pods", error)) == expected


@pytest.mark.parametrize("args", COMMANDS)
def test_every_cluster_command_has_examples_in_its_help(sidecarset: Run, args: list[str]) -> None:
    result = sidecarset(args[0], "--help")
    assert result.code == 0
    assert "Examples:" in result.out
