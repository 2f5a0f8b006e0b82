#!/usr/bin/env python3
"""Build OpenKruise's kruise-manager, the peer `make bench PEER=kruise` compares against, from
its pinned Go module into `<testbin>/kruise/`, with the manifests it needs rendered beside it.

Standard library only, like tools/build_testbin.py (whose helpers it uses). Kruise's own module
carries `replace` directives, so it cannot be built as a dependency of a wrapper module: the
module is downloaded (`go mod download`, checksum-verified against the pin below), copied and
built in place with `-mod=mod`. `kubectl kustomize` (the .testbin kubectl) renders its CRDs and
webhook configurations from the same copy. A stamp (module, version, checksum, Go version) makes a
second run a no-op. About 5 minutes cold on 2 cores; nothing built is ever committed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from build_testbin import (
    BuildError,
    add_out_argument,
    check_disk,
    check_go,
    go_env,
    run_build,
    run_step,
)

MODULE = "github.com/openkruise/kruise"
VERSION = "v1.9.1"
# go.sum-style hash of the module zip: a different download fails the build.
MODULE_SUM = "h1:KsI/9SNGzTlEClnLj6imxh6rynxA0UFvY2/3gbsWghk="
RECIPE = "1"  # bump when the build flags change: forces a rebuild
BINARY = "kruise-manager"
MANIFESTS = {"crds.yaml": "config/crd", "webhooks.yaml": "config/webhook"}


def wanted() -> dict[str, str]:
    return {"module": MODULE, "version": VERSION, "sum": MODULE_SUM, "recipe": RECIPE}


def is_built(folder: Path) -> bool:
    """The stamp records what was built; every file it promises must still be there."""
    stamp = folder / "stamp.json"
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    files = [BINARY, *MANIFESTS]
    return all(recorded.get(k) == v for k, v in wanted().items()) and all(
        (folder / f).is_file() for f in files
    )


def download(go: str, env: dict[str, str], log: Path) -> Path:
    """The module's directory in the module cache, after checking its checksum."""
    print(f"==> download {MODULE}@{VERSION}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:  # outside any module: no go.mod to touch
        out = subprocess.run(
            [go, "mod", "download", "-json", f"{MODULE}@{VERSION}"],
            cwd=scratch,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    with log.open("a") as sink:
        sink.write(out.stdout + out.stderr)
    try:
        info = json.loads(out.stdout)
    except json.JSONDecodeError as err:
        raise BuildError(f"`go mod download -json` printed no JSON: {out.stderr.strip()}") from err
    if info.get("Sum") != MODULE_SUM:
        raise BuildError(
            f"{MODULE}@{VERSION} has checksum {info.get('Sum')}, the pin is {MODULE_SUM}"
        )
    return Path(info["Dir"])


def build(out: Path, force: bool) -> None:
    folder = out / "kruise"
    if not force and is_built(folder):
        print(f"kruise-manager {VERSION} already built in {folder}")
        return
    go = check_go()
    kubectl = out / "kubectl"
    if not os.access(kubectl, os.X_OK):
        raise BuildError(
            f"{kubectl} is missing (it renders Kruise's manifests); run `make testbin` first"
        )
    check_disk(out)
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "build.log"
    log.write_text("")
    print(f"building kruise-manager {VERSION} into {folder} (about 5 min cold; log: {log})")
    started = time.monotonic()
    env = go_env()
    source = download(go, env, log)
    work = folder / "src"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(source, work)
    for path in [work, *work.rglob("*")]:  # the module cache is read-only
        path.chmod(path.stat().st_mode | 0o200)
    build_env = {**env, "GOFLAGS": env["GOFLAGS"] + " -mod=mod"}
    run_step(
        f"build {BINARY}",
        # Reproducible and small: no VCS stamp, no local paths, no symbols.
        [go, "build", "-buildvcs=false", "-trimpath", "-ldflags=-s -w", "-o", str(folder / BINARY)],
        work,
        build_env,
        log,
    )
    for name, config in MANIFESTS.items():
        rendered = subprocess.run(
            [str(kubectl), "kustomize", config],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
        )
        if rendered.returncode != 0:
            raise BuildError(f"`kubectl kustomize {config}` failed: {rendered.stderr.strip()}")
        (folder / name).write_text(rendered.stdout)
    shutil.rmtree(work)
    go_version = subprocess.run([go, "version"], capture_output=True, text=True).stdout.strip()
    elapsed = time.monotonic() - started
    stamp = {**wanted(), "go": go_version, "seconds": round(elapsed)}
    (folder / "stamp.json").write_text(json.dumps(stamp, indent=1) + "\n")
    print(f"built kruise-manager {VERSION} in {elapsed / 60:.1f} min")


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Build OpenKruise's kruise-manager and render its manifests (skips if built)."
    )
    add_out_argument(
        parser,
        "the testbin folder (default: $SIDECARSET_TESTBIN or .testbin/); writes <out>/kruise/",
    )
    args = parser.parse_args()
    return run_build(lambda: build(args.out.resolve(), args.force))


if __name__ == "__main__":
    sys.exit(main())
