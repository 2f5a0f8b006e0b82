"""Assembles each mode of the operator in one TaskGroup, started in phases.

1. the probe server (so /healthz answers while the rest starts; /readyz stays false);
2. informers, waited for until synced (a webhook answering from an empty cache would create pods
   without their sidecars);
3. the webhook server, then the webhook configurations pointing at it;
4. under the Lease, the controller.
Stopping cancels the group: the controller first loses its lease, servers drain. Losing the
Lease ends the process with status 1 (see `app/controller.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import structlog
import yaml

from sidecarset.app import certificates, webhooks_config
from sidecarset.app.inject_webhook import PodInjector
from sidecarset.app.projections import (
    CONFIGMAP_CODEC,
    NAMESPACE_CODEC,
    POD_CODEC,
    REVISION_CODEC,
    NamespaceView,
    SidecarSetCodec,
    SidecarSetEntry,
)
from sidecarset.app.settings import Mode, OperatorSettings
from sidecarset.app.sidecarset_webhook import CONFIG_MAPS, SidecarSetAdmission
from sidecarset.core import wire
from sidecarset.core.podview import PodView
from sidecarset.shell import httpserver
from sidecarset.shell.clock import RealClock
from sidecarset.shell.informer import Informer
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import KubeClient, resource_path
from sidecarset.shell.kube.credentials import CredentialsError
from sidecarset.shell.leader import LeadershipLost

log = structlog.get_logger("sidecarset.operator")

SIDECARSETS = resource_path("apps.kruise.io/v1alpha1", "sidecarsets")
CRD_PATH = Path(__file__).resolve().parent.parent / "manifests" / "crd.yaml"
FIELD_MANAGER = "sidecarset-operator"


async def connect(settings: OperatorSettings, *, limited: bool = True) -> KubeClient:
    """The operator's client, rate-limited by `--qps` so a big rollout cannot flood the API
    server; `limited=False`: the admission client, with no client-side limit at all."""
    qps = settings.qps if limited else 0.0
    if settings.kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return KubeClient.in_cluster(qps=qps, burst=settings.burst)
    return await KubeClient.from_kubeconfig(settings.kubeconfig, qps=qps, burst=settings.burst)


async def install_crd(client: KubeClient) -> None:
    crd = yaml.safe_load(CRD_PATH.read_text())
    path = resource_path(
        "apiextensions.k8s.io/v1", "customresourcedefinitions", name=crd["metadata"]["name"]
    )
    await client.apply(path, crd, field_manager=FIELD_MANAGER)
    for _ in range(100):
        got = await client.get(path)
        found = (got.get("status") or {}).get("conditions") or []
        conditions = {c["type"]: c["status"] for c in found}
        if conditions.get("Established") == "True":
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the SidecarSet CRD did not become Established")


async def ensure_namespace(client: KubeClient, name: str) -> None:
    try:
        await client.create(resource_path("v1", "namespaces"), {"metadata": {"name": name}})
    except errors.AlreadyExists:
        pass


def write_ready_file(path: Path, *, webhook: int | None, probe: int) -> None:
    """The ready file holds the bound ports as JSON (`--webhook-port 0` / `--probe-port 0` pick
    free ones, so scripts and tests learn them here). Written to a temporary name and renamed, so
    a reader that sees the file never sees it half-written."""
    body = {"pid": os.getpid(), "webhookPort": webhook, "probePort": probe}
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(body) + "\n")
    partial.replace(path)


class Operator:
    """One running operator process; `ready` is what /readyz reports."""

    def __init__(
        self,
        settings: OperatorSettings,
        client: KubeClient,
        admission_client: KubeClient | None = None,
    ) -> None:
        """`admission_client`: for the one API call an admission may need (a namespace not yet
        in the cache): its own connections, no rate limit shared with the controller's writes,
        so a pod admission never queues behind a rollout. Defaults to `client`."""
        self.settings = settings
        self.client = client
        self.admission_client = admission_client or client
        self.clock = RealClock()
        self.sidecarsets: Informer[SidecarSetEntry] = Informer(
            client, SIDECARSETS, SidecarSetCodec(), clock=self.clock
        )
        self.namespaces: Informer[NamespaceView] = Informer(
            client, resource_path("v1", "namespaces"), NAMESPACE_CODEC, clock=self.clock
        )
        self.revisions: Informer[dict[str, Any]] = Informer(
            client,
            resource_path("apps/v1", "controllerrevisions", namespace=settings.namespace),
            REVISION_CODEC,
            clock=self.clock,
            label_selector=wire.SIDECARSET_NAME_LABEL,
        )
        # The whitelist ConfigMaps, one informer each (RBAC names them): the validating webhook
        # reads them on every request and must not wait on an API call to do so.
        self.configmaps: list[Informer[dict[str, Any]]] = []
        if settings.mode in (Mode.ALL, Mode.WEBHOOK):
            self.configmaps = [
                Informer(
                    client,
                    resource_path("v1", "configmaps", namespace=settings.namespace),
                    CONFIGMAP_CODEC,
                    clock=self.clock,
                    field_selector=f"metadata.name={name}",
                )
                for name in CONFIG_MAPS
            ]
        self.pods: Informer[PodView] | None = None
        if settings.mode in (Mode.ALL, Mode.CONTROLLER):
            self.pods = Informer(client, resource_path("v1", "pods"), POD_CODEC, clock=self.clock)
        self.webhook_port: int | None = None
        self.serving = False

    def informers(self) -> list[Informer[Any]]:
        found: list[Informer[Any]] = [self.sidecarsets, self.namespaces, self.revisions]
        found.extend(self.configmaps)
        if self.pods is not None:
            found.append(self.pods)
        return found

    def synced(self) -> bool:
        return all(i.store.synced.is_set() for i in self.informers())

    def ready(self) -> bool:
        serves_webhooks = self.settings.mode in (Mode.ALL, Mode.WEBHOOK)
        return self.synced() and (self.serving or not serves_webhooks)

    async def run(self) -> None:
        s = self.settings
        probes = httpserver.Server(
            httpserver.probe_app({"caches": self.synced, "webhook": self.ready}),
            "127.0.0.1" if s.local else "0.0.0.0",
            s.probe_port,
        )
        await probes.start()
        try:
            if s.install_crd:
                await install_crd(self.client)
                await ensure_namespace(self.client, s.namespace)
            async with asyncio.TaskGroup() as tg:
                for informer in self.informers():
                    tg.create_task(informer.run())
                for informer in self.informers():
                    await informer.store.synced.wait()
                log.info(
                    "caches synced",
                    sidecarsets=len(self.sidecarsets.store),
                    pods=len(self.pods.store) if self.pods else None,
                )
                async with self._webhooks():
                    if s.ready_file is not None:
                        write_ready_file(s.ready_file, webhook=self.webhook_port, probe=probes.port)
                    if s.mode in (Mode.ALL, Mode.CONTROLLER):
                        from sidecarset.app.controller import run_controller

                        await run_controller(self, tg)
                    await asyncio.Event().wait()
        finally:
            await probes.stop()

    @contextlib.asynccontextmanager
    async def _webhooks(self) -> AsyncIterator[None]:
        s = self.settings
        if s.mode not in (Mode.ALL, Mode.WEBHOOK):
            yield
            return
        if s.local:
            material = certificates.load_or_create_local(
                s.cert_dir or Path(s.kubeconfig or ".").resolve().parent / "webhook-pki"
            )
            host = "127.0.0.1"
        else:
            store = certificates.SecretStore(
                self.client,
                s.namespace,
                s.certificate_secret,
                certificates.service_hosts(s.service_name, s.namespace),
            )
            material = await store.load_or_create()
            host = s.webhook_host
        tls = certificates.LiveTLS(material)
        injector = PodInjector(
            sidecarsets=self.sidecarsets.store,
            namespaces=self.namespaces.store,
            revisions=self.revisions.store,
            client=self.admission_client,
        )
        sidecarset_admission = SidecarSetAdmission(
            sidecarsets=self.sidecarsets.store,
            revisions=self.revisions.store,
            configmaps=[informer.store for informer in self.configmaps],
            settings=s,
        )
        app = httpserver.webhook_app(
            [
                httpserver.Route(webhooks_config.POD_PATH, "mutate-pod", injector.handle),
                httpserver.Route(
                    webhooks_config.SIDECARSET_MUTATE_PATH,
                    "mutate-sidecarset",
                    sidecarset_admission.mutate,
                ),
                httpserver.Route(
                    webhooks_config.SIDECARSET_VALIDATE_PATH,
                    "validate-sidecarset",
                    sidecarset_admission.validate,
                ),
            ],
            ready=self.synced,
        )
        server = httpserver.Server(app, host, s.webhook_port, tls.context)
        await server.start()
        self.webhook_port = server.port
        self.serving = True
        keeper: asyncio.Task[None] | None = None
        try:
            if s.local:
                endpoint = webhooks_config.Endpoint(
                    ca_bundle=material.ca.cert_pem, url_base=f"https://127.0.0.1:{server.port}"
                )
            else:
                endpoint = webhooks_config.Endpoint(
                    ca_bundle=material.ca.cert_pem,
                    service_namespace=s.namespace,
                    service_name=s.service_name,
                )
                keeper = asyncio.create_task(certificates.keep_fresh(store, tls))
            await self._register(endpoint)
            yield
        finally:
            self.serving = False
            if keeper is not None:
                keeper.cancel()
            await server.stop()

    async def _register(self, endpoint: webhooks_config.Endpoint) -> None:
        s = self.settings
        mutating = webhooks_config.mutating_configuration(
            endpoint,
            operator_namespace=s.namespace,
            extra_excluded=s.excluded_namespaces,
            failure_policy=s.failure_policy,
        )
        validating = webhooks_config.validating_configuration(endpoint)
        for group_path, body in (
            ("mutatingwebhookconfigurations", mutating),
            ("validatingwebhookconfigurations", validating),
        ):
            path = resource_path(
                "admissionregistration.k8s.io/v1", group_path, name=body["metadata"]["name"]
            )
            await self.client.apply(path, body, field_manager=FIELD_MANAGER)
        log.info("webhook configurations registered", port=self.webhook_port)


async def run(settings: OperatorSettings) -> None:
    try:
        client = await connect(settings)
    except CredentialsError as unusable:
        log.error("cannot reach the API server", error=str(unusable))
        raise SystemExit(1) from None
    admission_client = await connect(settings, limited=False)
    async with client, admission_client:
        operator = Operator(settings, client, admission_client)
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            if task is not None:
                loop.add_signal_handler(sig, task.cancel)
        try:
            await operator.run()
        except asyncio.CancelledError:
            log.info("stopping")
        except BaseExceptionGroup as group:
            if group.subgroup(LeadershipLost) is not None:
                log.error(
                    "leadership lost; exiting so the process restarts with cold caches",
                    lease=settings.lease_name,
                )
                raise SystemExit(1) from None
            forbidden = group.subgroup(errors.Forbidden)
            if forbidden is None:
                raise
            for err in forbidden.exceptions:
                log.error("permission denied; check the operator's RBAC", error=str(err))
            raise SystemExit(1) from None
