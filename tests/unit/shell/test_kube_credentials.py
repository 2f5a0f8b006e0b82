"""Our kubeconfig and in-cluster loader: a real TLS server on 127.0.0.1 checks that the CA, the
client certificate and the bearer token reach it, in every form a kubeconfig may give them."""

from __future__ import annotations

import base64
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from sidecarset.shell.kube import credentials
from sidecarset.shell.kube.client import KubeClient
from sidecarset.shell.kube.credentials import CredentialsError
from sidecarset.shell.pki import CertificateAuthority

CA = CertificateAuthority("test-ca")
SERVING = CA.issue("127.0.0.1", ips=("127.0.0.1",), server=True)
CLIENT = CA.issue("alice", client=True)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(cluster: dict[str, Any], user: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
        **extra,
    }


def write(path: Path, config: dict[str, Any]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """An HTTPS server that wants our client certificate and records who called, with what."""
    seen: list[dict[str, str]] = []

    async def whoami(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        subject = dict(item[0] for item in (peer or {}).get("subject", ()))
        seen.append(
            {
                "authorization": request.headers.get("Authorization", ""),
                "client": str(subject.get("commonName", "")),
            }
        )
        return web.json_response({"kind": "Status"})

    cert, key = SERVING.write(tmp_path, "srv")
    (tmp_path / "ca.crt").write_bytes(CA.cert_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.load_verify_locations(tmp_path / "ca.crt")
    context.verify_mode = ssl.CERT_OPTIONAL
    app = web.Application()
    app.router.add_get("/version", whoami)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def call(config_path: str, context: str | None = None) -> None:
    async with await KubeClient.from_kubeconfig(config_path, context=context) as client:
        await client.get("/version")


async def test_inline_ca_client_certificate_and_token_reach_the_server(
    server: tuple[str, list[dict[str, str]]], tmp_path: Path
) -> None:
    url, seen = server
    path = write(
        tmp_path / "kubeconfig",
        kubeconfig(
            {"server": url, "certificate-authority-data": b64(CA.cert_pem)},
            {
                "client-certificate-data": b64(CLIENT.cert_pem),
                "client-key-data": b64(CLIENT.key_pem),
                "token": "t0ken",
            },
        ),
    )
    await call(path)
    assert seen == [{"authorization": "Bearer t0ken", "client": "alice"}]


async def test_files_are_found_relative_to_the_kubeconfig_that_names_them(
    server: tuple[str, list[dict[str, str]]], tmp_path: Path
) -> None:
    url, seen = server
    home = tmp_path / "elsewhere"
    home.mkdir()
    (home / "ca.crt").write_bytes(CA.cert_pem)
    CLIENT.write(home, "alice")
    (home / "token").write_text("from-a-file\n")
    path = write(
        home / "kubeconfig",
        kubeconfig(
            {"server": url, "certificate-authority": "ca.crt"},
            {"client-certificate": "alice.crt", "client-key": "alice.key", "tokenFile": "token"},
        ),
    )
    await call(path)
    assert seen == [{"authorization": "Bearer from-a-file", "client": "alice"}]


async def test_the_server_is_not_trusted_without_its_ca(
    server: tuple[str, list[dict[str, str]]], tmp_path: Path
) -> None:
    url, seen = server
    path = write(tmp_path / "kubeconfig", kubeconfig({"server": url}, {"token": "x"}))
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
        await call(path)
    assert seen == []


async def test_several_files_merge_as_kubectl_merges_them(
    server: tuple[str, list[dict[str, str]]], tmp_path: Path
) -> None:
    url, seen = server
    first = kubeconfig(
        {"server": url, "certificate-authority-data": b64(CA.cert_pem)}, {"token": "first"}
    )
    second = kubeconfig(
        {"server": "https://127.0.0.1:1"},
        {"token": "second"},
        **{"current-context": "other"},
    )
    second["contexts"].append({"name": "other", "context": {"cluster": "c", "user": "u"}})
    paths = [write(tmp_path / "a", first), write(tmp_path / "b", second)]
    await call(":".join(paths))  # first file's current-context, cluster and user win
    await call(":".join(paths), context="other")  # defined only in the second file
    assert [s["authorization"] for s in seen] == ["Bearer first", "Bearer first"]


async def test_an_exec_plugin_user_is_run_by_the_fallback_loader(
    server: tuple[str, list[dict[str, str]]], tmp_path: Path
) -> None:
    url, seen = server
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1',"
        " 'kind': 'ExecCredential', 'status': {'token': 'from-exec'}}))\n"
    )
    path = write(
        tmp_path / "kubeconfig",
        kubeconfig(
            {"server": url, "certificate-authority-data": b64(CA.cert_pem)},
            {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": sys.executable,
                    "args": [str(plugin)],
                    "interactiveMode": "Never",
                }
            },
        ),
    )
    await call(path)
    assert seen == [{"authorization": "Bearer from-exec", "client": ""}]


async def test_in_cluster_uses_the_service_account_and_rereads_its_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ca.crt").write_bytes(CA.cert_pem)
    (tmp_path / "token").write_text("first")
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    creds = credentials.in_cluster(env, tmp_path)
    assert creds.host == "https://[fd00::1]:443"
    assert await creds.authorization() == "Bearer first"
    (tmp_path / "token").write_text("rotated")
    assert await creds.authorization() == "Bearer first"  # read again only once a minute old
    monkeypatch.setattr(credentials, "TOKEN_REREAD_SECONDS", 0.0)
    assert await creds.authorization() == "Bearer rotated"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param(
            {**kubeconfig({"server": "https://x"}, {}), "current-context": "nope"},
            "context 'nope' not found",
            id="unknown-context",
        ),
        pytest.param(
            {**kubeconfig({"server": "https://x"}, {}), "current-context": ""},
            "sets no current-context",
            id="no-context",
        ),
        pytest.param(kubeconfig({}, {}), "cluster 'c' has no server", id="no-server"),
        pytest.param(
            kubeconfig({"server": "https://x", "certificate-authority-data": "!!"}, {}),
            "certificate-authority-data is not base64",
            id="bad-ca-data",
        ),
        pytest.param(
            kubeconfig(
                {"server": "https://x"},
                {"client-certificate-data": b64(b"junk"), "client-key-data": b64(b"junk")},
            ),
            "client certificate or key cannot be loaded",
            id="bad-client-cert",
        ),
        pytest.param(["a", "list"], "is not a kubeconfig", id="not-a-mapping"),
    ],
)
async def test_an_unusable_kubeconfig_says_why(tmp_path: Path, config: Any, message: str) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(CredentialsError, match=message):
        await credentials.from_kubeconfig(str(path))


async def test_a_missing_kubeconfig_or_service_account_says_why(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="not found"):
        await credentials.from_kubeconfig(str(tmp_path / "absent"))
    with pytest.raises(CredentialsError, match="KUBERNETES_SERVICE_HOST"):
        credentials.in_cluster({}, tmp_path)
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    with pytest.raises(CredentialsError, match="token is missing"):
        credentials.in_cluster(env, tmp_path)
