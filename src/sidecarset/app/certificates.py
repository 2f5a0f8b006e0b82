"""The webhook's CA and serving certificate: created once, shared by replicas, rotated early.

In a cluster they live in a Secret in the operator's namespace: the first replica to start
creates it (a create race is settled by AlreadyExists, then everyone reads the winner's), the
others read it. Locally they live in files beside the cluster's kubeconfig. The serving
certificate is re-issued from the same CA when less than a third of its life is left, so the
`caBundle` in the webhook configurations never changes; the new certificate is loaded into the
live TLS context, which affects new handshakes only, so no request in flight is dropped.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sidecarset.shell import pki
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import KubeClient, resource_path

log = logging.getLogger("sidecarset.certificates")

CA_VALIDITY = dt.timedelta(days=3650)
SERVING_VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class WebhookPKI:
    ca: pki.KeyPair
    serving: pki.KeyPair

    def expires(self) -> dt.datetime:
        return self.serving.certificate().not_valid_after_utc

    def due_for_rotation(self, now: dt.datetime) -> bool:
        cert = self.serving.certificate()
        life = cert.not_valid_after_utc - cert.not_valid_before_utc
        return now >= cert.not_valid_after_utc - life / 3


def issue(
    ca: pki.CertificateAuthority,
    hosts: tuple[str, ...],
    ips: tuple[str, ...],
    validity: dt.timedelta = SERVING_VALIDITY,
) -> pki.KeyPair:
    # X.509 caps a common name at 64 characters, and `<service>.<namespace>.svc` can be longer;
    # clients match the SANs (Go ignores the CN for hostnames), so the CN is only a label.
    fitting = [name for name in (*hosts, *ips) if len(name) <= 64]
    common_name = fitting[0] if fitting else (hosts or ips)[0][:64]
    return ca.issue(common_name, dns_names=hosts, ips=ips, server=True, validity=validity)


def service_hosts(service: str, namespace: str) -> tuple[str, ...]:
    return (
        f"{service}.{namespace}.svc",
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc.cluster.local",
    )


class LiveTLS:
    """An SSLContext whose certificate can be swapped while serving."""

    def __init__(self, material: WebhookPKI) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="sidecarset-tls-")
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.material = material
        self.load(material)

    def load(self, material: WebhookPKI) -> None:
        cert, key = material.serving.write(Path(self._dir.name), "serving")
        self.context.load_cert_chain(str(cert), str(key))
        self.material = material


def load_or_create_local(
    directory: Path, *, validity: dt.timedelta = SERVING_VALIDITY
) -> WebhookPKI:
    """Files shared by every local replica, so they all present the same CA."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_files = directory / "ca.crt", directory / "ca.key"
    if all(f.exists() for f in ca_files):
        ca = pki.CertificateAuthority.load(
            pki.KeyPair(ca_files[0].read_bytes(), ca_files[1].read_bytes())
        )
    else:
        ca = pki.CertificateAuthority("sidecarset-webhook-ca", validity=CA_VALIDITY)
        ca.pair.write(directory, "ca")
    serving_files = directory / "serving.crt", directory / "serving.key"
    if all(f.exists() for f in serving_files):
        material = WebhookPKI(
            ca.pair, pki.KeyPair(serving_files[0].read_bytes(), serving_files[1].read_bytes())
        )
        if not material.due_for_rotation(dt.datetime.now(dt.UTC)):
            return material
    serving = issue(ca, ("localhost",), ("127.0.0.1",), validity)
    serving.write(directory, "serving")
    return WebhookPKI(ca.pair, serving)


class SecretStore:
    """Webhook PKI kept in a Secret (keys ca.crt, ca.key, tls.crt, tls.key)."""

    def __init__(
        self, client: KubeClient, namespace: str, name: str, hosts: tuple[str, ...]
    ) -> None:
        self._client, self._hosts = client, hosts
        self._path = resource_path("v1", "secrets", namespace=namespace, name=name)
        self._collection = resource_path("v1", "secrets", namespace=namespace)
        self._name = name

    async def load_or_create(self) -> WebhookPKI:
        try:
            return self._decode(await self._client.get(self._path))
        except errors.NotFound:
            pass
        ca = pki.CertificateAuthority("sidecarset-webhook-ca", validity=CA_VALIDITY)
        material = WebhookPKI(ca.pair, issue(ca, self._hosts, ()))
        try:
            await self._client.create(self._collection, self._encode(material))
            log.info("created webhook certificate secret %s", self._name)
            return material
        except errors.AlreadyExists:
            return self._decode(await self._client.get(self._path))

    async def rotate_if_due(self, current: WebhookPKI) -> WebhookPKI:
        """Re-issue the serving certificate (same CA) if due; conditional on resourceVersion."""
        secret = await self._client.get(self._path)
        stored = self._decode(secret)
        if not stored.due_for_rotation(dt.datetime.now(dt.UTC)):
            return stored
        ca = pki.CertificateAuthority.load(stored.ca)
        material = WebhookPKI(stored.ca, issue(ca, self._hosts, ()))
        body = self._encode(material)
        body["metadata"]["resourceVersion"] = secret["metadata"]["resourceVersion"]
        try:
            await self._client.replace(self._path, body)
            log.info("rotated webhook serving certificate; new expiry %s", material.expires())
            return material
        except errors.Conflict:
            return self._decode(await self._client.get(self._path))  # another replica did it

    def _encode(self, material: WebhookPKI) -> dict[str, Any]:
        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": self._name, "labels": {"app.kubernetes.io/part-of": "sidecarset"}},
            "data": {
                "ca.crt": b64(material.ca.cert_pem),
                "ca.key": b64(material.ca.key_pem),
                "tls.crt": b64(material.serving.cert_pem),
                "tls.key": b64(material.serving.key_pem),
            },
        }

    @staticmethod
    def _decode(secret: dict[str, object]) -> WebhookPKI:
        data = secret.get("data")
        if not isinstance(data, dict):
            raise errors.Invalid(422, "webhook certificate secret has no data")

        def field(key: str) -> bytes:
            return base64.b64decode(str(data[key]))

        return WebhookPKI(
            pki.KeyPair(field("ca.crt"), field("ca.key")),
            pki.KeyPair(field("tls.crt"), field("tls.key")),
        )


async def keep_fresh(
    store: SecretStore,
    tls: LiveTLS,
    *,
    every: float = 300.0,
    reload: Callable[[WebhookPKI], None] | None = None,
) -> None:
    """Poll the Secret; rotate when due and reload when another replica rotated. `reload`
    (default `tls.load`): how to load new material, e.g. on the thread serving with `tls`."""
    while True:
        await asyncio.sleep(every)
        try:
            material = await store.rotate_if_due(tls.material)
        except errors.ApiError as err:
            log.warning("certificate check failed: %s", err)
            continue
        if material.serving.cert_pem != tls.material.serving.cert_pem:
            (reload or tls.load)(material)
            log.info("reloaded webhook serving certificate")
