"""The local control plane: real etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

Everything listens on 127.0.0.1 on ports chosen when the cluster is first created. The work
directory keeps the PKI, etcd's data, each component's log, the admin kubeconfig and a state file
recording the processes, so `up` can run again and start only what is not running, and `down`
can stop processes started by an earlier command. The same class backs `make demo`, the test
fixtures and the benchmarks.
"""

from __future__ import annotations

import base64
import json
import os
import random
import socket
import ssl
import sys
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cryptography import x509

from sidecarset.devcluster.binaries import Binaries
from sidecarset.devcluster.nodeconfig import node_gateway
from sidecarset.devcluster.process import ProcessRecord, StartupError, spawn, stop, wait_until
from sidecarset.shell import pki

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
PORT_NAMES = ("etcd", "etcd-peer", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
SERVICE_CIDR = "10.0.0.0/24"  # an allocation pool only; nothing is ever routed there

Progress = Callable[[str], None]


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range.

    A port the kernel hands out (bind to 0) lies in the range it also uses for outgoing
    connections: while a component is restarted on its recorded port, any client's new
    connection may take that port as its own end, and the restart fails with "in use". Below
    the range nothing takes a port unasked. Falls back to the kernel's choice if every try there
    is taken."""
    low = _ephemeral_low()
    for _ in range(64):
        port = random.randrange(max(1024, low - 12000), low)
        if not port_in_use(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@dataclass(frozen=True)
class Component:
    """A process to supervise: how to start it and how to know it is ready."""

    name: str
    argv: Sequence[str]
    ready: Callable[[], bool]
    timeout: float = 90.0
    env: Mapping[str, str] | None = None
    port: int | None = None
    prepare: Callable[[], None] | None = None  # runs just before the process starts


@dataclass
class ClusterState:
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, ProcessRecord] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> ClusterState:
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text())
            return cls(
                ports={k: int(v) for k, v in data.get("ports", {}).items()},
                processes={
                    k: ProcessRecord.from_json(v) for k, v in data.get("processes", {}).items()
                },
            )
        except (ValueError, KeyError, TypeError):
            return cls()  # a torn or foreign file: treat as stale

    def save(self, path: Path) -> None:
        payload = {
            "ports": self.ports,
            "processes": {k: v.to_json() for k, v in self.processes.items()},
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2))
        tmp.replace(path)


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    pid: int | None
    port: int | None
    log: str | None


class ControlPlane:
    """Start, inspect and stop the local cluster kept in `workdir`."""

    def __init__(
        self,
        workdir: Path,
        binaries: Binaries | None = None,
        *,
        die_with_parent: bool = False,
        apiserver_args: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir.resolve()
        self._binaries = binaries
        self._die_with_parent = die_with_parent
        self._apiserver_args = tuple(apiserver_args)
        self.pki_dir = self.workdir / "pki"
        self.log_dir = self.workdir / "logs"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.state_path = self.workdir / "state.json"

    # -- public API -------------------------------------------------------------------------

    @property
    def binaries(self) -> Binaries:
        if self._binaries is None:
            self._binaries = Binaries.locate()
        return self._binaries

    def state(self) -> ClusterState:
        return ClusterState.load(self.state_path)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.state().ports['kube-apiserver']}"

    def up(self, *, extra: Sequence[Component] = (), progress: Progress = print) -> None:
        """Start every component that is not running; leaves running ones alone.

        On failure (or Ctrl-C) the components this call started are stopped again, so a failed
        `up` never leaves half a cluster behind.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        state = self._clean_stale(self.state(), progress)
        self._ensure_pki()
        self._ensure_ports(state)
        state.save(self.state_path)
        self._write_kubeconfig(state)
        started: list[str] = []
        try:
            for component in [*self._control_plane(state), *extra]:
                record = state.processes.get(component.name)
                if record is not None and record.is_running():
                    continue
                if component.port is not None and port_in_use(component.port):
                    raise StartupError(
                        f"port {component.port} for {component.name} is in use by another "
                        f"program; stop it, or run `sidecarset cluster down` and remove "
                        f"{self.workdir} to pick new ports"
                    )
                progress(f"starting {component.name}")
                if component.prepare is not None:
                    component.prepare()
                _, record = spawn(
                    component.name,
                    component.argv,
                    self.log_dir / f"{component.name}.log",
                    env=component.env,
                    die_with_parent=self._die_with_parent,
                )
                state.processes[component.name] = record
                state.save(self.state_path)
                started.append(component.name)
                wait_until(
                    component.ready, record=record, timeout=component.timeout, what=component.name
                )
        except BaseException:
            for name in reversed(started):
                stop(state.processes[name])
                del state.processes[name]
            state.save(self.state_path)
            raise

    def down(
        self,
        *,
        progress: Progress = print,
        names: Sequence[str] | None = None,
        before_stop: Mapping[str, Callable[[], None]] | None = None,
    ) -> None:
        """Stop the named components (default: all), newest first.

        `before_stop[name]` runs just before `name` is stopped, even if it is no longer
        running (the real node stops its pods through containerd that way).
        """
        state = self.state()
        for name in reversed(list(state.processes)):
            if names is not None and name not in names:
                continue
            record = state.processes[name]
            if before_stop and name in before_stop:
                before_stop[name]()
            if record.is_running():
                progress(f"stopping {name} (pid {record.pid})")
                stop(record)
            del state.processes[name]
            state.save(self.state_path)

    def status(self) -> list[ComponentStatus]:
        state = self.state()
        names = list(dict.fromkeys([*CONTROL_PLANE, *state.processes]))
        result = []
        for name in names:
            record = state.processes.get(name)
            running = record is not None and record.is_running()
            result.append(
                ComponentStatus(
                    name=name,
                    running=running,
                    pid=record.pid if record and running else None,
                    port=state.ports.get(name),
                    log=record.log if record else None,
                )
            )
        return result

    def reserve_port(self, name: str) -> int:
        """A loopback port recorded under `name`, kept across `up`s like the others."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        state = self.state()
        if name not in state.ports:
            port = free_port()
            while port in state.ports.values():
                port = free_port()
            state.ports[name] = port
            state.save(self.state_path)
        return state.ports[name]

    def get(self, path: str) -> tuple[int, bytes]:
        """GET an API path as the cluster admin: (status code, body)."""
        return self._get(f"{self.server}{path}", self._admin_context())

    def patch(self, path: str, body: object) -> int:
        """A strategic merge patch of an API path as the cluster admin; the status code."""
        request = urllib.request.Request(
            f"{self.server}{path}",
            data=json.dumps(body).encode(),
            method="PATCH",
            headers={"Content-Type": "application/strategic-merge-patch+json"},
        )
        code, _ = self._get(request, self._admin_context())
        return code

    def is_ready(self) -> bool:
        try:
            return self._apiserver_ready()
        except (OSError, KeyError):
            return False

    def env(self) -> dict[str, str]:
        """Environment for clients of this cluster (kubectl on PATH, loopback never proxied)."""
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{self.binaries.directory}{os.pathsep}{os.environ.get('PATH', '')}",
            "NO_PROXY": "127.0.0.1,localhost",
        }

    # -- internals --------------------------------------------------------------------------

    def _clean_stale(self, state: ClusterState, progress: Progress) -> ClusterState:
        stale = [name for name, rec in state.processes.items() if not rec.is_running()]
        for name in stale:
            progress(f"cleaning stale record of {name} (pid {state.processes[name].pid} is gone)")
            del state.processes[name]
        return state

    def _ensure_ports(self, state: ClusterState) -> None:
        for name in PORT_NAMES:
            if name not in state.ports:
                port = free_port()
                while port in state.ports.values():
                    port = free_port()
                state.ports[name] = port

    def _ensure_pki(self) -> None:
        ca_crt = self.pki_dir / "ca.crt"
        if ca_crt.exists():
            self._ensure_apiserver_names()
            return
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        ca = pki.CertificateAuthority()
        ca.pair.write(self.pki_dir, "ca")
        self._issue_apiserver_cert(ca)
        ca.issue("admin", organizations=("system:masters",), client=True).write(
            self.pki_dir, "admin"
        )
        private, public = pki.service_account_keys()
        sa_key = self.pki_dir / "sa.key"
        sa_key.write_bytes(private)
        sa_key.chmod(0o600)
        (self.pki_dir / "sa.pub").write_bytes(public)

    def _apiserver_ips(self) -> tuple[str, ...]:
        """Loopback, the `kubernetes` Service's ClusterIP, and the real node's pod gateway,
        where pods reach the apiserver through the node's relay."""
        return ("127.0.0.1", "10.0.0.1", node_gateway(self.workdir))

    def _issue_apiserver_cert(self, ca: pki.CertificateAuthority) -> None:
        ca.issue(
            "kube-apiserver",
            dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
            ips=self._apiserver_ips(),
            server=True,
        ).write(self.pki_dir, "apiserver")

    def _ensure_apiserver_names(self) -> None:
        """Re-issue the serving certificate from the cluster's CA if it lacks an address
        (a cluster created before the relay existed); clients keep trusting the same CA."""
        cert = pki.KeyPair((self.pki_dir / "apiserver.crt").read_bytes(), b"").certificate()
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            present = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
        except x509.ExtensionNotFound:
            present = set()
        if set(self._apiserver_ips()) <= present:
            return
        ca = pki.CertificateAuthority.load(
            pki.KeyPair(
                (self.pki_dir / "ca.crt").read_bytes(), (self.pki_dir / "ca.key").read_bytes()
            )
        )
        self._issue_apiserver_cert(ca)

    def _write_kubeconfig(self, state: ClusterState) -> None:
        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "sidecarset-local",
                    "cluster": {
                        "server": f"https://127.0.0.1:{state.ports['kube-apiserver']}",
                        "certificate-authority-data": b64(self.pki_dir / "ca.crt"),
                    },
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate-data": b64(self.pki_dir / "admin.crt"),
                        "client-key-data": b64(self.pki_dir / "admin.key"),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "sidecarset-local",
                    "context": {"cluster": "sidecarset-local", "user": "admin"},
                }
            ],
            "current-context": "sidecarset-local",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
        self.kubeconfig.chmod(0o600)

    def _admin_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
        ctx.load_cert_chain(str(self.pki_dir / "admin.crt"), str(self.pki_dir / "admin.key"))
        return ctx

    def _get(
        self, url: str | urllib.request.Request, context: ssl.SSLContext | None = None
    ) -> tuple[int, bytes]:
        """One request, never through a proxy: (status code, body; empty on an HTTP error)."""
        handler = urllib.request.HTTPSHandler(context=context) if context else None
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), *([handler] if handler else [])
        )
        try:
            with opener.open(url, timeout=5) as resp:
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as err:
            return int(err.code), b""

    def _apiserver_ready(self) -> bool:
        port = self.state().ports["kube-apiserver"]
        code, body = self._get(f"https://127.0.0.1:{port}/readyz", self._admin_context())
        return code == 200 and body.strip() == b"ok"

    def _insecure_healthz(self, port: int) -> Callable[[], bool]:
        def ready() -> bool:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            code, _ = self._get(f"https://127.0.0.1:{port}/healthz", ctx)
            return code == 200

        return ready

    def _control_plane(self, state: ClusterState) -> list[Component]:
        bins, ports, p = self.binaries, state.ports, self.pki_dir
        etcd_url = f"http://127.0.0.1:{ports['etcd']}"
        peer_url = f"http://127.0.0.1:{ports['etcd-peer']}"
        kc = str(self.kubeconfig)

        def etcd_ready() -> bool:
            code, body = self._get(f"{etcd_url}/health")
            return code == 200 and b'"health":"true"' in body

        common_auth = [
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
        ]
        return [
            Component(
                name="etcd",
                argv=[
                    str(bins.path("etcd")),
                    "--name=default",
                    f"--data-dir={self.workdir / 'etcd-data'}",
                    f"--listen-client-urls={etcd_url}",
                    f"--advertise-client-urls={etcd_url}",
                    f"--listen-peer-urls={peer_url}",
                    f"--initial-advertise-peer-urls={peer_url}",
                    f"--initial-cluster=default={peer_url}",
                    "--unsafe-no-fsync=true",
                    f"--quota-backend-bytes={4 * 1024**3}",
                    "--log-level=warn",
                ],
                ready=etcd_ready,
                timeout=30,
                port=ports["etcd"],
            ),
            Component(
                name="kube-apiserver",
                argv=[
                    str(bins.path("kube-apiserver")),
                    f"--etcd-servers={etcd_url}",
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    f"--secure-port={ports['kube-apiserver']}",
                    f"--tls-cert-file={p / 'apiserver.crt'}",
                    f"--tls-private-key-file={p / 'apiserver.key'}",
                    f"--client-ca-file={p / 'ca.crt'}",
                    f"--service-account-issuer=https://127.0.0.1:{ports['kube-apiserver']}",
                    f"--service-account-key-file={p / 'sa.pub'}",
                    f"--service-account-signing-key-file={p / 'sa.key'}",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    "--authorization-mode=RBAC",
                    # No node-lifecycle controller runs, so nothing would lift the not-ready taint.
                    "--disable-admission-plugins=TaintNodesByCondition",
                    # Loopback cannot be the `kubernetes` Service endpoint; skip the reconciler.
                    "--endpoint-reconciler-type=none",
                    "--allow-privileged=true",
                    # `kubectl logs/exec` on a real node: its InternalIP is 127.0.0.1.
                    "--kubelet-preferred-address-types=InternalIP,Hostname",
                    # Call webhook (and aggregated API) Services at their endpoints' pod IPs:
                    # no kube-proxy routes ClusterIPs here, the real node's pod bridge is routed.
                    "--enable-aggregator-routing=true",
                    f"--cert-dir={self.workdir / 'apiserver-certs'}",
                    "--watch-cache=true",
                    *self._apiserver_args,
                ],
                ready=self._apiserver_ready,
                timeout=120,
                port=ports["kube-apiserver"],
            ),
            Component(
                name="kube-controller-manager",
                argv=[
                    str(bins.path("kube-controller-manager")),
                    *common_auth,
                    f"--secure-port={ports['kube-controller-manager']}",
                    # Simulated nodes renew no heartbeats the way a kubelet does; see docs.
                    "--controllers=*,-node-lifecycle-controller",
                    f"--service-account-private-key-file={p / 'sa.key'}",
                    f"--root-ca-file={p / 'ca.crt'}",
                    "--use-service-account-credentials=false",
                    "--kube-api-qps=200",
                    "--kube-api-burst=400",
                    "--concurrent-deployment-syncs=10",
                    "--concurrent-replicaset-syncs=10",
                ],
                ready=self._insecure_healthz(ports["kube-controller-manager"]),
                timeout=90,
                port=ports["kube-controller-manager"],
            ),
            Component(
                name="kube-scheduler",
                argv=[
                    str(bins.path("kube-scheduler")),
                    *common_auth,
                    f"--secure-port={ports['kube-scheduler']}",
                    "--kube-api-qps=200",
                    "--kube-api-burst=400",
                ],
                ready=self._insecure_healthz(ports["kube-scheduler"]),
                timeout=90,
                port=ports["kube-scheduler"],
            ),
        ]


def python_component(
    name: str,
    module_args: Sequence[str],
    *,
    ready: Callable[[], bool],
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> Component:
    """A component that is this package's own Python code (node simulator, operator)."""
    return Component(
        name=name,
        argv=[sys.executable, "-m", "sidecarset", *module_args],
        ready=ready,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
