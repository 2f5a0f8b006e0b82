#!/usr/bin/env python3
"""Build the container images the real kubelet + containerd node runs, from pinned sources.

Standard library only: it runs before the project's virtualenv exists (like build_testbin.py).
Each image is written by tools/imagekit.py as a docker-archive tar into `<testbin>/images/`
(`$SIDECARSET_TESTBIN` or `.testbin/`, or `--out DIR`), ready for
`ctr -n k8s.io images import <tar>`, with `index.json` listing every reference, its tar, where
it came from and how long it took. Nothing is pulled from a container registry:

- pause       registry.k8s.io/pause:3.10, compiled from build/pause/linux/pause.c of the
              k8s.io/kubernetes module that tools/k8s-testbin pins (gcc -static).
- filebeat-*  docker.elastic.co/beats/filebeat:7.16.2 and :7.16.3, each compiled from
              github.com/elastic/beats/v7 at that version, in Elastic's image layout.
- nginx       sidecarset.local/nginx:<Debian version>, Debian's nginx package (the app).
- testagent   sidecarset.local/testagent:v1|v2|v3|broken|empty, tools/images/testagent.

Every image except pause carries Debian's static busybox as /bin/sh (and cat, ls, sleep, wget).
All pinned versions are in PINS below. A per-image stamp (the pins plus a hash of this builder's
sources) makes a second run a no-op; `--force` rebuilds, `--only NAME` builds one image.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import imagekit
from build_testbin import BuildError, check_go, required_version, run_build
from imagekit import Image, ImageError, Layer, directory, file, symlink

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"
K8S_GO_MOD = TOOLS / "k8s-testbin" / "go.mod"
TESTAGENT_DIR = TOOLS / "images" / "testagent"
DEFAULT_TESTBIN = ROOT / ".testbin"

# Every pinned input in one place (the Kubernetes version comes from tools/k8s-testbin/go.mod).
PINS = {
    "filebeat": ("7.16.2", "7.16.3"),
    "beats_module": "github.com/elastic/beats/v7",
    "busybox-static": "1:1.35.0-4+deb12u1+b1",  # Debian 12 package versions, for apt-get download
    # The bookworm point-release version, not the -security one: the security archive keeps only
    # its latest build, so a pin on it breaks the day the next fix lands (u11 went on 2026-12-04).
    "nginx": "1.22.1-9+deb12u9",
    "pause_ref": "registry.k8s.io/pause:3.10",
}
BUSYBOX_APPLETS = ("sh", "cat", "ls", "sleep", "wget", "echo", "grep", "wc", "test", "[", "ps")
SHELL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SOURCE_LABEL = "org.opencontainers.image.source"


# ---------------------------------------------------------------------------------------------
# Running commands


@dataclass
class Context:
    """What a recipe needs while it builds: where to write, a scratch dir, the log, caches."""

    out: Path
    work: Path
    log: Path
    cache: Path
    _go: str | None = None
    _apt_updated: bool = False
    _debs: dict[str, Path] = field(default_factory=dict)

    def go(self) -> str:
        if self._go is None:
            self._go = check_go()
        return self._go

    def run(
        self,
        title: str,
        cmd: Sequence[str],
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        hint: str = "",
        explain: Callable[[str], str | None] | None = None,
    ) -> str:
        """Run one command with a heartbeat every 30 s; return its stdout (stderr is logged).

        On failure `explain(stdout)` may name the cause in one sentence; otherwise the message
        carries `hint` and this command's last log lines.
        """
        print(f"    - {title}", flush=True)
        start = time.monotonic()
        with self.log.open("a") as sink, tempfile.TemporaryFile("w+") as stdout:
            sink.write(f"\n$ (cd {cwd or os.getcwd()} && {' '.join(cmd)})\n")
            sink.flush()
            logged_from = sink.tell()
            try:
                proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=stdout, stderr=sink)
            except FileNotFoundError as err:
                raise BuildError(f"{title}: {cmd[0]} is not installed. {hint}".strip()) from err
            while True:
                try:
                    proc.wait(timeout=30)
                    break
                except subprocess.TimeoutExpired:
                    print(f"      ... still working ({time.monotonic() - start:.0f}s)", flush=True)
            stdout.seek(0)
            output = stdout.read()
            sink.write(output[-4000:])
        if proc.returncode == 0:
            return output
        cause = explain(output) if explain else None
        if cause:
            raise BuildError(f"{title} failed: {cause}")
        with self.log.open() as logged:
            logged.seek(logged_from)
            tail = "".join(logged.read().splitlines(keepends=True)[-20:])
        raise BuildError(
            f"{title} failed (exit {proc.returncode}) after {time.monotonic() - start:.0f}s. "
            f"{hint}\nLast lines of its output (full log: {self.log}):\n{tail}"
        )

    def go_env(self) -> dict[str, str]:
        """Static binaries with the local toolchain, leaving the module cache deletable."""
        env = dict(os.environ)
        env.update(GOTOOLCHAIN="local", GOWORK="off", CGO_ENABLED="0")
        env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -modcacherw").strip()
        return env

    def go_build(self, name: str, package: str, cwd: Path, env: dict[str, str], title: str) -> Path:
        """`go build` one static, stripped, reproducible binary into the scratch dir as `name`."""
        binary = self.work / name
        flags = ["-trimpath", "-buildvcs=false", "-ldflags", "-s -w"]
        self.run(
            title,
            [self.go(), "build", *flags, "-o", str(binary), package],
            cwd=cwd,
            env=env,
            hint="A Go module could not be fetched from the module proxy, or the build broke.",
        )
        return binary

    def module_dir(self, module: str, version: str) -> Path:
        """Download a Go module into the module cache and return its directory."""

        def proxy_error(printed: str) -> str | None:
            try:
                error = json.loads(printed).get("Error")
            except (json.JSONDecodeError, AttributeError):
                return None
            return (
                f"the Go module proxy does not serve {module}@{version}: {error}" if error else None
            )

        out = self.run(
            f"go mod download {module}@{version}",
            [self.go(), "mod", "download", "-json", f"{module}@{version}"],
            cwd=self.work,
            env=self.go_env(),
            hint="Is the Go module proxy reachable? Check GOPROXY and the network.",
            explain=proxy_error,
        )
        try:
            directory_ = json.loads(out).get("Dir")
        except (json.JSONDecodeError, AttributeError) as err:
            raise BuildError(f"go mod download {module}@{version} printed no JSON") from err
        if not directory_:
            raise BuildError(f"go mod download {module}@{version} reported no directory")
        return Path(directory_)

    def deb(self, package: str, version: str) -> Path:
        """`apt-get download` one pinned Debian package (cached) and unpack it; return the tree."""
        key = f"{package}={version}"
        if key in self._debs:
            return self._debs[key]
        debs = self.cache / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        pattern = f"{package}_{version.replace(':', '%3a')}_*.deb"
        found = sorted(debs.glob(pattern))
        if not found:
            if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
                raise BuildError(
                    f"{package} comes from Debian packages, but apt-get/dpkg-deb are missing: "
                    "this builder needs a Debian or Ubuntu host"
                )
            if not self._apt_updated:
                self.run("apt-get update", ["apt-get", "update", "-q"], hint=apt_hint())
                self._apt_updated = True
            self.run(
                f"apt-get download {key}",
                ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", key],
                cwd=debs,
                hint=f"Is version {version} of {package} still in the archive? `apt-cache "
                f"policy {package}` lists what is; change PINS in tools/build_images.py.",
            )
            found = sorted(debs.glob(pattern))
            if not found:
                raise BuildError(f"apt-get download {key} left no {pattern} in {debs}")
        tree = self.work / "deb" / package
        tree.mkdir(parents=True, exist_ok=True)
        self.run(f"unpack {found[0].name}", ["dpkg-deb", "-x", str(found[0]), str(tree)])
        self._debs[key] = tree
        return tree


def apt_hint() -> str:
    if os.geteuid() != 0:
        return "apt-get update needs root; run the image build as root."
    return "Check the apt sources and the network."


def kubernetes_version() -> str:
    return required_version(K8S_GO_MOD, "k8s.io/kubernetes")


# ---------------------------------------------------------------------------------------------
# Shared pieces


def busybox_layer(ctx: Context) -> Layer:
    """Debian's static busybox at /bin/busybox with applet links (sh for exec probes)."""
    version = PINS["busybox-static"]
    assert isinstance(version, str)
    binary = ctx.deb("busybox-static", version) / "bin" / "busybox"
    if not binary.is_file():
        raise BuildError(f"busybox-static {version} has no bin/busybox")
    entries = [file("/bin/busybox", source=binary, mode=0o755)]
    entries += [symlink(f"/bin/{applet}", "busybox") for applet in BUSYBOX_APPLETS]
    entries.append(directory("/tmp", mode=0o1777))
    return Layer(
        f"busybox-static {version} (Debian), applets: {' '.join(BUSYBOX_APPLETS)}", entries
    )


def accounts(
    users: Sequence[tuple[str, int, int, str]], groups: Sequence[tuple[str, int, str]]
) -> list[imagekit.Entry]:
    """/etc/passwd and /etc/group for (name, uid, gid, home) users and (name, gid, members)."""
    passwd = "".join(f"{n}:x:{u}:{g}:{n}:{h}:/bin/sh\n" for n, u, g, h in users)
    group = "".join(f"{n}:x:{g}:{m}\n" for n, g, m in groups)
    return [file("/etc/passwd", passwd), file("/etc/group", group)]


def write(ctx: Context, name: str, images: Sequence[Image]) -> list[imagekit.WrittenImage]:
    try:
        return imagekit.write_archive(ctx.out / f"{name}.tar", images)
    except ImageError as err:
        raise BuildError(f"{name}: {err}") from err


def entries_for(
    written: Sequence[imagekit.WrittenImage], tar: str, source: str, **extra: str
) -> list[dict[str, object]]:
    return [
        {"ref": tag, "tar": tar, "source": source, "id": w.image_id, **extra}
        for w in written
        for tag in w.tags
    ]


# ---------------------------------------------------------------------------------------------
# Recipes


@dataclass(frozen=True)
class Recipe:
    """One tar: its name (for --only), the pinned inputs its stamp records, and how to build it."""

    name: str
    inputs: dict[str, object]
    build: Callable[[Context], list[dict[str, object]]]


def build_pause(ctx: Context) -> list[dict[str, object]]:
    version = kubernetes_version()
    pause_dir = ctx.module_dir("k8s.io/kubernetes", version) / "build" / "pause"
    source = pause_dir / "linux" / "pause.c"
    match = re.search(r"^TAG \?= (\S+)", (pause_dir / "Makefile").read_text(), re.M)
    if not source.is_file() or not match:
        raise BuildError(f"k8s.io/kubernetes@{version} has no build/pause/linux/pause.c + Makefile")
    tag = match.group(1)
    binary = ctx.work / "pause"
    ctx.run(
        f"gcc -static pause.c (pause {tag})",
        [
            "gcc",
            "-static",
            "-O2",
            "-Wall",
            "-Werror",
            f"-DVERSION=v{tag}-{version}",
            "-o",
            str(binary),
            str(source),
        ],
        hint="The pause image is compiled from C: install gcc and the static C library "
        "(Debian: apt-get install gcc libc6-dev).",
    )
    ctx.run("strip pause", ["strip", str(binary)], hint="strip comes with binutils.")
    printed = ctx.run("pause -v", [str(binary), "-v"])
    if f"v{tag}" not in printed:
        raise BuildError(f"the compiled pause printed {printed!r}, expected its version v{tag}")
    ref = str(PINS["pause_ref"])
    tags = [ref] if ref.endswith(f":{tag}") else [ref, f"registry.k8s.io/pause:{tag}"]
    image = Image(
        tags,
        [
            Layer(
                f"pause.c from k8s.io/kubernetes@{version}",
                [file("/pause", source=binary, mode=0o755)],
            )
        ],
        entrypoint=["/pause"],
        user="65535:65535",
        labels={
            SOURCE_LABEL: f"k8s.io/kubernetes@{version} build/pause",
            "org.opencontainers.image.version": tag,
        },
    )
    source_line = f"pause.c {tag} from k8s.io/kubernetes@{version}, gcc -static -O2"
    return entries_for(write(ctx, "pause", [image]), "pause.tar", source_line)


FILEBEAT_HOME = "/usr/share/filebeat"
# Elastic's image ships a filebeat.yml for Elasticsearch; ours is the same shape minus the cloud
# and Docker metadata processors (they probe cloud metadata addresses) and defaults to loopback.
FILEBEAT_YML = """\
# Default configuration of this locally built image; pods normally mount their own.
filebeat.config:
  modules:
    path: ${path.config}/modules.d/*.yml
    reload.enabled: false

output.elasticsearch:
  hosts: '${ELASTICSEARCH_HOSTS:127.0.0.1:9200}'
  username: '${ELASTICSEARCH_USERNAME:}'
  password: '${ELASTICSEARCH_PASSWORD:}'
"""
# Like Elastic's docker-entrypoint: flags (or nothing) go to filebeat, so do filebeat's own
# subcommands (the list `filebeat help` prints in 7.16); anything else runs as given.
FILEBEAT_ENTRYPOINT = """\
#!/bin/sh
set -eu
case "${1:-}" in
  ""|-*) exec filebeat "$@" ;;
  export|generate|help|keystore|modules|run|setup|test|version) exec filebeat "$@" ;;
esac
exec "$@"
"""


def filebeat_modules(source: Path) -> list[imagekit.Entry]:
    """Filebeat's module definitions as Elastic packages them: `module/<name>/` without the
    tests, Go files and `_meta`, plus `modules.d/<name>.yml.disabled` from each `_meta/config.yml`.
    """
    home, modules = FILEBEAT_HOME, source / "filebeat" / "module"
    entries: list[imagekit.Entry] = []
    for path in sorted(modules.rglob("*")):
        rel = path.relative_to(modules)
        if path.is_file() and path.suffix != ".go" and not {"_meta", "test"} & set(rel.parts):
            entries.append(file(f"{home}/module/{rel.as_posix()}", source=path, mode=0o644))
    for config in sorted(modules.glob("*/_meta/config.yml")):
        name = config.parent.parent.name
        entries.append(file(f"{home}/modules.d/{name}.yml.disabled", source=config, mode=0o644))
    if not entries:
        raise BuildError(f"{modules} holds no module definitions")
    return entries


def filebeat_recipe(version: str) -> Recipe:
    def build(ctx: Context) -> list[dict[str, object]]:
        module = str(PINS["beats_module"])
        source = ctx.module_dir(module, f"v{version}")
        tree = ctx.work / f"beats-{version}"
        shutil.copytree(source, tree, symlinks=True)
        for path in [tree, *tree.rglob("*")]:  # the module cache is read-only
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o200)
        env = ctx.go_env()
        env["GOFLAGS"] = env["GOFLAGS"] + " -mod=mod"  # the module's go.sum may be incomplete
        title = f"go build ./filebeat ({module}@v{version}; minutes when cold)"
        binary = ctx.go_build("filebeat", "./filebeat", tree, env, title)
        printed = ctx.run("filebeat version", [str(binary), "version"])
        if f"filebeat version {version}" not in printed:
            raise BuildError(
                f"the built binary printed {printed!r}, not filebeat version {version}"
            )
        home = FILEBEAT_HOME
        layer = Layer(
            f"filebeat {version} built from {module}@v{version} (CGO_ENABLED=0)",
            [
                *accounts(
                    [("root", 0, 0, "/root"), ("filebeat", 1000, 0, home)],
                    [("root", 0, "filebeat"), ("filebeat", 1000, "")],
                ),
                file("/usr/local/bin/docker-entrypoint", FILEBEAT_ENTRYPOINT, mode=0o755),
                directory(home, mode=0o755),
                file(f"{home}/filebeat", source=binary, mode=0o755),
                file(f"{home}/filebeat.yml", FILEBEAT_YML, mode=0o644),
                directory(f"{home}/modules.d", mode=0o775),
                directory(f"{home}/data", mode=0o775, uid=1000, gid=0),
                directory(f"{home}/logs", mode=0o775, uid=1000, gid=0),
                *filebeat_modules(source),
                file(f"{home}/LICENSE.txt", source=source / "LICENSE.txt", mode=0o644),
                file(f"{home}/NOTICE.txt", source=source / "NOTICE.txt", mode=0o644),
            ],
        )
        ref = f"docker.elastic.co/beats/filebeat:{version}"
        image = Image(
            [ref],
            [busybox_layer(ctx), layer],
            entrypoint=["/usr/local/bin/docker-entrypoint"],
            cmd=["-environment", "container"],
            env={
                "PATH": f"{home}:{SHELL_PATH}",
                "ELASTIC_CONTAINER": "true",
                "LIBBEAT_MONITORING_CGROUPS_HIERARCHY_OVERRIDE": "/",
            },
            user="filebeat",
            working_dir=home,
            labels={
                SOURCE_LABEL: f"https://{module.removesuffix('/v7')}",
                "org.opencontainers.image.version": version,
                "org.opencontainers.image.title": "filebeat",
                "org.opencontainers.image.licenses": "Apache-2.0",
                "org.opencontainers.image.description": (
                    f"Filebeat {version} compiled locally by sidecarset tools/build_images.py "
                    f"from {module}@v{version}; not Elastic's published image"
                ),
            },
        )
        name = f"filebeat-{version}"
        line = f"filebeat built locally from {module}@v{version} (go build), Elastic's layout"
        return entries_for(write(ctx, name, [image]), f"{name}.tar", line)

    return Recipe(
        f"filebeat-{version}",
        {"beats": version, "busybox": PINS["busybox-static"]},
        build,
    )


NGINX_CONF = """\
# sidecarset's app image: one worker, foreground, one access-log line per request.
user www-data;
worker_processes 1;
daemon off;
pid /run/nginx.pid;
error_log stderr notice;

events {
    worker_connections 512;
}

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    # nginx's "combined" format followed by the request time in seconds.
    log_format combined_timed '$remote_addr - $remote_user [$time_local] "$request" '
                              '$status $body_bytes_sent "$http_referer" '
                              '"$http_user_agent" $request_time';
    access_log /var/log/nginx/access.log combined_timed;

    server {
        listen 80 default_server;
        root /usr/share/nginx/html;
        index index.html;
        location / {
            try_files $uri $uri/ /index.html;
        }
    }
}
"""
NGINX_PAGE = "<!doctype html><title>sidecarset app</title><p>Hello from the sidecarset demo app.\n"


def nginx_tag(debian_version: str) -> str:
    """A valid image tag for a Debian version: '+' and ':' are not allowed in tags."""
    return debian_version.replace(":", "_").replace("+", "_")


def parse_ldd(printed: str, binary: str) -> list[Path]:
    """The absolute paths of the libraries (and the loader) in `ldd`'s output."""
    found: list[Path] = []
    for line in printed.splitlines():
        if "not found" in line:
            raise BuildError(f"{binary} needs a library the host does not have: {line.strip()}")
        match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if match:
            found.append(Path(match.group(1)))
    if not found:
        raise BuildError(f"ldd found no shared libraries for {binary}: {printed.strip()!r}")
    return found


def shared_libraries(binary: Path, ctx: Context) -> list[Path]:
    printed = ctx.run(f"ldd {binary.name}", ["ldd", str(binary)], hint="ldd comes with libc-bin.")
    return parse_ldd(printed, binary.name)


def build_nginx(ctx: Context) -> list[dict[str, object]]:
    version = str(PINS["nginx"])
    binary_tree = ctx.deb("nginx", version)
    common = ctx.deb("nginx-common", version)
    binary = binary_tree / "usr" / "sbin" / "nginx"
    doc = binary_tree / "usr" / "share" / "doc" / "nginx"
    printed = ctx.run("nginx -v", [str(binary), "-v"])  # nginx prints its version on stderr
    del printed
    libraries = shared_libraries(binary, ctx)
    lib_layer = Layer(
        "shared libraries nginx needs (ldd), from the Debian host",
        [file(str(lib), source=lib.resolve(), mode=0o755) for lib in libraries],
    )
    www = 33
    app_layer = Layer(
        f"nginx {version} (Debian packages nginx, nginx-common)",
        [
            *accounts(
                [("root", 0, 0, "/root"), ("www-data", www, www, "/var/www")],
                [("root", 0, ""), ("www-data", www, "")],
            ),
            file("/usr/sbin/nginx", source=binary, mode=0o755),
            file("/etc/nginx/mime.types", source=common / "etc/nginx/mime.types"),
            file("/etc/nginx/nginx.conf", NGINX_CONF),
            file("/usr/share/nginx/html/index.html", NGINX_PAGE),
            directory("/var/log/nginx", mode=0o755),
            directory("/var/lib/nginx", mode=0o755, uid=www, gid=www),
            directory("/var/www", mode=0o755, uid=www, gid=www),
            directory("/run", mode=0o755),
            file("/usr/share/doc/nginx/copyright", source=doc / "copyright"),
        ],
    )
    ref = f"sidecarset.local/nginx:{nginx_tag(version)}"
    image = Image(
        [ref],
        [busybox_layer(ctx), lib_layer, app_layer],
        cmd=["/usr/sbin/nginx"],
        env={"PATH": SHELL_PATH},
        exposed_ports=["80/tcp"],
        stop_signal="SIGQUIT",
        labels={
            SOURCE_LABEL: "https://packages.debian.org/bookworm/nginx",
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.description": (
                f"Debian's nginx {version}, unpacked and assembled by sidecarset "
                "tools/build_images.py; access log /var/log/nginx/access.log"
            ),
        },
    )
    line = f"Debian nginx {version} (apt-get download + dpkg-deb -x), libraries via ldd"
    return entries_for(write(ctx, "nginx", [image]), "nginx.tar", line, role="app")


TESTAGENT_REPO = "sidecarset.local/testagent"


def build_testagent(ctx: Context) -> list[dict[str, object]]:
    binary = ctx.go_build("testagent", ".", TESTAGENT_DIR, ctx.go_env(), "go build testagent")
    ctx.run("testagent sleep 1ms", [str(binary), "sleep", "1ms"])
    agent = Layer(
        "testagent (tools/images/testagent, CGO_ENABLED=0)",
        [file("/usr/local/bin/testagent", source=binary, mode=0o755)],
    )
    base = busybox_layer(ctx)

    def image(tag: str, cmd: list[str], **env: str) -> Image:
        return Image(
            [f"{TESTAGENT_REPO}:{tag}"],
            [base, agent],
            entrypoint=["/usr/local/bin/testagent"],
            cmd=cmd,
            env={"PATH": SHELL_PATH, "AGENT_VERSION": tag, **env},
            exposed_ports=["8080/tcp"],
            labels={
                SOURCE_LABEL: "sidecarset tools/images/testagent",
                "org.opencontainers.image.version": tag,
            },
        )

    images = [image(v, ["serve"]) for v in ("v1", "v2", "v3")]
    images.append(image("broken", ["serve"], AGENT_BROKEN="this image is built to crash at start"))
    images.append(image("empty", ["sleep"]))
    line = "testagent built from tools/images/testagent (Go, static)"
    return entries_for(write(ctx, "testagent", images), "testagent.tar", line)


def recipes() -> list[Recipe]:
    versions = tuple(str(v) for v in PINS["filebeat"])
    return [
        Recipe("pause", {"k8s": kubernetes_version(), "ref": PINS["pause_ref"]}, build_pause),
        Recipe("testagent", {"busybox": PINS["busybox-static"]}, build_testagent),
        *[filebeat_recipe(v) for v in versions],
        Recipe("nginx", {"nginx": PINS["nginx"], "busybox": PINS["busybox-static"]}, build_nginx),
    ]


# ---------------------------------------------------------------------------------------------
# Stamps and the index


def sources_hash(paths: Sequence[Path]) -> str:
    """sha256 over the builder's own files, so editing a recipe or the agent rebuilds."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        digest.update(str(name).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def builder_sources() -> list[Path]:
    return [
        TOOLS / "imagekit.py",
        TOOLS / "build_images.py",
        *[p for p in TESTAGENT_DIR.rglob("*") if p.is_file()],
    ]


def stamp_key(recipe: Recipe, sources: str) -> str:
    return hashlib.sha256(
        json.dumps({"inputs": recipe.inputs, "sources": sources}, sort_keys=True).encode()
    ).hexdigest()


def read_stamp(out: Path, name: str) -> dict[str, object] | None:
    try:
        stamp = json.loads((out / f"{name}.stamp.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return stamp if isinstance(stamp, dict) else None


def is_built(out: Path, recipe: Recipe, key: str) -> bool:
    stamp = read_stamp(out, recipe.name)
    return bool(stamp) and stamp.get("key") == key and (out / f"{recipe.name}.tar").is_file()  # type: ignore[union-attr]


def write_index(out: Path, all_recipes: Sequence[Recipe]) -> None:
    """index.json from the stamps of every image built so far, in recipe order."""
    images: list[object] = []
    for recipe in all_recipes:
        stamp = read_stamp(out, recipe.name)
        if stamp and (out / f"{recipe.name}.tar").is_file():
            entries = stamp.get("entries")
            if isinstance(entries, list):
                images.extend(entries)
    body = json.dumps({"images": images}, indent=2) + "\n"
    tmp = out / "index.json.tmp"
    tmp.write_text(body)
    tmp.replace(out / "index.json")


def build_all(
    out: Path,
    all_recipes: Sequence[Recipe],
    only: str | None = None,
    force: bool = False,
    sources: Sequence[Path] | None = None,
) -> list[str]:
    """Build what is missing or stale; return the names built (empty when all were current)."""
    names = [r.name for r in all_recipes]
    if only is not None and only not in names:
        raise BuildError(f"no image named {only!r}; choose one of: {', '.join(names)}")
    chosen = [r for r in all_recipes if only is None or r.name == only]
    digest = sources_hash(builder_sources() if sources is None else sources)
    out.mkdir(parents=True, exist_ok=True)
    todo = [(r, stamp_key(r, digest)) for r in chosen]
    todo = [(r, key) for r, key in todo if force or not is_built(out, r, key)]
    if not todo:
        print(f"images already built in {out}: {', '.join(r.name for r in chosen)}")
        write_index(out, all_recipes)
        return []
    log = out / "build.log"
    log.write_text("")
    print(f"building {', '.join(r.name for r, _ in todo)} into {out} (full log: {log})", flush=True)
    built: list[str] = []
    with tempfile.TemporaryDirectory(prefix="sidecarset-images-") as scratch:
        ctx = Context(out=out, work=Path(scratch), log=log, cache=out / "cache")
        for recipe, key in todo:
            print(f"==> {recipe.name}", flush=True)
            start = time.monotonic()
            (out / f"{recipe.name}.stamp.json").unlink(missing_ok=True)
            entries = recipe.build(ctx)
            seconds = round(time.monotonic() - start, 1)
            for entry in entries:
                entry["seconds"] = seconds
            stamp = {"key": key, "inputs": recipe.inputs, "entries": entries}
            (out / f"{recipe.name}.stamp.json").write_text(json.dumps(stamp, indent=2) + "\n")
            size = (out / f"{recipe.name}.tar").stat().st_size
            print(f"    done in {seconds:.0f}s: {recipe.name}.tar, {size / 1e6:.1f} MB", flush=True)
            built.append(recipe.name)
    write_index(out, all_recipes)
    return built


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build the real node's container images from pinned sources (skips if built).",
        epilog="example: python3 tools/build_images.py              # all, into .testbin/images/\n"
        "         python3 tools/build_images.py --only testagent\n"
        "         SIDECARSET_TESTBIN=/opt/kb python3 tools/build_images.py --force",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where the tars go (default: $SIDECARSET_TESTBIN/images or .testbin/images/)",
    )
    parser.add_argument("--only", metavar="NAME", help="build only this image (e.g. pause)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the stamp matches")
    parser.add_argument("--list", action="store_true", help="list the image names and exit")
    args = parser.parse_args(argv)
    out = args.out or Path(os.environ.get("SIDECARSET_TESTBIN", DEFAULT_TESTBIN)) / "images"

    def steps() -> None:
        all_recipes = recipes()
        if args.list:
            print("\n".join(r.name for r in all_recipes))
            return
        build_all(out.resolve(), all_recipes, only=args.only, force=args.force)

    return run_build(steps)


if __name__ == "__main__":
    sys.exit(main())
