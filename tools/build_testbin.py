#!/usr/bin/env python3
"""Build the real control-plane binaries (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kubectl) from Go modules into a git-ignored folder.

Standard library only: it runs before the project's virtualenv exists.
The wrapper modules in tools/k8s-testbin and tools/etcd-testbin pin the versions; their go.sum
files pin the checksums. A stamp file makes a second run a no-op. `--with-helm` also builds
`helm` (pinned by tools/helm-testbin, a few minutes cold), which the chart tests use.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
K8S_MODULE = ROOT / "tools" / "k8s-testbin"
ETCD_MODULE = ROOT / "tools" / "etcd-testbin"
HELM_MODULE = ROOT / "tools" / "helm-testbin"
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


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    # Fail fast rather than silently download another toolchain; allow CI to delete the cache.
    env.update(GOTOOLCHAIN="local", GOWORK="off", CGO_ENABLED="0")
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


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Build the local control plane's binaries from Go modules (skips if built).",
        epilog="example: python3 tools/build_testbin.py            # into .testbin/\n"
        "         python3 tools/build_testbin.py --with-helm  # and helm, for the chart tests\n"
        "         SIDECARSET_TESTBIN=/opt/kb python3 tools/build_testbin.py --force",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("SIDECARSET_TESTBIN", DEFAULT_OUT)),
        help="where the binaries go (default: $SIDECARSET_TESTBIN or .testbin/)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if the stamp matches")
    parser.add_argument(
        "--with-helm", action="store_true", help="also build helm (for the chart tests)"
    )
    args = parser.parse_args()
    try:
        build(args.out.resolve(), args.force)
        if args.with_helm:
            build_helm(args.out.resolve(), args.force)
    except BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
