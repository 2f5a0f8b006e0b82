"""`sidecarset cluster up --real-node` and `down`, as a user runs them, on a cluster of its own.

`down` must leave nothing of the node on the host: no process (kubelet, containerd, shims,
containers), no mount (root filesystems, network namespaces, volumes), no bridge or veth, no
cgroup. Checked from the kernel's own tables after a pod with volumes ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sidecarset.devcluster.binaries import Binaries
from sidecarset.devcluster.controlplane import ControlPlane
from sidecarset.devcluster.nodehost import leftovers
from sidecarset.devcluster.realnode import RealNode
from tests.integration import realnode as rn

pytestmark = pytest.mark.realnode
CLI = [sys.executable, "-m", "sidecarset", "cluster"]


def cli(*args: str, workdir: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*CLI, *args, "--dir", str(workdir)], capture_output=True, text=True, timeout=300
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"cluster {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def kubectl(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(
        ["kubectl", *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def cluster_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    for line in cli("env", workdir=workdir).stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value.strip("'")
    return env


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path / "cluster"


def test_up_real_node_runs_a_pod_and_down_leaves_nothing_behind(workdir: Path) -> None:
    try:
        up = cli("up", "--real-node", "--no-operator", workdir=workdir)
        assert "cluster ready" in up.stderr
        env = cluster_env(workdir)
        assert env["CONTAINER_RUNTIME_ENDPOINT"].startswith("unix://")
        status = cli("status", workdir=workdir).stdout
        assert "node-kubelet" in status
        assert "node-containerd" in status
        assert "real node real-node-0" in status
        nodes = json.loads(kubectl(env, "get", "nodes", "-o", "json"))["items"]
        assert [n["metadata"]["name"] for n in nodes] == ["real-node-0"]

        pod = rn.pod("vols", {"app": "vols"}, [rn.agent("app")])
        pod["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
        pod["spec"]["containers"][0]["volumeMounts"] = [
            {"name": "scratch", "mountPath": "/scratch"}
        ]
        kubectl(env, "create", "-f", "-", stdin=json.dumps(pod))
        kubectl(env, "wait", "--for=condition=Ready", "pod/vols", "--timeout=120s")
        # logs and exec go through the apiserver to the kubelet on 127.0.0.1
        assert "testagent" in kubectl(env, "logs", "vols")
        crictl = subprocess.run(
            ["crictl", "ps", "-q"], env=env, capture_output=True, text=True, timeout=30
        )
        assert len(crictl.stdout.split()) == 1, crictl.stderr

        node = RealNode(ControlPlane(workdir), Binaries.locate())
        during = leftovers(node.layout)
        assert during.processes
        assert during.mounts
        assert during.interfaces
        assert during.cgroups
    finally:
        down = cli("down", workdir=workdir, check=False)
    assert down.returncode == 0, down.stderr
    node = RealNode(ControlPlane(workdir), Binaries.locate())
    time.sleep(0.5)
    left = leftovers(node.layout)
    assert left.empty(), left.describe()
    assert not Path(f"/sys/class/net/{node.layout.bridge}").exists()


def test_up_real_node_refuses_in_one_line_without_its_binaries(workdir: Path) -> None:
    env = {**os.environ, "SIDECARSET_TESTBIN": str(workdir.parent / "empty-testbin")}
    empty = Path(env["SIDECARSET_TESTBIN"])
    empty.mkdir(parents=True)
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"):
        (empty / name).symlink_to(Binaries.locate().path(name))
    proc = subprocess.run(
        [*CLI, "up", "--real-node", "--dir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "--real-node: real-node binaries missing" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (workdir / "state.json").exists() or not json.loads(
        (workdir / "state.json").read_text()
    ).get("processes")
