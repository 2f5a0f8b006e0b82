"""The simulator's kubelet rules, on plain pod dicts."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from typing import Any

from sidecarset.simulator import images, kubelet

WALL = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
RULES = kubelet.Rules(
    start_delay=1.0,
    ready_delay=2.0,
    crash_after=0.5,
    crash_backoff=1.0,
    failing_images=re.compile(r":broken"),
)


def make_pod(**spec: Any) -> dict[str, Any]:
    base = {
        "containers": [
            {"name": "app", "image": "nginx:1.25"},
            {"name": "filebeat", "image": "filebeat:7.16.2"},
        ],
        "nodeName": "sim-node-0",
    }
    base.update(spec)
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "uid-1", "generation": 1},
        "spec": base,
        "status": {"phase": "Pending"},
    }


class Kubelet:
    """Applies steps to a pod the way the API server merges the strategic merge patch: a
    condition merges into the one of its type, field by field, and a null deletes a field."""

    def __init__(self, pod: dict[str, Any], rules: kubelet.Rules = RULES) -> None:
        self.pod, self.rules, self.mono = pod, rules, 0.0
        self.marks: dict[str, float] = {}
        self.last: kubelet.Step | None = None

    def at(self, mono: float) -> kubelet.Step:
        self.mono = mono
        result = kubelet.step(self.pod, self.marks, wall=WALL, mono=mono, rules=self.rules)
        self.marks = result.marks
        if result.patch:
            status = self.pod["status"]
            patch = copy.deepcopy(result.patch["status"])
            conditions = {c["type"]: c for c in status.get("conditions", [])}
            for cond in patch.pop("conditions", []):
                merged = {**conditions.get(cond["type"], {}), **cond}
                conditions[cond["type"]] = {k: v for k, v in merged.items() if v is not None}
            status.update(patch)
            status["conditions"] = list(conditions.values())
        self.last = result
        return result

    def settle(self, until: float) -> None:
        """Follow the wake-ups until nothing is due before `until`."""
        t = self.mono
        while True:
            result = self.at(t)
            if result.wake_after is None or t + result.wake_after > until:
                return
            t = t + max(result.wake_after, 0.001)

    def container(self, name: str) -> dict[str, Any]:
        st: dict[str, Any]
        for st in [
            *self.pod["status"].get("containerStatuses", []),
            *self.pod["status"].get("initContainerStatuses", []),
        ]:
            if st["name"] == name:
                return st
        raise KeyError(name)

    def condition(self, ctype: str) -> str:
        for cond in self.pod["status"].get("conditions", []):
            if cond["type"] == ctype:
                return str(cond["status"])
        return "missing"


def test_a_new_pod_becomes_running_and_ready_after_the_delays() -> None:
    k = Kubelet(make_pod())
    first = k.at(0.0)
    assert k.container("app")["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert first.wake_after == 1.0
    k.at(1.0)
    assert k.pod["status"]["phase"] == "Running"
    assert k.container("app")["started"] is True
    assert k.condition("Ready") == "False"
    k.at(3.0)
    assert k.condition("Ready") == "True"
    assert k.condition("ContainersReady") == "True"
    app = k.container("app")
    assert app["imageID"] == images.image_id("nginx:1.25")
    assert app["containerID"].startswith("containerd://")
    assert k.pod["status"]["podIP"].startswith("127.")


def test_container_statuses_are_sorted_by_name() -> None:
    k = Kubelet(make_pod())
    k.settle(10)
    names = [s["name"] for s in k.pod["status"]["containerStatuses"]]
    assert names == ["app", "filebeat"]


def test_an_image_change_restarts_only_that_container() -> None:
    k = Kubelet(make_pod())
    k.settle(10)
    app_before = copy.deepcopy(k.container("app"))
    old_fb = copy.deepcopy(k.container("filebeat"))
    k.pod["spec"]["containers"][1]["image"] = "filebeat:7.16.3"
    k.at(20.0)
    fb = k.container("filebeat")
    assert fb["ready"] is False
    assert fb["lastState"]["terminated"]["containerID"] == old_fb["containerID"]
    assert fb["imageID"] == old_fb["imageID"]  # still the old container's until the new starts
    assert k.condition("Ready") == "False"
    k.settle(30)
    fb = k.container("filebeat")
    assert fb["restartCount"] == 1
    assert fb["image"] == "filebeat:7.16.3"
    assert fb["imageID"] == images.image_id("filebeat:7.16.3")
    assert fb["containerID"] != old_fb["containerID"]
    assert fb["ready"] is True
    assert k.container("app") == app_before
    assert k.condition("Ready") == "True"


def test_a_container_ignoring_sigterm_runs_its_old_image_until_the_grace_period_ends() -> None:
    """As on the real node: the kubelet waits the grace period, then SIGKILLs (exit 137)."""
    k = Kubelet(make_pod(), kubelet.Rules(**{**RULES.__dict__, "stop_delay": 3.0}))
    k.settle(10)
    old_fb = copy.deepcopy(k.container("filebeat"))
    k.pod["spec"]["containers"][1]["image"] = "filebeat:7.16.3"
    k.at(20.0)
    assert k.container("filebeat") == old_fb  # still running the old image, ready
    assert k.last is not None
    assert k.last.wake_after == 3.0
    k.at(22.9)
    assert k.container("filebeat")["state"] == old_fb["state"]
    k.at(23.0)
    fb = k.container("filebeat")
    assert fb["lastState"]["terminated"]["exitCode"] == 137
    assert fb["restartCount"] == 1
    assert fb["ready"] is False
    k.settle(40)
    assert k.container("filebeat")["image"] == "filebeat:7.16.3"
    assert k.container("filebeat")["ready"] is True


def test_a_readiness_gate_holds_ready_until_its_condition_is_true() -> None:
    k = Kubelet(make_pod(readinessGates=[{"conditionType": "example.com/gate"}]))
    k.settle(10)
    assert k.condition("ContainersReady") == "True"
    assert k.condition("Ready") == "False"
    k.pod["status"]["conditions"].append({"type": "example.com/gate", "status": "True"})
    k.at(11)
    assert k.condition("Ready") == "True"
    assert k.condition("example.com/gate") == "True"


def test_a_failing_image_crash_loops_with_growing_restart_count() -> None:
    k = Kubelet(make_pod())
    k.settle(10)
    k.pod["spec"]["containers"][1]["image"] = "filebeat:broken"
    k.settle(30)
    fb = k.container("filebeat")
    assert fb["ready"] is False
    assert fb["restartCount"] >= 5
    assert k.condition("Ready") == "False"
    assert k.container("app")["restartCount"] == 0


def test_init_containers_run_in_order_and_native_sidecars_keep_running() -> None:
    pod = make_pod(
        initContainers=[
            {"name": "setup", "image": "busybox:1"},
            {"name": "proxy", "image": "envoy:1", "restartPolicy": "Always"},
        ]
    )
    k = Kubelet(pod)
    k.at(0.0)
    assert k.container("proxy")["state"]["waiting"]["reason"] == "PodInitializing"
    assert k.container("app")["state"]["waiting"]["reason"] == "PodInitializing"
    k.settle(20)
    assert k.container("setup")["state"]["terminated"]["reason"] == "Completed"
    assert "running" in k.container("proxy")["state"]
    assert k.container("proxy")["ready"] is True
    assert k.condition("Initialized") == "True"
    assert k.condition("Ready") == "True"
    assert [s["name"] for s in k.pod["status"]["initContainerStatuses"]] == ["setup", "proxy"]


def test_a_native_sidecar_image_change_restarts_it_in_place() -> None:
    pod = make_pod(
        initContainers=[{"name": "proxy", "image": "envoy:1", "restartPolicy": "Always"}]
    )
    k = Kubelet(pod)
    k.settle(20)
    k.pod["spec"]["initContainers"][0]["image"] = "envoy:2"
    k.settle(40)
    proxy = k.container("proxy")
    assert proxy["restartCount"] == 1
    assert proxy["imageID"] == images.image_id("envoy:2")
    assert k.container("app")["restartCount"] == 0


def test_a_pod_stays_initialized_while_its_native_sidecar_restarts() -> None:
    pod = make_pod(
        initContainers=[
            {"name": "proxy", "image": "envoy:1", "restartPolicy": "Always"},
            {"name": "agent", "image": "fluent-bit:1", "restartPolicy": "Always"},
        ]
    )
    k = Kubelet(pod)
    k.settle(20)
    k.pod["spec"]["initContainers"][0]["image"] = "envoy:2"
    k.at(30.0)
    assert k.container("proxy")["ready"] is False
    assert k.condition("Initialized") == "True"
    assert k.condition("Ready") == "False"
    assert "running" in k.container("agent")["state"]
    k.settle(40)
    assert k.condition("Initialized") == "True"
    assert k.condition("Ready") == "True"


def test_a_plain_init_container_image_change_restarts_nothing() -> None:
    k = Kubelet(make_pod(initContainers=[{"name": "setup", "image": "busybox:1"}]))
    k.settle(20)
    before = copy.deepcopy(k.pod["status"])
    k.pod["spec"]["initContainers"][0]["image"] = "busybox:2"
    assert k.at(30).patch is None
    assert k.pod["status"] == before


def test_a_terminating_pod_is_deleted() -> None:
    pod = make_pod()
    pod["metadata"]["deletionTimestamp"] = "2026-11-26T12:00:00Z"
    assert kubelet.step(pod, {}, wall=WALL, mono=0, rules=RULES).delete is True


def test_a_settled_pod_needs_no_patch() -> None:
    k = Kubelet(make_pod())
    k.settle(10)
    assert k.at(50).patch is None


def test_a_digest_reference_keeps_its_digest() -> None:
    digest = "sha256:" + "a" * 64
    assert images.image_id(f"registry:5000/x/filebeat@{digest}") == (
        f"registry:5000/x/filebeat@{digest}"
    )
    assert images.image_id("registry:5000/filebeat:7").startswith("registry:5000/filebeat@sha256:")
    assert images.image_id("a:1") != images.image_id("a:2")
