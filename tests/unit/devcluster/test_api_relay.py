"""How pods on the real node reach the apiserver: the relay, and the certificate naming it."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from pathlib import Path

from cryptography import x509

from sidecarset.devcluster import relay
from sidecarset.devcluster.binaries import Binaries
from sidecarset.devcluster.controlplane import ControlPlane
from sidecarset.devcluster.nodeconfig import NodeLayout, node_gateway
from sidecarset.devcluster.realnode import RealNode
from sidecarset.shell import pki


def ip_sans(cert_path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}


def test_the_gateway_is_the_first_address_of_the_nodes_pod_subnet(tmp_path: Path) -> None:
    layout = NodeLayout(root=tmp_path / "node", binaries=Path("/opt/testbin/node"))
    gateway = node_gateway(tmp_path)
    assert gateway == layout.gateway
    assert ipaddress.ip_address(gateway) in ipaddress.ip_network(layout.pod_subnet)
    assert gateway.endswith(".1")


def test_the_apiserver_certificate_names_the_gateway_and_is_reissued_when_it_lacks_it(
    tmp_path: Path,
) -> None:
    plane = ControlPlane(tmp_path)
    plane._ensure_pki()
    gateway = RealNode(plane, Binaries(Path("/opt/testbin"))).layout.gateway  # as the node uses
    assert {"127.0.0.1", gateway} <= ip_sans(plane.pki_dir / "apiserver.crt")
    # A cluster made before the relay: same CA, a serving certificate without the gateway.
    ca_before = (plane.pki_dir / "ca.crt").read_bytes()
    ca = pki.CertificateAuthority.load(
        pki.KeyPair(ca_before, (plane.pki_dir / "ca.key").read_bytes())
    )
    ca.issue("kube-apiserver", ips=("127.0.0.1",), server=True).write(plane.pki_dir, "apiserver")
    plane._ensure_pki()
    assert gateway in ip_sans(plane.pki_dir / "apiserver.crt")
    assert (plane.pki_dir / "ca.crt").read_bytes() == ca_before  # clients keep trusting it


def test_the_relay_copies_bytes_both_ways_and_closes_with_the_client() -> None:
    async def scenario() -> tuple[bytes, bytes]:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"echo:" + await reader.read(100))
            await writer.drain()
            writer.close()

        upstream = await asyncio.start_server(echo, "127.0.0.1", 0)
        target = upstream.sockets[0].getsockname()[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        serving = asyncio.create_task(relay.serve("127.0.0.1", port, "127.0.0.1", target))
        try:
            for _ in range(100):
                with contextlib.suppress(OSError):
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    break
                await asyncio.sleep(0.01)
            writer.write(b"hello")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(100), 5)
            rest = await asyncio.wait_for(reader.read(100), 5)  # upstream closed: EOF relayed
            writer.close()
            return answer, rest
        finally:
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
            upstream.close()

    answer, rest = asyncio.run(scenario())
    assert answer == b"echo:hello"
    assert rest == b""
