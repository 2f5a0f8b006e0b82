"""The real-node part of `make demo`: the article's pipeline in real containers, counted.

1. Our logging example (registry on a pod volume): nginx pods with Filebeat injected; requests
   sent before, during and after the in-place upgrade 7.16.2 -> 7.16.3; every request's log line
   counted in the store Filebeat writes to (a folder on the host).
2. The same upgrade with the registry in the container's own filesystem.
3. The article's manifest exactly as published: what the real kubelet does with it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from sidecarset.devcluster import logpipeline as lp
from sidecarset.devcluster.binaries import default_dir, project_root
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import KubeClient, resource_path

ROOT = project_root() or Path.cwd()
NEW_IMAGE = "docker.elastic.co/beats/filebeat:7.16.3"
LABEL = "kruise.io/inject-filebeat"
Run = Callable[..., str]


def app_image() -> str:
    index = json.loads((default_dir() / "images" / "index.json").read_text())
    return str(next(i["ref"] for i in index["images"] if i.get("role") == "app"))


def load(path: str) -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / path).read_text()))


async def create_all(kube: KubeClient, namespace: str, objs: list[dict[str, Any]]) -> None:
    for obj in objs:
        kind = obj["kind"]
        if kind == "SidecarSet":
            path = resource_path("apps.kruise.io/v1alpha1", "sidecarsets")
        elif kind == "ConfigMap":
            path = resource_path("v1", "configmaps", namespace=namespace)
        else:
            path = resource_path("apps/v1", "deployments", namespace=namespace)
        await kube.create(path, obj)


async def fresh_namespace(kube: KubeClient, name: str) -> None:
    path = resource_path("v1", "namespaces", name=name)
    try:
        await kube.delete(path)
        for _ in range(180):  # until the namespace and its pods are gone
            await kube.get(path)
            await asyncio.sleep(1)
    except errors.NotFound:
        pass
    await kube.create(resource_path("v1", "namespaces"), {"metadata": {"name": name}})
    for _ in range(60):  # pods need the namespace's default ServiceAccount
        try:
            await kube.get(resource_path("v1", "serviceaccounts", namespace=name, name="default"))
            return
        except errors.NotFound:
            await asyncio.sleep(0.5)


async def delete_sidecarsets(kube: KubeClient) -> None:
    listed = await kube.get(resource_path("apps.kruise.io/v1alpha1", "sidecarsets"))
    for item in listed["items"]:
        name = item["metadata"]["name"]
        await kube.delete(resource_path("apps.kruise.io/v1alpha1", "sidecarsets", name=name))


def show(run: Run, env: dict[str, str], namespace: str, columns: str) -> None:
    run(
        "kubectl",
        "-n",
        namespace,
        "get",
        "pods",
        "-o",
        f"custom-columns=POD:.metadata.name,{columns}",
        env=env,
    )


def table(result: lp.UpgradeResult) -> None:
    for phase, counts in result.phases.items():
        print(f"   {phase:<7} {counts.line()}")
    print(f"   {'total':<7} {result.total.line()}")
    print(
        f"   rollout took {result.rollout_seconds:.0f}s; requests refused: {result.failed_requests}"
    )


async def experiment(
    kube: KubeClient, env: dict[str, str], run: Run, *, namespace: str, on_volume: bool, pods: int
) -> lp.UpgradeResult:
    kubelet_dir = Path(env["KUBECONFIG"]).parent / "node" / "kubelet"
    await delete_sidecarsets(kube)
    await fresh_namespace(kube, namespace)
    example = load("examples/logging/filebeat-sidecarset.yaml")
    body = lp.local_sidecarset(
        example, name="filebeat", namespace=namespace, registry_on_volume=on_volume
    )
    await create_all(
        kube, namespace, [lp.filebeat_configmap(), body, lp.nginx_deployment(app_image(), pods)]
    )
    ips = await lp.nginx_pods(kube, namespace, pods, timeout=180)
    show(
        run,
        env,
        namespace,
        "IP:.status.podIP,CONTAINERS:.spec.containers[*].name,IMAGES:.spec.containers[*].image",
    )
    before = await kube.get(resource_path("v1", "pods", namespace=namespace))
    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in before["items"]}
    shipped = lp.store_dirs(kubelet_dir, uids.values())
    result = await lp.upgrade_under_traffic(
        kube,
        sidecarset="filebeat",
        pods=ips,
        new_image=NEW_IMAGE,
        shipped=shipped,
        progress=lambda m: print(f"   {m}", flush=True),
    )
    show(
        run,
        env,
        namespace,
        "IMAGES:.status.containerStatuses[*].image,"
        "RESTARTS:.status.containerStatuses[*].restartCount",
    )
    after = await kube.get(resource_path("v1", "pods", namespace=namespace))
    same = {p["metadata"]["name"]: p["metadata"]["uid"] for p in after["items"]} == uids
    print(f"   pods recreated: {'none' if same else 'YES'}")
    print(f"   the store: Filebeat's output files in {kubelet_dir}/pods/<uid>/volumes/*/shipped")
    return result


async def article(kube: KubeClient, env: dict[str, str], run: Run) -> None:
    namespace = "demo-article"
    await delete_sidecarsets(kube)
    await fresh_namespace(kube, namespace)
    objs = [
        load("examples/article-logging/filebeat-config.yaml"),
        load("examples/article-logging/sidecarset.yaml"),
        lp.nginx_deployment(app_image(), 1),
    ]
    await create_all(kube, namespace, objs)
    print("   waiting 40s for the kubelet to try...", flush=True)
    await asyncio.sleep(40)
    pods = await kube.get(resource_path("v1", "pods", namespace=namespace))
    for pod in pods["items"]:
        for st in pod.get("status", {}).get("containerStatuses", []):
            state = st.get("state", {})
            now = next(iter(state), "?")
            reason = state.get(now, {}).get("reason", "")
            last = st.get("lastState", {}).get("terminated", {})
            print(
                f"   {st['name']:<9} ready={st.get('ready')} restarts={st.get('restartCount')} "
                f"state={now} {reason}"
                + (f"; last exit code {last.get('exitCode')}" if last else "")
            )
        path = resource_path("v1", "pods", namespace=namespace, name=pod["metadata"]["name"])
        try:
            log = await kube.raw(
                "GET", path + "/log", params={"container": "filebeat", "previous": "true"}
            )
            print(f"   filebeat's last words: {log.decode(errors='replace').strip()[-200:]}")
        except errors.ApiError as err:
            print(f"   (no previous filebeat log: {err})")
    run("kubectl", "-n", namespace, "get", "pods", env=env)
    await delete_sidecarsets(kube)


async def amain(env: dict[str, str], run: Run, say: Callable[[str], None]) -> None:
    client = await KubeClient.from_kubeconfig(env["KUBECONFIG"])
    async with client as kube:
        say("2. Our logging example on the real node: 5 nginx pods, Filebeat injected")
        print("   The store is Filebeat's file output on a pod volume the host reads, standing in")
        print("   for Elasticsearch; the registry (read offsets) is on a pod volume too.")
        ours = await experiment(kube, env, run, namespace="demo", on_volume=True, pods=5)
        say("3. Lines shipped across the in-place upgrade 7.16.2 -> 7.16.3 (registry on a volume)")
        table(ours)
        say("4. The same upgrade with the registry in the container's filesystem (the article's)")
        theirs = await experiment(
            kube, env, run, namespace="demo-registry-in-container", on_volume=False, pods=3
        )
        table(theirs)
        print(
            f"   => {theirs.phases['before'].duplicates} of the {theirs.phases['before'].sent} "
            "lines shipped before the upgrade were shipped again by the new container."
        )
        say("5. The article's manifest exactly as published, on a real kubelet")
        await article(kube, env, run)


def main(env: dict[str, str], run: Run, say: Callable[[str], None]) -> None:
    asyncio.run(amain(env, run, say))
    say("Done. The cluster keeps running.")
    print('  use it:   eval "$(.venv/bin/sidecarset cluster env)"; kubectl get pods -A')
    print("  inspect:  crictl ps; kubectl -n demo exec deploy/nginx -c filebeat -- ls /shipped")
    print("  stop it:  make demo-down")


if __name__ == "__main__":
    subprocess.run(["python3", str(Path(__file__).with_name("demo.py"))], check=False)
