"""What every benchmark shares: one real local control plane per run, the operator and the node
simulator as subprocesses, readings of processes (/proc) and metrics (Prometheus text), bounded
bulk requests, percentiles, and the result files.

Nothing here fakes the API server or the operator: the figures come from the same binaries and
the same `sidecarset operator run` that `make demo` starts. All traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from sidecarset.devcluster.binaries import Binaries
from sidecarset.devcluster.components import (
    OPERATOR,
    OPERATOR_WEBHOOK,
    SIMULATOR,
    operator_component,
    simulator_component,
)
from sidecarset.devcluster.controlplane import ControlPlane, free_port
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import KubeClient, resource_path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
QUICK_RESULTS = RESULTS / "quick"
SIDECARSETS = resource_path("apps.kruise.io/v1alpha1", "sidecarsets")
MUTATING_WEBHOOKS = resource_path(
    "admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations"
)

# The benchmarks' own client is system:masters, which API Priority and Fairness exempts; the
# raised in-flight limits matter only for anything else that shares the apiserver during a run.
APISERVER_ARGS = ("--max-requests-inflight=1000", "--max-mutating-requests-inflight=500")
# Production defaults except the log level: debug would log every admission review.
OPERATOR_ARGS = ("--log-level", "info")


def say(message: str) -> None:
    print(message, flush=True)


# -- the machine ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the figures were measured on (CPU model, cores, memory, load when the run started)."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpu_model": model,
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


# -- processes -------------------------------------------------------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


Pids = int | Sequence[int]
"""One process, or the processes of one operator run as several (`--mode webhook` beside
`--mode controller`): readings are summed over them."""


def _each(pids: Pids) -> Sequence[int]:
    return (pids,) if isinstance(pids, int) else pids


def cpu_seconds(pids: Pids) -> float:
    """User + system CPU time so far (from /proc/<pid>/stat), summed over the processes."""
    total = 0
    for pid in _each(pids):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / _CLOCK_TICKS


def memory(pids: Pids) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) in MiB, summed over the processes (for several, the sum of
    their peaks: an upper bound of the peak they reached together)."""
    found: dict[str, float] = {}
    for pid in _each(pids):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = round(found.get(key, 0.0) + int(value.split()[0]) / 1024, 1)
    return found


# -- statistics ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(seconds: float, digits: int = 3) -> float:
    return round(seconds * 1000, digits)


# -- Prometheus text -------------------------------------------------------------------------------

Labels = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Scrape:
    """One /metrics reading: sample name and labels -> value."""

    samples: Mapping[tuple[str, Labels], float]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        samples: dict[tuple[str, Labels], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return cls(samples)

    def total(self, name: str, /, **labels: str) -> float:
        """Sum over every series of `name` whose labels include `labels`."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and want <= ls)

    def by_label(self, name: str, label: str, /, **labels: str) -> dict[str, float]:
        """Sum of `name` grouped by the value of `label`."""
        return self.by_labels(name, (label,), **labels)

    def by_labels(self, name: str, keys: Sequence[str], /, **labels: str) -> dict[str, float]:
        """Sum of `name` grouped by the values of `keys`, joined with ' '."""
        want = set(labels.items())
        out: dict[str, float] = {}
        for (n, ls), v in self.samples.items():
            if n == name and want <= ls:
                d = dict(ls)
                key = " ".join(d.get(k, "") for k in keys).strip()
                out[key] = out.get(key, 0.0) + v
        return out

    def buckets(self, name: str, /, **labels: str) -> list[tuple[float, float]]:
        """Cumulative histogram buckets (upper bound, count), summed over matching series."""
        got = self.by_label(f"{name}_bucket", "le", **labels)
        return sorted((float(le), count) for le, count in got.items())


def bucket_delta(
    after: list[tuple[float, float]], before: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    earlier = dict(before)
    return [(le, count - earlier.get(le, 0.0)) for le, count in after]


def histogram_quantile(buckets: Sequence[tuple[float, float]], q: float) -> float:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket that holds q."""
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower_bound
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return lower_bound


def fraction_within(buckets: Sequence[tuple[float, float]], bound: float) -> float:
    """Share of observations at or under `bound` (which must be a bucket bound)."""
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    for le, count in buckets:
        if le == bound:
            return count / buckets[-1][1]
    raise ValueError(f"{bound} is not a bucket bound")


# -- bounded bulk requests -------------------------------------------------------------------------


@dataclass
class Bulk:
    """How a bounded burst of requests went."""

    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.done + self.failed,
            "failed": self.failed,
            "seconds": round(self.seconds, 2),
            "per_second": round(self.done / self.seconds, 1) if self.seconds else None,
            "p50_ms": ms(percentile(self.latencies, 50), 2),
            "p99_ms": ms(percentile(self.latencies, 99), 2),
            "first_errors": self.errors[:3],
        }


async def bulk(
    calls: Iterable[Callable[[], Awaitable[object]]],
    *,
    concurrency: int,
    deadline: float,
    retries: int = 5,
) -> Bulk:
    """Run the calls, at most `concurrency` at once, retrying throttling and unavailability.

    Bounded: nothing starts after `deadline` (a `time.monotonic()` value), so a stuck cluster ends
    the benchmark instead of hanging it.
    """
    result = Bulk()
    queue = list(calls)
    queue.reverse()
    started = time.monotonic()

    async def worker() -> None:
        while queue and time.monotonic() < deadline:
            call = queue.pop()
            for attempt in range(retries + 1):
                t0 = time.perf_counter()
                try:
                    await call()
                except (errors.TooManyRequests, errors.Unavailable, errors.Conflict) as err:
                    if attempt == retries:
                        result.failed += 1
                        result.errors.append(str(err)[:300])
                        break
                    await asyncio.sleep(0.1 * (attempt + 1))
                    continue
                except errors.ApiError as err:
                    result.failed += 1
                    result.errors.append(str(err)[:300])
                    break
                result.latencies.append(time.perf_counter() - t0)
                result.done += 1
                break

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.monotonic() - started
    if queue:
        result.failed += len(queue)
        result.errors.append(f"{len(queue)} requests not sent before the deadline")
    return result


async def wait_until(
    probe: Callable[[], Awaitable[Any]],
    done: Callable[[Any], bool],
    *,
    timeout: float,
    interval: float = 0.2,
    what: str,
) -> Any:
    """Poll until `done(probe())`; raise TimeoutError naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = await probe()
            if done(last):
                return last
        except errors.ApiError as err:
            last = err
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached in {timeout:.0f}s; last: {str(last)[:500]}")
        await asyncio.sleep(interval)


# -- the cluster -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OperatorProcess:
    pid: int
    """The controller's process (the only one unless split)."""
    probe_port: int
    webhook_port: int
    spawned_at: float
    """time.time() just before the process was started."""
    ready_at: float
    """When it created its ready file: caches synced, webhooks served and registered."""
    log: Path
    log_offset: int
    """Where this process's lines start in the shared log file."""
    webhook_pid: int | None = None
    """Split (`start_operator(split=True)`): the `--mode webhook` process, serving the webhooks."""
    webhook_probe_port: int | None = None

    @property
    def pids(self) -> tuple[int, ...]:
        return (self.pid,) if self.webhook_pid is None else (self.webhook_pid, self.pid)

    @property
    def probe_ports(self) -> tuple[int, ...]:
        extra = () if self.webhook_probe_port is None else (self.webhook_probe_port,)
        return (self.probe_port, *extra)

    def log_events(self, event: str) -> list[dict[str, Any]]:
        """This process's structured log lines with the given event name."""
        found = []
        with self.log.open("rb") as f:
            f.seek(self.log_offset)
            for line in f:
                if event.encode() not in line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get("event") == event:
                    found.append(record)
        return found


class Cluster:
    """The control plane of one benchmark run, in a temporary directory removed afterwards.

    `die_with_parent`: a benchmark killed half-way leaves no process behind.
    """

    def __init__(self, workdir: Path | None = None) -> None:
        self._owned = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="sidecarset-bench-"))
        self.plane = ControlPlane(
            self.workdir, Binaries.locate(), die_with_parent=True, apiserver_args=APISERVER_ARGS
        )
        self.operator: OperatorProcess | None = None
        self.simulator_nodes = 0
        self._client: KubeClient | None = None

    def up(self) -> float:
        t0 = time.monotonic()
        self.plane.up(progress=lambda m: say(f"  cluster: {m}"))
        return time.monotonic() - t0

    def down(self) -> None:
        self.plane.down(progress=lambda _m: None)
        if os.environ.get("SIDECARSET_BENCH_KEEP"):
            say(f"kept the cluster's directory (logs): {self.workdir}")
        elif self._owned:
            shutil.rmtree(self.workdir, ignore_errors=True)

    async def client(self) -> KubeClient:
        if self._client is None:
            self._client = await KubeClient.from_kubeconfig(str(self.plane.kubeconfig), qps=0)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    # -- components ------------------------------------------------------------------------------

    def pid(self, name: str) -> int | None:
        record = self.plane.state().processes.get(name)
        return record.pid if record is not None and record.is_running() else None

    def start_operator(self, extra: Sequence[str] = (), *, split: bool = False) -> OperatorProcess:
        """Start the operator (production defaults, info logging) on known ports; blocks until
        its ready file exists. `split`: as two processes, `--mode webhook` (started first: it
        serves the CRD's conversion) and `--mode controller`, as the chart's
        `webhook.ownProcess` runs them."""
        probe, webhook = free_port(), free_port()
        log = self.plane.log_dir / f"{OPERATOR}.log"
        offset = log.stat().st_size if log.exists() else 0
        spawned = time.time()
        webhook_pid = webhook_probe = None
        if split:
            webhook_probe = free_port()
            self.plane.up(
                extra=[
                    operator_component(
                        self.plane,
                        [
                            *("--mode", "webhook", "--probe-port", str(webhook_probe)),
                            *("--webhook-port", str(webhook), *OPERATOR_ARGS, *extra),
                        ],
                        name=OPERATOR_WEBHOOK,
                    )
                ],
                progress=lambda _m: None,
            )
            webhook_pid = self.pid(OPERATOR_WEBHOOK)
            assert webhook_pid is not None
        own = ("--mode", "controller") if split else ("--webhook-port", str(webhook))
        component = operator_component(
            self.plane, [*own, "--probe-port", str(probe), *OPERATOR_ARGS, *extra]
        )
        self.plane.up(extra=[component], progress=lambda _m: None)
        ready_file = self.plane.workdir / "operator.ready"
        pid = self.pid(OPERATOR)
        assert pid is not None
        self.operator = OperatorProcess(
            pid=pid,
            probe_port=probe,
            webhook_port=webhook,
            spawned_at=spawned,
            ready_at=ready_file.stat().st_mtime,
            log=log,
            log_offset=offset,
            webhook_pid=webhook_pid,
            webhook_probe_port=webhook_probe,
        )
        return self.operator

    def ensure_operator(self) -> OperatorProcess:
        if self.operator is not None and self.pid(OPERATOR) == self.operator.pid:
            return self.operator
        return self.start_operator()

    def stop_operator(self) -> None:
        names = [OPERATOR]
        if self.operator is not None and self.operator.webhook_pid is not None:
            names.append(OPERATOR_WEBHOOK)  # stopped after the controller (newest first)
        self.plane.down(names=names, progress=lambda _m: None)
        self.operator = None

    def ensure_simulator(self, nodes: int) -> None:
        """The node simulator with at least `nodes` nodes (restarted with more if needed)."""
        if self.pid(SIMULATOR) is not None and self.simulator_nodes >= nodes:
            return
        self.stop_simulator()
        self.plane.up(extra=[simulator_component(self.plane, nodes)], progress=lambda _m: None)
        self.simulator_nodes = nodes

    def stop_simulator(self) -> None:
        self.plane.down(names=[SIMULATOR], progress=lambda _m: None)
        self.simulator_nodes = 0

    # -- readings --------------------------------------------------------------------------------

    async def operator_metrics(self, port: int | None = None) -> Scrape:
        """The operator's metrics (split: the controller's, or the process on `port`)."""
        assert self.operator is not None
        import aiohttp

        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port or self.operator.probe_port}/metrics") as resp,
        ):
            return Scrape.parse(await resp.text())

    async def apiserver_metrics(self) -> Scrape:
        client = await self.client()
        return Scrape.parse((await client.raw("GET", "/metrics")).decode())


# -- objects ---------------------------------------------------------------------------------------


async def create_namespace(
    client: KubeClient, name: str, labels: Mapping[str, str] | None = None
) -> None:
    try:
        await client.create(
            resource_path("v1", "namespaces"),
            {
                "metadata": {
                    "name": name,
                    "labels": {"sidecarset.dev/bench": "true", **(labels or {})},
                }
            },
        )
    except errors.AlreadyExists:
        pass
    await wait_until(
        lambda: client.get(resource_path("v1", "serviceaccounts", namespace=name, name="default")),
        lambda _sa: True,
        timeout=60,
        what=f"the default ServiceAccount of {name}",
    )


async def delete_pods(client: KubeClient, namespace: str, timeout: float = 600) -> None:
    """Delete every pod of the namespace at once (grace 0: no kubelet needs to confirm)."""
    path = resource_path("v1", "pods", namespace=namespace)
    # A delete-collection of 10,000 pods takes the apiserver minutes on a busy machine.
    await client.request(
        "DELETE",
        path,
        body={"gracePeriodSeconds": 0},
        params={"gracePeriodSeconds": 0},
        timeout=timeout,
    )
    await wait_until(
        lambda: client.get(path, limit=1),
        lambda body: not body.get("items"),
        timeout=timeout,
        interval=0.5,
        what=f"pods of {namespace} gone",
    )


async def delete_namespace(client: KubeClient, name: str) -> None:
    """Best effort: a cleanup failure is reported, never allowed to lose the figures."""
    try:
        await delete_pods(client, name)
        await client.delete(resource_path("v1", "namespaces", name=name))
    except errors.NotFound:
        pass
    except (errors.ApiError, TimeoutError) as err:
        say(f"  cleanup of namespace {name} failed (the figures stand): {err}")


async def delete_sidecarsets(client: KubeClient, names: Iterable[str]) -> None:
    for name in names:
        try:
            await client.delete(f"{SIDECARSETS}/{name}")
        except errors.NotFound:
            pass
        except errors.ApiError as err:
            say(f"  cleanup of SidecarSet {name} failed: {err}")


async def wait_injected(
    client: KubeClient, namespace: str, pod: dict[str, Any], container: str
) -> None:
    """Until a server-side dry run of `pod` comes back with `container` injected (the webhook's
    SidecarSet cache has caught up with a SidecarSet just created)."""

    async def probe() -> set[str]:
        got = await client.request(
            "POST",
            resource_path("v1", "pods", namespace=namespace),
            params={"dryRun": "All"},
            body=pod,
        )
        return {c["name"] for c in got["spec"]["containers"]}

    await wait_until(
        probe, lambda names: container in names, timeout=60, interval=0.1, what="injection"
    )


async def set_sidecar_image(client: KubeClient, name: str, index: int, image: str) -> None:
    from sidecarset.shell.kube.client import JSON_PATCH

    await client.patch(
        f"{SIDECARSETS}/{name}",
        [{"op": "replace", "path": f"/spec/containers/{index}/image", "value": image}],
        content_type=JSON_PATCH,
    )


# -- pods as the benchmarks watch them -------------------------------------------------------------


class _Meta(msgspec.Struct, frozen=True, rename="camel"):
    name: str = ""
    resource_version: str = ""


class _Container(msgspec.Struct, frozen=True):
    name: str = ""
    image: str = ""


class _Spec(msgspec.Struct, frozen=True):
    containers: list[_Container] | None = None  # null in BOOKMARK events


class _ContainerStatus(msgspec.Struct, frozen=True):
    name: str = ""
    image: str = ""
    ready: bool = False


class _Condition(msgspec.Struct, frozen=True):
    type: str = ""
    status: str = ""


class _Status(msgspec.Struct, frozen=True, rename="camel"):
    conditions: list[_Condition] | None = None
    container_statuses: list[_ContainerStatus] | None = None


class _Pod(msgspec.Struct, frozen=True):
    metadata: _Meta = _Meta()
    spec: _Spec = _Spec()
    status: _Status = _Status()


class _PodList(msgspec.Struct, frozen=True):
    metadata: _Meta = _Meta()
    items: list[_Pod] = []


class _Event(msgspec.Struct, frozen=True):
    type: str = ""
    object: _Pod = _Pod()


@dataclass(frozen=True)
class PodState:
    ready: bool
    spec_image: str
    status_image: str


class PodTracker:
    """Follows the pods of one namespace (list, then watch) and keeps, per pod, its readiness and
    one container's image in spec and in status. Its own small projection: what it reports does
    not depend on the operator's decoders."""

    def __init__(self, client: KubeClient, namespace: str, container: str) -> None:
        self._client = client
        self._path = resource_path("v1", "pods", namespace=namespace)
        self._container = container
        self.pods: dict[str, PodState] = {}
        self.changed = asyncio.Event()
        self.max_not_ready = 0
        self._task: asyncio.Task[None] | None = None
        self._listed = asyncio.Event()

    def _observe(self, pod: _Pod) -> None:
        spec = next((c.image for c in pod.spec.containers or () if c.name == self._container), "")
        statuses = pod.status.container_statuses or ()
        status = next((s for s in statuses if s.name == self._container), None)
        conditions = pod.status.conditions or ()
        ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
        self.pods[pod.metadata.name] = PodState(
            ready=ready, spec_image=spec, status_image=status.image if status else ""
        )

    async def _run(self) -> None:
        rv = ""
        async for page in self._client.list_pages(self._path):
            listed = msgspec.json.decode(page, type=_PodList)
            rv = listed.metadata.resource_version
            for pod in listed.items:
                self._observe(pod)
        self._listed.set()
        while True:
            try:
                async for line in self._client.watch(
                    self._path, resource_version=rv, timeout_seconds=600, inactivity_timeout=120
                ):
                    event = msgspec.json.decode(line, type=_Event)
                    if event.object.metadata.resource_version:
                        rv = event.object.metadata.resource_version
                    if event.type in ("ADDED", "MODIFIED"):
                        self._observe(event.object)
                    elif event.type == "DELETED":
                        self.pods.pop(event.object.metadata.name, None)
                    elif event.type == "ERROR":
                        raise RuntimeError(f"pod watch failed: {line[:300]!r}")
                    else:
                        continue
                    self.max_not_ready = max(self.max_not_ready, self.not_ready())
                    self.changed.set()
            except (errors.ApiError, TimeoutError):
                await asyncio.sleep(0.5)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._listed.wait(), 120)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def check(self) -> None:
        """Raise what ended the watch task, if it ended."""
        if self._task is not None and self._task.done():
            self._task.result()

    def not_ready(self) -> int:
        return sum(1 for p in self.pods.values() if not p.ready)

    def count(self, predicate: Callable[[PodState], bool]) -> int:
        return sum(1 for p in self.pods.values() if predicate(p))

    async def wait(
        self, predicate: Callable[[PodTracker], bool], *, timeout: float, what: str
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            self.check()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{what}: not reached in {timeout:.0f}s")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), min(left, 1.0))
            except TimeoutError:
                pass


# -- results ---------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    limit: str
    measured: float | None
    met: bool | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "target": self.limit, "measured": self.measured, "met": self.met}


def target(
    name: str, measured: float | None, limit: float, unit: str, *, at_most: bool = True
) -> Target:
    met = None
    if measured is not None and not math.isnan(measured):
        met = measured <= limit if at_most else measured >= limit
    sign = "<=" if at_most else ">="
    return Target(name, f"{sign} {limit:g} {unit}", measured, met)


def result_path(name: str, *, quick: bool) -> Path:
    return (QUICK_RESULTS if quick else RESULTS) / f"{name}.json"


def write_result(
    name: str,
    *,
    quick: bool,
    params: Mapping[str, Any],
    figures: Mapping[str, Any],
    targets: Sequence[Target],
    notes: Sequence[str] = (),
    series: Mapping[str, Any] | None = None,
) -> Path:
    """results/<name>.json; with --quick results/quick/<name>.json, a git-ignored folder, so a
    quick run never replaces the full figures the docs quote nor touches a tracked file."""
    path = result_path(name, quick=quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "benchmark": name,
        "quick": quick,
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "params": dict(params),
        "figures": dict(figures),
        "targets": [t.to_json() for t in targets],
        "notes": list(notes),
    }
    if series is not None:
        body["series"] = dict(series)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(clean_floats(body), indent=1) + "\n")
    tmp.replace(path)
    return path


def print_targets(targets: Sequence[Target]) -> None:
    for t in targets:
        verdict = {True: "met", False: "MISSED", None: "n/a"}[t.met]
        say(f"  target {t.name}: {t.limit}; measured {t.measured} -> {verdict}")


def clean_floats(value: Any) -> Any:
    """NaN -> None, recursively (JSON has no NaN)."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {k: clean_floats(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_floats(v) for v in value]
    return value


def parse_time(stamp: str) -> float:
    """Seconds since the epoch of an RFC 3339 / ISO 8601 timestamp (structlog's `iso`)."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
