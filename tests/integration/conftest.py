"""One real local control plane per test run, a fresh namespace per test.

Nothing here fakes the API server: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler are the real binaries (built by `make testbin`), and the node simulator stands in
for kubelets. If the binaries are missing or the control plane cannot start, every integration
test fails with the reason; none is skipped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pluggy import Result

from sidecarset.devcluster.binaries import Binaries
from sidecarset.devcluster.components import OPERATOR, operator_component, simulator_component
from sidecarset.devcluster.controlplane import ControlPlane
from sidecarset.devcluster.process import tail
from sidecarset.devcluster.realnode import KUBELET, PROCESSES, RealNode
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import KubeClient, resource_path
from tests.integration import kubeobjects as k
from tests.integration.waiting import wait_for

SIM_NODES = 3
# A broken image is reported Stalled after 8 s instead of 5 min, so the test sees it.
OPERATOR_ARGS = ("--failing-after", "8", "--log-level", "debug")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
            if item.get_closest_marker("timeout") is None:  # a module may need longer
                item.add_marker(pytest.mark.timeout(300))
        if "real_node" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.realnode)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    workdir = Path(
        os.environ.get("SIDECARSET_TEST_CLUSTER_DIR") or tmp_path_factory.mktemp("cluster")
    )
    plane = ControlPlane(workdir, Binaries.locate(), die_with_parent=True)
    try:
        plane.up(extra=[simulator_component(plane, SIM_NODES)], progress=lambda _m: None)
        yield plane
    finally:
        plane.down(progress=lambda _m: None)


@pytest.fixture(scope="session")
def real_node(control_plane: ControlPlane) -> Iterator[RealNode]:
    """A real kubelet + containerd node in the test cluster, for tests of container behaviour.

    Needs root on Linux and `make testbin` (with the node) plus `make images`; without them the
    tests that use it fail with the reason (never skipped). Stopped cleanly at the end: pods
    through CRI, then kubelet and containerd, then whatever they left on the host.
    """
    node = RealNode(control_plane, tainted=True)  # the simulated workloads stay off it
    node.preflight()
    try:
        control_plane.up(extra=node.components(), progress=lambda _m: None)
        yield node
    finally:
        control_plane.down(
            progress=lambda _m: None,
            names=PROCESSES,
            before_stop=node.down_hooks(lambda _m: None),
        )
        node.remove_leftovers(lambda _m: None)


class OperatorHandle:
    """The operator subprocess of the test cluster: kill it, start it again."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane

    def start(self) -> None:
        self.plane.up(
            extra=[operator_component(self.plane, OPERATOR_ARGS)], progress=lambda _m: None
        )

    def kill(self) -> None:
        """SIGKILL: no lease release, no cleanup, as when a node dies."""
        record = self.plane.state().processes[OPERATOR]
        os.kill(record.pid, signal.SIGKILL)
        for _ in range(200):
            if not record.is_running():
                break
            time.sleep(0.02)
            try:
                os.waitpid(record.pid, os.WNOHANG)
            except ChildProcessError:
                pass

    def running(self) -> bool:
        record = self.plane.state().processes.get(OPERATOR)
        return record is not None and record.is_running()


@pytest.fixture(scope="session")
def operator(control_plane: ControlPlane) -> Iterator[OperatorHandle]:
    """The operator running against the test cluster (webhooks registered, controller leading)."""
    handle = OperatorHandle(control_plane)
    handle.start()
    yield handle
    if not handle.running():
        handle.start()  # so teardown finds webhooks answering


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Result[pytest.TestReport], None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and "control_plane" in getattr(item, "fixturenames", ()):
        plane: ControlPlane | None = item.funcargs.get("control_plane")  # type: ignore[attr-defined]
        if plane is not None:
            for name in ("node-simulator", "operator", "kube-apiserver", KUBELET):
                report.sections.append(
                    (f"{name} log (tail)", tail(plane.log_dir / f"{name}.log", 40))
                )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def kube(control_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    client = await KubeClient.from_kubeconfig(str(control_plane.kubeconfig))
    async with client:
        yield client


@contextlib.asynccontextmanager
async def temporary_namespace(
    kube: KubeClient, name: str, labels: dict[str, str] | None = None
) -> AsyncIterator[str]:
    """Namespace `name`, once its `default` ServiceAccount exists; deleted on the way out."""
    await kube.create(
        resource_path("v1", "namespaces"), {"metadata": {"name": name, "labels": labels or {}}}
    )
    await wait_for(
        lambda: kube.get(resource_path("v1", "serviceaccounts", namespace=name, name="default")),
        lambda _sa: True,
        timeout=30,
        what=f"default ServiceAccount in {name}",
    )
    try:
        yield name
    finally:
        with contextlib.suppress(errors.NotFound):
            await kube.delete(resource_path("v1", "namespaces", name=name))


@pytest_asyncio.fixture(loop_scope="session")
async def namespace(kube: KubeClient, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    stem = request.node.name.lower().replace("_", "-")[:40].strip("-")
    name = f"{stem}-{uuid.uuid4().hex[:5]}"
    async with temporary_namespace(kube, name, {"sidecarset-test": "true"}) as created:
        yield created


@pytest_asyncio.fixture(loop_scope="session")
async def sidecarsets(kube: KubeClient) -> AsyncIterator[k.SidecarSets]:
    """Create SidecarSets for one test; every one is deleted afterwards."""
    created = k.SidecarSets(kube)
    yield created
    await created.delete_all()


def deployment(
    name: str,
    replicas: int,
    containers: list[dict[str, Any]],
    labels: dict[str, str] | None = None,
    **pod_spec: Any,
) -> dict[str, Any]:
    pod_labels = {"app": name, **(labels or {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {"containers": containers, **pod_spec},
            },
        },
    }
