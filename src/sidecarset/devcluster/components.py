"""The cluster's own Python components: the node simulator and the operator, as subprocesses.

Both are started through the `sidecarset` CLI so that `cluster up`, the test fixtures and the
benchmarks run them identically; each signals readiness by creating a file.
"""

from __future__ import annotations

from collections.abc import Sequence

from sidecarset.devcluster.controlplane import Component, ControlPlane, python_component

SIMULATOR = "node-simulator"
OPERATOR = "operator"
OPERATOR_WEBHOOK = "operator-webhook"
"""The `--mode webhook` process of an operator run as two (benchmarks)."""
OPERATOR_NAMESPACE = "sidecarset-system"


def simulator_component(
    plane: ControlPlane, nodes: int, extra_args: Sequence[str] = ()
) -> Component:
    ready_file = plane.workdir / "simulator.ready"
    ready_file.unlink(missing_ok=True)
    return python_component(
        SIMULATOR,
        [
            "cluster",
            "simulate",
            "--kubeconfig",
            str(plane.kubeconfig),
            "--nodes",
            str(nodes),
            "--ready-file",
            str(ready_file),
            *extra_args,
        ],
        ready=ready_file.exists,
        env={"NO_PROXY": "127.0.0.1,localhost"},
    )


def operator_component(
    plane: ControlPlane, extra_args: Sequence[str] = (), *, name: str = OPERATOR
) -> Component:
    """`sidecarset operator run --local` on free ports; `name` tells replicas apart."""
    ready_file = plane.workdir / f"{name}.ready"
    ready_file.unlink(missing_ok=True)
    return python_component(
        name,
        [
            "operator",
            "run",
            "--kubeconfig",
            str(plane.kubeconfig),
            "--local",
            "--webhook-port",
            "0",
            "--probe-port",
            "0",
            "--namespace",
            OPERATOR_NAMESPACE,
            "--ready-file",
            str(ready_file),
            *extra_args,
        ],
        ready=ready_file.exists,
        env={"NO_PROXY": "127.0.0.1,localhost"},
        timeout=90,
    )
