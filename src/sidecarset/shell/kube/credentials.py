"""Where the API server is and how to prove who we are: in-cluster or from a kubeconfig.

Our own loader covers the ServiceAccount (the operator's production case) and the kubeconfig
forms a local or CI cluster uses: certificate authority, client certificate and key, bearer token
or token file, each as a file or inline data. Only kubeconfigs whose user runs an `exec` plugin or
an `auth-provider` are handed to kubernetes_asyncio's loader, imported then and not before:
importing it costs about 40 MiB of RSS and a second of start-up, for its generated API models.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REREAD_SECONDS = 60.0
"""The kubelet rotates a projected ServiceAccount token well before it expires; re-reading the
file once a minute (as client-go does) always sends a valid one."""

TokenSource = Callable[[], Awaitable[str | None]]


class CredentialsError(ValueError):
    """The kubeconfig or the in-cluster environment cannot be used; the message says why."""


async def _none() -> str | None:
    return None


@dataclass(frozen=True)
class Credentials:
    """The server URL, an SSL context that trusts it (and presents our client certificate, if
    any), and where the `Authorization` header value comes from."""

    host: str
    ssl_context: ssl.SSLContext
    authorization: TokenSource = _none


class _FileToken:
    """A bearer token read from a file, and read again once it is a minute old."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._value = ""
        self._read_at = float("-inf")

    async def __call__(self) -> str | None:
        now = time.monotonic()
        if now - self._read_at >= TOKEN_REREAD_SECONDS:
            self._value = self._path.read_text().strip()
            self._read_at = now
        return f"Bearer {self._value}" if self._value else None


def in_cluster(
    environ: Mapping[str, str] = os.environ, account_dir: Path = SERVICE_ACCOUNT_DIR
) -> Credentials:
    """The pod's ServiceAccount: the service host and port from the environment, its CA and
    its (rotating) token from the mounted files."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise CredentialsError(
            "not in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset"
        )
    token = account_dir / "token"
    ca = account_dir / "ca.crt"
    for needed in (token, ca):
        if not needed.is_file():
            raise CredentialsError(f"ServiceAccount file {needed} is missing")
    if ":" in host:
        host = f"[{host}]"  # an IPv6 service address
    context = ssl.create_default_context(cafile=str(ca))
    return Credentials(f"https://{host}:{port}", context, _FileToken(token))


async def from_kubeconfig(path: str | None = None, context: str | None = None) -> Credentials:
    """`path` (a list separated by the OS path separator, as `KUBECONFIG`; default `KUBECONFIG`
    or `~/.kube/config`) merged as kubectl merges it, and `context` (default: current-context)."""
    files = _kubeconfig_files(path)
    merged = _merge([(f, _read_yaml(f)) for f in files])
    name = context or merged.current_context
    if not name:
        raise CredentialsError(f"{_shown(files)} sets no current-context; pass a context")
    ctx = merged.contexts.get(name)
    if ctx is None:
        raise CredentialsError(f"context {name!r} not found in {_shown(files)}")
    cluster_name, user_name = str(ctx.get("cluster") or ""), str(ctx.get("user") or "")
    cluster = merged.clusters.get(cluster_name)
    if cluster is None:
        raise CredentialsError(f"cluster {cluster_name!r} of context {name!r} not found")
    user = merged.users.get(user_name, {}) if user_name else {}
    if "exec" in user or "auth-provider" in user:
        return await _from_plugin(path, name)
    server = str(cluster.get("server") or "").rstrip("/")
    if not server:
        raise CredentialsError(f"cluster {cluster_name!r} has no server")
    base = merged.origin_of[("cluster", cluster_name)]
    ssl_context = _server_trust(cluster, base)
    user_base = merged.origin_of.get(("user", user_name), base)
    _client_certificate(ssl_context, user, user_base)
    return Credentials(server, ssl_context, _user_token(user, user_base))


@dataclass
class _Merged:
    current_context: str = ""
    contexts: dict[str, dict[str, Any]] = field(default_factory=dict)
    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    origin_of: dict[tuple[str, str], Path] = field(default_factory=dict)
    """The directory of the file an entry came from: relative paths in it are relative to it."""


def _kubeconfig_files(path: str | None) -> list[Path]:
    spec = path if path is not None else os.environ.get("KUBECONFIG", "")
    if not spec:
        spec = str(Path("~/.kube/config").expanduser())
    files = [Path(p).expanduser() for p in spec.split(os.pathsep) if p]
    existing = [f for f in files if f.is_file()]
    if not existing:
        raise CredentialsError(f"kubeconfig {spec} not found")
    return existing


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise CredentialsError(f"{path} is not valid YAML: {err}") from err
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise CredentialsError(f"{path} is not a kubeconfig (a YAML mapping)")
    return loaded


def _merge(configs: list[tuple[Path, dict[str, Any]]]) -> _Merged:
    """kubectl's rule: the first file to set a value, or to name an entry, wins."""
    merged = _Merged()
    sections = (("contexts", "context"), ("clusters", "cluster"), ("users", "user"))
    for path, config in configs:
        if not merged.current_context:
            merged.current_context = str(config.get("current-context") or "")
        for plural, singular in sections:
            into: dict[str, dict[str, Any]] = getattr(merged, plural)
            for item in config.get(plural) or []:
                if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                    raise CredentialsError(f"{path}: every entry of {plural} needs a name")
                name = item["name"]
                if name not in into:
                    body = item.get(singular) or {}
                    if not isinstance(body, dict):
                        raise CredentialsError(f"{path}: {plural} entry {name!r} is not a mapping")
                    into[name] = body
                    merged.origin_of[(singular, name)] = path.parent
    return merged


def _shown(files: list[Path]) -> str:
    return os.pathsep.join(str(f) for f in files)


def _file(base: Path, value: object) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else base / path


def _data(value: object, what: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except ValueError as err:
        raise CredentialsError(f"{what} is not base64") from err


def _server_trust(cluster: Mapping[str, Any], base: Path) -> ssl.SSLContext:
    if cluster.get("insecure-skip-tls-verify"):
        return _unverified()
    try:
        if cluster.get("certificate-authority-data"):
            pem = _data(cluster["certificate-authority-data"], "certificate-authority-data")
            return ssl.create_default_context(cadata=pem.decode())
        if cluster.get("certificate-authority"):
            return ssl.create_default_context(
                cafile=str(_file(base, cluster["certificate-authority"]))
            )
    except (ssl.SSLError, OSError, UnicodeDecodeError) as err:
        raise CredentialsError(
            f"the cluster's certificate authority cannot be read: {err}"
        ) from err
    return ssl.create_default_context()


def _unverified() -> ssl.SSLContext:
    """For `insecure-skip-tls-verify: true`, as the kubeconfig asks."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _client_certificate(context: ssl.SSLContext, user: Mapping[str, Any], base: Path) -> None:
    cert, key = user.get("client-certificate-data"), user.get("client-key-data")
    try:
        if cert and key:
            # ssl loads a key pair only from files: a private directory, removed at once.
            with tempfile.TemporaryDirectory(prefix="sidecarset-") as private:
                cert_file, key_file = Path(private, "tls.crt"), Path(private, "tls.key")
                cert_file.write_bytes(_data(cert, "client-certificate-data"))
                key_file.touch(mode=0o600)
                key_file.write_bytes(_data(key, "client-key-data"))
                context.load_cert_chain(cert_file, key_file)
        elif user.get("client-certificate") and user.get("client-key"):
            context.load_cert_chain(
                _file(base, user["client-certificate"]), _file(base, user["client-key"])
            )
    except (ssl.SSLError, OSError) as err:
        raise CredentialsError(f"the client certificate or key cannot be loaded: {err}") from err


def _user_token(user: Mapping[str, Any], base: Path) -> TokenSource:
    if user.get("token"):
        header = f"Bearer {user['token']}"

        async def static() -> str | None:
            return header

        return static
    if user.get("tokenFile"):
        return _FileToken(_file(base, user["tokenFile"]))
    if user.get("username") and user.get("password"):
        pair = f"{user['username']}:{user['password']}".encode()
        basic = "Basic " + base64.b64encode(pair).decode()

        async def password() -> str | None:
            return basic

        return password
    return _none


async def _from_plugin(path: str | None, context: str) -> Credentials:
    """An `exec` or `auth-provider` user: kubernetes_asyncio runs and refreshes it."""
    from kubernetes_asyncio.client import Configuration
    from kubernetes_asyncio.config import kube_config
    from kubernetes_asyncio.config.config_exception import ConfigException

    config = Configuration()
    try:
        await kube_config.load_kube_config(
            config_file=path, context=context, client_configuration=config, persist_config=False
        )
    except ConfigException as err:
        raise CredentialsError(str(err)) from err
    if config.verify_ssl:
        ssl_context = ssl.create_default_context(cafile=config.ssl_ca_cert)
    else:
        ssl_context = _unverified()
    if config.cert_file and config.key_file:
        ssl_context.load_cert_chain(config.cert_file, config.key_file)

    async def plugin_token() -> str | None:
        # The loader refreshes an expiring plugin token on this call.
        token: str | None = await config.get_api_key_with_prefix("BearerToken")
        return token

    return Credentials(str(config.host or "").rstrip("/"), ssl_context, plugin_token)
