"""Assembles each mode of the operator in one TaskGroup, started in phases.

1. the probe server (so /healthz answers while the rest starts; /readyz stays false);
2. the webhook server (on its own thread and event loop, so an admission never waits behind the
   controller's work: `shell.threaded_server`), and the SidecarSet CRD's conversion webhook
   pointed at it: conversions
   are answered at once, admission reviews only once the caches are synced. This comes before
   the informers because their first LIST may itself need a conversion (objects stored as
   v1alpha1 by older versions, read through v1beta1): waiting for the caches first would wait
   for ourselves;
3. informers, waited for until synced (a webhook answering from an empty cache would create pods
   without their sidecars), then the admission webhook configurations;
4. under the Lease, the controller.
Stopping (SIGTERM) is graceful, see shell/shutdown.py: /readyz fails at once and the controller
stops and releases its Lease (the other replica leads within one retry period); the webhook keeps
answering for `drain_seconds`, then the group is cancelled and the servers close. Losing the
Lease to another replica ends the process with status 1 (see `app/controller.py`).

SidecarSets are read and their status written through v1beta1, the storage version, so the
operator's own reads need no conversion for objects stored as v1beta1; the decisions read the
internal form (`core.conversion.to_internal`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import structlog
import yaml
from aiohttp import web

from sidecarset.app import certificates, webhooks_config
from sidecarset.app.cached_objects import (
    CONFIGMAP_CODEC,
    NAMESPACE_CODEC,
    POD_CODEC,
    REVISION_CODEC,
    NamespaceView,
    SidecarSetCodec,
    SidecarSetEntry,
)
from sidecarset.app.inject_webhook import PodInjector
from sidecarset.app.settings import Mode, OperatorSettings
from sidecarset.app.sidecarset_webhook import CONFIG_MAPS, SidecarSetAdmission
from sidecarset.core import conversion, pod_contract
from sidecarset.core.podview import PodView
from sidecarset.shell import event_loops, httpserver
from sidecarset.shell.clock import RealClock
from sidecarset.shell.informer import Informer
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import KubeClient, resource_path
from sidecarset.shell.kube.credentials import CredentialsError
from sidecarset.shell.leader import LeadershipLost
from sidecarset.shell.shutdown import GracefulStop
from sidecarset.shell.threaded_server import ThreadedServer

log = structlog.get_logger("sidecarset.operator")

SIDECARSETS = resource_path(conversion.V1BETA1, "sidecarsets")
CRD_PATH = Path(__file__).resolve().parent.parent / "manifests" / "crd.yaml"
FIELD_MANAGER = "sidecarset-operator"
CRD_API = "apiextensions.k8s.io/v1"


async def connect(settings: OperatorSettings, *, limited: bool = True) -> KubeClient:
    """The operator's client, rate-limited by `--qps` so a big rollout cannot flood the API
    server; `limited=False`: the admission client, with no client-side limit at all."""
    qps = settings.qps if limited else 0.0
    if settings.kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return KubeClient.in_cluster(qps=qps, burst=settings.burst)
    return await KubeClient.from_kubeconfig(settings.kubeconfig, qps=qps, burst=settings.burst)


def crd_path() -> str:
    return resource_path(CRD_API, "customresourcedefinitions", name=webhooks_config.SIDECARSET_CRD)


async def install_crd(client: KubeClient) -> None:
    """Apply the bundled CRD, keeping the live conversion webhook if there is one: pointing it
    is `point_conversion`'s job, so a replica serving no webhooks never points it away."""
    crd = yaml.safe_load(CRD_PATH.read_text())
    path = crd_path()
    try:
        live = await client.get(path)
    except errors.NotFound:
        live = {}
    conversion_now = (live.get("spec") or {}).get("conversion") or {}
    if conversion_now.get("strategy") == "Webhook":
        crd["spec"]["conversion"] = conversion_now
    await client.apply(path, crd, field_manager=FIELD_MANAGER)
    for _ in range(100):
        got = await client.get(path)
        found = (got.get("status") or {}).get("conditions") or []
        conditions = {c["type"]: c["status"] for c in found}
        if conditions.get("Established") == "True":
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the SidecarSet CRD did not become Established")


CRD_SETTLE_SECONDS = 2.0
"""After a CRD change the API server keeps serving the watches opened before it from storage
built with the old conversion settings, for about a second (until its crdHandler tears that
storage down); events those watches cannot convert are dropped for them. Informers started
inside that window could miss a SidecarSet, so they start after it."""


async def point_conversion(client: KubeClient, endpoint: webhooks_config.Endpoint) -> bool:
    """Point the installed CRD's conversion webhook at us, with our CA (every start, like the
    admission webhook configurations, so the caBundle follows the certificate Secret). True
    when the CRD had to change.

    A merge patch, not server-side apply: it must also remove the `url` or `service` it
    replaces, which belongs to whoever installed the CRD (server-side apply cannot remove
    another manager's field)."""
    patch = webhooks_config.crd_conversion(endpoint)
    try:
        live = await client.get(crd_path())
    except errors.NotFound:
        raise RuntimeError(
            f"the SidecarSet CRD {webhooks_config.SIDECARSET_CRD} is not installed; install the "
            "chart (its crds/) or run the operator with --install-crd"
        ) from None
    wanted = patch["spec"]["conversion"]
    config = {k: v for k, v in wanted["webhook"]["clientConfig"].items() if v is not None}
    current = (live.get("spec") or {}).get("conversion") or {}
    if (
        current.get("strategy") == wanted["strategy"]
        and (current.get("webhook") or {}).get("clientConfig") == config
        and (current.get("webhook") or {}).get("conversionReviewVersions")
        == wanted["webhook"]["conversionReviewVersions"]
    ):
        return False
    await client.patch(crd_path(), patch)
    log.info("CRD conversion webhook pointed at this operator", crd=webhooks_config.SIDECARSET_CRD)
    return True


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


class WebhookServerLost(Exception):
    """The webhook server's thread ended on its own; the process exits to be restarted."""


class Operator:
    """One running operator process; /readyz reports `ready` and not `stopping`."""

    def __init__(self, settings: OperatorSettings, client: KubeClient) -> None:
        self.settings = settings
        self.client = client
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
            label_selector=pod_contract.SIDECARSET_NAME_LABEL,
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
        self._webhook: ThreadedServer | None = None
        self.stopping = False
        self._controller: asyncio.Task[None] | None = None

    def informers(self) -> list[Informer[Any]]:
        found: list[Informer[Any]] = [self.sidecarsets, self.namespaces, self.revisions]
        found.extend(self.configmaps)
        if self.pods is not None:
            found.append(self.pods)
        return found

    def synced(self) -> bool:
        return all(i.store.synced.is_set() for i in self.informers())

    def serves_webhooks(self) -> bool:
        return self.settings.mode in (Mode.ALL, Mode.WEBHOOK)

    def ready(self) -> bool:
        serving = self._webhook is not None and self._webhook.alive()
        return self.synced() and (serving or not self.serves_webhooks())

    def drain_seconds(self) -> float:
        """Only a webhook server has requests to drain."""
        return self.settings.drain_seconds if self.serves_webhooks() else 0.0

    async def prepare_stop(self) -> None:
        """The first step of a graceful stop: /readyz fails from now on, so the Service stops
        routing here, and the controller stops and releases its Lease, so the other replica
        leads without waiting for the Lease to expire. The webhook keeps answering: its
        answers need only the caches, which keep running."""
        self.stopping = True
        controller = self._controller
        if controller is not None and not controller.done():
            controller.cancel()
            # The release is bounded by the renew deadline; this bound is a safety net only.
            await asyncio.wait([controller], timeout=self.settings.lease_duration)

    async def run(self) -> None:
        s = self.settings
        probes = httpserver.Server(
            httpserver.probe_app(
                {"caches": self.synced, "webhook": self.ready, "stopping": self._running}
            ),
            s.webhook_host,
            s.probe_port,
        )
        await probes.start()
        try:
            if s.install_crd:
                await ensure_namespace(self.client, s.namespace)
            async with self._webhook_server() as endpoint:
                if s.install_crd:
                    await install_crd(self.client)
                if endpoint is not None and await point_conversion(self.client, endpoint):
                    await asyncio.sleep(CRD_SETTLE_SECONDS)
                async with asyncio.TaskGroup() as tg:
                    if self._webhook is not None:
                        tg.create_task(self._watch_webhook(self._webhook))
                    for informer in self.informers():
                        tg.create_task(informer.run())
                    for informer in self.informers():
                        await informer.store.synced.wait()
                    log.info(
                        "caches synced",
                        sidecarsets=len(self.sidecarsets.store),
                        pods=len(self.pods.store) if self.pods else None,
                    )
                    # What start-up made (imports, the first LIST of every pod) stays: keep it
                    # out of the cyclic collector's full passes, which otherwise walk it again
                    # in the first rounds (a full pass at 10,000 pods took about 0.1 s).
                    # Refcounting still frees any of it that is let go.
                    gc.freeze()
                    if endpoint is not None:
                        await self._register(endpoint)
                    if s.ready_file is not None:
                        write_ready_file(s.ready_file, webhook=self.webhook_port, probe=probes.port)
                    if s.mode in (Mode.ALL, Mode.CONTROLLER):
                        from sidecarset.app.controller import run_controller

                        self._controller = await run_controller(self, tg)
                    await asyncio.Event().wait()
        finally:
            await probes.stop()

    async def _watch_webhook(self, server: ThreadedServer) -> None:
        """End the process if the webhook server's thread ends while we run: /readyz would
        fail and the pod would stay up unready; exiting lets it restart."""
        await server.wait_ended()
        raise WebhookServerLost("the webhook server's thread ended unexpectedly")

    def _running(self) -> bool:
        return not self.stopping

    @contextlib.asynccontextmanager
    async def _webhook_server(self) -> AsyncIterator[webhooks_config.Endpoint | None]:
        """The HTTPS server (admission and conversion) and where the API server reaches it;
        None in a mode that serves no webhooks."""
        s = self.settings
        if s.mode not in (Mode.ALL, Mode.WEBHOOK):
            yield None
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
        server = ThreadedServer(
            self._webhook_app,
            host,
            s.webhook_port,
            tls.context,
            name="webhook-server",
            loop_factory=event_loops.loop_factory(),
        )
        await server.start()
        self.webhook_port = server.port
        self._webhook = server
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
                keeper = asyncio.create_task(
                    certificates.keep_fresh(
                        store, tls, reload=lambda fresh: server.call_soon(lambda: tls.load(fresh))
                    )
                )
            yield endpoint
        finally:
            self._webhook = None
            if keeper is not None:
                keeper.cancel()
            await server.stop()

    async def _webhook_app(self) -> web.Application:
        """The admission and conversion webhooks' app, built on the webhook server's own thread
        and loop (`shell.threaded_server`): its handlers only read the informers' stores, and the
        admission client (for a namespace not cached yet) is made here, on that loop, without the
        controller's client-side rate limit, and closed with the app."""
        s = self.settings
        admission_client = await connect(s, limited=False)

        async def close_client(_: web.Application) -> None:
            await admission_client.close()

        injector = PodInjector(
            sidecarsets=self.sidecarsets.store,
            namespaces=self.namespaces.store,
            revisions=self.revisions.store,
            client=admission_client,
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
            conversions=(
                httpserver.ConversionRoute(
                    webhooks_config.SIDECARSET_CONVERT_PATH,
                    "convert-sidecarset",
                    conversion.convert,
                ),
            ),
            draining=lambda: self.stopping,
        )
        app.on_cleanup.append(close_client)
        return app

    async def _register(self, endpoint: webhooks_config.Endpoint) -> None:
        s = self.settings
        mutating = webhooks_config.mutating_configuration(
            endpoint,
            operator_namespace=s.namespace,
            extra_excluded=s.excluded_namespaces,
            failure_policy=s.failure_policy,
            skip_critical=s.skip_critical_pods,
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
    async with client:
        operator = Operator(settings, client)
        task = asyncio.current_task()
        assert task is not None, "run() must run inside a task"
        GracefulStop(
            task, drain_seconds=operator.drain_seconds(), prepare=operator.prepare_stop
        ).install()
        try:
            await operator.run()
        except asyncio.CancelledError:
            log.info("stopping")
        except errors.Forbidden as refused:  # before the TaskGroup: pointing the CRD
            log.error("permission denied; check the operator's RBAC", error=str(refused))
            raise SystemExit(1) from None
        except BaseExceptionGroup as group:
            if group.subgroup(LeadershipLost) is not None:
                log.error(
                    "leadership lost; exiting so the process restarts with cold caches",
                    lease=settings.lease_name,
                )
                raise SystemExit(1) from None
            lost = group.subgroup(WebhookServerLost)
            if lost is not None:
                log.error("webhook server stopped; exiting so the process restarts")
                raise SystemExit(1) from None
            forbidden = group.subgroup(errors.Forbidden)
            if forbidden is None:
                raise
            for err in forbidden.exceptions:
                log.error("permission denied; check the operator's RBAC", error=str(err))
            raise SystemExit(1) from None
