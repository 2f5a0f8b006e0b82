"""What a real node leaves on the host, found from the kernel's own tables, and its removal.

Stopping kubelet and containerd is not enough: container processes and their shims outlive
them, and mounts (overlay root filesystems, network namespaces, volume tmpfs), the pod bridge
and cgroups stay until someone removes them. `leftovers` lists whatever of this node is still
there; `remove` takes it away. Both look only at objects named after the node's own folder or
tag, so a second cluster on the machine is never touched.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sidecarset.devcluster.nodeconfig import NodeLayout

CGROUP_BASE = Path("/sys/fs/cgroup")
_MNT_DETACH = 2


@dataclass
class Leftovers:
    processes: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    interfaces: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not (
            self.processes or self.mounts or self.interfaces or self.cgroups or self.sockets
        )

    def describe(self) -> str:
        parts = [
            f"{what}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
            for what, items in (
                ("processes", self.processes),
                ("mounts", self.mounts),
                ("interfaces", self.interfaces),
                ("cgroups", self.cgroups),
                ("sockets", self.sockets),
            )
            if items
        ]
        return "; ".join(parts) or "nothing"


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _read(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def node_pids(layout: NodeLayout) -> dict[int, str]:
    """Processes of this node: its binaries (kubelet, containerd, shims) and every container.

    Containers are found by cgroup (all live under the node's cgroup root); kubelet, containerd
    and the shims by the node folder on their command line (config, socket). Matching the
    binaries' path instead would also catch another cluster's node built from the same testbin.
    """
    found: dict[int, str] = {}
    root = str(layout.root) + "/"
    sockets = str(layout.socket_dir) + "/"
    for pid in _pids():
        if pid == os.getpid():
            continue
        cmdline = _read(f"/proc/{pid}/cmdline").replace("\0", " ").strip()
        cgroups = _read(f"/proc/{pid}/cgroup")
        if (
            root in cmdline + " "
            or sockets in cmdline
            or f":{layout.cgroup_root}/" in cgroups
            or f":{layout.cgroup_root}\n" in cgroups
        ):
            found[pid] = cmdline or "?"
    return found


def node_mounts(layout: NodeLayout) -> list[str]:
    """Mount points under the node's folder, deepest first (the order to unmount them)."""
    root = str(layout.root)
    points = []
    for line in _read("/proc/self/mountinfo").splitlines():
        fields = line.split()
        if len(fields) > 4:
            point = fields[4].replace("\\040", " ")
            if point == root or point.startswith(root + "/"):
                points.append(point)
    return sorted(set(points), key=lambda p: (-p.count("/"), p))


def node_interfaces(layout: NodeLayout) -> list[str]:
    """The node's bridge and any interface still enslaved to it."""
    net = Path("/sys/class/net")
    names = []
    if (net / layout.bridge).exists():
        names.append(layout.bridge)
    for iface in net.iterdir() if net.exists() else []:
        master = iface / "master"
        if master.exists() and os.path.basename(os.readlink(master)) == layout.bridge:
            names.append(iface.name)
    return names


def node_cgroups(layout: NodeLayout) -> list[str]:
    """The node's cgroup root in each cgroup v1 hierarchy (and v2, if mounted)."""
    rel = layout.cgroup_root.lstrip("/")
    result = []
    if CGROUP_BASE.exists():
        for hierarchy in sorted(CGROUP_BASE.iterdir()):
            if (hierarchy / rel).is_dir():
                result.append(str(hierarchy / rel))
    return result


def leftovers(layout: NodeLayout) -> Leftovers:
    sockets = [str(p) for p in layout.socket_dir.iterdir()] if layout.socket_dir.exists() else []
    return Leftovers(
        sockets=sockets,
        processes=[f"{pid} {cmd[:80]}" for pid, cmd in sorted(node_pids(layout).items())],
        mounts=node_mounts(layout),
        interfaces=node_interfaces(layout),
        cgroups=node_cgroups(layout),
    )


def create_cgroup_root(layout: NodeLayout) -> None:
    """The kubelet expects its cgroup root to exist in every hierarchy it uses."""
    rel = layout.cgroup_root.lstrip("/")
    for hierarchy in CGROUP_BASE.iterdir():
        if hierarchy.is_dir() and not hierarchy.is_symlink() and (hierarchy / "tasks").exists():
            (hierarchy / rel).mkdir(exist_ok=True)
            # cpuset: a child cgroup starts with no CPUs or memory nodes; inherit the parent's.
            for knob in ("cpuset.cpus", "cpuset.mems"):
                parent, child = hierarchy / knob, hierarchy / rel / knob
                if parent.exists() and not _read(str(child)).strip():
                    child.write_text(_read(str(parent)).strip() or "0")


def _kill_all(layout: NodeLayout, wait: float) -> None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        pids = node_pids(layout)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.1)


def _unmount(point: str) -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.umount2(point.encode(), _MNT_DETACH)


def _remove_cgroup_tree(path: Path) -> None:
    for child in sorted(path.rglob("*"), key=lambda p: -len(p.parts)):
        if child.is_dir():
            try:
                child.rmdir()
            except OSError:
                pass
    try:
        path.rmdir()
    except OSError:
        pass


def create_bridge(layout: NodeLayout) -> None:
    """The pod bridge with the gateway address, up, before the first pod exists.

    The API relay listens on that address from the start; the CNI bridge plugin finds the
    bridge and its address and keeps them. Idempotent.
    """
    steps = [
        ["ip", "link", "add", layout.bridge, "type", "bridge"],
        ["ip", "addr", "add", f"{layout.gateway}/24", "dev", layout.bridge],
        ["ip", "link", "set", layout.bridge, "up"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0 and "File exists" not in done.stderr:
            raise OSError(f"{' '.join(step)}: {done.stderr.strip()}")


def remove(layout: NodeLayout, progress: Callable[[str], None] = print) -> Leftovers:
    """Kill, unmount and delete everything of this node still on the host; report what stays.

    Call it after kubelet and containerd have been stopped (and the pods stopped through CRI,
    which also releases their IP addresses and network namespaces cleanly).
    """
    pids = node_pids(layout)
    if pids:
        progress(f"killing {len(pids)} leftover node processes (containers, shims)")
        _kill_all(layout, wait=10.0)
    mounts = node_mounts(layout)
    if mounts:
        progress(f"unmounting {len(mounts)} node mounts")
        for _ in range(3):  # a mount can hide another mounted at the same point
            for point in node_mounts(layout):
                _unmount(point)
    for iface in node_interfaces(layout):
        progress(f"deleting interface {iface}")
        subprocess.run(["ip", "link", "delete", iface], capture_output=True, check=False)
    for path in node_cgroups(layout):
        _remove_cgroup_tree(Path(path))
    shutil.rmtree(layout.socket_dir, ignore_errors=True)
    return leftovers(layout)
