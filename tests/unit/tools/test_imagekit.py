"""tools/imagekit.py writes docker-archive tars that containerd imports; build_images.py skips
what is already built. Fast: no network, no Go, no containerd."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[3] / "tools"
sys.path.insert(0, str(TOOLS))
import build_images  # noqa: E402
import build_testbin  # noqa: E402
import imagekit  # noqa: E402
from imagekit import Image, ImageError, Layer, directory, file, symlink  # noqa: E402


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def member(archive: Path, name: str) -> bytes:
    with tarfile.open(archive) as tar:
        extracted = tar.extractfile(name)
        assert extracted is not None, name
        return extracted.read()


def layer_members(archive: Path, layer: str) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(member(archive, layer))) as tar:
        return {info.name: info for info in tar.getmembers()}


def small_image(tmp_path: Path, tag: str = "example.local/app:1", **env: str) -> Image:
    binary = tmp_path / "agent"
    binary.write_bytes(b"\x7fELF not really")
    base = Layer("base", [file("/etc/motd", "hello\n"), symlink("/bin/sh", "busybox")])
    app = Layer(
        "app",
        [
            file("/usr/local/bin/agent", source=binary, mode=0o4755, uid=1000, gid=0),
            directory("/tmp", mode=0o1777),
            directory("/data", mode=0o775, uid=1000, gid=0),
        ],
    )
    return Image(
        [tag],
        [base, app],
        entrypoint=["/usr/local/bin/agent"],
        cmd=["serve"],
        env={"PATH": "/bin", **env},
        user="1000",
        working_dir="/data",
        labels={"org.opencontainers.image.version": "1"},
    )


def test_the_archive_is_a_docker_archive(tmp_path: Path) -> None:
    out = tmp_path / "app.tar"
    [written] = imagekit.write_archive(out, [small_image(tmp_path)])

    [entry] = json.loads(member(out, "manifest.json"))
    assert entry["RepoTags"] == ["example.local/app:1"]
    config_bytes = member(out, entry["Config"])
    assert entry["Config"] == sha256(config_bytes).removeprefix("sha256:") + ".json"
    assert written.image_id == sha256(config_bytes)
    config = json.loads(config_bytes)
    assert (config["architecture"], config["os"]) == ("amd64", "linux")
    assert config["config"]["Entrypoint"] == ["/usr/local/bin/agent"]
    assert config["config"]["Cmd"] == ["serve"]
    assert config["config"]["Env"] == ["PATH=/bin"]
    assert config["config"]["User"] == "1000"
    assert config["config"]["WorkingDir"] == "/data"
    assert config["config"]["Labels"] == {"org.opencontainers.image.version": "1"}
    layer_digests = [sha256(member(out, layer)) for layer in entry["Layers"]]
    assert config["rootfs"] == {"type": "layers", "diff_ids": layer_digests}
    assert list(written.diff_ids) == layer_digests
    assert [h["created_by"] for h in config["history"]] == ["base", "app"]
    assert imagekit.read_manifest(out) == [entry]


def test_same_inputs_give_a_byte_identical_archive(tmp_path: Path) -> None:
    first, second = tmp_path / "a.tar", tmp_path / "b.tar"
    imagekit.write_archive(first, [small_image(tmp_path)])
    imagekit.write_archive(second, [small_image(tmp_path)])
    assert first.read_bytes() == second.read_bytes()


def test_modes_owners_symlinks_and_parent_directories_are_kept(tmp_path: Path) -> None:
    out = tmp_path / "app.tar"
    imagekit.write_archive(out, [small_image(tmp_path)])
    [entry] = imagekit.read_manifest(out)
    layers: list[str] = list(entry["Layers"])  # type: ignore[call-overload]
    base, app = layers

    base_members = layer_members(out, base)
    assert base_members["bin/sh"].issym()
    assert base_members["bin/sh"].linkname == "busybox"
    assert base_members["bin"].isdir()  # a parent nobody listed
    assert base_members["etc/motd"].size == len("hello\n")
    app_members = layer_members(out, app)
    agent = app_members["usr/local/bin/agent"]
    assert (agent.mode, agent.uid, agent.gid) == (0o4755, 1000, 0)
    assert app_members["tmp"].mode == 0o1777
    assert (app_members["data"].mode, app_members["data"].uid) == (0o775, 1000)
    assert app_members["usr/local"].mode == 0o755
    assert all(info.mtime == imagekit.EPOCH for info in app_members.values())
    assert list(app_members) == sorted(app_members)


def test_images_in_one_archive_share_their_layers(tmp_path: Path) -> None:
    out = tmp_path / "agents.tar"
    v1 = small_image(tmp_path, "example.local/agent:v1", AGENT_VERSION="v1")
    v2 = Image(["example.local/agent:v2"], v1.layers, cmd=["serve"], env={"AGENT_VERSION": "v2"})
    written = imagekit.write_archive(out, [v1, v2])

    manifest = imagekit.read_manifest(out)
    assert [m["RepoTags"] for m in manifest] == [
        ["example.local/agent:v1"],
        ["example.local/agent:v2"],
    ]
    assert manifest[0]["Layers"] == manifest[1]["Layers"]
    with tarfile.open(out) as tar:
        stored = [n for n in tar.getnames() if n.endswith("/layer.tar")]
    assert len(stored) == 2  # two layers, each stored once
    assert written[0].image_id != written[1].image_id


def test_tree_copies_a_host_directory(tmp_path: Path) -> None:
    root = tmp_path / "unpacked"
    (root / "usr" / "sbin").mkdir(parents=True)
    (root / "usr" / "sbin" / "daemon").write_text("#!/bin/sh\n")
    (root / "usr" / "sbin" / "daemon").chmod(0o750)
    (root / "usr" / "bin").mkdir()
    os.symlink("../sbin/daemon", root / "usr" / "bin" / "daemon")

    entries = {e.path: e for e in imagekit.tree(root, "/opt", uid=7, gid=8)}
    assert entries["/opt/usr/sbin/daemon"].mode == 0o750
    assert entries["/opt/usr/sbin/daemon"].uid == 7
    assert entries["/opt/usr/bin/daemon"].target == "../sbin/daemon"
    assert entries["/opt/usr"].kind == "dir"


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (Image(["example.local/a:1"], [Layer("l", [file("etc/x", "y")])]), "must be absolute"),
        (
            Image(["example.local/a:1"], [Layer("l", [file("/x", "1"), file("/x", "2")])]),
            "listed twice",
        ),
        (
            Image(["example.local/a:1"], [Layer("l", [file("/x", "1"), file("/x/y", "2")])]),
            "inside /x, which is a file",
        ),
        (Image(["Example/A"], [Layer("l", [file("/x", "1")])]), "not a valid image reference"),
        (Image(["example.local/a:1"], []), "has no layers"),
        (
            Image(["example.local/a:1"], [Layer("l", [file("/x", source=Path("/nonexistent"))])]),
            "not a readable file",
        ),
        (Image(["example.local/a:1"], [Layer("l", [file("/../x", "1")])]), "'..' is not allowed"),
    ],
)
def test_bad_input_is_refused_clearly_and_nothing_is_written(
    tmp_path: Path, image: Image, message: str
) -> None:
    out = tmp_path / "bad.tar"
    with pytest.raises(ImageError, match=message):
        imagekit.write_archive(out, [image])
    assert list(tmp_path.iterdir()) == []


def test_a_file_needs_exactly_one_source_of_content() -> None:
    with pytest.raises(ImageError, match="exactly one of data= or source="):
        file("/x")
    with pytest.raises(ImageError, match="exactly one of data= or source="):
        file("/x", "inline", source=Path("/etc/hostname"))


def test_one_tag_cannot_name_two_images(tmp_path: Path) -> None:
    image = small_image(tmp_path)
    with pytest.raises(ImageError, match="given to two images"):
        imagekit.write_archive(tmp_path / "x.tar", [image, image])


# ---- build_images.py


def test_build_images_help() -> None:
    result = subprocess.run(
        [sys.executable, str(TOOLS / "build_images.py"), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--only NAME" in result.stdout


def fake_recipe(calls: list[str], name: str, version: str) -> build_images.Recipe:
    def build(ctx: build_images.Context) -> list[dict[str, object]]:
        calls.append(name)
        image = Image([f"example.local/{name}:{version}"], [Layer("l", [file("/v", version)])])
        written = build_images.write(ctx, name, [image])
        return build_images.entries_for(written, f"{name}.tar", f"fake {version}")

    return build_images.Recipe(name, {"version": version}, build)


def test_a_second_build_with_the_same_pins_is_a_no_op(tmp_path: Path) -> None:
    sources = [TOOLS / "imagekit.py"]
    calls: list[str] = []
    recipes = [fake_recipe(calls, "one", "1"), fake_recipe(calls, "two", "1")]

    assert build_images.build_all(tmp_path, recipes, sources=sources) == ["one", "two"]
    before = (tmp_path / "one.tar").stat().st_mtime_ns
    assert build_images.build_all(tmp_path, recipes, sources=sources) == []
    assert calls == ["one", "two"]
    assert (tmp_path / "one.tar").stat().st_mtime_ns == before

    index = json.loads((tmp_path / "index.json").read_text())
    assert [i["ref"] for i in index["images"]] == ["example.local/one:1", "example.local/two:1"]
    assert all(i["tar"] and i["source"] and "seconds" in i for i in index["images"])

    bumped = [fake_recipe(calls, "one", "2"), recipes[1]]
    assert build_images.build_all(tmp_path, bumped, sources=sources) == ["one"]
    assert build_images.build_all(tmp_path, bumped, only="two", force=True, sources=sources) == [
        "two"
    ]
    (tmp_path / "two.tar").unlink()
    assert build_images.build_all(tmp_path, bumped, sources=sources) == ["two"]


def test_an_edited_builder_rebuilds(tmp_path: Path) -> None:
    source = tmp_path / "builder.py"
    source.write_text("v1")
    calls: list[str] = []
    recipes = [fake_recipe(calls, "one", "1")]
    out = tmp_path / "out"
    build_images.build_all(out, recipes, sources=[source])
    source.write_text("v2")
    assert build_images.build_all(out, recipes, sources=[source]) == ["one"]


def test_an_unknown_image_name_is_refused(tmp_path: Path) -> None:
    recipes = [fake_recipe([], "one", "1")]
    with pytest.raises(build_testbin.BuildError, match="no image named 'nope'; choose one of: one"):
        build_images.build_all(tmp_path, recipes, only="nope", sources=[TOOLS / "imagekit.py"])


def test_debian_versions_become_valid_tags() -> None:
    tag = build_images.nginx_tag("1:1.22.1-9+deb12u11")
    assert tag == "1_1.22.1-9_deb12u11"
    assert imagekit._REF.match(f"sidecarset.local/nginx:{tag}")


@pytest.mark.parametrize(
    ("args", "runs"),
    [
        ([], "filebeat"),
        (["-e", "-c", "/etc/filebeat.yml"], "filebeat -e -c /etc/filebeat.yml"),
        (["setup", "--help"], "filebeat setup --help"),
        (["echo", "direct"], "direct"),
    ],
)
def test_the_filebeat_entrypoint_routes_like_elastics(
    tmp_path: Path, args: list[str], runs: str
) -> None:
    entrypoint = tmp_path / "docker-entrypoint"
    entrypoint.write_text(build_images.FILEBEAT_ENTRYPOINT)
    fake = tmp_path / "filebeat"
    fake.write_text('#!/bin/sh\necho filebeat "$@"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    result = subprocess.run(
        ["/bin/sh", str(entrypoint), *args], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == runs


LDD_NGINX = """\
\tlinux-vdso.so.1 (0x00007ffd4a9f2000)
\tlibcrypt.so.1 => /lib/x86_64-linux-gnu/libcrypt.so.1 (0x00007f6d34606000)
\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f6d344a4000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f6d347a9000)
"""


def test_ldd_output_gives_the_libraries_and_the_loader() -> None:
    assert build_images.parse_ldd(LDD_NGINX, "nginx") == [
        Path("/lib/x86_64-linux-gnu/libcrypt.so.1"),
        Path("/lib/x86_64-linux-gnu/libz.so.1"),
        Path("/lib64/ld-linux-x86-64.so.2"),
    ]


def test_a_missing_library_is_named() -> None:
    with pytest.raises(build_testbin.BuildError, match=r"libpcre2-8\.so\.0 => not found"):
        build_images.parse_ldd("\tlibpcre2-8.so.0 => not found\n", "nginx")


def test_filebeat_modules_are_packaged_like_elastics(tmp_path: Path) -> None:
    nginx = tmp_path / "filebeat" / "module" / "nginx"
    for rel in (
        "module.yml",
        "fields.go",
        "_meta/config.yml",
        "_meta/kibana/7/dashboard/d.json",
        "access/manifest.yml",
        "access/ingest/pipeline.yml",
        "access/test/access.log",
    ):
        (nginx / rel).parent.mkdir(parents=True, exist_ok=True)
        (nginx / rel).write_text(rel)

    paths = sorted(e.path for e in build_images.filebeat_modules(tmp_path))
    home = build_images.FILEBEAT_HOME
    assert paths == [
        f"{home}/module/nginx/access/ingest/pipeline.yml",
        f"{home}/module/nginx/access/manifest.yml",
        f"{home}/module/nginx/module.yml",
        f"{home}/modules.d/nginx.yml.disabled",
    ]
