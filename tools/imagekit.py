"""Write container images as docker-archive tars, without Docker, from files described in Python.

Standard library only: tools/build_images.py runs before the project's virtualenv exists.

The output is the format `docker save` writes and `ctr -n k8s.io images import` (or
`docker load`) reads: a tar holding `manifest.json` (one entry per image: Config, RepoTags,
Layers), each image's config as `<sha256 of the config>.json`, and each layer as
`<sha256 of the layer>/layer.tar`. The config names architecture amd64 and os linux, carries the
runtime settings (Entrypoint, Cmd, Env, User, WorkingDir, Labels, ExposedPorts,
StopSignal), a `history`
entry per layer, and `rootfs.diff_ids`: the sha256 of each uncompressed layer tar. The image ID
containerd and Docker show is the sha256 of the config.

Usage::

    from imagekit import Image, Layer, directory, file, symlink, write_archive

    base = Layer("busybox", [file("/bin/busybox", source=Path("busybox"), mode=0o755),
                             symlink("/bin/sh", "busybox")])
    app = Layer("agent", [file("/agent", source=Path("agent"), mode=0o755),
                          directory("/tmp", mode=0o1777)])
    write_archive(Path("agent.tar"), [
        Image(["example.local/agent:v1"], [base, app], entrypoint=["/agent"], env={"V": "1"}),
        Image(["example.local/agent:v2"], [base, app], entrypoint=["/agent"], env={"V": "2"}),
    ])

Several images (or several tags of one image) go in one archive and share identical layers: a
layer is stored once, under its digest. Output is deterministic: entries are sorted, every
timestamp is fixed (`EPOCH`), user and group names are empty, so the same inputs give a
byte-identical tar and the same image IDs. Parent directories a layer does not list are added
as root-owned 0755 directories. Bad input (a relative path, a path listed twice, a file without
content, a missing source, a malformed tag) raises `ImageError` with a message for a person.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

EPOCH = 0  # mtime of every entry; "created" in the config is the same instant
CREATED = "1970-01-01T00:00:00Z"
_CHUNK = 1024 * 1024
# A reference as Docker and containerd accept it: [host[:port]/]path[:tag], lower-case path.
_REF = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
)


class ImageError(Exception):
    """Invalid image input, described for a person; no traceback needed."""


@dataclass(frozen=True)
class Entry:
    """One filesystem entry of a layer. Build them with `file`, `directory` and `symlink`."""

    path: str  # absolute path inside the image, e.g. "/usr/share/filebeat/filebeat"
    kind: str  # "file", "dir" or "symlink"
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    data: bytes | None = None  # file content given inline ...
    source: Path | None = None  # ... or read from this host file
    target: str = ""  # what a symlink points to


def file(
    path: str,
    data: bytes | str | None = None,
    *,
    source: Path | None = None,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
) -> Entry:
    """A regular file whose content is `data` (text is UTF-8 encoded) or the host file `source`."""
    if (data is None) == (source is None):
        raise ImageError(f"file {path}: give exactly one of data= or source=")
    content = data.encode() if isinstance(data, str) else data
    return Entry(path, "file", mode, uid, gid, data=content, source=source)


def directory(path: str, *, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path, "dir", mode, uid, gid)


def symlink(path: str, target: str, *, uid: int = 0, gid: int = 0) -> Entry:
    if not target:
        raise ImageError(f"symlink {path}: empty target")
    return Entry(path, "symlink", 0o777, uid, gid, target=target)


def tree(host_dir: Path, prefix: str = "/", *, uid: int = 0, gid: int = 0) -> list[Entry]:
    """Every directory, file and symlink under `host_dir`, placed under `prefix` in the image.

    Modes and symlink targets are kept; owners are set to `uid`/`gid` (an unpacked package is
    owned by whoever unpacked it, not by the owner the image should have).
    """
    if not host_dir.is_dir():
        raise ImageError(f"{host_dir} is not a directory")
    entries: list[Entry] = []
    base = PurePosixPath(prefix)
    for dirpath, dirnames, filenames in os.walk(host_dir):
        dirnames.sort()
        here = Path(dirpath)
        rel = here.relative_to(host_dir)
        for name in [*dirnames, *filenames]:
            host = here / name
            inside = str(base / rel.as_posix() / name) if str(rel) != "." else str(base / name)
            info = host.lstat()
            perm = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                entries.append(symlink(inside, os.readlink(host), uid=uid, gid=gid))
            elif stat.S_ISDIR(info.st_mode):
                entries.append(directory(inside, mode=perm, uid=uid, gid=gid))
            elif stat.S_ISREG(info.st_mode):
                entries.append(file(inside, source=host, mode=perm, uid=uid, gid=gid))
            else:
                raise ImageError(f"{host}: only files, directories and symlinks can go in a layer")
    return entries


@dataclass(frozen=True)
class Layer:
    """A named set of entries; `comment` becomes the layer's `history.created_by`."""

    comment: str
    entries: Sequence[Entry]


@dataclass(frozen=True)
class Image:
    """One image: its references, its layers (bottom first) and its runtime configuration."""

    tags: Sequence[str]
    layers: Sequence[Layer]
    entrypoint: Sequence[str] | None = None
    cmd: Sequence[str] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    user: str = ""
    working_dir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    exposed_ports: Sequence[str] = ()  # e.g. "80/tcp"
    stop_signal: str = ""  # e.g. "SIGQUIT"; containerd sends it on stop instead of SIGTERM


@dataclass(frozen=True)
class WrittenImage:
    """What `write_archive` wrote for one image: its ID (sha256 of the config) and layer digests."""

    tags: tuple[str, ...]
    image_id: str
    diff_ids: tuple[str, ...]


def _normalize(path: str) -> str:
    if not path.startswith("/"):
        raise ImageError(f"{path!r}: paths inside an image must be absolute (start with /)")
    parts = PurePosixPath(path).parts
    if ".." in parts:
        raise ImageError(f"{path!r}: '..' is not allowed in a path inside an image")
    if len(parts) < 2:
        raise ImageError(f"{path!r}: the root directory cannot be an entry")
    return str(PurePosixPath(*parts))


def _check_entry(entry: Entry) -> None:
    if entry.kind not in ("file", "dir", "symlink"):
        raise ImageError(f"{entry.path}: unknown entry kind {entry.kind!r}")
    if not 0 <= entry.mode <= 0o7777:
        raise ImageError(f"{entry.path}: mode {entry.mode:o} is not a permission mode")
    if entry.uid < 0 or entry.gid < 0:
        raise ImageError(f"{entry.path}: uid and gid must not be negative")
    if entry.kind == "file":
        if (entry.data is None) == (entry.source is None):
            raise ImageError(f"file {entry.path}: give exactly one of data= or source=")
        if entry.source is not None and not entry.source.is_file():
            raise ImageError(f"file {entry.path}: source {entry.source} is not a readable file")


def _layer_members(layer: Layer) -> list[Entry]:
    """The layer's entries by normalized path, with missing parent directories added, sorted."""
    by_path: dict[str, Entry] = {}
    for entry in layer.entries:
        _check_entry(entry)
        path = _normalize(entry.path)
        if path in by_path:
            raise ImageError(f"layer {layer.comment!r}: {path} is listed twice")
        by_path[path] = Entry(
            path,
            entry.kind,
            entry.mode,
            entry.uid,
            entry.gid,
            entry.data,
            entry.source,
            entry.target,
        )
    for path in list(by_path):
        for parent in PurePosixPath(path).parents:
            key = str(parent)
            if key == "/":
                break
            existing = by_path.get(key)
            if existing is None:
                by_path[key] = directory(key)
            elif existing.kind != "dir":
                raise ImageError(
                    f"layer {layer.comment!r}: {path} is inside {key}, which is a {existing.kind}"
                )
    if not by_path:
        raise ImageError(f"layer {layer.comment!r} has no entries")
    return [by_path[p] for p in sorted(by_path)]


def _tarinfo(
    name: str, kind: bytes, mode: int, uid: int, gid: int, size: int = 0
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""
    info.mtime = EPOCH
    info.size = size
    return info


def _write_layer(layer: Layer, dest: Path) -> str:
    """Write one layer tar to `dest`; return `sha256:<hex>` of its bytes (the diff_id)."""
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in _layer_members(layer):
            name = entry.path.lstrip("/")
            if entry.kind == "dir":
                tar.addfile(_tarinfo(name + "/", tarfile.DIRTYPE, entry.mode, entry.uid, entry.gid))
            elif entry.kind == "symlink":
                info = _tarinfo(name, tarfile.SYMTYPE, entry.mode, entry.uid, entry.gid)
                info.linkname = entry.target
                tar.addfile(info)
            elif entry.data is not None:
                info = _tarinfo(
                    name, tarfile.REGTYPE, entry.mode, entry.uid, entry.gid, len(entry.data)
                )
                tar.addfile(info, io.BytesIO(entry.data))
            else:
                assert entry.source is not None
                size = entry.source.stat().st_size
                info = _tarinfo(name, tarfile.REGTYPE, entry.mode, entry.uid, entry.gid, size)
                with entry.source.open("rb") as src:
                    tar.addfile(info, src)
    return "sha256:" + _sha256_file(dest)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _config(image: Image, diff_ids: Sequence[str]) -> dict[str, object]:
    runtime: dict[str, object] = {
        "Env": [f"{k}={v}" for k, v in image.env.items()],
        "Labels": dict(image.labels),
    }
    if image.entrypoint is not None:
        runtime["Entrypoint"] = list(image.entrypoint)
    if image.cmd is not None:
        runtime["Cmd"] = list(image.cmd)
    if image.user:
        runtime["User"] = image.user
    if image.working_dir:
        runtime["WorkingDir"] = image.working_dir
    if image.exposed_ports:
        runtime["ExposedPorts"] = {p: {} for p in image.exposed_ports}
    if image.stop_signal:
        runtime["StopSignal"] = image.stop_signal
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": CREATED,
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": CREATED, "created_by": layer.comment} for layer in image.layers],
    }


def _check_image(image: Image) -> None:
    if isinstance(image.tags, str) or not image.tags:
        raise ImageError("an image needs a list of one or more tags, e.g. ['example.local/a:1']")
    for tag in image.tags:
        if not _REF.match(tag):
            raise ImageError(
                f"{tag!r} is not a valid image reference; expected [registry/]name:tag with a "
                "lower-case name and a tag of letters, digits, '_', '.' or '-'"
            )
    if not image.layers:
        raise ImageError(f"image {image.tags[0]} has no layers")
    if image.working_dir and not image.working_dir.startswith("/"):
        raise ImageError(f"image {image.tags[0]}: working_dir must be absolute")
    for key in image.env:
        if not key or "=" in key:
            raise ImageError(f"image {image.tags[0]}: bad environment variable name {key!r}")


def _outer_member(tar: tarfile.TarFile, name: str, data: bytes | None, path: Path | None) -> None:
    if data is not None:
        tar.addfile(_tarinfo(name, tarfile.REGTYPE, 0o644, 0, 0, len(data)), io.BytesIO(data))
    else:
        assert path is not None
        info = _tarinfo(name, tarfile.REGTYPE, 0o644, 0, 0, path.stat().st_size)
        with path.open("rb") as src:
            tar.addfile(info, src)


def write_archive(out: Path, images: Iterable[Image]) -> list[WrittenImage]:
    """Write `images` into one docker-archive tar at `out` (replaced atomically).

    Returns each image's ID and layer digests. Raises ImageError for bad input; nothing is left
    at `out` when it does.
    """
    images = list(images)
    if not images:
        raise ImageError("write_archive needs at least one image")
    seen_tags: set[str] = set()
    for image in images:
        _check_image(image)
        for tag in image.tags:
            if tag in seen_tags:
                raise ImageError(f"{tag} is given to two images in one archive")
            seen_tags.add(tag)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".imagekit-", dir=out.parent))
    try:
        layer_files: dict[str, Path] = {}  # diff_id -> layer tar
        by_layer: dict[int, str] = {}  # id(Layer) -> diff_id: a shared Layer is written once
        manifest: list[dict[str, object]] = []
        configs: dict[str, bytes] = {}
        written: list[WrittenImage] = []
        for image in images:
            diff_ids: list[str] = []
            for layer in image.layers:
                if id(layer) not in by_layer:
                    scratch = work / f"layer-{len(by_layer)}.tar"
                    diff_id = _write_layer(layer, scratch)
                    by_layer[id(layer)] = diff_id
                    if diff_id in layer_files:
                        scratch.unlink()
                    else:
                        layer_files[diff_id] = scratch
                diff_ids.append(by_layer[id(layer)])
            config = _canonical(_config(image, diff_ids))
            config_hex = hashlib.sha256(config).hexdigest()
            configs[config_hex] = config
            manifest.append(
                {
                    "Config": f"{config_hex}.json",
                    "RepoTags": list(image.tags),
                    "Layers": [f"{d.removeprefix('sha256:')}/layer.tar" for d in diff_ids],
                }
            )
            written.append(WrittenImage(tuple(image.tags), "sha256:" + config_hex, tuple(diff_ids)))
        partial = work / "archive.tar"
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            for diff_id in sorted(layer_files):
                hex_ = diff_id.removeprefix("sha256:")
                tar.addfile(_tarinfo(hex_ + "/", tarfile.DIRTYPE, 0o755, 0, 0))
                _outer_member(tar, f"{hex_}/layer.tar", None, layer_files[diff_id])
            for config_hex in sorted(configs):
                _outer_member(tar, f"{config_hex}.json", configs[config_hex], None)
            _outer_member(tar, "manifest.json", json.dumps(manifest, indent=1).encode(), None)
        os.replace(partial, out)
        return written
    finally:
        shutil.rmtree(work, ignore_errors=True)


def read_manifest(archive: Path) -> list[dict[str, object]]:
    """The `manifest.json` of a docker-archive tar (for checks and tests)."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        if member is None:
            raise ImageError(f"{archive} has no manifest.json")
        loaded: list[dict[str, object]] = json.loads(member.read())
        return loaded
