"""Deterministic image digests, so the same image reference always reports the same `imageID`."""

from __future__ import annotations

import hashlib


def repository(image: str) -> str:
    """`repo[:tag][@digest]` -> `repo` (a registry port such as `host:5000/x` is kept)."""
    ref = image.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return ref[:colon] if colon > slash else ref


def image_id(image: str) -> str:
    """`repo@sha256:<hex>`; a digest-pinned reference keeps its own digest, as a registry would."""
    if "@sha256:" in image:
        digest = image.split("@", 1)[1]
        return f"{repository(image)}@{digest}"
    digest = hashlib.sha256(image.encode()).hexdigest()
    return f"{repository(image)}@sha256:{digest}"


def container_id(*parts: str) -> str:
    return "containerd://" + hashlib.sha256("/".join(parts).encode()).hexdigest()
