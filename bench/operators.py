"""The two operators the peer comparison runs, behind one small interface: start one on a
cluster at a given client rate limit, read how many API writes it has sent, stop it.

`Sidecarset` is our `sidecarset operator run`, started as every benchmark starts it. `Kruise` is
OpenKruise's kruise-manager, built by tools/build_kruise.py into `<testbin>/kruise/`: this
module installs what it needs on a fresh control plane (its CRDs, the `kruise-system`
namespace, an empty `kruise-configuration` ConfigMap and its webhook configurations, renamed with
the `kruise-` prefix its release manifests give them) and runs it as a subprocess serving its
webhooks on 127.0.0.1, which it writes into those configurations itself.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import yaml

from bench import harness
from bench.harness import Cluster
from sidecarset.devcluster.binaries import default_dir
from sidecarset.devcluster.controlplane import Component, free_port
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import KubeClient, resource_path

WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")
KRUISE = "kruise-manager"
KRUISE_NAMESPACE = "kruise-system"
MANAGER = "controller-manager"  # the label that keeps Kruise's pod webhooks off its namespace
KRUISE_MUTATING = "kruise-mutating-webhook-configuration"
OUR_MUTATING = "sidecarset-mutating"
CRDS = resource_path("apiextensions.k8s.io/v1", "customresourcedefinitions")
VALIDATING_WEBHOOKS = resource_path(
    "admissionregistration.k8s.io/v1", "validatingwebhookconfigurations"
)


class PeerMissing(Exception):
    """The peer's binary or manifests are not built; the message says how to build them."""


@dataclass(frozen=True)
class Limit:
    """A client-side API rate limit: `qps` sustained, `burst` at once."""

    qps: float
    burst: int

    def to_json(self) -> dict[str, float | int]:
        return {"qps": self.qps, "burst": self.burst}


# Ours: --qps (default 50) with a fixed burst of 100. Kruise: --rest-config-qps/-burst, 30/50.
OUR_DEFAULT = Limit(50, 100)
KRUISE_DEFAULT = Limit(30, 50)
EQUAL = OUR_DEFAULT
"""Both operators at the same limit: ours' default, the higher of the two."""


class Operator(Protocol):
    name: str
    mutating_config: str
    default_limit: Limit

    def version(self) -> str: ...

    def limits(self) -> dict[str, Limit]:
        """The rate-limit settings worth measuring, by name ("equal", "default")."""
        ...

    def processes(self) -> str:
        """How it runs, for the results file."""
        ...

    async def start(self, cluster: Cluster, limit: Limit) -> tuple[int, ...]:
        """Start it (installing what it needs first); return its pids once it is ready."""
        ...

    def stop(self, cluster: Cluster) -> None: ...

    async def writes(self, cluster: Cluster) -> float:
        """API writes its client has sent since it started (its own counter)."""
        ...

    async def pod_admission_seconds(self, cluster: Cluster) -> tuple[float, float]:
        """Its webhook server's own time answering pod mutations so far: (sum, count)."""
        ...


async def scrape(port: int) -> harness.Scrape:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        return harness.Scrape.parse(await resp.text())


SPLIT_VARIABLE = "SIDECARSET_PEER_SPLIT"
"""`1`: our operator runs as two processes, the webhooks (`--mode webhook`) beside the controller
(`--mode controller`), as the chart's `webhook.ownProcess` deploys it; `0`: one process (the
chart's default). CPU and RSS are then summed over both."""


def split_from_env() -> bool:
    text = os.environ.get(SPLIT_VARIABLE, "0")
    if text not in ("0", "1"):
        raise ValueError(f"{SPLIT_VARIABLE}={text!r}: expected 0 (one process) or 1 (two)")
    return text == "1"


class Sidecarset:
    name = "sidecarset"
    mutating_config = OUR_MUTATING
    default_limit = OUR_DEFAULT

    def __init__(self, *, split: bool = False) -> None:
        self.split = split
        self._probe_ports: tuple[int, ...] = ()

    def processes(self) -> str:
        return "webhook and controller processes" if self.split else "one process"

    def version(self) -> str:
        from importlib.metadata import version

        return version("sidecarset")

    def limits(self) -> dict[str, Limit]:
        # Our default is the equal setting: one run covers both.
        return {"equal": EQUAL}

    async def start(self, cluster: Cluster, limit: Limit) -> tuple[int, ...]:
        if limit.burst != OUR_DEFAULT.burst:
            raise ValueError(f"our operator's burst is fixed at {OUR_DEFAULT.burst}")
        started = cluster.start_operator(["--qps", f"{limit.qps:g}"], split=self.split)
        self._probe_ports = started.probe_ports
        return started.pids

    def stop(self, cluster: Cluster) -> None:
        cluster.stop_operator()

    async def writes(self, cluster: Cluster) -> float:
        total = 0.0
        for port in self._probe_ports:
            by_verb = (await scrape(port)).by_label("sidecarset_api_requests_total", "verb")
            total += sum(v for verb, v in by_verb.items() if verb in WRITE_VERBS)
        return total

    async def pod_admission_seconds(self, cluster: Cluster) -> tuple[float, float]:
        got = await scrape(self._probe_ports[-1])  # the webhook's process: the last, or only
        name = "sidecarset_webhook_request_duration_seconds"
        return (
            got.total(f"{name}_sum", webhook="mutate-pod"),
            got.total(f"{name}_count", webhook="mutate-pod"),
        )


def kruise_dir() -> Path:
    return default_dir() / "kruise"


class Kruise:
    name = "kruise"
    mutating_config = KRUISE_MUTATING
    default_limit = KRUISE_DEFAULT

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or kruise_dir()
        self.binary = self.folder / KRUISE
        missing = [
            p
            for p in (self.binary, self.folder / "crds.yaml", self.folder / "webhooks.yaml")
            if not p.is_file()
        ]
        if missing:
            raise PeerMissing(
                f"kruise-manager is not built ({missing[0]} is missing); "
                "build it with `make bench PEER=kruise` (or python3 tools/build_kruise.py)"
            )
        self._metrics_port = 0
        self._installed: set[Path] = set()

    def version(self) -> str:
        stamp = json.loads((self.folder / "stamp.json").read_text())
        return f"{stamp['version']} ({stamp.get('go', 'go ?')})"

    def limits(self) -> dict[str, Limit]:
        return {"equal": EQUAL, "default": KRUISE_DEFAULT}

    async def install(self, client: KubeClient) -> None:
        """CRDs, namespace, ConfigMap and webhook configurations, once per control plane."""
        for doc in yaml.safe_load_all((self.folder / "crds.yaml").read_text()):
            if doc:
                await _create(client, CRDS, doc)
        for doc in kruise_webhook_configurations(
            list(yaml.safe_load_all((self.folder / "webhooks.yaml").read_text()))
        ):
            path = (
                harness.MUTATING_WEBHOOKS
                if doc["kind"] == "MutatingWebhookConfiguration"
                else VALIDATING_WEBHOOKS
            )
            await _create(client, path, doc)
        await _create(
            client,
            resource_path("v1", "namespaces"),
            {"metadata": {"name": KRUISE_NAMESPACE, "labels": {"control-plane": MANAGER}}},
        )
        await _create(
            client,
            resource_path("v1", "configmaps", namespace=KRUISE_NAMESPACE),
            {"metadata": {"name": "kruise-configuration"}, "data": {}},
        )
        for doc in yaml.safe_load_all((self.folder / "crds.yaml").read_text()):
            if doc:
                name = doc["metadata"]["name"]
                await harness.wait_until(
                    functools.partial(client.get, f"{CRDS}/{name}"),
                    _established,
                    timeout=60,
                    what=f"CRD {name} established",
                )

    def processes(self) -> str:
        return "one process"

    async def start(self, cluster: Cluster, limit: Limit) -> tuple[int, ...]:
        if cluster.workdir not in self._installed:
            await self.install(await cluster.client())
            self._installed.add(cluster.workdir)
        metrics, health, webhook = free_port(), free_port(), free_port()
        certs = Path(tempfile.mkdtemp(prefix="kruise-certs-", dir=cluster.workdir))
        component = Component(
            name=KRUISE,
            argv=[
                str(self.binary),
                f"--metrics-addr=127.0.0.1:{metrics}",
                f"--health-probe-addr=127.0.0.1:{health}",
                "--enable-pprof=false",
                "--feature-gates=KruiseDaemon=false",
                f"--rest-config-qps={limit.qps:g}",
                f"--rest-config-burst={limit.burst}",
            ],
            ready=lambda: _http_ok(f"http://127.0.0.1:{health}/readyz"),
            timeout=120,
            env={
                **os.environ,
                "KUBECONFIG": str(cluster.plane.kubeconfig),
                "POD_NAMESPACE": KRUISE_NAMESPACE,
                "WEBHOOK_HOST": "127.0.0.1",
                "WEBHOOK_PORT": str(webhook),
                "WEBHOOK_CERT_DIR": str(certs),
                "NO_PROXY": "127.0.0.1,localhost",
            },
        )
        cluster.plane.up(extra=[component], progress=lambda _m: None)
        self._metrics_port = metrics
        pid = cluster.pid(KRUISE)
        if pid is None:
            raise RuntimeError(f"{KRUISE} exited after becoming ready; see its log")
        client = await cluster.client()
        await harness.wait_until(
            lambda: client.get(f"{harness.MUTATING_WEBHOOKS}/{KRUISE_MUTATING}"),
            lambda got: _points_at(got, webhook),
            timeout=60,
            what=f"{KRUISE_MUTATING} rewritten to 127.0.0.1:{webhook}",
        )
        return (pid,)

    def stop(self, cluster: Cluster) -> None:
        cluster.plane.down(names=[KRUISE], progress=lambda _m: None)

    async def writes(self, cluster: Cluster) -> float:
        got = await scrape(self._metrics_port)
        by_method = got.by_label("rest_client_requests_total", "method")
        return sum(v for method, v in by_method.items() if method in WRITE_VERBS)

    async def pod_admission_seconds(self, cluster: Cluster) -> tuple[float, float]:
        # controller-runtime's webhook server times every handler by its path.
        got = await scrape(self._metrics_port)
        name = "controller_runtime_webhook_latency_seconds"
        return (
            got.total(f"{name}_sum", webhook="/mutate-pod"),
            got.total(f"{name}_count", webhook="/mutate-pod"),
        )


def kruise_webhook_configurations(docs: list[Any]) -> list[dict[str, Any]]:
    """The webhook configurations of Kruise's `config/webhook`, named as its release names them
    (`kruise-` prefix: kruise-manager looks them up by those names), without the Service (it
    rewrites every webhook to a URL on WEBHOOK_HOST)."""
    found = []
    for doc in docs:
        if not doc or doc.get("kind") not in (
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
        ):
            continue
        out = dict(doc)
        meta = dict(out["metadata"])
        meta.pop("namespace", None)
        if not meta["name"].startswith("kruise-"):
            meta["name"] = f"kruise-{meta['name']}"
        out["metadata"] = meta
        found.append(out)
    return found


def operator_by_name(name: str) -> Operator:
    if name == "kruise":
        return Kruise()
    if name == "sidecarset":
        return Sidecarset(split=split_from_env())
    raise ValueError(f"unknown operator {name!r}")


async def _create(client: KubeClient, path: str, body: dict[str, Any]) -> None:
    try:
        await client.create(path, body)
    except errors.AlreadyExists:
        pass


def _established(crd: dict[str, Any]) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def _points_at(config: dict[str, Any], port: int) -> bool:
    hooks = config.get("webhooks") or []
    return bool(hooks) and all(
        f"127.0.0.1:{port}" in (h.get("clientConfig") or {}).get("url", "") for h in hooks
    )


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_ok(url: str) -> bool:
    """GET on loopback, never through a proxy: 200 or not."""
    try:
        with _DIRECT.open(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False
