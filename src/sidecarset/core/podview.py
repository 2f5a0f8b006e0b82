"""PodView: the slice of a Pod that SidecarSet decisions read, decodable straight from Pod JSON.

The shell decodes list and watch streams directly into `PodView` with msgspec (unknown fields
are skipped, so a pod's env, volumes and probes are never materialised); tests and offline tools
build one from a dict with `podview_from_dict`. Classification, ordering, rollout planning and
status all read pods only through this type.

All annotations are kept, not just Kruise's: `patchPodMetadata` may patch any annotation key, and
`Retain`/`MergePatchJson` need the current value of that key to decide.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import NamedTuple

import msgspec

from sidecarset.core import pod_contract
from sidecarset.core.errors import FieldError, ModelError

__all__ = [
    "ContainerStatusView",
    "ContainerView",
    "InitContainerView",
    "PodConditionView",
    "PodKey",
    "PodMetaView",
    "PodSpecView",
    "PodStatusView",
    "PodView",
    "podview_from_dict",
]

READY_CONDITION = "Ready"


class PodKey(NamedTuple):
    """A pod's identity within the cluster: namespace and name. `str()` gives `ns/name`."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


# Every projection type is immutable, keyword-built, camelCase on the wire and not GC-tracked.
# gc=False is safe: these values hold only strings, numbers, datetimes, tuples and str dicts,
# which can never form a reference cycle through a PodView.


class PodMetaView(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    namespace: str = ""
    name: str = ""
    uid: str = ""
    resource_version: str = ""
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None


class ContainerView(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    name: str = ""
    image: str = ""


class InitContainerView(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    name: str = ""
    image: str = ""
    restart_policy: str | None = None

    @property
    def is_native_sidecar(self) -> bool:
        """An init container with `restartPolicy: Always` (a Kubernetes native sidecar)."""
        return self.restart_policy == "Always"


class PodSpecView(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    node_name: str = ""
    priority_class_name: str = ""
    containers: tuple[ContainerView, ...] = ()
    init_containers: tuple[InitContainerView, ...] = ()


class PodConditionView(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    type: str = ""
    status: str = ""
    reason: str = ""
    message: str = ""
    last_transition_time: datetime | None = None


class ContainerStatusView(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    name: str = ""
    image: str = ""
    image_id: str = msgspec.field(default="", name="imageID")
    ready: bool = False
    restart_count: int = 0
    started: bool | None = None


class PodStatusView(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    phase: str = ""
    conditions: tuple[PodConditionView, ...] = ()
    container_statuses: tuple[ContainerStatusView, ...] = ()
    init_container_statuses: tuple[ContainerStatusView, ...] = ()


class PodView(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    """A pod as decisions see it; field names follow the Pod API (`metadata`, `spec`, `status`).

    Decode with `msgspec.json.decode(raw, type=PodView)` or build with `podview_from_dict`.
    """

    metadata: PodMetaView = PodMetaView()
    spec: PodSpecView = PodSpecView()
    status: PodStatusView = PodStatusView()

    @property
    def key(self) -> PodKey:
        return PodKey(self.metadata.namespace, self.metadata.name)

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def labels(self) -> Mapping[str, str]:
        return self.metadata.labels

    @property
    def annotations(self) -> Mapping[str, str]:
        return self.metadata.annotations

    @property
    def is_active(self) -> bool:
        """Kubernetes' IsPodActive: not Succeeded, not Failed, and not being deleted."""
        return (
            self.status.phase not in ("Succeeded", "Failed")
            and self.metadata.deletion_timestamp is None
        )

    def condition(self, type_: str) -> PodConditionView | None:
        """The first condition of this type (the API keeps one per type), or None."""
        for condition in self.status.conditions:
            if condition.type == type_:
                return condition
        return None

    @property
    def ready_condition(self) -> PodConditionView | None:
        return self.condition(READY_CONDITION)

    @property
    def upgradable_condition(self) -> PodConditionView | None:
        """The `SidecarSetUpgradable` condition (behaviour.md §9.3), or None."""
        return self.condition(pod_contract.UPGRADABLE_CONDITION)

    @property
    def is_ready(self) -> bool:
        """The pod's Ready condition is True (Kubernetes podutil.IsPodReady; phase not checked)."""
        condition = self.ready_condition
        return condition is not None and condition.status == "True"

    @property
    def is_running_and_ready(self) -> bool:
        """Running, Ready and not being deleted (Kruise util.IsRunningAndReady)."""
        return (
            self.status.phase == "Running"
            and self.is_ready
            and self.metadata.deletion_timestamp is None
        )

    def container(self, name: str) -> ContainerView | None:
        for container in self.spec.containers:
            if container.name == name:
                return container
        return None

    def init_container(self, name: str) -> InitContainerView | None:
        for container in self.spec.init_containers:
            if container.name == name:
                return container
        return None

    def container_status(self, name: str) -> ContainerStatusView | None:
        for status in self.status.container_statuses:
            if status.name == name:
                return status
        return None

    def init_container_status(self, name: str) -> ContainerStatusView | None:
        for status in self.status.init_container_statuses:
            if status.name == name:
                return status
        return None


def podview_from_dict(pod: Mapping[str, object]) -> PodView:
    """Build a PodView from a Pod JSON object (as the API returns it, or a manifest).

    Unknown fields are ignored and JSON `null`s count as absent. Raises `ModelError` naming the
    field when a value read here has the wrong JSON type (`status.containerStatuses[0].ready`).
    """
    if not isinstance(pod, Mapping):
        raise ModelError(FieldError.type_invalid("", type(pod).__name__, "expected a JSON object"))
    try:
        return msgspec.convert(_drop_nulls(pod), PodView)
    except msgspec.ValidationError as exc:
        raise ModelError(_field_error(str(exc))) from exc


def _drop_nulls(value: object) -> object:
    if isinstance(value, Mapping):
        return {str(k): _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_drop_nulls(v) for v in value]
    return value


def _field_error(message: str) -> FieldError:
    """`Expected bool, got str - at $.status.containerStatuses[0].ready` -> a FieldError."""
    text, _, where = message.partition(" - at `")
    path = where.rstrip("`")
    path = path[2:] if path.startswith("$.") else path.lstrip("$")
    detail = text[:1].lower() + text[1:] if text else "invalid type"
    return FieldError.type_invalid(path, msgspec.UNSET, detail.replace("`", ""))
