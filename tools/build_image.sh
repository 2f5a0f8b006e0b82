#!/bin/sh
# Builds the operator image from the repository's Dockerfile without a Docker daemon, and
# exports it as a docker-archive that `ctr -n k8s.io images import` (or `docker load`) reads.
#
#   tools/build_image.sh [TAG]        (what `make image TAG=...` runs; TAG defaults to 0.1.0)
#
# Why each part:
# - buildah builds a Dockerfile daemonless (no dockerd on the build machine); debootstrap makes
#   the base. Both are Debian packages, installed here when missing (needs root, like buildah's
#   default storage in /var/lib/containers).
# - No image registry is reachable, so the base image is made from Debian packages: bookworm
#   minbase plus its python3 (3.11), python3-venv (for `python -m venv` and its bundled pip) and
#   python-is-python3 (the Dockerfile runs `python`). It is passed in through the Dockerfile's
#   PYTHON_IMAGE argument and built once, then reused (`BASE_REBUILD=1` makes it again).
# - `--layers` caches each Dockerfile step: a second tag of the same tree builds in seconds.
# Idempotent: run it any number of times.
set -eu

TAG="${1:-${TAG:-0.1.0}}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$ROOT/.testbin/images"
BASE="localhost/sidecarset-python:3.11-bookworm"
IMAGE="localhost/sidecarset:$TAG"
# The name the chart's default `image.repository: sidecarset` resolves to in containerd.
ARCHIVE_NAME="docker.io/library/sidecarset:$TAG"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

say() { printf '[image] %s\n' "$*" >&2; }

need_tools() {
    missing=""
    command -v buildah >/dev/null 2>&1 || missing="$missing buildah"
    command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        say "missing:$missing. Install them (Debian/Ubuntu: apt-get install$missing) and retry."
        exit 1
    fi
    say "installing$missing (apt-get)"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null
}

build_base() {
    if [ -z "${BASE_REBUILD:-}" ] && buildah inspect --type image "$BASE" >/dev/null 2>&1; then
        say "base $BASE exists"
        return 0
    fi
    rootfs="$(mktemp -d)"
    trap 'rm -rf --one-file-system "$rootfs"' EXIT
    say "debootstrap bookworm minbase + python3 into $rootfs ($MIRROR)"
    debootstrap --variant=minbase \
        --include=python3,python3-venv,python-is-python3,ca-certificates \
        bookworm "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 || {
        tail -20 "$rootfs.log" >&2
        exit 1
    }
    rm -f "$rootfs.log"
    # debootstrap may leave the kernel filesystems it used mounted inside the tree.
    for fs in proc sys dev/pts; do umount "$rootfs/$fs" 2>/dev/null || true; done
    # What a container never needs: package indexes, downloaded .debs, documentation, logs.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
    container="$(buildah from scratch)"
    mount="$(buildah mount "$container")"
    tar -C "$rootfs" --one-file-system -cf - . | tar -C "$mount" -xpf -
    buildah umount "$container" >/dev/null
    buildah config --env LANG=C.UTF-8 \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --cmd python3 "$container"
    buildah commit --quiet --rm "$container" "$BASE" >/dev/null
    rm -rf --one-file-system "$rootfs"
    trap - EXIT
    say "base $BASE built"
}

need_tools
build_base
say "building $IMAGE from $ROOT/Dockerfile"
# chroot isolation: RUN steps need no OCI runtime or cgroup setup (builds inside a container
# work too), and they share the host's network, where pip fetches the locked wheels.
# The host's CA bundle, if it has one where Debian keeps it, is mounted (never copied) into the
# RUN steps, so pip trusts whatever TLS-inspecting proxy the host trusts; the image keeps
# Debian's own bundle.
CA=/etc/ssl/certs/ca-certificates.crt
set --
[ -f "$CA" ] && set -- --volume "$CA:$CA:ro"
buildah build --quiet --layers --isolation=chroot "$@" \
    --build-arg "PYTHON_IMAGE=$BASE" \
    --tag "$IMAGE" "$ROOT" >/dev/null
mkdir -p "$OUT"
rm -f "$OUT/sidecarset-$TAG.tar"
buildah push --quiet "$IMAGE" "docker-archive:$OUT/sidecarset-$TAG.tar:$ARCHIVE_NAME"
say "exported $OUT/sidecarset-$TAG.tar ($ARCHIVE_NAME)"
