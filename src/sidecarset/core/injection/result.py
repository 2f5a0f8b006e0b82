"""What `inject` decides for one pod, as data: the webhook turns it into a JSON patch, the CLI
and the tests apply it. Kept in its own module so that both consumers depend on the result only.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

import msgspec

from sidecarset.core.errors import FieldError
from sidecarset.core.injection.matching import PodSkip, Skip
from sidecarset.core.model import JsonObject

__all__ = ["InjectedContainer", "Injection", "InjectionDenied", "Placement", "PodShape"]


class InjectionDenied(ValueError):
    """The pod cannot be admitted as it is: the `FieldError` names what and where.

    Raised for a malformed annotation we must read, a `MergePatchJson` onto a non-JSON value, and
    a `resourcesPolicy` that cannot be computed for this pod. The webhook denies with it.
    """

    def __init__(self, error: FieldError) -> None:
        super().__init__(str(error))
        self.error = error


class Placement(StrEnum):
    """Where an injected (init) container goes relative to the pod's own."""

    BEFORE_APP = "BeforeAppContainer"
    AFTER_APP = "AfterAppContainer"
    IN_PLACE = "InPlace"
    """Replaces the pod's container of the same name, at its position."""


class InjectedContainer(msgspec.Struct, frozen=True, kw_only=True):
    """One container as it will stand in the pod: body, placement and final list index."""

    sidecarset: str
    body: JsonObject
    placement: Placement
    index: int
    """Position in the resulting `containers`/`initContainers` list."""

    @property
    def name(self) -> str:
        name = self.body.get("name")
        return name if isinstance(name, str) else ""


class PodShape(msgspec.Struct, frozen=True, kw_only=True):
    """What the pod already has, so a patch knows whether to create or extend.

    A list length is None when the list is absent (or not a list) in the pod.
    """

    has_metadata: bool = False
    has_annotations: bool = False
    has_spec: bool = False
    containers: int | None = None
    init_containers: int | None = None
    volumes: int | None = None
    image_pull_secrets: int | None = None


class Injection(msgspec.Struct, frozen=True, kw_only=True):
    """Everything `inject` decided for one pod: what is added, in order, and why not more.

    `containers` and `init_containers` are sorted by final index; `annotations` holds only keys
    whose value is new or changed (`overwritten_annotations` names the changed ones).
    """

    namespace: str
    shape: PodShape = PodShape()
    pod_skip: PodSkip | None = None
    matched: tuple[str, ...] = ()
    """SidecarSets selecting this pod (canary bases dropped), in injection order."""
    injected: tuple[str, ...] = ()
    """The matched SidecarSets that add something this time."""
    passed_over: Mapping[str, Skip] = {}
    containers: tuple[InjectedContainer, ...] = ()
    init_containers: tuple[InjectedContainer, ...] = ()
    volumes: tuple[JsonObject, ...] = ()
    image_pull_secrets: tuple[str, ...] = ()
    """Pull-secret names appended after the pod's own."""
    duplicate_pull_secrets: tuple[int, ...] = ()
    """Indexes (ascending) of the pod's own pull secrets that repeat an earlier name: removed,
    because Kruise merges the pod's and the SidecarSets' secrets as one set of names."""
    annotations: Mapping[str, str] = {}
    overwritten_annotations: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """True when applying this injection changes the pod."""
        return bool(
            self.containers
            or self.init_containers
            or self.volumes
            or self.image_pull_secrets
            or self.duplicate_pull_secrets
            or self.annotations
        )
