"""`python -m bench [--quick] [--only NAME ...]`: run the benchmarks on one local control plane.

Each benchmark is a module with `NAME` and `async run(cluster, quick) -> dict`; this runner
starts the cluster once, runs them in order, prints their figures and writes
`bench/results/<name>.json` (`bench/results/quick/<name>.json`, git-ignored, with --quick). A
full run also redraws the plots in docs/img/. `--quick` runs everything at small sizes, in under
a minute on 2 cores. `--peer kruise` runs the side-by-side comparison instead (bench/peer.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import traceback
from types import ModuleType

from bench import (
    admission_load,
    harness,
    missed_scan,
    rollout,
    scale,
    webhook_e2e,
    webhook_server,
)

BENCHMARKS: dict[str, ModuleType] = {
    m.NAME: m for m in (webhook_server, webhook_e2e, rollout, scale, admission_load, missed_scan)
}


async def main(names: list[str], quick: bool) -> int:
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    started = time.monotonic()
    harness.say(f"machine: {harness.machine()}")
    cluster = harness.Cluster()
    failed: list[str] = []
    try:
        harness.say(f"starting the local control plane in {cluster.workdir}")
        harness.say(f"  control plane up in {cluster.up():.1f} s")
        for name in names:
            module = BENCHMARKS[name]
            harness.say(f"== {name}{' (quick)' if quick else ''}")
            t0 = time.monotonic()
            try:
                outcome = await module.run(cluster, quick)
            except Exception:
                traceback.print_exc()
                failed.append(name)
                continue
            seconds = time.monotonic() - t0
            path = harness.write_result(
                name,
                quick=quick,
                params={**outcome.get("params", {}), "benchmark_seconds": round(seconds, 1)},
                figures=outcome["figures"],
                targets=outcome.get("targets", []),
                notes=outcome.get("notes", []),
                series=outcome.get("series"),
            )
            harness.say(f"  {name} took {seconds:.1f} s; wrote {path.relative_to(harness.ROOT)}")
    finally:
        await cluster.close()
        cluster.down()
    harness.say(f"total {time.monotonic() - started:.1f} s")
    if failed:
        harness.say(f"FAILED: {', '.join(failed)}")
        return 1
    if not quick:
        from bench import plots

        for path in plots.draw_all():
            harness.say(f"plot: {path.relative_to(harness.ROOT)}")
    return 0


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument(
        "--only", action="append", choices=sorted(BENCHMARKS), help="run only this (repeatable)"
    )
    parser.add_argument(
        "--peer",
        choices=["kruise"],
        help="instead: compare with this operator side by side (see bench/peer.py)",
    )
    args = parser.parse_args()
    if args.peer:
        if args.only:
            parser.error("--peer runs its own workloads; it does not take --only")
        from bench import peer

        sys.exit(asyncio.run(peer.main(args.peer, args.quick)))
    # Opt-in benchmarks (`OPT_IN = True`) run only when named: they would break the quick
    # run's one-minute budget.
    names = [
        n
        for n, module in BENCHMARKS.items()
        if (n in args.only if args.only else not getattr(module, "OPT_IN", False))
    ]
    sys.exit(asyncio.run(main(names, args.quick)))


if __name__ == "__main__":
    cli()
