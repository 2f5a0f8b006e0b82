"""The real node's configuration files: containerd, the CNI network and the kubelet.

Everything a real node writes lives under one folder of the cluster directory (its own sockets,
state, logs, IP allocations); the only host-wide objects are the ones a node cannot avoid (a
bridge, network namespaces, cgroups, shim sockets), and each carries a name derived from that
folder so two clusters on one machine do not collide and `down` knows exactly what is its own.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

NODE_NAME = "real-node-0"
NODE_LABEL = "sidecarset.dev/real-node"  # also the key of its taint beside simulated nodes
REAL_NODE_TOLERATION = {"key": NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"


@dataclass(frozen=True)
class NodeLayout:
    """Where one real node keeps everything, and the host-wide names it owns."""

    root: Path  # <cluster dir>/node
    binaries: Path  # .testbin/node

    @property
    def tag(self) -> str:
        """A short, stable name for this node's host-wide objects (bridge, cgroup root)."""
        return hashlib.sha256(str(self.root).encode()).hexdigest()[:6]

    @property
    def bridge(self) -> str:
        return f"scs{self.tag}"  # interface names are limited to 15 characters

    @property
    def subnet_octet(self) -> int:
        """The third octet of this node's pod subnet 10.244.N.0/24 (N in 1..250)."""
        return 1 + int(self.tag, 16) % 250

    @property
    def pod_subnet(self) -> str:
        return f"10.244.{self.subnet_octet}.0/24"

    @property
    def gateway(self) -> str:
        """The bridge's own address: the host as pods see it (where the API relay listens)."""
        return f"10.244.{self.subnet_octet}.1"

    @property
    def cgroup_root(self) -> str:
        """Pods' cgroups live under this parent, created in every cgroup v1 hierarchy."""
        return f"/sidecarset-{self.tag}"

    # containerd
    @property
    def containerd_dir(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_config(self) -> Path:
        return self.containerd_dir / "config.toml"

    @property
    def socket_dir(self) -> Path:
        """containerd's sockets: a short path, as a unix socket's path is limited to 108
        bytes and a cluster folder (a pytest temporary folder, say) can be long."""
        return Path(f"/run/sidecarset-{self.tag}")

    @property
    def socket(self) -> Path:
        return self.socket_dir / "containerd.sock"

    @property
    def runc_root(self) -> Path:
        return self.containerd_dir / "runc"

    # CNI
    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_data_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    # kubelet
    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_root(self) -> Path:
        """The kubelet's --root-dir: a short symbolic link to `kubelet_dir`, because the kubelet
        binds unix sockets inside it (pod-resources, plugins) and a long cluster folder would
        exceed the 108-byte limit. Files and mounts still land in `kubelet_dir`."""
        return self.socket_dir / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet-config.yaml"

    @property
    def pod_logs_dir(self) -> Path:
        return self.root / "pod-logs"

    def all_dirs(self) -> list[Path]:
        return [
            self.socket_dir,
            self.containerd_dir / "root",
            self.containerd_dir / "state",
            self.containerd_dir / "opt",
            self.runc_root,
            self.cni_conf_dir,
            self.cni_data_dir,
            self.kubelet_dir,
            self.kubelet_dir / "pki",
            self.pod_logs_dir,
        ]


def node_gateway(cluster_dir: Path) -> str:
    """The pod bridge's address of the real node of the cluster kept in `cluster_dir`.

    Known before any node exists, so the apiserver's serving certificate can name it: pods
    reach the apiserver there, through the relay (see realnode.py).
    """
    return NodeLayout(root=cluster_dir / "node", binaries=cluster_dir).gateway


def containerd_config(layout: NodeLayout) -> str:
    """containerd 2.x (config version 3): CRI only, overlayfs, runc from the testbin.

    `restrict_oom_score_adj`: this VM lacks CAP_SYS_RESOURCE, so a negative oom_score_adj (the
    kubelet asks for one for Guaranteed pods) would make runc fail with an opaque pipe error.
    NRI is off: it would open a socket under /var/run. Network namespaces are mounted under the
    node's own state folder, not /var/run/netns.
    """
    c = layout.containerd_dir
    runc_options = {
        "BinaryName": str(layout.binaries / "runc"),
        "Root": str(layout.runc_root),
        "SystemdCgroup": False,
    }
    lines = [
        "version = 3",
        f"root = {json.dumps(str(c / 'root'))}",
        f"state = {json.dumps(str(c / 'state'))}",
        "disabled_plugins = ["
        + ", ".join(
            json.dumps(p)
            for p in (
                "io.containerd.nri.v1.nri",
                "io.containerd.snapshotter.v1.btrfs",
                "io.containerd.snapshotter.v1.zfs",
                "io.containerd.snapshotter.v1.devmapper",
                "io.containerd.snapshotter.v1.blockfile",
                "io.containerd.snapshotter.v1.erofs",
                "io.containerd.tracing.processor.v1.otlp",
                "io.containerd.internal.v1.tracing",
            )
        )
        + "]",
        "",
        "[grpc]",
        f"  address = {json.dumps(str(layout.socket))}",
        "",
        "[ttrpc]",
        f"  address = {json.dumps(str(layout.socket) + '.ttrpc')}",
        "",
        '[plugins."io.containerd.internal.v1.opt"]',
        f"  path = {json.dumps(str(c / 'opt'))}",
        "",
        '[plugins."io.containerd.cri.v1.images"]',
        '  snapshotter = "overlayfs"',
        '  [plugins."io.containerd.cri.v1.images".pinned_images]',
        f"    sandbox = {json.dumps(PAUSE_IMAGE)}",
        "",
        '[plugins."io.containerd.cri.v1.runtime"]',
        "  enable_selinux = false",
        "  disable_apparmor = true",
        "  restrict_oom_score_adj = true",
        "  netns_mounts_under_state_dir = true",
        '  [plugins."io.containerd.cri.v1.runtime".containerd]',
        '    default_runtime_name = "runc"',
        '    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]',
        '      runtime_type = "io.containerd.runc.v2"',
        '      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]',
        *[f"        {k} = {json.dumps(v)}" for k, v in runc_options.items()],
        '  [plugins."io.containerd.cri.v1.runtime".cni]',
        f"    bin_dirs = [{json.dumps(str(layout.binaries / 'cni'))}]",
        f"    conf_dir = {json.dumps(str(layout.cni_conf_dir))}",
        "    max_conf_num = 1",
        "",
        '[plugins."io.containerd.grpc.v1.cri"]',
        "  disable_tcp_service = true",
        '  stream_server_address = "127.0.0.1"',
        '  stream_server_port = "0"',
        "",
    ]
    return "\n".join(lines)


def cni_network(layout: NodeLayout) -> str:
    """A bridge network for pods, reachable from the host, with no route out and no NAT.

    `ipMasq: false` and no default route inside pods keep pod traffic on this machine: the
    pods can talk to each other and to the host's bridge address, nothing else.
    """
    conf = {
        "cniVersion": "1.0.0",
        "name": f"sidecarset-{layout.tag}",
        "plugins": [
            {
                "type": "bridge",
                "bridge": layout.bridge,
                "isGateway": True,
                "isDefaultGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(layout.cni_data_dir),
                    "ranges": [[{"subnet": layout.pod_subnet, "gateway": layout.gateway}]],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(conf, indent=2)


def kubelet_config(layout: NodeLayout, *, port: int, healthz_port: int) -> str:
    """The kubelet's configuration for this VM: cgroup v1 (hybrid), cgroupfs, loopback only.

    Anonymous requests with AlwaysAllow on 127.0.0.1 let the apiserver reach `logs` and `exec`
    without a client certificate; nothing else can reach a loopback port.
    """
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": "127.0.0.1",
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": layout.cgroup_root,
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{layout.socket}",
        "podLogsDir": str(layout.pod_logs_dir),
        "resolvConf": "",
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "localStorageCapacityIsolation": False,
        "serializeImagePulls": False,
        "syncFrequency": "10s",
        "fileCheckFrequency": "20s",
        "maxPods": 110,
        "shutdownGracePeriod": "0s",
    }
    return yaml.safe_dump(config, sort_keys=False)
