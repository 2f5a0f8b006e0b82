"""aiohttp servers inside our own event loop: the HTTPS webhook server and the probe server.

The webhook server answers only once `ready()` is true; before that every review gets a 503-coded
error response, which the apiserver treats according to the webhook's failurePolicy (Fail: the
pod is not created now and its controller retries; it is never created without its sidecars).
A malformed AdmissionReview is a 400; a handler's exception is logged and becomes an error
response for that request only: the server keeps serving. While `draining()` (a graceful stop)
every answer carries `Connection: close`, so clients open their next connection wherever the
Service routes now, instead of reusing one to a server about to close.

Conversion webhooks (ConversionReview) are answered from the first moment, without waiting for
`ready()`: converting needs no cache, and the informers' own first LIST may need a conversion
(objects stored in another version than the one watched), so gating it would deadlock the start.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from sidecarset.shell import admission, conversion_review, metrics

log = structlog.get_logger("sidecarset.webhook")


@dataclass(frozen=True)
class Route:
    path: str
    name: str
    handler: admission.Handler


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """TLS 1.2+ server context; `load_cert_chain` on it later affects new handshakes only."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


@dataclass(frozen=True)
class ConversionRoute:
    path: str
    name: str
    convert: conversion_review.Converter


def webhook_app(
    routes: list[Route],
    ready: Callable[[], bool],
    conversions: tuple[ConversionRoute, ...] = (),
    draining: Callable[[], bool] = lambda: False,
) -> web.Application:
    app = web.Application(client_max_size=admission.MAX_BODY_BYTES)
    for route in routes:
        app.router.add_post(route.path, _closing(_review_endpoint(route, ready), draining))
    for conversion in conversions:
        app.router.add_post(conversion.path, _closing(_conversion_endpoint(conversion), draining))
    app.router.add_get("/healthz", _ok)
    return app


Endpoint = Callable[[web.Request], Awaitable[web.Response]]


def _closing(endpoint: Endpoint, draining: Callable[[], bool]) -> Endpoint:
    """`endpoint`, closing the connection after each answer while the server drains."""

    async def closing(request: web.Request) -> web.Response:
        answer = await endpoint(request)
        if draining():
            answer.force_close()
        return answer

    return closing


_Review = TypeVar("_Review")
Answer = tuple[web.Response, str]
"""A response and its outcome label for the request metrics."""


def _measured(
    name: str,
    what: str,
    decode: Callable[[bytes], _Review],
    answer: Callable[[_Review], Awaitable[Answer]],
) -> Endpoint:
    """An endpoint decoding the body (a ValueError from `decode` is a 400 naming `what`),
    timing and counting every answer under webhook `name`."""

    async def endpoint(request: web.Request) -> web.Response:
        started = time.perf_counter()
        outcome = "error"
        try:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                outcome = "malformed"
                return web.json_response({"error": f"{what} too large"}, status=400)
            try:
                review = decode(body)
            except ValueError as err:
                outcome = "malformed"
                return web.json_response({"error": f"malformed {what}: {err}"}, status=400)
            response, outcome = await answer(review)
            return response
        finally:
            metrics.WEBHOOK_LATENCY.labels(webhook=name).observe(time.perf_counter() - started)
            metrics.WEBHOOK_REQUESTS.labels(webhook=name, outcome=outcome).inc()

    return endpoint


def _conversion_endpoint(route: ConversionRoute) -> Endpoint:
    async def answer(review: conversion_review.ConversionRequest) -> Answer:
        outcome = "error"
        try:
            answered = conversion_review.answer(review, route.convert)
        except Exception:
            log.exception("conversion failed", webhook=route.name, uid=review.uid)
            reply = conversion_review.failed(
                review.uid, f"internal error in the {route.name} webhook; see the operator log"
            )
        else:
            reply = answered.body
            outcome = "converted" if answered.succeeded else "failed"
            if not answered.succeeded:
                log.warning(
                    "conversion refused", webhook=route.name, uid=review.uid, error=answered.failure
                )
        return web.Response(body=reply, content_type="application/json"), outcome

    return _measured(route.name, "ConversionReview", conversion_review.decode, answer)


def _review_endpoint(route: Route, ready: Callable[[], bool]) -> Endpoint:
    async def answer(review: admission.AdmissionRequest) -> Answer:
        outcome = "error"
        if not ready():
            outcome = "not_ready"
            response = admission.errored(
                "sidecarset webhook is starting: its caches have not synced yet", code=503
            )
        else:
            with structlog.contextvars.bound_contextvars(
                admission_uid=review.uid,
                webhook=route.name,
                object=f"{review.namespace}/{review.name}".strip("/"),
            ):
                try:
                    response = await route.handler(review)
                    outcome = (
                        "patched" if response.patch else "allowed" if response.allowed else "denied"
                    )
                except Exception:
                    log.exception("admission handler failed")
                    response = admission.errored(
                        f"internal error in the {route.name} webhook (admission uid "
                        f"{review.uid}); see the operator log"
                    )
        reply = admission.encode(review.uid, response)
        return web.Response(body=reply, content_type="application/json"), outcome

    return _measured(route.name, "AdmissionReview", admission.decode, answer)


async def _ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def probe_app(
    checks: Mapping[str, Callable[[], bool]],
    registry: CollectorRegistry = REGISTRY,
) -> web.Application:
    """/healthz (process alive), /readyz (every named check true), /metrics (Prometheus)."""

    async def readyz(_: web.Request) -> web.Response:
        failing = [name for name, check in checks.items() if not check()]
        if failing:
            return web.Response(status=503, text="not ready: " + ", ".join(failing))
        return web.Response(text="ok")

    async def metrics_endpoint(_: web.Request) -> web.Response:
        # Set the header explicitly: Prometheus 3 rejects ambiguous content types.
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/healthz", _ok)
    app.router.add_get("/livez", _ok)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    return app


class Server:
    """One aiohttp site; `start()` binds (port 0 picks a free one), `stop()` drains."""

    def __init__(
        self, app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=5.0
        )
        self._host, self._port, self._ssl = host, port, ssl_context
        self.port = port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            self._host,
            self._port,
            ssl_context=self._ssl,
            reuse_address=True,
        )
        await site.start()
        server = site._server  # aiohttp exposes no public accessor for the bound socket
        sockets = getattr(server, "sockets", None)
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        logging.getLogger("sidecarset.http").info(
            "listening on %s:%d%s", self._host, self.port, " (TLS)" if self._ssl else ""
        )

    async def stop(self) -> None:
        await self._runner.cleanup()
