#!/usr/bin/env python3
"""`make demo`: a local control plane with the operator, the logging example, and a rollout.

Runs inside the project's virtualenv. Each step prints what it does; the cluster keeps running
afterwards (stop it with `make demo-down`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SIDECARSET = str(BIN / "sidecarset")


def say(message: str) -> None:
    print(
        f"\n\033[1m==> {message}\033[0m" if sys.stdout.isatty() else f"\n==> {message}", flush=True
    )


def run(*argv: str, env: dict[str, str] | None = None, check: bool = True) -> str:
    print("$ " + " ".join(argv), flush=True)
    proc = subprocess.run(argv, env=env, text=True, capture_output=True, check=False)
    if proc.stdout:
        print(proc.stdout.rstrip(), flush=True)
    if proc.returncode != 0:
        print(proc.stderr.rstrip(), file=sys.stderr, flush=True)
        if check:
            sys.exit(f"demo: `{' '.join(argv)}` failed (exit {proc.returncode})")
    return proc.stdout


def cluster_env() -> dict[str, str]:
    exports = run(SIDECARSET, "cluster", "env")
    env = dict(os.environ)
    for line in exports.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value.strip("'")
    return env


def wait_for(what: str, check: callable[[], bool], timeout: float = 120) -> None:  # type: ignore[valid-type]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    sys.exit(f"demo: timed out waiting for {what}")


def main() -> None:
    with_operator = (ROOT / "src/sidecarset/app/run.py").exists()
    say("starting the local control plane" + (" and the operator" if with_operator else ""))
    run(SIDECARSET, "cluster", "up", *([] if with_operator else ["--no-operator"]))
    env = cluster_env()
    kubectl = ["kubectl"]
    run(*kubectl, "get", "nodes", "-o", "wide", env=env)
    examples = ROOT / "examples" / "logging"
    if not (with_operator and examples.exists()):
        say("the operator is not part of this build yet: a plain nginx Deployment instead")
        run(
            *kubectl,
            "create",
            "deployment",
            "nginx",
            "--image=nginx:1.25",
            "--replicas=3",
            env=env,
            check=False,
        )
        wait_for(
            "3 ready nginx pods",
            lambda: (
                run(
                    *kubectl,
                    "get",
                    "deployment",
                    "nginx",
                    "-o",
                    "jsonpath={.status.readyReplicas}",
                    env=env,
                    check=False,
                ).strip()
                == "3"
            ),
        )
        run(*kubectl, "get", "pods", "-o", "wide", env=env)
    else:
        from demo_rollout import rollout

        rollout(env, run, say, wait_for)
    say("done; the cluster keeps running")
    print('use it:  eval "$(.venv/bin/sidecarset cluster env)"; kubectl get pods -A')
    print("stop it: make demo-down")


if __name__ == "__main__":
    main()
