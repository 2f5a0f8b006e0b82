"""Control-plane ports come from below the kernel's ephemeral range, where no outgoing
connection can take them while a component restarts."""

from __future__ import annotations

import socket

from sidecarset.devcluster import controlplane


def test_ports_are_free_and_below_the_ephemeral_range() -> None:
    low = controlplane._ephemeral_low()
    ports = {controlplane.free_port() for _ in range(20)}
    assert all(1024 <= p < low for p in ports)
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # free: nothing holds it
