"""One real node for the local cluster: containerd, runc and the kubelet, run as root.

The simulator models a kubelet; this runs the real one, so container behaviour (in-place
restarts, grace periods, probes, hooks, crash loops) comes from the source of truth. It needs
root on Linux and the binaries `tools/build_testbin.py --with-node` builds; anywhere else
`preflight` says why in one line and the simulated nodes still work.

Images come from `<testbin>/images/*.tar` (docker archives built by tools/build_images.py and
`make image`), imported into containerd's `k8s.io` namespace: no registry is ever contacted, so
pods use `imagePullPolicy: IfNotPresent` (or `Never`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from sidecarset.devcluster import nodehost
from sidecarset.devcluster.binaries import Binaries
from sidecarset.devcluster.controlplane import (
    Component,
    ControlPlane,
    Progress,
    python_component,
)
from sidecarset.devcluster.nodeconfig import (
    NODE_LABEL,
    NODE_NAME,
    NodeLayout,
    cni_network,
    containerd_config,
    kubelet_config,
)
from sidecarset.devcluster.process import StartupError

CONTAINERD = "node-containerd"
KUBELET = "node-kubelet"
API_RELAY = "node-api-relay"
PROCESSES = (CONTAINERD, API_RELAY, KUBELET)  # in start order
# What tools/build_testbin.py --with-node builds (listed there too: that script runs before the
# package is installed, so neither can import the other).
NODE_BINARIES = (
    "kubelet",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "runc",
    "crictl",
    "cni/bridge",
    "cni/host-local",
    "cni/loopback",
    "cni/portmap",
)


class RealNodeUnavailable(Exception):
    """Why this machine cannot run a real node, in one line."""


class RealNode:
    """The real node of the cluster kept in `plane.workdir`."""

    def __init__(
        self, plane: ControlPlane, binaries: Binaries | None = None, *, tainted: bool = False
    ) -> None:
        """`tainted`: register the node with the NoSchedule taint `NODE_TAINT`, so that only
        pods tolerating it run there (beside simulated nodes, which take everything else)."""
        self.plane = plane
        self.tainted = tainted
        testbin = (binaries or plane.binaries).directory
        self.images_dir = testbin / "images"
        self.layout = NodeLayout(root=plane.workdir / "node", binaries=testbin / "node")

    # -- checks -----------------------------------------------------------------------------

    def preflight(self) -> None:
        """Raise RealNodeUnavailable unless a real node can run here."""
        if not sys.platform.startswith("linux"):
            raise RealNodeUnavailable(
                f"a real node needs Linux (this is {sys.platform}); use the simulated nodes"
            )
        if os.geteuid() != 0:
            raise RealNodeUnavailable(
                "a real node needs root (containers, mounts, network namespaces, cgroups); "
                "run as root or use the simulated nodes"
            )
        missing = [b for b in NODE_BINARIES if not os.access(self.layout.binaries / b, os.X_OK)]
        if missing:
            raise RealNodeUnavailable(
                f"real-node binaries missing in {self.layout.binaries}: {', '.join(missing)}; "
                "build them with `make testbin` (python3 tools/build_testbin.py --with-node)"
            )
        if "overlay" not in Path("/proc/filesystems").read_text():
            raise RealNodeUnavailable("the kernel has no overlay filesystem for containerd")
        if (
            not (nodehost.CGROUP_BASE / "memory").is_dir()
            and not (nodehost.CGROUP_BASE / "cgroup.controllers").exists()
        ):
            raise RealNodeUnavailable("no cgroup hierarchy is mounted at /sys/fs/cgroup")
        if not self.image_tars():
            raise RealNodeUnavailable(
                f"no images in {self.images_dir} (not even the pause image); build them with "
                "`make images` (python3 tools/build_images.py)"
            )

    def image_tars(self) -> list[Path]:
        return sorted(self.images_dir.glob("*.tar")) if self.images_dir.is_dir() else []

    # -- components -------------------------------------------------------------------------

    def api_address(self) -> tuple[str, int]:
        """Where pods on this node reach the apiserver (the relay): KUBERNETES_SERVICE_HOST
        and KUBERNETES_SERVICE_PORT of any pod that calls the API."""
        return self.layout.gateway, self.plane.reserve_port(API_RELAY)

    def components(self) -> list[Component]:
        """containerd, the API relay for pods, then the kubelet (after the images imported)."""
        layout, tainted = self.layout, self.tainted
        port = self.plane.reserve_port(KUBELET)
        self.plane.reserve_port(f"{KUBELET}-healthz")
        log_dir = self.plane.log_dir
        return [
            Component(
                name=CONTAINERD,
                argv=[
                    str(layout.binaries / "containerd"),
                    "--config",
                    str(layout.containerd_config),
                    "--log-level",
                    "warn",
                ],
                ready=self._containerd_ready,
                timeout=60,
                env=self._env(),
                prepare=self._write_configs,
            ),
            self._relay_component(),
            Component(
                name=KUBELET,
                argv=[
                    str(layout.binaries / "kubelet"),
                    f"--config={layout.kubelet_config}",
                    f"--kubeconfig={self.plane.kubeconfig}",
                    f"--hostname-override={NODE_NAME}",
                    f"--root-dir={layout.kubelet_root}",
                    f"--cert-dir={layout.kubelet_dir / 'pki'}",
                    "--node-ip=127.0.0.1",
                    f"--node-labels={NODE_LABEL}=true",
                    *([f"--register-with-taints={NODE_LABEL}=true:NoSchedule"] if tainted else []),
                    "--v=1",
                ],
                ready=self._node_ready,
                timeout=120,
                env=self._env(),
                port=port,
                prepare=lambda: self._import_for_start(log_dir / "image-import.log"),
            ),
        ]

    def _relay_component(self) -> Component:
        """Pods cannot reach the apiserver on the host's loopback: relay the bridge's gateway
        address to it (see devcluster/relay.py)."""
        host, port = self.api_address()
        apiserver = self.plane.reserve_port("kube-apiserver")  # kept by the first `up`
        ready_file = self.layout.root / "api-relay.ready"

        def prepare() -> None:
            ready_file.unlink(missing_ok=True)
            nodehost.create_bridge(self.layout)

        relay = python_component(
            API_RELAY,
            [
                "cluster",
                "relay",
                "--listen",
                f"{host}:{port}",
                "--to",
                f"127.0.0.1:{apiserver}",
                "--ready-file",
                str(ready_file),
            ],
            ready=ready_file.exists,
            timeout=30,
        )
        return dataclasses.replace(relay, prepare=prepare)

    def _import_for_start(self, log: Path) -> None:
        self.import_images(progress=lambda m: print(m, file=sys.stderr, flush=True), log=log)

    def _env(self) -> dict[str, str]:
        # containerd finds the runc shim on PATH; keep loopback out of any proxy.
        path = f"{self.layout.binaries}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
        return {**os.environ, "PATH": path, "NO_PROXY": "127.0.0.1,localhost"}

    def _write_configs(self) -> None:
        layout = self.layout
        for directory in layout.all_dirs():
            directory.mkdir(parents=True, exist_ok=True)
        layout.containerd_config.write_text(containerd_config(layout))
        (layout.cni_conf_dir / "10-sidecarset.conflist").write_text(cni_network(layout))
        state = self.plane.state()
        layout.kubelet_config.write_text(
            kubelet_config(
                layout, port=state.ports[KUBELET], healthz_port=state.ports[f"{KUBELET}-healthz"]
            )
        )
        nodehost.create_cgroup_root(layout)
        layout.kubelet_root.unlink(missing_ok=True)
        layout.kubelet_root.symlink_to(layout.kubelet_dir)

    def _ctr(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.layout.binaries / "ctr"), "--address", str(self.layout.socket), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _containerd_ready(self) -> bool:
        return self.layout.socket.exists() and self._ctr("version", timeout=5).returncode == 0

    def _node_ready(self) -> bool:
        code, body = self.plane.get(f"/api/v1/nodes/{NODE_NAME}")
        if code != 200:
            return False
        status = json.loads(body).get("status", {})
        if not any(a.get("type") == "InternalIP" for a in status.get("addresses", [])):
            self._set_loopback_address()
            return False
        conditions = status.get("conditions", [])
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def _set_loopback_address(self) -> None:
        """Give the node the InternalIP 127.0.0.1, which the kubelet refuses to report.

        The apiserver reaches a kubelet (`kubectl logs`, `exec`, `port-forward`) at the node's
        InternalIP, and the kubelet listens on loopback only. The kubelet rejects a loopback
        `--node-ip` and then leaves the addresses it cannot set alone, so ours stay.
        """
        addresses = [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": NODE_NAME},
        ]
        self.plane.patch(f"/api/v1/nodes/{NODE_NAME}/status", {"status": {"addresses": addresses}})

    # -- images -----------------------------------------------------------------------------

    def images(self) -> set[str]:
        listing = self._ctr("-n", "k8s.io", "images", "list", "-q")
        return set(listing.stdout.split()) if listing.returncode == 0 else set()

    def import_images(self, *, progress: Progress, log: Path, force: bool = False) -> int:
        """Import every docker archive not imported yet (or changed since); returns how many."""
        marker = self.layout.containerd_dir / "imported.json"
        try:
            done: dict[str, float] = json.loads(marker.read_text())
        except (OSError, ValueError):
            done = {}
        imported = 0
        for tar in self.image_tars():
            mtime = tar.stat().st_mtime
            if not force and done.get(tar.name) == mtime:
                continue
            progress(f"importing image {tar.name} into the real node")
            result = self._ctr("-n", "k8s.io", "images", "import", str(tar), timeout=300)
            with log.open("a") as sink:
                sink.write(f"$ ctr images import {tar}\n{result.stdout}{result.stderr}\n")
            if result.returncode != 0:
                raise StartupError(f"importing {tar} failed: {result.stderr.strip()[-300:]}")
            done[tar.name] = mtime
            imported += 1
            marker.write_text(json.dumps(done))
        return imported

    # -- teardown ---------------------------------------------------------------------------

    def stop_pods(self, progress: Progress) -> None:
        """Stop and remove every pod sandbox through CRI: CNI releases IPs and namespaces.

        Runs while containerd is up and the kubelet is already stopped (else it would start
        them again). Pods stay in the API; the next `up` starts them afresh, as after a reboot.
        """
        if not self._containerd_ready():
            return
        progress("stopping the real node's pods")
        subprocess.run(
            [
                str(self.layout.binaries / "crictl"),
                f"--runtime-endpoint=unix://{self.layout.socket}",
                "--timeout=30s",
                "rmp",
                "--all",
                "--force",
            ],
            capture_output=True,
            timeout=120,
            check=False,
            env=self._env(),
        )

    def remove_leftovers(self, progress: Progress) -> nodehost.Leftovers:
        return nodehost.remove(self.layout, progress)

    def leftovers(self) -> nodehost.Leftovers:
        return nodehost.leftovers(self.layout)

    def down_hooks(self, progress: Progress) -> dict[str, Callable[[], None]]:
        """What `ControlPlane.down` runs before stopping each of the node's processes."""
        return {CONTAINERD: lambda: self.stop_pods(progress)}
