"""The real node's configuration files and its preflight refusals (no root or kernel needed)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import yaml

from sidecarset.devcluster import nodeconfig, realnode
from sidecarset.devcluster.binaries import Binaries
from sidecarset.devcluster.controlplane import ControlPlane
from sidecarset.devcluster.nodeconfig import NodeLayout

LONG = Path("/tmp/pytest-of-root/pytest-123/test_a_rather_long_test_name_for_a_cluster0/cluster")


def layout(root: Path = LONG) -> NodeLayout:
    return NodeLayout(root=root / "node", binaries=Path("/opt/testbin/node"))


def test_host_wide_names_fit_the_kernels_limits_and_differ_per_cluster() -> None:
    one, two = layout(), layout(Path("/srv/other"))
    assert len(one.bridge) <= 15
    assert len(str(one.socket) + ".ttrpc") < 104  # containerd's limit for a unix socket path
    assert one.bridge != two.bridge
    assert one.cgroup_root != two.cgroup_root
    assert 1 <= one.subnet_octet <= 250
    assert layout().tag == one.tag  # stable: `down` finds what `up` made


def test_containerd_config_is_valid_toml_with_the_settings_this_machine_needs() -> None:
    config = tomllib.loads(nodeconfig.containerd_config(layout()))
    assert config["version"] == 3
    runtime = config["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True
    assert runtime["netns_mounts_under_state_dir"] is True
    runc = runtime["containerd"]["runtimes"]["runc"]["options"]
    assert runc["BinaryName"] == "/opt/testbin/node/runc"
    assert runc["SystemdCgroup"] is False
    assert config["grpc"]["address"] == str(layout().socket)
    assert "io.containerd.nri.v1.nri" in config["disabled_plugins"]
    images = config["plugins"]["io.containerd.cri.v1.images"]
    assert images["pinned_images"]["sandbox"] == nodeconfig.PAUSE_IMAGE


def test_the_pod_network_has_no_route_out_of_the_machine() -> None:
    network = json.loads(nodeconfig.cni_network(layout()))
    [bridge, portmap] = network["plugins"]
    assert bridge["ipMasq"] is False
    assert bridge["isDefaultGateway"] is False
    assert bridge["bridge"] == layout().bridge
    assert bridge["ipam"]["ranges"][0][0]["subnet"] == layout().pod_subnet
    assert portmap["type"] == "portmap"


def test_the_kubelet_listens_on_loopback_with_cgroupfs_on_cgroup_v1() -> None:
    config = yaml.safe_load(nodeconfig.kubelet_config(layout(), port=1234, healthz_port=1235))
    assert config["address"] == "127.0.0.1"
    assert config["healthzBindAddress"] == "127.0.0.1"
    assert config["readOnlyPort"] == 0
    assert (config["port"], config["healthzPort"]) == (1234, 1235)
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["failCgroupV1"] is False
    assert config["resolvConf"] == ""
    assert config["containerRuntimeEndpoint"] == f"unix://{layout().socket}"


def node(tmp_path: Path) -> realnode.RealNode:
    return realnode.RealNode(ControlPlane(tmp_path / "c"), Binaries(tmp_path / "testbin"))


def test_preflight_refuses_without_root_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(realnode.RealNodeUnavailable, match="needs root") as err:
        node(tmp_path).preflight()
    assert "\n" not in str(err.value)


def test_preflight_refuses_off_linux(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.platform", "darwin")
    with pytest.raises(realnode.RealNodeUnavailable, match="needs Linux"):
        node(tmp_path).preflight()


def test_preflight_names_the_missing_binaries_and_the_command_that_builds_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    with pytest.raises(realnode.RealNodeUnavailable) as err:
        node(tmp_path).preflight()
    assert "kubelet, containerd" in str(err.value)
    assert "make testbin" in str(err.value)
