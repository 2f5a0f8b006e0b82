"""`python -m bench --peer kruise [--quick]`: our operator and OpenKruise's kruise-manager, side
by side, in one invocation.

Each repetition starts two fresh, identical control planes with the node simulator, one per
operator. The pod-creation rounds then alternate between the operators (at the equal rate
limit), and for each size the rollouts follow each other, one per operator and rate-limit
setting, each with a fresh operator process (see `peer_workloads`). The operators' order
alternates between repetitions, so a drift in the machine's load hits both alike.

The figures, their medians, the ratios and the targets go to bench/results/peer-kruise.json
(bench/results/quick/peer-kruise.json with --quick) and the table is printed; a full run also
rewrites the generated table in docs/performance.md.
"""

from __future__ import annotations

import json
import math
import os
import time
from datetime import UTC, datetime
from typing import Any

from bench import harness, peer_report, peer_workloads, rollout
from bench.harness import Cluster
from bench.operators import Operator, PeerMissing, operator_by_name
from sidecarset.shell.kube import errors

NAME = "peer-kruise"


LARGE = 5000
"""Rollouts of this many pods or more run at the equal QPS only, and only in the first
`large_repetitions` repetitions: a 10,000-pod rollout takes Kruise about 10 minutes at the
equal limit and nearly twice that at its default."""


DURING_PODS = 2000
"""The size whose equal-QPS rollout is followed by a rollback during which pods are created (the
webhook's latency while the write budget is saturated; `peer_workloads.rollout_once`); 200 in a
quick run."""


SIZES_VARIABLE = "SIDECARSET_PEER_SIZES"
"""Comma-separated rollout sizes instead of the full run's (e.g. `2000`): a partial run, written
beside the quick results (never over the committed ones, never into the docs)."""


def partial() -> bool:
    return bool(os.environ.get(SIZES_VARIABLE))


def partial_sizes() -> list[int]:
    """The sizes `SIZES_VARIABLE` names; a ValueError that says what is wrong otherwise."""
    text = os.environ[SIZES_VARIABLE]
    try:
        sizes = [int(n) for n in text.split(",")]
    except ValueError:
        raise ValueError(
            f"{SIZES_VARIABLE}={text!r}: expected pod counts like 2000,10000"
        ) from None
    if any(n <= 0 for n in sizes):
        raise ValueError(f"{SIZES_VARIABLE}={text!r}: pod counts must be positive")
    return sizes


def plan(quick: bool) -> dict[str, Any]:
    """Sizes and repetitions: quick = one repetition at 200 pods (a few minutes); a full run
    repeats 200 and 2,000 pods (`SIDECARSET_PEER_REPETITIONS`, 2) and runs 10,000 pods in the
    first repetition (`SIDECARSET_PEER_LARGE_REPETITIONS`, 1; 0 leaves it out)."""
    if quick:
        return {
            "repetitions": 1,
            "sizes": [200],
            "large_repetitions": 0,
            "during_pods": 200,
            "rounds": 4,
            "pods_per_batch": 15,
        }
    reps = int(os.environ.get("SIDECARSET_PEER_REPETITIONS", "2"))
    large = int(os.environ.get("SIDECARSET_PEER_LARGE_REPETITIONS", "1"))
    sizes = [200, 2000] + ([10000] if large > 0 else [])
    if partial():
        sizes = partial_sizes()
    return {
        "repetitions": reps,
        "sizes": sizes,
        "large_repetitions": large,
        "during_pods": DURING_PODS,
        "rounds": 6,
        "pods_per_batch": 20,
    }


def runs_at(pods: int, rep: int, limit: str, settings: dict[str, Any]) -> bool:
    """Whether this repetition rolls `pods` pods out at this limit setting (see `LARGE`)."""
    if pods < LARGE:
        return True
    return limit == "equal" and rep < settings["large"]["repetitions"]


async def repetition(
    ops: list[Operator], rep: int, settings: dict[str, Any]
) -> list[dict[str, Any]]:
    """Every workload against both operators, each on its own fresh control plane, both planes
    up for the whole repetition: the pod-creation rounds alternate between the operators, and
    the rollouts of each size follow each other, so both meet the same machine load."""
    clusters = {op.name: Cluster() for op in ops}
    runs: list[dict[str, Any]] = []
    nodes = max(1, math.ceil(max(settings["sizes"]) / rollout.PODS_PER_NODE))
    try:
        for op in ops:
            cluster = clusters[op.name]
            harness.say(f"== repetition {rep + 1}, {op.name}: control plane in {cluster.workdir}")
            harness.say(f"  control plane up in {cluster.up():.1f} s")
            cluster.ensure_simulator(nodes)
        creations = {}
        try:
            for op in ops:
                pids = await op.start(clusters[op.name], op.limits()["equal"])
                creations[op.name] = peer_workloads.PodCreation(clusters[op.name], op, pids)
                await creations[op.name].prepare()
            harness.say("  pod creation, rounds alternating between the operators")
            for r in range(settings["pod_creation"]["rounds"]):
                for op in ops if r % 2 == 0 else ops[::-1]:
                    await creations[op.name].round(r, settings["pod_creation"]["pods_per_batch"])
            for op in ops:
                figures = await creations[op.name].finish()
                harness.say(
                    f"    {op.name} pod create p50 (ms): "
                    + ", ".join(f"{c} {figures[c]['p50_ms']:.2f}" for c in peer_report.CASES)
                )
                runs.append(
                    {"operator": op.name, "rep": rep, "workload": "pod_creation"}
                    | {"limit": "equal", "figures": figures}
                )
        finally:
            for op in ops:
                op.stop(clusters[op.name])
        # The largest first: if it cannot finish, the smaller sizes still run and are written.
        for pods in sorted(settings["sizes"], reverse=True):
            if not runs_at(pods, rep, "equal", settings):
                continue
            harness.say(f"  rollouts of {pods} pods")
            for op in ops:
                for name, limit in op.limits().items():
                    if not runs_at(pods, rep, name, settings):
                        continue
                    try:
                        figures = await peer_workloads.rollout_once(
                            clusters[op.name],
                            op,
                            limit,
                            pods,
                            tag=f"{pods}-{name}",
                            during=name == "equal" and pods == settings["during_pods"],
                        )
                    except (TimeoutError, RuntimeError, errors.ApiError) as err:
                        harness.say(f"    {op.name} @ {name}, {pods} pods FAILED: {err}")
                        figures = {"pods": pods, "failed": str(err)}
                    runs.append(
                        {"operator": op.name, "rep": rep, "workload": "rollout"}
                        | {"limit": name, "pods": pods, "figures": figures}
                    )
    finally:
        for cluster in clusters.values():
            await cluster.close()
            cluster.down()
    return runs


async def main(peer: str, quick: bool) -> int:
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    started = time.monotonic()
    try:
        theirs = operator_by_name(peer)
    except PeerMissing as err:
        harness.say(f"error: {err}")
        return 1
    try:
        ours = operator_by_name(peer_report.OURS)
        sizing = plan(quick)
    except ValueError as err:
        harness.say(f"error: {err}")
        return 2
    settings: dict[str, Any] = {
        "repetitions": sizing["repetitions"],
        "sizes": sizing["sizes"],
        "large": {"from_pods": LARGE, "repetitions": sizing["large_repetitions"]},
        "during_pods": sizing["during_pods"],
        "partial": partial(),
        "max_unavailable": f"{peer_workloads.PERCENT}%",
        "pod_creation": {"rounds": sizing["rounds"], "pods_per_batch": sizing["pods_per_batch"]},
        "limits": {
            ours.name: {k: v.to_json() for k, v in ours.limits().items()},
            theirs.name: {k: v.to_json() for k, v in theirs.limits().items()},
        },
        "order": [],
        "processes": {ours.name: ours.processes(), theirs.name: theirs.processes()},
    }
    machine = harness.machine()
    harness.say(f"machine: {machine}")
    runs: list[dict[str, Any]] = []
    for rep in range(sizing["repetitions"]):
        order = [ours, theirs] if rep % 2 == 0 else [theirs, ours]
        settings["order"].append([o.name for o in order])
        runs += await repetition(order, rep, settings)
    result = peer_report.build(
        runs,
        settings,
        quick=quick,
        measured_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        machine=machine,
        versions={ours.name: ours.version(), theirs.name: theirs.version()},
        benchmark_seconds=round(time.monotonic() - started, 1),
    )
    path = harness.result_path(NAME, quick=quick or partial())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(harness.clean_floats(result), indent=1) + "\n")
    harness.say("")
    harness.say(peer_report.render_table(result))
    for t in result["targets"]:
        verdict = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
        where = f" at {t['pods']} pods" if t["pods"] else ""
        harness.say(
            f"  target {t['name']}{where}: {t['target']}; ours {t['ours']}, Kruise {t['peer']}"
            f" -> {verdict}{'' if t['applies'] else ' (indicative)'}"
        )
    harness.say(f"wrote {path.relative_to(harness.ROOT)}; total {time.monotonic() - started:.0f} s")
    if not quick and not partial():
        doc = harness.ROOT / "docs" / "performance.md"
        table = peer_report.render_table(result)
        doc.write_text(peer_report.replace_section(doc.read_text(), table))
        harness.say(f"updated the table in {doc.relative_to(harness.ROOT)}")
        from bench import plots

        harness.say(f"plot: {plots.peer_kruise(result).relative_to(harness.ROOT)}")
    return 0
