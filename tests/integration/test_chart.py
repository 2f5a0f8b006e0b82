"""The Helm chart (issue 6): linted and rendered by the real helm, every object it renders
accepted by the real kube-apiserver (server-side dry run), its names and flags matching the
operator's. test_rbac.py runs the operator under the chart's RBAC."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import typer

from sidecarset.app import run as operator_run
from sidecarset.app import webhooks_config
from sidecarset.cli import operator as operator_cli
from sidecarset.shell.kube.client import KubeClient
from tests.integration import chart

RELEASE = "sidecarset"


def test_helm_lint_passes_strict() -> None:
    out = chart.helm("lint", "--strict", str(chart.CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_the_chart_ships_the_operators_crd_byte_for_byte(tmp_path: Path) -> None:
    """crds/sidecarsets.yaml is a symlink to the packaged manifest (one source of truth); helm
    follows it, and `helm package` stores the content, not the link."""
    crd = operator_run.CRD_PATH.read_text()
    shown = chart.helm("show", "crds", str(chart.CHART)).removeprefix("---\n")
    assert shown.strip() == crd.strip()
    chart.helm("package", str(chart.CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("sidecarset-*.tgz")
    with tarfile.open(archive) as tar:
        member = tar.getmember("sidecarset/crds/sidecarsets.yaml")
        assert member.isfile()
        extracted = tar.extractfile(member)
        assert extracted is not None
        assert extracted.read().decode() == crd


async def test_every_rendered_object_passes_a_server_side_dry_run(
    kube: KubeClient, namespace: str
) -> None:
    docs = chart.render(RELEASE, namespace, crds=True)
    assert {d["kind"] for d in docs} == {
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    }
    for doc in docs:
        if doc["kind"] == "CustomResourceDefinition":
            # The chart's conversion webhook names its Service, a placeholder each replica
            # re-points at itself; the test cluster's operator runs outside the cluster and
            # points it at a URL, and one clientConfig cannot hold both.
            service = doc["spec"]["conversion"]["webhook"]["clientConfig"]["service"]
            assert service["name"] == "sidecarset-webhook"
            doc = {**doc, "spec": {k: v for k, v in doc["spec"].items() if k != "conversion"}}
        result = await chart.apply(kube, doc, dry_run=True)
        assert result["kind"] == doc["kind"], result


async def test_non_default_values_render_objects_the_apiserver_accepts(
    kube: KubeClient, namespace: str
) -> None:
    values = [
        "replicas=1",
        "webhook.failurePolicy=Ignore",
        "webhook.excludedNamespaces={monitoring,istio-system}",
        "image.digest=sha256:" + "a" * 64,
        "allowPrivilegedSidecars=true",
        "extraArgs={--lease-duration=30}",
        "nodeSelector.kubernetes\\.io/os=linux",
        "hostNetwork=true",
        "drainSeconds=0",
        "env[0].name=HTTPS_PROXY",
        "env[0].value=http://127.0.0.1:3128",
    ]
    docs = chart.render(RELEASE, namespace, values)
    container = chart.one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "HTTPS_PROXY", "value": "http://127.0.0.1:3128"} in container["env"]
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]  # would block drains
    for doc in docs:
        await chart.apply(kube, doc, dry_run=True)


def test_the_operator_cli_accepts_the_rendered_arguments() -> None:
    """The container args parse with the real `operator run` command, values included."""
    values = [
        "webhook.failurePolicy=Ignore",
        "webhook.excludedNamespaces={monitoring,istio-system}",
        "logLevel=debug",
        "controller.workers=5",
        "allowPrivilegedSidecars=true",
    ]
    docs = chart.render(RELEASE, "sidecarset-system", values, json_values=["controller.qps=12.5"])
    args = chart.container_args(docs)
    assert args[:2] == ["operator", "run"]
    command = typer.main.get_command(operator_cli.app)
    params = command.make_context("run", args[2:]).params
    assert params["mode"] == "all"
    assert params["failure_policy"] == "Ignore"
    assert params["exclude_namespace"] == ["monitoring", "istio-system"]
    assert params["log_level"] == "debug"
    assert params["workers"] == 5
    assert params["qps"] == 12.5
    assert params["allow_privileged_sidecars"] is True
    assert params["install_crd"] is None  # not --local: the chart installs the CRD
    assert params["drain_seconds"] == 10
    assert params["skip_critical_pods"] is True
    off = chart.render(RELEASE, "sidecarset-system", ["webhook.skipCriticalPods=false"])
    off_params = command.make_context("run", chart.container_args(off)[2:]).params
    assert off_params["skip_critical_pods"] is False


@pytest.mark.parametrize("drain", [10, 3, 0])
def test_a_replaced_pod_serves_through_prestop_and_the_drain_before_it_is_killed(
    drain: int,
) -> None:
    """preStop sleeps while the endpoint removal propagates, then the operator drains as long
    after SIGTERM; the grace period leaves room for both plus the shutdown itself."""
    docs = chart.render(RELEASE, "sidecarset-system", [f"drainSeconds={drain}"])
    pod = chart.one(docs, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["lifecycle"]["preStop"] == {"exec": {"command": ["/bin/sleep", str(drain)]}}
    assert float(chart.flag(chart.container_args(docs), "drain-seconds")) == drain
    shutdown = 5 + 5  # the servers' in-flight grace, and the Lease release's bound
    assert pod["terminationGracePeriodSeconds"] >= 2 * drain + shutdown


def test_the_disruption_budget_keeps_one_ready_replica_of_the_deployment() -> None:
    docs = chart.render(RELEASE, "sidecarset-system")
    budget = chart.one(docs, "PodDisruptionBudget")["spec"]
    template = chart.one(docs, "Deployment")["spec"]["template"]
    assert budget["minAvailable"] == 1
    assert budget["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    strategy = chart.one(docs, "Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxUnavailable": 0, "maxSurge": 1}


def test_host_network_pods_keep_cluster_dns_and_one_replica_per_node() -> None:
    docs = chart.render(RELEASE, "sidecarset-system", ["hostNetwork=true"])
    spec = chart.one(docs, "Deployment")["spec"]
    pod = spec["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    anti = pod["affinity"]["podAntiAffinity"]
    (term,) = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}
    (container,) = pod["containers"]
    assert chart.flag(container["args"], "bind-address") == "$(POD_IP)"
    pod_ip = {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    assert pod_ip in container["env"]
    command = typer.main.get_command(operator_cli.app)
    params = command.make_context("run", container["args"][2:]).params
    assert params["bind_address"] == "$(POD_IP)"  # the kubelet expands it
    default = chart.one(chart.render(RELEASE, "sidecarset-system"), "Deployment")
    assert "hostNetwork" not in default["spec"]["template"]["spec"]


def test_the_names_the_operator_uses_are_the_charts() -> None:
    """The Service, certificate Secret and Lease passed as flags, and the webhook configurations
    named in code, are the objects the chart creates and the names its RBAC rules pin."""
    docs = chart.render("prod", "ops")
    args = chart.container_args(docs)
    service = chart.one(docs, "Service", chart.flag(args, "service-name"))
    assert service["spec"]["ports"] == [
        {"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}
    ]
    container = chart.one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["webhook"] == int(chart.flag(args, "webhook-port"))
    assert ports["probes"] == int(chart.flag(args, "probe-port"))

    def pinned(kind: str, resource: str) -> set[str]:
        rules = [r for d in docs if d["kind"] == kind for r in d["rules"]]
        return {n for r in rules if resource in r["resources"] for n in r.get("resourceNames", [])}

    assert pinned("Role", "secrets") == {chart.flag(args, "certificate-secret")}
    assert pinned("Role", "leases") == {chart.flag(args, "lease-name")}
    assert pinned("ClusterRole", "mutatingwebhookconfigurations") == {webhooks_config.MUTATING_NAME}
    assert pinned("ClusterRole", "validatingwebhookconfigurations") == {
        webhooks_config.VALIDATING_NAME
    }
    assert chart.one(docs, "MutatingWebhookConfiguration", webhooks_config.MUTATING_NAME)
    assert chart.one(docs, "ValidatingWebhookConfiguration", webhooks_config.VALIDATING_NAME)


def test_operator_pods_run_unprivileged_with_probes_and_their_namespace() -> None:
    spec = chart.one(chart.render(RELEASE, "sidecarset-system"), "Deployment")["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "probes"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "probes"}
    assert {
        "name": "POD_NAMESPACE",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
    } in container["env"]
    assert spec["replicas"] == 2


@pytest.mark.parametrize(
    ("values", "kinds"),
    [
        pytest.param([], set(), id="off-by-default"),
        pytest.param(
            ["metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prom"],
            {"ServiceMonitor", "Service"},
            id="enabled",
        ),
    ],
)
def test_the_service_monitor_is_opt_in(values: list[str], kinds: set[str]) -> None:
    docs = chart.render(RELEASE, "sidecarset-system", values)
    metrics = [
        d
        for d in docs
        if d["metadata"]["name"].endswith("-metrics") or d["kind"] == "ServiceMonitor"
    ]
    assert {d["kind"] for d in metrics} == kinds
    if kinds:
        monitor = chart.one(docs, "ServiceMonitor")
        assert monitor["metadata"]["labels"]["release"] == "prom"
        assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
        service = chart.one(docs, "Service", "sidecarset-metrics")
        assert service["spec"]["ports"][0]["targetPort"] == "probes"


def test_values_outside_the_schema_are_refused() -> None:
    done = chart.helm_result(
        "template", RELEASE, str(chart.CHART), "--set", "webhook.failurePolicy=Sometimes"
    )
    assert done.returncode != 0
    assert "failurePolicy" in done.stderr


async def test_own_process_splits_the_pod_into_a_webhook_and_a_controller_container(
    kube: KubeClient, namespace: str
) -> None:
    """`webhook.ownProcess`: the webhook container serves admission (the Service's port, the
    preStop drain), the controller container runs the rollouts under the Lease; each takes only
    its own job's flags, both parse with the real CLI, and the apiserver accepts every object."""
    values = [
        "webhook.ownProcess=true",
        "metrics.serviceMonitor.enabled=true",
        "webhook.excludedNamespaces={monitoring}",
        "allowPrivilegedSidecars=true",
    ]
    docs = chart.render(RELEASE, namespace, values)
    pod = chart.one(docs, "Deployment")["spec"]["template"]["spec"]
    webhook, controller = pod["containers"]
    assert (webhook["name"], controller["name"]) == ("webhook", "controller")
    command = typer.main.get_command(operator_cli.app)
    params = {
        c["name"]: command.make_context("run", c["args"][2:]).params for c in (webhook, controller)
    }
    assert params["webhook"]["mode"] == "webhook"
    assert params["controller"]["mode"] == "controller"
    for job in params.values():
        assert job["exclude_namespace"] == ["monitoring"]  # the same scope for both
    assert params["webhook"]["allow_privileged_sidecars"] is True
    assert not any(a.startswith(("--lease-name", "--qps")) for a in webhook["args"])
    assert not any(a.startswith(("--webhook-port", "--service-name")) for a in controller["args"])
    ports = {
        c["name"]: {p["name"]: p["containerPort"] for p in c["ports"]} for c in pod["containers"]
    }
    assert ports == {
        "webhook": {"webhook": 9443, "probes": 8080},
        "controller": {"ctl-probes": 8081},
    }
    for container in (webhook, controller):
        port = container["readinessProbe"]["httpGet"]["port"]
        probe = params[container["name"]]["probe_port"]
        assert ports[container["name"]][port] == probe  # each probes its own process
    assert "lifecycle" in webhook  # only admission drains before it stops
    assert "lifecycle" not in controller
    service = chart.one(docs, "Service", "sidecarset-webhook")
    assert service["spec"]["ports"][0]["targetPort"] == "webhook"
    monitor = chart.one(docs, "ServiceMonitor")
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics", "controller-metrics"]
    for doc in docs:
        if doc["kind"] != "ServiceMonitor":  # no Prometheus Operator CRDs here
            await chart.apply(kube, doc, dry_run=True)
