"""The `sidecarset` CLI against the real control plane and operator (issue 6).

Every command runs as the installed tool does (a subprocess of `python -m sidecarset`), pointed
at the test cluster through KUBECONFIG; assertions are on its output and on API state.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from sidecarset.core import pod_contract
from sidecarset.devcluster.controlplane import ControlPlane
from sidecarset.shell.kube.client import KubeClient, resource_path
from tests.integration import kubeobjects as k
from tests.integration.conftest import OperatorHandle
from tests.integration.kubeobjects import NEW, OLD, pod, set_image, sidecarset
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.usefixtures("operator")


BROKEN = "docker.elastic.co/beats/filebeat:broken"  # the simulator never makes it ready
LOGGING = k.ROOT / "examples" / "logging"


class Outcome(NamedTuple):
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)


async def run_cli(
    plane: ControlPlane, *args: str, kubeconfig: Path | None = None, stdin: str | None = None
) -> Outcome:
    """`sidecarset ARGS` as a user runs it, with KUBECONFIG pointing at the test cluster."""
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig or plane.kubeconfig),
        "NO_PROXY": "127.0.0.1,localhost",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sidecarset",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=k.ROOT,
    )
    out, err = await asyncio.wait_for(
        proc.communicate(stdin.encode() if stdin is not None else None), timeout=120
    )
    assert proc.returncode is not None
    return Outcome(proc.returncode, out.decode(), err.decode())


async def settled_status(kube: KubeClient, name: str, **counts: int) -> dict[str, Any]:
    """The SidecarSet once its status is of the current generation and shows `counts`."""

    def done(ss: dict[str, Any]) -> bool:
        st = ss.get("status") or {}
        return st.get("observedGeneration") == ss["metadata"]["generation"] and all(
            st.get(key) == value for key, value in counts.items()
        )

    return await wait_for(
        lambda: k.get_sidecarset(kube, name), done, timeout=120, what=f"status {counts}"
    )


class Cluster:
    """The test's namespace, its SidecarSets (deleted afterwards) and the CLI pointed at the
    cluster."""

    def __init__(
        self, kube: KubeClient, plane: ControlPlane, namespace: str, sidecarsets: k.SidecarSets
    ) -> None:
        self.kube, self.plane, self.namespace = kube, plane, namespace
        self.sidecarset = sidecarsets.create

    async def pods(self, *pods: dict[str, Any]) -> list[dict[str, Any]]:
        return await k.create_ready(self.kube, self.namespace, *pods)

    async def cli(self, *args: str, **kwargs: Any) -> Outcome:
        return await run_cli(self.plane, *args, **kwargs)


@pytest.fixture
def cluster(
    kube: KubeClient, control_plane: ControlPlane, namespace: str, sidecarsets: k.SidecarSets
) -> Cluster:
    return Cluster(kube, control_plane, namespace, sidecarsets)


# --- inject -----------------------------------------------------------------------------------


async def test_inject_prints_the_logging_example_with_filebeat_injected(
    control_plane: ControlPlane,
) -> None:
    result = await run_cli(control_plane, "inject", "-f", "examples/logging/")
    assert result.code == 0, result.err
    docs = list(yaml.safe_load_all(result.out))
    assert [d["kind"] for d in docs] == ["ConfigMap", "Deployment"]
    template = docs[1]["spec"]["template"]
    assert [c["name"] for c in template["spec"]["containers"]] == ["filebeat", "nginx"]
    filebeat = template["spec"]["containers"][0]
    assert filebeat["image"] == OLD
    assert {"name": pod_contract.INJECTED_ENV, "value": "true"} in filebeat["env"]
    assert {v["name"] for v in template["spec"]["volumes"]} == {
        "log",
        "filebeat-config",
        "filebeat-registry",
    }
    assert template["metadata"]["annotations"][pod_contract.INJECTED_LIST_ANNOTATION] == "filebeat"


def _without_service_account(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop what ServiceAccount admission adds (the kube-api-access projected volume)."""
    return [i for i in items if not str(i.get("name", "")).startswith("kube-api-access-")]


def _contained(offline: object, live: object) -> bool:
    """`offline` is `live` minus fields the apiserver defaults (imagePullPolicy and the like)."""
    if isinstance(offline, dict) and isinstance(live, dict):
        return all(key in live and _contained(v, live[key]) for key, v in offline.items())
    if isinstance(offline, list) and isinstance(live, list):
        return len(offline) == len(live) and all(map(_contained, offline, live))
    return offline == live


def _hash_entries(annotations: dict[str, str], key: str) -> dict[str, Any]:
    """The pod's hash annotation, timestamps blanked (the webhook stamps its own time)."""
    entries = json.loads(annotations[key])
    for entry in entries.values():
        entry.pop("updateTimestamp", None)
    return dict(entries)


async def test_offline_injection_is_identical_to_what_the_webhook_injects(
    kube: KubeClient, cluster: Cluster, tmp_path: Path
) -> None:
    ns = cluster.namespace
    docs = {d["kind"]: d for f in sorted(LOGGING.iterdir()) for d in k.load(f)}
    scoped = k.scoped(docs["SidecarSet"], ns)
    name = await cluster.sidecarset(scoped)
    # Pods record the revision the controller names; create them once it has.
    await settled_status(kube, name)
    await k.create(kube, docs["ConfigMap"], ns)
    deployment = copy.deepcopy(docs["Deployment"])
    deployment["spec"]["replicas"] = 1
    await k.create(kube, deployment, ns)
    (tmp_path / "sidecarset.yaml").write_text(yaml.safe_dump(scoped))
    (tmp_path / "deployment.yaml").write_text(yaml.safe_dump(deployment))

    from_files = await cluster.cli("inject", "-f", str(tmp_path), "-n", ns, "-o", "json")
    from_cluster = await cluster.cli(
        "inject", "-f", str(tmp_path / "deployment.yaml"), "-n", ns, "--from-cluster", "-o", "json"
    )
    [live] = await k.ready_pods(kube, ns, 1)
    stored = await k.get_sidecarset(kube, name)

    for result in (from_files, from_cluster):
        template = result.json()["spec"]["template"]
        live_spec, offline_spec = live["spec"], template["spec"]
        assert [c["name"] for c in offline_spec["containers"]] == [
            c["name"] for c in live_spec["containers"]
        ]
        for offline_c, live_c in zip(
            offline_spec["containers"], live_spec["containers"], strict=True
        ):
            live_c = {**live_c, "volumeMounts": _without_service_account(live_c["volumeMounts"])}
            if offline_c["name"] == "filebeat":
                assert offline_c == live_c  # injected: byte for byte what the webhook added
            else:
                assert _contained(offline_c, live_c), (offline_c, live_c)
        assert offline_spec["volumes"] == _without_service_account(live_spec["volumes"])
        offline_ann, live_ann = template["metadata"]["annotations"], live["metadata"]["annotations"]
        assert set(offline_ann) == set(live_ann)
        assert (
            offline_ann[pod_contract.INJECTED_LIST_ANNOTATION]
            == live_ann[pod_contract.INJECTED_LIST_ANNOTATION]
        )
        for key in (pod_contract.HASH_ANNOTATION, pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION):
            assert _hash_entries(offline_ann, key) == _hash_entries(live_ann, key)
        entry = pod_contract.read_upgrade_specs(offline_ann, pod_contract.HASH_ANNOTATION)[name]
        assert entry.hash == stored["metadata"]["annotations"][pod_contract.HASH_ANNOTATION]


async def test_a_pod_created_from_an_injected_manifest_is_not_injected_twice(
    kube: KubeClient, cluster: Cluster
) -> None:
    ns = cluster.namespace
    await cluster.sidecarset(sidecarset(f"twice-{ns[-5:]}", ns))
    result = await cluster.cli(
        "inject", "-f", "-", "-n", ns, "--from-cluster", "-o", "json", stdin=json.dumps(pod("p1"))
    )
    injected = result.json()
    assert [c["name"] for c in injected["spec"]["containers"]] == ["filebeat", "app"]
    await k.create(kube, injected, ns)
    [live] = await k.ready_pods(kube, ns, 1)
    assert [c["name"] for c in live["spec"]["containers"]] == ["filebeat", "app"]
    assert (
        live["metadata"]["annotations"][pod_contract.HASH_ANNOTATION]
        == injected["metadata"]["annotations"][pod_contract.HASH_ANNOTATION]
    )


# --- plan -------------------------------------------------------------------------------------


async def test_plan_lists_the_pods_a_partition_holds_back(
    kube: KubeClient, cluster: Cluster
) -> None:
    ns = cluster.namespace
    name = await cluster.sidecarset(
        sidecarset(f"part-{ns[-5:]}", ns, partition=2, maxUnavailable=5)
    )
    await cluster.pods(*[pod(f"p{i}") for i in range(1, 6)])
    await settled_status(kube, name, matchedPods=5, updatedPods=5)
    await set_image(kube, name, NEW)
    await settled_status(kube, name, matchedPods=5, updatedPods=3, updatedReadyPods=3)
    pods = await k.ready_pods(kube, ns, 5)
    kept = {n for n, image in k.images(pods).items() if image == OLD}
    assert len(kept) == 2

    planned = (await cluster.cli("plan", name, "-o", "json")).json()
    held = {h["pod"]: h["reason"] for h in planned["held"]}
    assert planned["update"] == []
    assert held == {f"{ns}/{p}": "partition" if p in kept else "updated" for p in k.images(pods)}
    assert planned["budget"]["partition"] == 2
    assert planned["missedInjection"] == []

    table = await cluster.cli("plan", name)
    assert table.code == 0, table.err
    assert "partition:  2 of 5 matched pods = 2 pods kept on the old sidecars" in table.out
    rows = [line.split() for line in table.out.splitlines() if line.startswith(f"{ns}/")]
    assert sorted(r[0] for r in rows if r[2] == "partition") == sorted(f"{ns}/{p}" for p in kept)


async def test_plan_holds_pods_outside_the_canary_selector_and_finds_missed_injections(
    kube: KubeClient, cluster: Cluster
) -> None:
    ns = cluster.namespace
    name = await cluster.sidecarset(sidecarset(f"canary-{ns[-5:]}", ns))
    await cluster.pods(pod("canary", {"canary": "true"}), pod("p2"), pod("p3"))
    await k.create(kube, pod("optout", {pod_contract.INJECT_OPT_OUT: "false"}), ns)
    await k.ready_pods(kube, ns, 4)
    await kube.patch(
        resource_path("apps.kruise.io/v1alpha1", "sidecarsets", name=name),
        {"spec": {"updateStrategy": {"selector": {"matchLabels": {"canary": "true"}}}}},
    )
    await set_image(kube, name, NEW)
    await settled_status(kube, name, matchedPods=3, updatedPods=1, updatedReadyPods=1)

    planned = (await cluster.cli("plan", name, "-o", "json")).json()
    assert {h["pod"]: h["reason"] for h in planned["held"]} == {
        f"{ns}/canary": "updated",
        f"{ns}/p2": "notSelected",
        f"{ns}/p3": "notSelected",
    }
    assert planned["strategy"]["selector"] == "canary=true"
    assert planned["missedInjection"] == [
        {
            "pod": f"{ns}/optout",
            "reason": "optedOut",
            "detail": f"the pod opts out with {pod_contract.INJECT_OPT_OUT}=false",
        }
    ]


async def test_plan_shows_the_budget_a_broken_image_spends(
    kube: KubeClient, cluster: Cluster
) -> None:
    ns = cluster.namespace
    name = await cluster.sidecarset(sidecarset(f"broken-{ns[-5:]}", ns, maxUnavailable=1))
    await cluster.pods(pod("p1"), pod("p2"), pod("p3"))
    await settled_status(kube, name, matchedPods=3, updatedPods=3, readyPods=3)
    await set_image(kube, name, BROKEN)
    await settled_status(kube, name, matchedPods=3, updatedPods=1, updatedReadyPods=0)

    planned = (await cluster.cli("plan", name, "-o", "json")).json()
    reasons = sorted(h["reason"] for h in planned["held"])
    assert reasons == ["budget", "budget", "updated"]
    [broken] = [h for h in planned["held"] if h["reason"] == "updated"]
    assert broken["ready"] is False
    assert planned["budget"]["disrupted"] == [broken["pod"]]
    assert planned["budget"]["used"] == planned["budget"]["maxUnavailable"] == 1


# --- status -----------------------------------------------------------------------------------


async def test_status_shows_the_counters_the_controller_reports(
    kube: KubeClient, cluster: Cluster
) -> None:
    ns = cluster.namespace
    name = await cluster.sidecarset(sidecarset(f"status-{ns[-5:]}", ns))
    await cluster.pods(pod("p1"), pod("p2"))
    await settled_status(kube, name, matchedPods=2, updatedReadyPods=2)

    table = await cluster.cli("status", name)
    assert table.code == 0, table.err
    assert table.out.splitlines()[1].split() == [
        name,
        "2",
        "2",
        "2",
        "2",
        "Ready:",
        "RolloutComplete",
    ]
    as_json = (await cluster.cli("status", name, "-o", "json")).json()
    assert as_json["name"] == name
    assert as_json["status"]["matchedPods"] == 2
    everything = (await cluster.cli("status", "-o", "json")).json()
    assert name in {s["name"] for s in everything}

    watched = await cluster.cli("status", name, "--watch", "--timeout", "2")
    assert watched.code == 0, watched.err
    [line] = watched.out.splitlines()  # off a terminal: one line per change, none here
    assert f"{name} matched=2 updated=2 ready=2 updated-ready=2 Ready: RolloutComplete" in line


# --- pause, resume, history, rollback ---------------------------------------------------------


async def test_pause_resume_history_and_rollback_round_trip(
    kube: KubeClient, cluster: Cluster
) -> None:
    ns = cluster.namespace
    name = await cluster.sidecarset(sidecarset(f"steer-{ns[-5:]}", ns, maxUnavailable=2))
    await cluster.pods(pod("p1"), pod("p2"))
    await settled_status(kube, name, matchedPods=2, updatedReadyPods=2)

    paused = await cluster.cli("pause", name)
    assert paused.code == 0, paused.err
    assert paused.out.startswith(f"SidecarSet {name} paused")
    assert (await k.get_sidecarset(kube, name))["spec"]["updateStrategy"]["paused"] is True
    assert "already paused" in (await cluster.cli("pause", name)).out

    await set_image(kube, name, NEW)
    await settled_status(kube, name, updatedPods=0)
    planned = (await cluster.cli("plan", name, "-o", "json")).json()
    assert sorted(h["reason"] for h in planned["held"]) == ["paused", "paused"]
    status_line = (await cluster.cli("status", name)).out
    assert "NotReady: Paused" in status_line

    resumed = await cluster.cli("resume", name)
    assert resumed.code == 0, resumed.err
    assert (await k.get_sidecarset(kube, name))["spec"]["updateStrategy"]["paused"] is False
    await wait_for(
        lambda: k.pods(kube, ns),
        lambda ps: set(k.images(ps).values()) == {NEW},
        timeout=120,
        what="both pods on the new sidecar",
    )

    history = await wait_for(
        lambda: cluster.cli("history", name, "-o", "json"),
        lambda r: r.code == 0 and len(json.loads(r.out)) == 2,
        timeout=60,
        what="two revisions",
    )
    revisions = history.json()
    assert [(r["revision"], r["images"], r["current"]) for r in revisions] == [
        (1, [f"filebeat={OLD}"], False),
        (2, [f"filebeat={NEW}"], True),
    ]
    table = await cluster.cli("history", name)
    assert table.out.splitlines()[0].split() == ["REVISION", "NAME", "CURRENT", "CREATED", "IMAGES"]

    dry = await cluster.cli("rollback", name, "--dry-run")
    assert dry.out.startswith(f"SidecarSet {name} would roll back to revision 1")
    assert (await k.get_sidecarset(kube, name))["spec"]["containers"][0]["image"] == NEW

    rolled = await cluster.cli("rollback", name)
    assert rolled.code == 0, rolled.err
    assert rolled.out.splitlines() == [
        f"SidecarSet {name} rolled back to revision 1 ({revisions[0]['name']}):",
        f"  containers[filebeat].image: {NEW} -> {OLD}",
    ]
    assert (await k.get_sidecarset(kube, name))["spec"]["containers"][0]["image"] == OLD
    current = [r for r in (await cluster.cli("history", name, "-o", "json")).json() if r["current"]]
    assert [r["name"] for r in current] == [revisions[0]["name"]]

    undo = await cluster.cli("rollback", name)
    assert undo.code == 0, undo.err
    assert f"containers[filebeat].image: {OLD} -> {NEW}" in undo.out
    assert (await k.get_sidecarset(kube, name))["spec"]["containers"][0]["image"] == NEW


async def test_pods_follow_a_rollback_in_place(kube: KubeClient, cluster: Cluster) -> None:
    ns = cluster.namespace
    name = await cluster.sidecarset(sidecarset(f"back-{ns[-5:]}", ns, maxUnavailable=2))
    before = await cluster.pods(pod("p1"))
    await set_image(kube, name, NEW)
    await wait_for(
        lambda: k.pods(kube, ns),
        lambda ps: set(k.images(ps).values()) == {NEW},
        timeout=60,
        what="the pod on the new sidecar",
    )
    await wait_for(
        lambda: cluster.cli("history", name, "-o", "json"),
        lambda r: r.code == 0 and len(json.loads(r.out)) == 2,
        timeout=60,
        what="two revisions",
    )
    assert (await cluster.cli("rollback", name)).code == 0
    [after] = await wait_for(
        lambda: k.pods(kube, ns),
        lambda ps: set(k.images(ps).values()) == {OLD},
        timeout=90,
        what="the pod back on the old sidecar",
    )
    assert after["metadata"]["uid"] == before[0]["metadata"]["uid"]


# --- errors -----------------------------------------------------------------------------------


def one_line(result: Outcome) -> str:
    assert result.code == 1, result
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    return lines[0]


async def test_an_unknown_sidecarset_is_one_line_for_every_command(
    control_plane: ControlPlane,
) -> None:
    commands = ["status", "plan", "pause", "resume", "history", "rollback"]
    results = await asyncio.gather(
        *(run_cli(control_plane, command, "no-such-sidecarset") for command in commands)
    )
    for command, result in zip(commands, results, strict=True):
        line = one_line(result)
        assert line.startswith("error: SidecarSet 'no-such-sidecarset' not found"), command


async def test_history_in_the_wrong_operator_namespace_says_where_it_looked(
    kube: KubeClient, cluster: Cluster
) -> None:
    name = await cluster.sidecarset(sidecarset(f"hist-{cluster.namespace[-5:]}", cluster.namespace))
    result = await cluster.cli("history", name, "--namespace-of-operator", cluster.namespace)
    assert one_line(result) == (
        f"error: no revisions of SidecarSet {name!r} in namespace {cluster.namespace!r}; the "
        "operator records them there a moment after each change (is --namespace-of-operator "
        "right?)"
    )


async def test_a_user_without_rights_gets_one_forbidden_line(
    kube: KubeClient, control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    await kube.create(
        resource_path("v1", "serviceaccounts", namespace=namespace),
        {"metadata": {"name": "nobody"}},
    )
    token = await kube.create(
        resource_path(
            "v1", "serviceaccounts", namespace=namespace, name="nobody", subresource="token"
        ),
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    config["users"] = [{"name": "nobody", "user": {"token": token["status"]["token"]}}]
    config["contexts"][0]["context"]["user"] = "nobody"
    path = tmp_path / "nobody.kubeconfig"
    path.write_text(yaml.safe_dump(config))

    result = await run_cli(control_plane, "status", kubeconfig=path)
    line = one_line(result)
    assert line.startswith("error: cannot list SidecarSets: forbidden: ")
    assert f"system:serviceaccount:{namespace}:nobody" in line


async def test_cluster_up_without_the_operator_removes_its_dead_webhooks(
    control_plane: ControlPlane, operator: OperatorHandle, kube: KubeClient, namespace: str
) -> None:
    # An operator that ran before leaves its webhook configurations (failurePolicy: Fail)
    # pointing at a port nobody listens on any more: every pod creation would be refused.
    operator.kill()
    try:
        result = await run_cli(
            control_plane, "cluster", "up", "--no-operator", "--dir", str(control_plane.workdir)
        )
        assert result.code == 0, result.err
        assert "removed mutatingwebhookconfigurations/sidecarset-mutating" in result.err
        assert "removed validatingwebhookconfigurations/sidecarset-validating" in result.err
        await k.create(kube, pod("plain"), namespace)  # admitted: no dead webhook is called
        again = await run_cli(
            control_plane, "cluster", "up", "--no-operator", "--dir", str(control_plane.workdir)
        )
        assert "no webhook configurations registered" in again.err, again.err
    finally:
        operator.start()
    kept = await run_cli(
        control_plane, "cluster", "up", "--no-operator", "--dir", str(control_plane.workdir)
    )
    assert "kept mutatingwebhookconfigurations/sidecarset-mutating" in kept.err, kept.err


async def test_plan_and_the_controller_agree_on_pods_in_excluded_namespaces(
    cluster: Cluster, kube: KubeClient
) -> None:
    # A cluster-wide SidecarSet: its selector also matches a pod in kube-public, where the pod
    # webhook is never called. That pod was not missed; plan used to say it was.
    ns = cluster.namespace
    selects = {"agree": ns[-5:]}
    name = await cluster.sidecarset(sidecarset(f"agree-{ns[-5:]}", None, selects))
    await k.create_ready(kube, ns, pod("injected", selects))
    public = f"public-{ns[-5:]}"
    await k.create(kube, pod(public, selects), "kube-public")
    try:
        ss = await settled_status(kube, name, matchedPods=1)
        conditions = ss["status"].get("conditions") or []
        missed = [c for c in conditions if c["type"] == "InjectionMissed" and c["status"] == "True"]
        assert missed == [], missed
        planned = (await cluster.cli("plan", name, "-o", "json")).json()
        assert planned["missedInjection"] == []
        assert planned["budget"]["matched"] == ss["status"]["matchedPods"]
        assert [h["pod"] for h in planned["held"]] == [f"{ns}/injected"]
    finally:
        await kube.delete(resource_path("v1", "pods", namespace="kube-public", name=public))
