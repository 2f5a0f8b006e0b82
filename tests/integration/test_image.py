"""The operator image (issue 13): `make image` builds the repository's Dockerfile daemonless
(tools/build_image.sh: buildah, base from debootstrap), and the result is what the chart
expects: a non-root user, `sidecarset` as the entrypoint, runtime dependencies exactly as
locked and nothing else (no compiler, no dev extras, no pip), and it runs on a read-only root
filesystem. The archive under .testbin/images/ is what `ctr -n k8s.io images import` loads.

Running the image needs no container runtime: its root filesystem is mounted by buildah, bound
read-only in a private mount namespace, and entered with chroot as the image's user.
"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tools" / "build_image.sh"
TAG = "0.1.0"
SECOND_TAG = "0.1.0-second"
IMAGE = f"localhost/sidecarset:{TAG}"
USER = "65532:65532"

# A cold build (debootstrap, then every Dockerfile step) takes minutes, more than the
# integration suite's default per-test timeout.
pytestmark = pytest.mark.timeout(1800)  # conftest's 300 s default yields to it


def run(*argv: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        pytest.fail(
            f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-2000:]}\n"
            f"{done.stderr[-3000:]}",
            pytrace=False,
        )
    return done


def build(tag: str) -> float:
    """`make image TAG=tag`; returns the seconds it took."""
    started = time.monotonic()
    run(str(BUILD), tag, timeout=1500)
    return time.monotonic() - started


def archive(tag: str) -> Path:
    return ROOT / ".testbin" / "images" / f"sidecarset-{tag}.tar"


@pytest.fixture(scope="module")
def built() -> float:
    return build(TAG)


@pytest.fixture(scope="module")
def config(built: float) -> dict[str, Any]:
    inspected = json.loads(run("buildah", "inspect", "--type", "image", IMAGE).stdout)
    found: dict[str, Any] = inspected["OCIv1"]["config"]
    return found


@pytest.fixture(scope="module")
def rootfs(built: float) -> Iterator[Path]:
    """The image's root filesystem, mounted from a working container (removed afterwards)."""
    container = run("buildah", "from", "--pull-never", IMAGE).stdout.strip()
    try:
        yield Path(run("buildah", "mount", container).stdout.strip())
    finally:
        run("buildah", "rm", container, check=False)


def in_image(
    rootfs: Path, config: dict[str, Any], *argv: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run `argv` inside the image as its user, its environment only, root bound read-only."""
    env = list(config.get("Env", []))
    script = (
        'root="$0" user="$1"; shift; '
        'mount --bind "$root" "$root" && mount -o remount,bind,ro "$root" && '
        'exec chroot --userspec="$user" "$root" /usr/bin/env -i "$@"'
    )
    return run(
        "unshare",
        "--mount",
        "--fork",
        "sh",
        "-c",
        script,
        str(rootfs),
        config["User"],
        *env,
        *argv,
        timeout=60,
        check=check,
    )


def test_the_image_runs_as_the_charts_non_root_user_with_sidecarset_as_entrypoint(
    config: dict[str, Any],
) -> None:
    assert config["User"] == USER  # the chart's runAsUser/runAsGroup
    assert config["Entrypoint"] == ["sidecarset"]
    assert config["Cmd"] == ["operator", "run"]
    assert set(config["ExposedPorts"]) == {"9443/tcp", "8080/tcp"}


def test_the_entrypoint_runs_on_a_read_only_root_as_that_user(
    rootfs: Path, config: dict[str, Any]
) -> None:
    helped = in_image(rootfs, config, *config["Entrypoint"], "--help")
    assert "operator" in helped.stdout
    assert "Usage" in helped.stdout
    # The operator's modules import (bytecode precompiled: nothing to write), as that user.
    probe = (
        "import os, sidecarset.app.run, sidecarset.app.controller; print(os.getuid(), os.getgid())"
    )
    imported = in_image(rootfs, config, "python", "-c", probe)
    assert imported.stdout.split() == USER.split(":")
    written = in_image(rootfs, config, "python", "-c", "open('/opt/x', 'w')", check=False)
    assert written.returncode != 0
    assert "Read-only file system" in written.stderr


def site_packages(rootfs: Path) -> Path:
    (found,) = (rootfs / "opt" / "sidecarset" / "lib").glob("python3*/site-packages")
    return found


def test_the_runtime_dependencies_are_exactly_the_locked_ones(rootfs: Path) -> None:
    lock = (ROOT / "requirements.lock").read_text()
    locked = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^ \\\n]+)", lock, re.M))
    installed: dict[str, str] = {}
    for meta in site_packages(rootfs).glob("*.dist-info"):
        name, version = meta.name.removesuffix(".dist-info").rsplit("-", 1)
        installed[normalized(name)] = version
    assert installed.pop("sidecarset") == "0.1.0"
    assert installed == {normalized(name): version for name, version in locked.items()}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_no_compiler_no_dev_extras_no_pip(rootfs: Path) -> None:
    tools = ["gcc", "cc", "c++", "g++", "clang", "ld", "as", "make"]
    present = [t for t in tools for d in ("usr/bin", "usr/local/bin") if (rootfs / d / t).exists()]
    assert present == []
    packages = {p.name.split("-")[0].lower() for p in site_packages(rootfs).iterdir()}
    dev = {"pytest", "mypy", "ruff", "hypothesis", "import_linter", "matplotlib", "lupa"}
    assert packages & dev == set()
    assert not (rootfs / "opt" / "sidecarset" / "bin" / "pip").exists()
    assert {"pip", "setuptools"} & packages == set()


def repo_tags(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        manifest: list[dict[str, Any]] = json.load(member)
    return [tag for entry in manifest for tag in entry["RepoTags"]]


def test_the_archive_is_named_as_the_chart_references_the_image(built: float) -> None:
    """`image.repository: sidecarset` resolves to docker.io/library/sidecarset in containerd."""
    assert f"docker.io/library/sidecarset:{TAG}" in repo_tags(archive(TAG))


def test_a_second_tag_builds_from_cached_layers(built: float) -> None:
    """What an upgrade test needs: another tag of the same tree, in seconds."""
    seconds = build(SECOND_TAG)
    print(f"\nimage: first build in this run {built:.0f}s, second tag {seconds:.0f}s")
    assert seconds < 120
    assert f"docker.io/library/sidecarset:{SECOND_TAG}" in repo_tags(archive(SECOND_TAG))
