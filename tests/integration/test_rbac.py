"""The chart's RBAC, proven on the real apiserver (issue 6).

The operator runs as the chart's ServiceAccount, with a token from the TokenRequest API and the
chart's ClusterRole, Roles and bindings as rendered by helm, nothing else, and the container
arguments the chart renders (with local-mode overrides: URL webhooks on 127.0.0.1, free ports, the
CRD pre-installed by the admin). It must do its whole job with no 403 in its log; without one of
the rules it must stop or stay unready with an error that names the permission.

The webhook configurations have fixed names, so the cluster's shared operator (started by other
modules) is stopped while these tests run and restarted after.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from sidecarset.app import certificates, webhooks_config
from sidecarset.app import run as operator_run
from sidecarset.core import pod_contract
from sidecarset.devcluster.controlplane import ControlPlane
from sidecarset.shell import pki
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import JSON_PATCH, KubeClient, resource_path
from tests.integration import chart
from tests.integration import kubeobjects as k
from tests.integration.conftest import OperatorHandle, temporary_namespace
from tests.integration.waiting import wait_for

# What helm would install before the operator runs: its identity and the (empty) webhook
# configurations it fills in.
INSTALLED_KINDS = (
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
)
WEBHOOK_CONFIGURATIONS = (
    resource_path(
        "admissionregistration.k8s.io/v1",
        "mutatingwebhookconfigurations",
        name=webhooks_config.MUTATING_NAME,
    ),
    resource_path(
        "admissionregistration.k8s.io/v1",
        "validatingwebhookconfigurations",
        name=webhooks_config.VALIDATING_NAME,
    ),
)
# The apiserver's wording of every RBAC refusal.
DENIED = 'is forbidden: User "system:serviceaccount:'

pytestmark = pytest.mark.usefixtures("sole_operator")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sole_operator(control_plane: ControlPlane, kube: KubeClient) -> AsyncIterator[None]:
    """No other operator re-points the webhook configurations while this module runs."""
    await operator_run.install_crd(kube)  # as the admin: the chart's crds/, not the operator
    shared = OperatorHandle(control_plane)
    was_running = shared.running()
    if was_running:
        shared.kill()
    for path in WEBHOOK_CONFIGURATIONS:  # as on a cluster the chart is installed into
        with contextlib.suppress(errors.NotFound):
            await kube.delete(path)
    yield
    if was_running:
        shared.start()  # re-registers the configurations, pointing at itself
        return
    for path in WEBHOOK_CONFIGURATIONS:  # would point at a stopped operator, failurePolicy Fail
        with contextlib.suppress(errors.NotFound):
            await kube.delete(path)


@dataclass(frozen=True)
class Identity:
    """The chart's ServiceAccount, installed with its RBAC, and a kubeconfig that is only it."""

    namespace: str
    docs: list[dict[str, Any]]
    kubeconfig: Path

    @property
    def account(self) -> str:
        return str(chart.one(self.docs, "ServiceAccount")["metadata"]["name"])

    async def client(self) -> KubeClient:
        return await KubeClient.from_kubeconfig(str(self.kubeconfig))


Install = Callable[..., Awaitable[Identity]]


@pytest_asyncio.fixture(loop_scope="session")
async def chart_identity(
    kube: KubeClient, control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> AsyncIterator[Install]:
    """`await chart_identity(without=...)`: the chart's RBAC in `namespace` (the release
    namespace), minus the rules `without(kind, rule)` picks; removed again afterwards."""
    created: list[dict[str, Any]] = []

    async def install(
        without: Callable[[str, dict[str, Any]], bool] = lambda _kind, _rule: False,
    ) -> Identity:
        docs = chart.render(f"rbac-{uuid.uuid4().hex[:6]}", namespace)
        for doc in docs:
            if doc["kind"] not in INSTALLED_KINDS:
                continue
            if "rules" in doc:
                doc["rules"] = [r for r in doc["rules"] if not without(doc["kind"], r)]
            created.append(await chart.apply(kube, doc))
        account = chart.one(docs, "ServiceAccount")["metadata"]["name"]
        review = await kube.create(
            resource_path(
                "v1", "serviceaccounts", namespace=namespace, name=account, subresource="token"
            ),
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600},
            },
        )
        admin = yaml.safe_load(control_plane.kubeconfig.read_text())
        admin["users"] = [{"name": account, "user": {"token": review["status"]["token"]}}]
        admin["contexts"][0]["context"]["user"] = account
        kubeconfig = tmp_path / "chart-sa.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(admin))
        kubeconfig.chmod(0o600)
        return Identity(namespace, docs, kubeconfig)

    yield install
    for obj in reversed(created):
        with contextlib.suppress(errors.NotFound):
            await kube.delete(chart.object_path(obj))


@pytest_asyncio.fixture(loop_scope="session")
async def apps(kube: KubeClient, namespace: str) -> AsyncIterator[str]:
    """A workload namespace (the release namespace itself is never injected)."""
    async with temporary_namespace(kube, f"{namespace}-apps"[:63]) as name:
        yield name


class OperatorProcess:
    """`sidecarset operator run` as the chart's ServiceAccount, with the chart's arguments."""

    def __init__(self, identity: Identity, workdir: Path) -> None:
        self.ready_file = workdir / "operator.ready"
        self.log_file = workdir / "operator.log"
        argv = [
            sys.executable,
            "-m",
            "sidecarset",
            *chart.container_args(identity.docs),
            # Local-mode overrides (the last value of a flag wins).
            f"--kubeconfig={identity.kubeconfig}",
            "--local",
            "--no-install-crd",
            "--webhook-port=0",
            "--probe-port=0",
            "--drain-seconds=0",  # no Service routes here: nothing to drain at each stop
            f"--namespace={identity.namespace}",
            f"--ready-file={self.ready_file}",
            "--log-level=debug",
        ]
        env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
        env.update(POD_NAMESPACE=identity.namespace, NO_PROXY="127.0.0.1,localhost")
        with self.log_file.open("w") as sink:
            self.process = subprocess.Popen(
                argv, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def logs(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log_file.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = {"event": line}
            if isinstance(record, dict):
                records.append(record)
        return records

    def denials(self) -> list[dict[str, Any]]:
        """Log records that carry an RBAC refusal."""
        return [r for r in self.logs() if DENIED in json.dumps(r)]

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_file.read_text().splitlines()[-lines:])

    async def ready(self) -> None:
        async def state() -> tuple[bool, int | None]:
            return self.ready_file.exists(), self.process.poll()

        ready, code = await wait_for(
            state, lambda s: s[0] or s[1] is not None, timeout=120, what="operator ready file"
        )
        assert ready, f"the operator exited with {code} before it was ready:\n{self.tail()}"

    async def exited(self, timeout: float = 120) -> int:
        async def code() -> int | None:
            return self.process.poll()

        found = await wait_for(code, lambda c: c is not None, timeout=timeout, what="exit")
        assert found is not None
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def operator_as(tmp_path: Path) -> Iterator[Callable[[Identity], OperatorProcess]]:
    started: list[OperatorProcess] = []

    def start(identity: Identity) -> OperatorProcess:
        started.append(OperatorProcess(identity, tmp_path))
        return started[-1]

    yield start
    for process in started:
        process.stop()


async def test_the_operator_does_its_whole_job_with_only_the_charts_permissions(
    kube: KubeClient,
    chart_identity: Install,
    operator_as: Callable[[Identity], OperatorProcess],
    apps: str,
) -> None:
    identity = await chart_identity()
    operator = operator_as(identity)
    await operator.ready()
    name = f"rbac-{apps}"[:63]
    await k.create(
        kube, k.sidecarset(name, apps)
    )  # both webhooks answer (whitelist ConfigMap read)
    try:
        await k.wait_seen(kube, name)
        await k.create(kube, k.pod("app"), apps)
        pod_path = resource_path("v1", "pods", namespace=apps, name="app")
        injected = await kube.get(pod_path)
        assert [c["name"] for c in injected["spec"]["containers"]] == ["filebeat", "app"]
        await wait_for(lambda: kube.get(pod_path), k.is_ready, timeout=60, what="pod ready")

        await k.set_image(kube, name, k.NEW)

        def upgraded(pod: dict[str, Any]) -> bool:
            status = k.container_status(pod, "filebeat")
            return status["image"] == k.NEW and status["ready"] and k.is_ready(pod)

        pod = await wait_for(lambda: kube.get(pod_path), upgraded, timeout=90, what="in place")
        assert pod["metadata"]["uid"] == injected["metadata"]["uid"]
        assert k.container_status(pod, "app")["restartCount"] == 0
        status = await wait_for(
            lambda: k.get_sidecarset(kube, name),
            lambda ss: ss.get("status", {}).get("updatedReadyPods") == 1,
            timeout=60,
            what="SidecarSet status written",
        )
        assert status["status"]["matchedPods"] == 1
        await wait_for(  # one per spec, in the release namespace
            lambda: kube.get(
                resource_path("apps/v1", "controllerrevisions", namespace=identity.namespace),
                labelSelector=f"{pod_contract.SIDECARSET_NAME_LABEL}={name}",
            ),
            lambda found: len(found["items"]) == 2,
            timeout=30,
            what="two ControllerRevisions",
        )

        # A change that cannot be made in place is reported as an Event (in `default`).
        await kube.patch(
            resource_path("apps.kruise.io/v1alpha1", "sidecarsets", name=name),
            [
                {
                    "op": "add",
                    "path": "/spec/containers/0/env",
                    "value": [{"name": "A", "value": "1"}],
                }
            ],
            content_type=JSON_PATCH,
        )
        await k.sidecarset_event(kube, name, "NotUpgradablePods")
        assert operator.denials() == []
        assert operator.process.poll() is None
    finally:
        await k.delete_sidecarset(kube, name)


async def test_the_webhook_certificate_secret_is_created_and_rotated_with_the_charts_permissions(
    kube: KubeClient, chart_identity: Install
) -> None:
    identity = await chart_identity()
    secret = chart.flag(chart.container_args(identity.docs), "certificate-secret")
    hosts = certificates.service_hosts("sidecarset-webhook", identity.namespace)
    async with await identity.client() as client:
        store = certificates.SecretStore(client, identity.namespace, secret, hosts)
        first = await store.load_or_create()  # create, by the first replica
        assert (await store.load_or_create()).ca.cert_pem == first.ca.cert_pem  # get
        # Make the stored serving certificate due (as the admin), then rotate it (update).
        due = certificates.issue(
            pki.CertificateAuthority.load(first.ca), hosts, (), dt.timedelta(seconds=1)
        )
        stored = await kube.get(
            resource_path("v1", "secrets", namespace=identity.namespace, name=secret)
        )
        stored["data"]["tls.crt"] = base64.b64encode(due.cert_pem).decode()
        stored["data"]["tls.key"] = base64.b64encode(due.key_pem).decode()
        await kube.replace(
            resource_path("v1", "secrets", namespace=identity.namespace, name=secret), stored
        )
        rotated = await store.rotate_if_due(first)
        assert rotated.serving.cert_pem not in (first.serving.cert_pem, due.cert_pem)
        assert rotated.ca.cert_pem == first.ca.cert_pem
        with pytest.raises(errors.Forbidden):
            await client.get(
                resource_path("v1", "secrets", namespace=identity.namespace, name="other")
            )


@pytest.mark.parametrize(
    ("verb", "group", "resource", "where", "name"),
    [
        pytest.param(
            "create", "apiextensions.k8s.io", "customresourcedefinitions", "", "", id="crds"
        ),
        pytest.param(
            "patch",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "",
            "clonesets.apps.kruise.io",
            id="other-crds",
        ),
        pytest.param(
            "delete",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "",
            "sidecarsets.apps.kruise.io",
            id="delete-crd",
        ),
        pytest.param("create", "", "namespaces", "", "", id="create-namespaces"),
        pytest.param("delete", "", "pods", "default", "x", id="delete-pods"),
        pytest.param("create", "", "pods", "default", "", id="create-pods"),
        pytest.param("update", "apps.kruise.io", "sidecarsets", "", "x", id="update-sidecarsets"),
        pytest.param("list", "", "secrets", "{release}", "", id="list-secrets"),
        pytest.param("get", "", "secrets", "{release}", "other", id="get-other-secret"),
        pytest.param("get", "", "secrets", "kube-system", "x", id="secrets-elsewhere"),
        pytest.param(
            "update",
            "",
            "configmaps",
            "{release}",
            "sidecarset-configuration",
            id="write-whitelist",
        ),
        pytest.param(
            "update", "coordination.k8s.io", "leases", "{release}", "other", id="other-lease"
        ),
        pytest.param(
            "create", "apps", "controllerrevisions", "default", "", id="revisions-elsewhere"
        ),
        pytest.param(
            "patch",
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            "",
            "other",
            id="other-webhooks",
        ),
        pytest.param(
            "create",
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            "",
            "",
            id="create-webhooks",
        ),
        pytest.param("create", "", "events", "kube-system", "", id="events-elsewhere"),
        pytest.param(
            "escalate", "rbac.authorization.k8s.io", "clusterroles", "", "x", id="escalate"
        ),
    ],
)
async def test_the_charts_service_account_may_do_nothing_else(
    kube: KubeClient,
    chart_identity: Install,
    verb: str,
    group: str,
    resource: str,
    where: str,
    name: str,
) -> None:
    """Each case is one the operator never needs (a SubjectAccessReview asks the authorizer)."""
    identity = await chart_identity()
    attributes: dict[str, str] = {"verb": verb, "group": group, "resource": resource}
    if where:
        attributes["namespace"] = where.format(release=identity.namespace)
    if name:
        attributes["name"] = name
    review = await kube.create(
        resource_path("authorization.k8s.io/v1", "subjectaccessreviews"),
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": f"system:serviceaccount:{identity.namespace}:{identity.account}",
                "groups": [
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{identity.namespace}",
                    "system:authenticated",
                ],
                "resourceAttributes": attributes,
            },
        },
    )
    assert review["status"].get("allowed") is not True, review["status"]


async def test_without_the_webhook_rules_the_operator_exits_naming_the_permission(
    chart_identity: Install, operator_as: Callable[[Identity], OperatorProcess]
) -> None:
    identity = await chart_identity(
        without=lambda _kind, rule: "mutatingwebhookconfigurations" in rule["resources"]
    )
    await exits_naming(
        operator_as(identity), 'cannot patch resource "mutatingwebhookconfigurations"'
    )


async def exits_naming(operator: OperatorProcess, refusal: str) -> None:
    """The operator stops (exit 1, never ready), logging the refusal once as an error."""
    assert await operator.exited() == 1
    assert not operator.ready_file.exists()
    (record,) = [
        r
        for r in operator.logs()
        if r.get("event") == "permission denied; check the operator's RBAC"
    ]
    assert record["level"] == "error"
    assert refusal in record["error"]


async def test_without_the_crd_rule_the_operator_exits_naming_the_permission(
    kube: KubeClient, chart_identity: Install, operator_as: Callable[[Identity], OperatorProcess]
) -> None:
    """The operator must point the CRD's conversion webhook at itself; refused, it stops."""
    await kube.patch(  # as on a fresh install: the CRD points at the chart's placeholder
        operator_run.crd_path(),
        {
            "spec": {
                "conversion": {
                    "webhook": {
                        "clientConfig": {
                            "url": None,
                            "caBundle": None,
                            "service": {
                                "namespace": "sidecarset-system",
                                "name": "sidecarset-webhook",
                            },
                        }
                    }
                }
            }
        },
    )
    identity = await chart_identity(
        without=lambda _kind, rule: "customresourcedefinitions" in rule["resources"]
    )
    await exits_naming(operator_as(identity), 'cannot get resource "customresourcedefinitions"')


async def test_without_the_pod_rule_the_operator_stays_unready_naming_the_permission(
    chart_identity: Install, operator_as: Callable[[Identity], OperatorProcess]
) -> None:
    identity = await chart_identity(
        without=lambda kind, rule: kind == "ClusterRole" and rule["resources"] == ["pods"]
    )
    operator = operator_as(identity)

    def refused(records: list[dict[str, Any]]) -> bool:
        return any(
            r.get("event") == "list/watch not allowed, retrying"
            and 'cannot list resource "pods"' in r.get("error", "")
            for r in records
        )

    async def logs() -> list[dict[str, Any]]:
        return operator.logs()

    await wait_for(logs, refused, timeout=60, what="a pods list refusal in the log")
    assert operator.process.poll() is None  # keeps retrying: fixing the RBAC recovers it
    assert not operator.ready_file.exists()  # never ready: the Service sends it nothing


async def test_the_operator_fills_in_the_charts_webhook_configurations(
    kube: KubeClient, chart_identity: Install, operator_as: Callable[[Identity], OperatorProcess]
) -> None:
    """The chart creates them empty (so `patch` suffices and `helm uninstall` removes them); the
    operator adds the webhooks, and the labels helm set stay."""
    identity = await chart_identity()
    operator = operator_as(identity)
    await operator.ready()
    names = []
    for path in WEBHOOK_CONFIGURATIONS:
        registered = await kube.get(path)
        assert registered["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        managers = {m["manager"] for m in registered["metadata"]["managedFields"]}
        assert managers == {chart.FIELD_MANAGER, operator_run.FIELD_MANAGER}
        names += [w["name"] for w in registered["webhooks"]]
        for webhook in registered["webhooks"]:
            assert webhook["clientConfig"]["caBundle"]
    assert names == [
        "mutate-pod.sidecarset.kruise.io",
        "mutate-sidecarset.sidecarset.kruise.io",
        "validate-sidecarset.sidecarset.kruise.io",
    ]
