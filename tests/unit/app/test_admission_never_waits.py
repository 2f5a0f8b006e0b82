"""The admission path does not wait on the network: a namespace missing from the cache is
looked up only when a SidecarSet's namespaceSelector needs it, with a short timeout; the
client-side rate limit reserves tokens without holding anything while a caller sleeps."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from datetime import UTC, datetime
from typing import Any

from sidecarset.app import cached_objects
from sidecarset.app.inject_webhook import NAMESPACE_LOOKUP_TIMEOUT, PodInjector
from sidecarset.core import defaults
from sidecarset.shell import admission
from sidecarset.shell.kube.client import KubeClient, TokenBucket
from sidecarset.shell.kube.credentials import Credentials
from sidecarset.shell.store import Store
from tests.fixtures.admission_reviews import review
from tests.unit.private_loop import run

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def sidecarset(name: str, **spec: Any) -> cached_objects.SidecarSetEntry:
    body = {
        "apiVersion": "apps.kruise.io/v1alpha1",
        "kind": "SidecarSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "containers": [{"name": name, "image": f"{name}:1"}],
            **spec,
        },
    }
    return cached_objects.entry(defaults.apply_defaults(body))


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def inject(entry: cached_objects.SidecarSetEntry) -> admission.AdmissionResponse:
    """Admit a pod in namespace `fresh` (not in the namespace cache) with an API client whose
    server is down: any lookup fails at once."""

    async def go() -> admission.AdmissionResponse:
        sidecarsets: Store[cached_objects.SidecarSetEntry] = Store("sidecarsets")
        await sidecarsets.replace({entry.name: entry})
        namespaces: Store[cached_objects.NamespaceView] = Store("namespaces")
        await namespaces.replace({})
        creds = Credentials(f"https://127.0.0.1:{closed_port()}", ssl.create_default_context())
        async with KubeClient(creds) as client:
            injector = PodInjector(
                sidecarsets=sidecarsets,
                namespaces=namespaces,
                revisions=Store("revisions"),
                client=client,
                now=lambda: NOW,
            )
            pod = {
                "metadata": {"name": "p", "namespace": "fresh", "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]},
            }
            sent = review(pod, "Pod", "pods", "fresh")
            return await injector.handle(admission.decode(json.dumps(sent).encode()))

    return run(go())


def test_a_namespace_cache_miss_costs_no_api_call_when_no_namespace_selector_needs_it() -> None:
    response = inject(sidecarset("logs"))

    assert response.allowed
    assert response.patch, "the pod is injected without looking the namespace up"


def test_a_failed_namespace_lookup_is_a_clear_error_not_an_exception() -> None:
    scoped = sidecarset("logs", namespaceSelector={"matchLabels": {"team": "a"}})

    response = inject(scoped)

    assert not response.allowed
    assert response.code == 503
    assert "cannot read namespace 'fresh'" in response.message


def test_the_namespace_lookup_timeout_is_well_under_the_webhook_timeout() -> None:
    from sidecarset.app.webhooks_config import TIMEOUT_SECONDS

    assert NAMESPACE_LOOKUP_TIMEOUT <= TIMEOUT_SECONDS / 2


def test_tokens_are_reserved_in_arrival_order_without_waiting_for_each_other() -> None:
    bucket = TokenBucket(qps=10, burst=2)

    delays = [bucket.reserve() for _ in range(4)]

    assert delays[:2] == [0.0, 0.0]
    assert abs(delays[2] - 0.1) < 0.01
    assert abs(delays[3] - 0.2) < 0.01


def test_concurrent_callers_sleep_side_by_side() -> None:
    async def go() -> list[float]:
        bucket = TokenBucket(qps=20, burst=1)
        start = time.monotonic()
        done: list[float] = []

        async def one() -> None:
            await bucket.acquire()
            done.append(time.monotonic() - start)

        await asyncio.gather(*(one() for _ in range(5)))
        return done

    done = run(go())

    assert done[0] < 0.03
    assert 0.17 < done[-1] < 0.3  # 4 tokens at 20/s after the first
