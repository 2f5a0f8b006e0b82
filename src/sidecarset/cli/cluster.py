"""`sidecarset cluster ...`: the local control plane, node simulator and operator."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import socket
import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from sidecarset.app.webhooks_config import MUTATING_NAME, VALIDATING_NAME
from sidecarset.cli.errors import CliError
from sidecarset.devcluster import binaries
from sidecarset.devcluster.binaries import Binaries, BinariesMissing
from sidecarset.devcluster.components import (
    operator_component,
    simulator_component,
)
from sidecarset.devcluster.controlplane import ControlPlane
from sidecarset.devcluster.nodeconfig import NODE_NAME
from sidecarset.devcluster.process import StartupError
from sidecarset.devcluster.realnode import RealNode, RealNodeUnavailable

app = typer.Typer(
    help="Run a real local Kubernetes control plane (etcd, kube-apiserver, kube-controller-"
    "manager, kube-scheduler) with simulated nodes, for demos and tests.",
    no_args_is_help=True,
)


def default_workdir() -> Path:
    env = os.environ.get("SIDECARSET_CLUSTER_DIR")
    if env:
        return Path(env)
    root = binaries.project_root()
    if root is not None:
        return root / ".cluster"
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / (
        "sidecarset/cluster"
    )


DirOption = Annotated[
    Path,
    typer.Option(
        "--dir",
        help="Where the cluster keeps its state, PKI, data and logs.",
        default_factory=default_workdir,
        show_default="$SIDECARSET_CLUSTER_DIR or .cluster/",
    ),
]


def _real_node(plane: ControlPlane, *, beside_simulated: bool) -> RealNode:
    # Beside simulated nodes the real node is tainted: only pods that ask for it (a
    # toleration, e.g. the tests') run real containers; everything else stays simulated.
    node = RealNode(plane, tainted=beside_simulated)
    try:
        node.preflight()
    except RealNodeUnavailable as err:
        raise CliError(f"--real-node: {err}") from err
    return node


@app.command()
def up(
    workdir: DirOption,
    nodes: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=500,
            help="Simulated nodes (default 3, or 0 with --real-node).",
            show_default=False,
        ),
    ] = None,
    real_node: Annotated[
        bool,
        typer.Option(
            "--real-node",
            help="Also run one real node (containerd + kubelet, root on Linux): "
            "real containers from the locally built images.",
        ),
    ] = False,
    no_operator: Annotated[
        bool, typer.Option("--no-operator", help="Leave the sidecarset operator out.")
    ] = False,
) -> None:
    """Start whatever is not running yet (so a killed operator can be restarted alone).

    \b
    Examples:
      sidecarset cluster up                 # control plane + 3 simulated nodes + operator
      sidecarset cluster up --real-node     # + a real kubelet/containerd node, no simulated ones
      sidecarset cluster up --real-node --nodes 2   # both; the real node is then tainted
      sidecarset cluster up --no-operator   # run the operator yourself, e.g. under a debugger
      eval "$(sidecarset cluster env)"; kubectl get nodes
    """
    try:
        plane = ControlPlane(workdir, Binaries.locate())
    except BinariesMissing as err:
        raise CliError(str(err)) from err
    count = nodes if nodes is not None else (0 if real_node else 3)
    if count == 0 and not real_node:
        raise CliError("--nodes 0 leaves no node to run pods; add --real-node or pick 1-500")
    extra = [simulator_component(plane, count, [])] if count else []
    if real_node:
        extra.extend(_real_node(plane, beside_simulated=count > 0).components())
    if not no_operator:
        extra.append(operator_component(plane, []))
    running = {s.name for s in plane.status() if s.running}
    try:
        plane.up(extra=extra, progress=lambda m: typer.echo(m, err=True))
    except StartupError as err:
        raise CliError(str(err)) from err
    except KeyboardInterrupt:
        raise CliError("interrupted; stopped what this command had started", code=130) from None
    if running and all(c in running for c in [c.name for c in extra]):
        typer.echo("already running", err=True)
    if no_operator:
        for line in asyncio.run(remove_dead_webhooks(plane)):
            typer.echo(line, err=True)
    typer.echo(f"cluster ready: {plane.server} (state in {plane.workdir})", err=True)
    typer.echo('use it with: eval "$(sidecarset cluster env)"', err=True)


WEBHOOK_CONFIGURATIONS = (
    ("mutatingwebhookconfigurations", MUTATING_NAME),
    ("validatingwebhookconfigurations", VALIDATING_NAME),
)


async def remove_dead_webhooks(plane: ControlPlane) -> list[str]:
    """Delete the operator's webhook configurations when nothing answers at their URLs.

    An operator that ran in this cluster directory before leaves them registered with
    `failurePolicy: Fail`; without an operator, every pod creation would then be refused with
    a connection error about a dead port. A configuration whose URL answers belongs to an
    operator that is running (started by hand) and is kept. Returns what to tell the user.
    """
    from sidecarset.shell.kube import errors
    from sidecarset.shell.kube.client import KubeClient, resource_path

    said: list[str] = []
    client = await KubeClient.from_kubeconfig(str(plane.kubeconfig))
    async with client:
        for plural, name in WEBHOOK_CONFIGURATIONS:
            path = resource_path("admissionregistration.k8s.io/v1", plural, name=name)
            try:
                found = await client.get(path)
            except errors.NotFound:
                continue
            urls = _webhook_urls(found)
            if not urls:
                said.append(f"kept {plural}/{name}: it calls a Service, not a local URL")
                continue
            dead = [url for url in urls if not _answers(url)]
            if not dead:
                said.append(f"kept {plural}/{name}: an operator answers at its URL")
                continue
            try:
                await client.delete(path)
            except errors.NotFound:
                continue
            said.append(
                f"removed {plural}/{name} left by an earlier operator (nothing listens at "
                f"{dead[0]}; with failurePolicy Fail it refused every pod creation); "
                "the operator registers it again when it starts"
            )
    if not said:
        said.append("no webhook configurations registered: pods are created without injection")
    return said


def _webhook_urls(configuration: dict[str, Any]) -> list[str]:
    return [
        str(hook["clientConfig"]["url"])
        for hook in configuration.get("webhooks") or []
        if (hook.get("clientConfig") or {}).get("url")
    ]


def _answers(url: str) -> bool:
    """Something accepts TCP connections at the URL's host and port (one second to answer)."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 443), timeout=1):
            return True
    except OSError:
        return False


@app.command()
def down(workdir: DirOption) -> None:
    """Stop every process the cluster started (data and PKI stay for the next `up`)."""
    plane = ControlPlane(workdir)
    if not plane.state_path.exists():
        typer.echo(f"no cluster in {plane.workdir}", err=True)
        return
    progress = lambda m: typer.echo(m, err=True)  # noqa: E731
    node = RealNode(plane, Binaries(binaries.default_dir().resolve()))
    plane.down(progress=progress, before_stop=node.down_hooks(progress))
    if node.layout.root.exists():
        left = node.remove_leftovers(progress)
        if not left.empty():
            raise CliError(f"the real node left behind {left.describe()}")
    typer.echo("cluster stopped", err=True)


@app.command()
def status(
    workdir: DirOption,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show each component: running or not, pid, port, log file."""
    plane = ControlPlane(workdir)
    rows = plane.status()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "dir": str(plane.workdir),
                    "kubeconfig": str(plane.kubeconfig),
                    "components": [r.__dict__ for r in rows],
                },
                indent=2,
            )
        )
        return
    typer.echo(f"{'COMPONENT':<26}{'STATE':<10}{'PID':<9}{'PORT':<8}LOG")
    for r in rows:
        typer.echo(
            f"{r.name:<26}{'running' if r.running else 'stopped':<10}{r.pid or '-'!s:<9}"
            f"{r.port or '-'!s:<8}{r.log or '-'}"
        )
    node = RealNode(plane, Binaries(binaries.default_dir().resolve()))
    if node.layout.containerd_config.exists():
        typer.echo(
            f"real node {NODE_NAME}: pods on {node.layout.pod_subnet} (bridge "
            f"{node.layout.bridge}), containerd {node.layout.socket}, files in {node.layout.root}"
        )
    if not any(r.running for r in rows):
        raise typer.Exit(3)


@app.command()
def env(workdir: DirOption) -> None:
    """Print shell exports for kubectl: eval "$(sidecarset cluster env)"."""
    plane = ControlPlane(workdir)
    if not plane.kubeconfig.exists():
        raise CliError(f"no cluster in {plane.workdir}; start one with `sidecarset cluster up`")
    try:
        values = plane.env()
    except BinariesMissing as err:
        raise CliError(str(err)) from err
    keys = ["KUBECONFIG", "PATH", "NO_PROXY"]
    node = RealNode(plane)
    if node.layout.containerd_config.exists():
        # crictl and ctr read these; the node's binaries go on PATH beside kubectl.
        values["PATH"] = f"{node.layout.binaries}{os.pathsep}{values['PATH']}"
        values["CONTAINER_RUNTIME_ENDPOINT"] = f"unix://{node.layout.socket}"
        values["CONTAINERD_ADDRESS"] = str(node.layout.socket)
        values["CONTAINERD_NAMESPACE"] = "k8s.io"
        keys += ["CONTAINER_RUNTIME_ENDPOINT", "CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE"]
    for key in keys:
        typer.echo(f"export {key}={shlex.quote(values[key])}")


@app.command(hidden=False)
def simulate(
    kubeconfig: Annotated[Path, typer.Option(help="Kubeconfig of the cluster.")],
    nodes: Annotated[int, typer.Option(min=1, help="How many Nodes to register.")] = 3,
    start_delay: Annotated[
        float, typer.Option(help="Seconds to pull and start a container.")
    ] = 0.2,
    ready_delay: Annotated[float, typer.Option(help="Seconds from started to ready.")] = 0.3,
    stop_delay: Annotated[
        float,
        typer.Option(
            help="Seconds an old container keeps running after an in-place image change, as "
            "a real kubelet waits the grace period for a process that ignores SIGTERM.",
        ),
    ] = 0.0,
    failing_images: Annotated[
        str, typer.Option(help="Regex: matching images crash-loop and never become ready.")
    ] = ":broken",
    ready_file: Annotated[
        Path | None, typer.Option(help="Touched once nodes are registered and pods listed.")
    ] = None,
) -> None:
    """Run the node simulator (the kubelet stand-in) in the foreground.

    It registers Ready nodes sim-node-0..N-1 and drives every pod bound to them through
    pods/status: Pending -> Running, container statuses with imageIDs, in-place restarts on
    image change, readiness gates, crash loops for failing images, graceful deletion.
    """
    from sidecarset.shell import logs
    from sidecarset.shell.kube.client import KubeClient
    from sidecarset.simulator import agent, kubelet

    logs.configure("info")
    try:
        pattern = re.compile(failing_images) if failing_images else None
    except re.error as err:
        raise CliError(f"--failing-images: not a regular expression: {err}", code=2) from err
    rules = kubelet.Rules(
        start_delay=start_delay,
        ready_delay=ready_delay,
        stop_delay=stop_delay,
        failing_images=pattern,
    )

    async def main() -> None:
        client = await KubeClient.from_kubeconfig(str(kubeconfig), qps=0)
        async with client:
            sim = agent.NodeSimulator(
                client, nodes=agent.node_names(nodes), rules=rules, ready_file=ready_file
            )
            await sim.run()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)


@app.command(hidden=True)
def relay(
    listen: Annotated[str, typer.Option(help="host:port to listen on.")],
    to: Annotated[str, typer.Option(help="host:port to forward each connection to.")],
    ready_file: Annotated[Path | None, typer.Option(help="Touched once listening.")] = None,
) -> None:
    """Relay TCP from the real node's pod gateway to the apiserver (started with the node)."""
    from sidecarset.devcluster import relay as tcp_relay

    def address(value: str, flag: str) -> tuple[str, int]:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit():
            raise CliError(f"{flag}: expected host:port, got {value!r}", code=2)
        return host, int(port)

    listen_host, listen_port = address(listen, "--listen")
    to_host, to_port = address(to, "--to")
    try:
        asyncio.run(tcp_relay.serve(listen_host, listen_port, to_host, to_port, ready_file))
    except OSError as err:
        raise CliError(f"relay: cannot listen on {listen}: {err}") from err
    except KeyboardInterrupt:
        sys.exit(0)
