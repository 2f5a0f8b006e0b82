#!/usr/bin/env python3
"""Build the real control-plane binaries (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kubectl) from Go modules into a git-ignored folder.

Standard library only: it runs before the project's virtualenv exists.
The wrapper modules in tools/k8s-testbin and tools/etcd-testbin pin the versions; their go.sum
files pin the checksums. A stamp file makes a second run a no-op. `--with-helm` also builds
`helm` (pinned by tools/helm-testbin, a few minutes cold), which the chart tests use.
`--with-node` also builds the parts of a real node into `<out>/node/`: kubelet (from the same
Kubernetes module), containerd with its runc shim and `ctr`, runc, crictl and the CNI plugins,
each pinned by a wrapper module under tools/node-testbin/ (about 10 minutes cold on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
K8S_MODULE = ROOT / "tools" / "k8s-testbin"
ETCD_MODULE = ROOT / "tools" / "etcd-testbin"
HELM_MODULE = ROOT / "tools" / "helm-testbin"
NODE_MODULES = ROOT / "tools" / "node-testbin"
DEFAULT_OUT = ROOT / ".testbin"
KUBE_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
MIN_FREE_BYTES = 8 * 1024**3  # module cache + build cache + binaries, with headroom
MIN_GO = (1, 26)


class BuildError(Exception):
    """A failure with a message meant for a person; no traceback."""


def required_version(go_mod: Path, module: str) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod.read_text(), re.M)
    if not match:
        raise BuildError(f"{go_mod} does not require {module}")
    return match.group(1)


def pinned_versions() -> dict[str, str]:
    return {
        "kubernetes": required_version(K8S_MODULE / "go.mod", "k8s.io/kubernetes"),
        "etcd": required_version(ETCD_MODULE / "go.mod", "go.etcd.io/etcd/server/v3"),
    }


def go_env(*, cgo: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    # Fail fast rather than silently download another toolchain; allow CI to delete the cache.
    env.update(GOTOOLCHAIN="local", GOWORK="off", CGO_ENABLED="1" if cgo else "0")
    flags = env.get("GOFLAGS", "")
    if "-modcacherw" not in flags:
        env["GOFLAGS"] = (flags + " -modcacherw").strip()
    return env


def check_go() -> str:
    go = shutil.which("go")
    if not go:
        raise BuildError("Go is not installed (need go >= 1.26 on PATH); install it and retry")
    out = subprocess.run([go, "version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"go(\d+)\.(\d+)", out)
    if not match or (int(match.group(1)), int(match.group(2))) < MIN_GO:
        raise BuildError(f"need go >= {MIN_GO[0]}.{MIN_GO[1]}, found: {out.strip() or 'unknown'}")
    return go


def check_disk(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path).free
    if free < MIN_FREE_BYTES:
        raise BuildError(
            f"only {free / 1024**3:.1f} GiB free at {path}; the build needs about "
            f"{MIN_FREE_BYTES / 1024**3:.0f} GiB (module cache, build cache, binaries)"
        )


def run_step(title: str, cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> float:
    """Run one go command, streaming a heartbeat so a 20-minute compile never looks hung."""
    print(f"==> {title}", flush=True)
    start = time.monotonic()
    with log.open("a") as sink:
        sink.write(f"\n$ (cd {cwd} && {' '.join(cmd)})\n")
        sink.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT)
        while True:
            try:
                proc.wait(timeout=30)
                break
            except subprocess.TimeoutExpired:
                print(f"    ... still building ({time.monotonic() - start:.0f}s)", flush=True)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-25:])
        hint = ""
        if "unknown revision" in tail or "not found" in tail or "dial tcp" in tail:
            hint = (
                "\n(a module could not be fetched from the Go module proxy: "
                "check GOPROXY and the network)"
            )
        raise BuildError(f"{title} failed after {elapsed:.0f}s; last lines of {log}:\n{tail}{hint}")
    print(f"    done in {elapsed:.0f}s", flush=True)
    return elapsed


def version_ldflags(k8s_version: str) -> str:
    minor = k8s_version.split(".")[1]
    parts = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        parts += [
            f"-X {pkg}.gitVersion={k8s_version}",
            f"-X {pkg}.gitMajor=1",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return " ".join(parts)


def is_built(out: Path, versions: dict[str, str]) -> bool:
    stamp = out / "stamp.json"
    if not stamp.exists():
        return False
    try:
        recorded = json.loads(stamp.read_text())
    except json.JSONDecodeError:
        return False
    binaries = [*KUBE_COMMANDS, "etcd"]
    return recorded.get("versions") == versions and all((out / b).is_file() for b in binaries)


def build(out: Path, force: bool) -> None:
    versions = pinned_versions()
    if not force and is_built(out, versions):
        print(
            f"control-plane binaries already built in {out} "
            f"(kubernetes {versions['kubernetes']}, etcd {versions['etcd']})"
        )
        return
    go = check_go()
    check_disk(out)
    env = go_env()
    log = out / "build.log"
    log.write_text("")
    print(f"building kubernetes {versions['kubernetes']} and etcd {versions['etcd']} into {out}")
    print(f"(a cold build takes 20-40 minutes on 2 cores; full log: {log})", flush=True)
    started = time.monotonic()
    run_step("download modules", [go, "mod", "download"], K8S_MODULE, env, log)
    run_step("download etcd modules", [go, "mod", "download"], ETCD_MODULE, env, log)
    run_step(
        "build etcd",
        [
            go,
            "build",
            "-buildvcs=false",
            "-trimpath",
            "-ldflags",
            "-s -w",
            "-o",
            str(out / "etcd"),
            "go.etcd.io/etcd/server/v3",
        ],
        ETCD_MODULE,
        env,
        log,
    )
    run_step(
        "build " + ", ".join(KUBE_COMMANDS),
        [
            go,
            "build",
            "-buildvcs=false",
            "-trimpath",
            "-tags",
            "selinux,notest",
            "-ldflags",
            version_ldflags(versions["kubernetes"]),
            "-o",
            str(out) + "/",
            *[f"k8s.io/kubernetes/cmd/{c}" for c in KUBE_COMMANDS],
        ],
        K8S_MODULE,
        env,
        log,
    )
    elapsed = time.monotonic() - started
    (out / "stamp.json").write_text(json.dumps({"versions": versions, "seconds": round(elapsed)}))
    print(f"built in {elapsed / 60:.1f} min: {', '.join([*KUBE_COMMANDS, 'etcd'])}")


def build_helm(out: Path, force: bool) -> None:
    """`helm` from the version tools/helm-testbin pins; skipped when that version is built."""
    version = required_version(HELM_MODULE / "go.mod", "helm.sh/helm/v4")
    stamp = out / "helm.stamp"
    if not force and (out / "helm").is_file() and stamp.exists() and stamp.read_text() == version:
        print(f"helm {version} already built in {out}")
        return
    go = check_go()
    check_disk(out)
    env = go_env()
    log = out / "build-helm.log"
    log.write_text("")
    run_step(
        f"build helm {version}",
        [
            go,
            "build",
            "-buildvcs=false",
            "-trimpath",
            "-ldflags",
            f"-s -w -X helm.sh/helm/v4/internal/version.version={version}",
            "-o",
            str(out / "helm"),
            "helm.sh/helm/v4/cmd/helm",
        ],
        HELM_MODULE,
        env,
        log,
    )
    stamp.write_text(version)


@dataclass(frozen=True)
class NodePart:
    """One wrapper module under tools/node-testbin and the commands built from it."""

    folder: str
    module: str
    packages: tuple[str, ...]
    tags: str = ""
    cgo: bool = False
    ldflags: str = "-s -w"
    subdir: str = ""  # where in <out>/node the binaries go


def node_parts() -> list[NodePart]:
    containerd = required_version(NODE_MODULES / "containerd" / "go.mod", CONTAINERD)
    runc = required_version(NODE_MODULES / "runc" / "go.mod", RUNC)
    crictl = required_version(NODE_MODULES / "crictl" / "go.mod", CRICTL)
    return [
        NodePart(
            "containerd",
            CONTAINERD,
            tuple(
                f"{CONTAINERD}/cmd/{c}" for c in ("containerd", "containerd-shim-runc-v2", "ctr")
            ),
            # btrfs needs cgo headers; the overlayfs snapshotter is all the node uses.
            tags="urfave_cli_no_docs no_btrfs",
            ldflags=f"-s -w -X {CONTAINERD}/version.Version={containerd}",
        ),
        # runc's namespace setup (nsenter) is C: it needs cgo and gcc. containerd gives every
        # sandbox a seccomp profile, so runc needs libseccomp: linked statically from Debian's
        # libseccomp-dev, unpacked privately (see `seccomp_env`), as upstream's static build.
        NodePart(
            "runc",
            RUNC,
            (RUNC,),
            cgo=True,
            tags="seccomp netgo osusergo",
            ldflags=f'-s -w -X main.version={runc[1:]} -extldflags "-static"',
        ),
        NodePart(
            "crictl",
            CRICTL,
            (f"{CRICTL}/cmd/crictl",),
            ldflags=f"-s -w -X {CRICTL}/pkg/version.Version={crictl}",
        ),
        NodePart(
            "cni",
            CNI,
            tuple(
                f"{CNI}/plugins/{p}"
                for p in ("main/bridge", "main/loopback", "ipam/host-local", "meta/portmap")
            ),
            subdir="cni",
        ),
    ]


CONTAINERD = "github.com/containerd/containerd/v2"
RUNC = "github.com/opencontainers/runc"
CRICTL = "sigs.k8s.io/cri-tools"
CNI = "github.com/containernetworking/plugins"
NODE_BINARIES = (
    "kubelet",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "runc",
    "crictl",
    "cni/bridge",
    "cni/loopback",
    "cni/host-local",
    "cni/portmap",
)


def node_versions() -> dict[str, str]:
    return {
        "kubelet": pinned_versions()["kubernetes"],
        "containerd": required_version(NODE_MODULES / "containerd" / "go.mod", CONTAINERD),
        "runc": required_version(NODE_MODULES / "runc" / "go.mod", RUNC),
        "crictl": required_version(NODE_MODULES / "crictl" / "go.mod", CRICTL),
        "cni-plugins": required_version(NODE_MODULES / "cni" / "go.mod", CNI),
        "recipe": "2",  # bump when build settings (tags, flags) change: forces a rebuild
    }


def seccomp_env(deps: Path, log: Path) -> dict[str, str]:
    """pkg-config settings that find libseccomp's headers and static library in a private
    copy of Debian's libseccomp-dev (`apt-get download` + `dpkg-deb -x`; nothing installed)."""
    root = deps / "libseccomp"
    pc_dir = root / "usr" / "lib" / "x86_64-linux-gnu" / "pkgconfig"
    if not (pc_dir / "libseccomp.pc").exists():
        for tool in ("apt-get", "dpkg-deb", "pkg-config"):
            if shutil.which(tool) is None:
                raise BuildError(
                    f"building runc with seccomp needs {tool} (Debian: apt-get install "
                    f"{'pkgconf' if tool == 'pkg-config' else 'apt dpkg'})"
                )
        deps.mkdir(parents=True, exist_ok=True)
        with log.open("a") as sink:
            fetch = subprocess.run(
                ["apt-get", "download", "libseccomp-dev"], cwd=deps, stdout=sink, stderr=sink
            )
            if fetch.returncode != 0:  # a fresh machine may have no package lists yet
                subprocess.run(["apt-get", "update"], stdout=sink, stderr=sink, check=False)
                fetch = subprocess.run(
                    ["apt-get", "download", "libseccomp-dev"], cwd=deps, stdout=sink, stderr=sink
                )
        debs = sorted(deps.glob("libseccomp-dev_*.deb"))
        if fetch.returncode != 0 or not debs:
            raise BuildError(f"could not download Debian's libseccomp-dev; see {log}")
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(root)], check=True)
    return {"PKG_CONFIG_PATH": str(pc_dir), "PKG_CONFIG_SYSROOT_DIR": str(root)}


def build_node(out: Path, force: bool) -> None:
    """The real node's binaries into <out>/node/, skipped when the stamp matches."""
    node = out / "node"
    versions = node_versions()
    stamp = node / "stamp.json"
    if not force and stamp.exists():
        try:
            recorded = json.loads(stamp.read_text()).get("versions")
        except json.JSONDecodeError:
            recorded = None
        if recorded == versions and all((node / b).is_file() for b in NODE_BINARIES):
            print(f"real-node binaries already built in {node}")
            return
    go = check_go()
    if shutil.which("gcc") is None:
        raise BuildError("runc needs cgo and gcc; install gcc (apt-get install gcc) and retry")
    check_disk(out)
    (node / "cni").mkdir(parents=True, exist_ok=True)
    log = node / "build.log"
    log.write_text("")
    print("building the real node: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"(about 10 minutes cold on 2 cores; full log: {log})", flush=True)
    started = time.monotonic()
    run_step(
        "build kubelet",
        [
            go,
            "build",
            "-buildvcs=false",
            "-trimpath",
            "-tags",
            "selinux,notest",
            "-ldflags",
            version_ldflags(versions["kubelet"]),
            "-o",
            str(node / "kubelet"),
            "k8s.io/kubernetes/cmd/kubelet",
        ],
        K8S_MODULE,
        go_env(),
        log,
    )
    for part in node_parts():
        args = [go, "build", "-buildvcs=false", "-trimpath"]
        if part.tags:
            args += ["-tags", part.tags]
        target = node / part.subdir if part.subdir else node
        args += ["-ldflags", part.ldflags, "-o", str(target) + "/", *part.packages]
        env = go_env(cgo=part.cgo)
        if part.cgo:
            env.update(seccomp_env(node / "deps", log))
        run_step(f"build {part.folder}", args, NODE_MODULES / part.folder, env, log)
    elapsed = time.monotonic() - started
    stamp.write_text(json.dumps({"versions": versions, "seconds": round(elapsed)}))
    print(f"real node built in {elapsed / 60:.1f} min")


def add_out_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    """`--out`: the testbin folder, $SIDECARSET_TESTBIN or .testbin/ by default."""
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("SIDECARSET_TESTBIN", DEFAULT_OUT)),
        help=help_text,
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if the stamp matches")


def run_build(steps: Callable[[], None]) -> int:
    """Run the build steps; a BuildError is one message on stderr, never a traceback."""
    try:
        steps()
    except BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Build the local control plane's binaries from Go modules (skips if built).",
        epilog="example: python3 tools/build_testbin.py            # into .testbin/\n"
        "         python3 tools/build_testbin.py --with-helm  # and helm, for the chart tests\n"
        "         python3 tools/build_testbin.py --with-node  # and a real kubelet node\n"
        "         SIDECARSET_TESTBIN=/opt/kb python3 tools/build_testbin.py --force",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_out_argument(parser, "where the binaries go (default: $SIDECARSET_TESTBIN or .testbin/)")
    parser.add_argument(
        "--with-helm", action="store_true", help="also build helm (for the chart tests)"
    )
    parser.add_argument(
        "--with-node",
        action="store_true",
        help="also build a real node: kubelet, containerd, runc, crictl, CNI plugins",
    )
    args = parser.parse_args()

    def steps() -> None:
        build(args.out.resolve(), args.force)
        if args.with_helm:
            build_helm(args.out.resolve(), args.force)
        if args.with_node:
            build_node(args.out.resolve(), args.force)

    return run_build(steps)


if __name__ == "__main__":
    sys.exit(main())
