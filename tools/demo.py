#!/usr/bin/env python3
"""`make demo`: the local control plane with the operator, the logging example, a live rollout.

On a machine that can run a real node (root on Linux, binaries and images built by the
Makefile), the logging example runs for real: nginx and Filebeat in containerd, requests sent to
nginx, their access-log lines counted in the store Filebeat ships to, across the in-place
upgrade; then the same upgrade with the registry in the container, then the article's manifest
as published. Elsewhere it says why and runs the example on simulated nodes.

Runs inside the project's virtualenv (the Makefile creates it and builds the binaries first).
Every step says what it does and shows the command; the cluster keeps running afterwards
(`make demo-down` stops it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIDECARSET = str(Path(sys.executable).parent / "sidecarset")
NAMESPACE = "demo"
NEW_IMAGE = "docker.elastic.co/beats/filebeat:7.16.3"
TTY = sys.stdout.isatty()


def say(message: str) -> None:
    print(f"\n\033[1m==> {message}\033[0m" if TTY else f"\n==> {message}", flush=True)


def run(*argv: str, env: dict[str, str] | None = None, quiet: bool = False) -> str:
    if not quiet:
        print("$ " + " ".join(argv), flush=True)
    proc = subprocess.run(argv, env=env, text=True, capture_output=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"demo: `{' '.join(argv)}` failed (exit {proc.returncode}):\n{proc.stderr}")
    if proc.stdout and not quiet:
        print(proc.stdout.rstrip(), flush=True)
    return proc.stdout


def cluster_env() -> dict[str, str]:
    env = dict(os.environ)
    for line in run(SIDECARSET, "cluster", "env", quiet=True).splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value.strip("'")
    return env


def wait_for(what: str, check: Callable[[], bool], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    sys.exit(f"demo: timed out after {timeout:.0f}s waiting for {what}")


def pods(env: dict[str, str]) -> list[dict[str, Any]]:
    out = run(
        "kubectl",
        "-n",
        NAMESPACE,
        "get",
        "pods",
        "-l",
        "app=nginx",
        "-o",
        "json",
        env=env,
        quiet=True,
    )
    items = json.loads(out)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def all_ready(env: dict[str, str], count: int) -> bool:
    found = pods(env)
    return len(found) == count and all(
        any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", [])
        )
        for p in found
    )


def main() -> None:
    say("1. Start a real local control plane, a real node (kubelet + containerd), the operator")
    print(f"$ {SIDECARSET} cluster up --real-node", flush=True)
    proc = subprocess.run(
        [SIDECARSET, "cluster", "up", "--real-node"], text=True, stderr=subprocess.PIPE
    )
    if proc.returncode == 0:
        env = cluster_env()
        run("kubectl", "get", "nodes", "-o", "wide", env=env)
        import realdemo  # tools/realdemo.py, beside this file

        realdemo.main(env, run, say)
        return
    reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "unknown"
    if "--real-node:" not in reason:
        sys.exit(f"demo: `sidecarset cluster up --real-node` failed:\n{proc.stderr}")
    say("No real node on this machine; the example runs on simulated nodes instead")
    print(f"   why: {reason.split('--real-node:', 1)[1].strip()}")
    run(SIDECARSET, "cluster", "up")
    env = cluster_env()
    run("kubectl", "get", "nodes", env=env)

    say("2. Apply the logging example: Filebeat SidecarSet, its ConfigMap, an nginx Deployment")
    subprocess.run(
        ["kubectl", "create", "namespace", NAMESPACE], env=env, capture_output=True, check=False
    )
    run("kubectl", "-n", NAMESPACE, "apply", "-f", str(ROOT / "examples" / "logging"), env=env)
    wait_for("5 ready nginx pods", lambda: all_ready(env, 5))
    run(
        "kubectl",
        "-n",
        NAMESPACE,
        "get",
        "pods",
        "-o",
        "custom-columns=POD:.metadata.name,CONTAINERS:.spec.containers[*].name,"
        "IMAGES:.spec.containers[*].image",
        env=env,
    )
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(env)}
    run("kubectl", "get", "sidecarset", "filebeat", env=env)

    say(f"3. Upgrade the sidecar in place: image -> {NEW_IMAGE} (20% of pods at a time)")
    run(
        "kubectl",
        "patch",
        "sidecarset",
        "filebeat",
        "--type=json",
        "-p",
        json.dumps([{"op": "replace", "path": "/spec/containers/0/image", "value": NEW_IMAGE}]),
        env=env,
    )
    print(f"$ {SIDECARSET} status filebeat --watch", flush=True)
    watcher = subprocess.Popen([SIDECARSET, "status", "filebeat", "--watch"], env=env)
    try:
        wait_for("the rollout to finish", lambda: _complete(env))
        time.sleep(1.5)  # let the watcher draw the final state
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)

    say("4. Same pods, app containers never restarted, filebeat restarted once on 7.16.3")
    run(
        "kubectl",
        "-n",
        NAMESPACE,
        "get",
        "pods",
        "-o",
        "custom-columns=POD:.metadata.name,UID:.metadata.uid,"
        "IMAGES:.status.containerStatuses[*].image,"
        "RESTARTS:.status.containerStatuses[*].restartCount",
        env=env,
    )
    after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(env)}
    print("pods recreated:", "none" if after == before else sorted(set(after) ^ set(before)))

    say("Done. The cluster keeps running.")
    print('  use it:   eval "$(.venv/bin/sidecarset cluster env)"; kubectl get pods -n demo')
    print("  explore:  .venv/bin/sidecarset plan filebeat; .venv/bin/sidecarset --help")
    print("  stop it:  make demo-down")


def _complete(env: dict[str, str]) -> bool:
    out = run("kubectl", "get", "sidecarset", "filebeat", "-o", "json", env=env, quiet=True)
    obj = json.loads(out)
    st = obj.get("status", {})
    return bool(
        st.get("observedGeneration") == obj["metadata"]["generation"]
        and st.get("matchedPods") == st.get("updatedPods") == st.get("updatedReadyPods") == 5
    )


if __name__ == "__main__":
    main()
