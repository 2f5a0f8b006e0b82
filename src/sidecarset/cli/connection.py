"""How the cluster commands reach the API server, and how its failures read as one line.

`Cluster` wraps `KubeClient` for the CLI: every call names what it attempted, and every
`ApiError` (unreachable, unauthorized, forbidden, not found, the SidecarSet API missing) becomes
a `CliError` saying so and what to check.

SidecarSets are read and patched through v1beta1, the storage version, so the commands need no
conversion (they work while the operator is down); a cluster whose CRD serves only v1alpha1
(an older install) is read through v1alpha1. Decisions parse either version into one model.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sidecarset.app.cached_objects import POD_CODEC
from sidecarset.cli.errors import CliError
from sidecarset.cli.options import Target
from sidecarset.core import conversion, pod_contract
from sidecarset.core.podview import PodView
from sidecarset.shell.informer import DictCodec
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import MERGE_PATCH, KubeClient, resource_path

T = TypeVar("T")

SIDECARSET_VERSIONS = (conversion.V1BETA1, conversion.V1ALPHA1)
"""Tried in this order: the storage version first."""
CONTROLLER_REVISIONS = ("apps/v1", "controllerrevisions")


class Cluster:
    """The API calls the CLI makes, each failing as a one-line `CliError`."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self.sidecarset_version = SIDECARSET_VERSIONS[0]
        """The version SidecarSets are read and patched through (the first served one)."""

    def _sidecarsets_path(self, name: str | None = None) -> str:
        return resource_path(self.sidecarset_version, "sidecarsets", name=name)

    async def _with_served_version(self, request: Callable[[], Awaitable[T]]) -> T:
        """Run `request`; if this cluster does not serve the version, try the next one."""
        for version in SIDECARSET_VERSIONS:
            self.sidecarset_version = version
            try:
                return await request()
            except errors.NotFound as err:
                if not _api_missing_error(err) or version == SIDECARSET_VERSIONS[-1]:
                    raise
        raise AssertionError("unreachable")

    def failure(self, what: str, err: errors.ApiError) -> CliError:
        match err:
            case errors.Unavailable(status=0):
                cause = str(err.__cause__ or "") or err.message
                return CliError(
                    f"cannot {what}: the API server at {self.client.host} is unreachable "
                    f"({cause}); is the cluster running, and are --kubeconfig and --context "
                    "right?"
                )
            case errors.Unauthorized():
                return CliError(
                    f"cannot {what}: unauthorized ({err.message}); check the credentials of "
                    "your kubeconfig context"
                )
            case errors.Forbidden():
                return CliError(f"cannot {what}: forbidden: {err.message}")
            case _:
                return CliError(f"cannot {what}: {err}")

    async def call(self, what: str, request: Callable[[], Awaitable[T]]) -> T:
        try:
            return await request()
        except errors.ApiError as err:
            raise self.failure(what, err) from err

    async def sidecarset(self, name: str) -> dict[str, Any]:
        """The SidecarSet object; a missing one (or a missing API) is a clear error."""
        try:
            return await self._with_served_version(
                lambda: self.client.get(self._sidecarsets_path(name))
            )
        except errors.NotFound as err:
            if not _api_missing_error(err):
                raise CliError(
                    f"SidecarSet {name!r} not found; list them with `sidecarset status`"
                ) from err
            raise _api_missing() from err
        except errors.ApiError as err:
            raise self.failure(f"get SidecarSet {name!r}", err) from err

    async def sidecarsets(self) -> list[dict[str, Any]]:
        try:
            return await self._with_served_version(
                lambda: self.list_objects(self._sidecarsets_path())
            )
        except errors.NotFound as err:
            raise _api_missing() from err
        except errors.ApiError as err:
            raise self.failure("list SidecarSets", err) from err

    async def list_objects(self, path: str, *, label_selector: str = "") -> list[dict[str, Any]]:
        """Every object of a (paginated) LIST, as dicts. Raises `ApiError`."""
        codec = DictCodec()
        items: list[dict[str, Any]] = []
        pages = (
            self.client.list_pages(path, labelSelector=label_selector)
            if label_selector
            else self.client.list_pages(path)
        )
        async for page in pages:
            items.extend(codec.decode_list(page).items)
        return items

    async def pods(self) -> list[PodView]:
        """Every pod of the cluster as the controller projects it (paginated)."""

        async def listing() -> list[PodView]:
            pods: list[PodView] = []
            async for page in self.client.list_pages(resource_path("v1", "pods")):
                pods.extend(POD_CODEC.decode_list(page).items)
            return pods

        return await self.call("list pods in all namespaces", listing)

    async def revisions(self, name: str, namespace: str) -> list[dict[str, Any]]:
        """The ControllerRevisions of one SidecarSet, as the operator labels them."""
        path = resource_path(*CONTROLLER_REVISIONS, namespace=namespace)
        return await self.call(
            f"list ControllerRevisions in namespace {namespace!r}",
            lambda: self.list_objects(
                path, label_selector=f"{pod_contract.SIDECARSET_NAME_LABEL}={name}"
            ),
        )

    async def patch_sidecarset(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        path = self._sidecarsets_path(name)
        try:
            return await self.client.patch(path, body, content_type=MERGE_PATCH)
        except errors.Conflict as err:
            raise CliError(
                f"SidecarSet {name!r} changed while this command ran; run it again"
            ) from err
        except errors.Invalid as err:
            raise CliError(f"SidecarSet {name!r} rejected: {err.message}") from err
        except errors.NotFound as err:
            raise CliError(f"SidecarSet {name!r} not found") from err
        except errors.ApiError as err:
            raise self.failure(f"patch SidecarSet {name!r}", err) from err


def _api_missing_error(err: errors.NotFound) -> bool:
    """A 404 for the resource type itself, not for a named object (which carries its name)."""
    details = err.body.get("details") if isinstance(err.body, dict) else None
    return not (isinstance(details, dict) and details.get("name"))


def _api_missing() -> CliError:
    return CliError(
        f"this cluster does not serve the SidecarSet API ({' or '.join(SIDECARSET_VERSIONS)}); "
        "is the operator (and its CRD) installed?"
    )


@asynccontextmanager
async def connect(target: Target) -> AsyncIterator[Cluster]:
    """A `Cluster` for the target; a kubeconfig that cannot be loaded is a `CliError`."""
    path = target.kubeconfig
    if path is not None:
        paths = [p for p in path.split(os.pathsep) if p]
        if not any(Path(p).expanduser().exists() for p in paths):
            raise CliError(f"kubeconfig {path} not found; pass --kubeconfig or set KUBECONFIG")
    try:
        if path is None and _in_cluster():
            client = KubeClient.in_cluster()
        else:
            client = await KubeClient.from_kubeconfig(path, context=target.context)
    except (OSError, ValueError) as err:  # CredentialsError is a ValueError
        shown = path or "~/.kube/config"
        raise CliError(f"cannot load kubeconfig {shown}: {err}") from err
    async with client:
        yield Cluster(client)


def _in_cluster() -> bool:
    """In a pod without a kubeconfig: use the ServiceAccount, as kubectl does."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not (
        Path("~/.kube/config").expanduser().exists()
    )
