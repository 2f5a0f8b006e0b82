"""The Helm chart as the tests see it: rendered by the real `helm` (built into `.testbin` by
`make testbin`, i.e. `tools/build_testbin.py --with-helm`), then sent to the real apiserver.

No template is ever rendered by anything but helm itself: a missing helm fails the test with
the command that builds it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecarset.devcluster.binaries import default_dir
from sidecarset.shell.kube.client import APPLY_PATCH, KubeClient, resource_path

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "sidecarset"
FIELD_MANAGER = "sidecarset-chart-test"

# kind -> (apiVersion path, plural, namespaced): every kind the chart can render.
KINDS: dict[str, tuple[str, str, bool]] = {
    "CustomResourceDefinition": ("apiextensions.k8s.io/v1", "customresourcedefinitions", False),
    "ServiceAccount": ("v1", "serviceaccounts", True),
    "ClusterRole": ("rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Role": ("rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("rbac.authorization.k8s.io/v1", "rolebindings", True),
    "Deployment": ("apps/v1", "deployments", True),
    "Service": ("v1", "services", True),
    "PodDisruptionBudget": ("policy/v1", "poddisruptionbudgets", True),
    "ServiceMonitor": ("monitoring.coreos.com/v1", "servicemonitors", True),
    "MutatingWebhookConfiguration": (
        "admissionregistration.k8s.io/v1",
        "mutatingwebhookconfigurations",
        False,
    ),
    "ValidatingWebhookConfiguration": (
        "admissionregistration.k8s.io/v1",
        "validatingwebhookconfigurations",
        False,
    ),
}


def helm_binary() -> Path:
    helm = default_dir() / "helm"
    if not helm.is_file():
        pytest.fail(
            f"helm is not built in {helm.parent}: run `make testbin` "
            "(python3 tools/build_testbin.py --with-helm, a few minutes cold)",
            pytrace=False,
        )
    return helm


def helm_result(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, timeout=120, check=False
    )


def helm(*args: str) -> str:
    """Run helm; on failure, fail the test with its stderr."""
    done = helm_result(*args)
    if done.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{done.stderr}", pytrace=False)
    return done.stdout


def render(
    release: str,
    namespace: str,
    values: Sequence[str] = (),
    *,
    json_values: Sequence[str] = (),
    crds: bool = False,
) -> list[dict[str, Any]]:
    """`helm template` with `--set` (strings, integers) and `--set-json` (any JSON) values; the
    documents in order, empty ones dropped."""
    args = ["template", release, str(CHART), "--namespace", namespace]
    for value in values:
        args += ["--set", value]
    for value in json_values:
        args += ["--set-json", value]
    if crds:
        args.append("--include-crds")
    return [doc for doc in yaml.safe_load_all(helm(*args)) if doc]


def one(docs: Sequence[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, rendered {len(found)}"
    return found[0]


def container_args(docs: Sequence[dict[str, Any]]) -> list[str]:
    deployment = one(docs, "Deployment")
    return list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])


def flag(args: Sequence[str], name: str) -> str:
    """The value of the last `--name=value` in `args` (the one the CLI uses)."""
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    assert values, f"--{name} not among {args}"
    return values[-1]


def object_path(obj: dict[str, Any]) -> str:
    api_version, plural, namespaced = KINDS[obj["kind"]]
    namespace = obj["metadata"].get("namespace") if namespaced else None
    return resource_path(api_version, plural, namespace=namespace, name=obj["metadata"]["name"])


async def apply(kube: KubeClient, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
    """Server-side apply one rendered object (a dry run runs admission and validation too)."""
    params: dict[str, str | int] = {"fieldManager": FIELD_MANAGER, "force": "true"}
    if dry_run:
        params["dryRun"] = "All"
    return await kube.request(
        "PATCH",
        object_path(obj),
        params=params,
        body=json.dumps(obj).encode(),
        content_type=APPLY_PATCH,
    )
