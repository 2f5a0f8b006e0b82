"""What an edit of an existing SidecarSet may change, and what it warns about (behaviour.md §11.7).

Running pods are updated in place, image only: a new container or a changed upgrade type could
never reach them, so those are refused; other changes are admitted with a warning naming the
containers whose running pods keep the old definition.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from sidecarset.core import defaults, hashing
from sidecarset.core.errors import FieldError, Path
from sidecarset.core.model import PodInjectPolicy, SidecarContainer, SidecarSet, UpgradeType
from sidecarset.core.validation.fields import str_field


def _effective_upgrade_type(container: SidecarContainer) -> str:
    return container.upgrade_strategy.upgrade_type or UpgradeType.COLD_UPGRADE.value


def check_immutable(sidecarset: SidecarSet, previous: SidecarSet) -> Iterator[FieldError]:
    path = Path.root("spec")
    before = {c.name: c for c in previous.spec.containers}
    for i, container in enumerate(sidecarset.spec.containers):
        cpath = path.child("containers").index(i)
        old = before.get(container.name)
        if old is None:
            yield FieldError.forbidden(
                cpath.child("name"),
                f"container {container.name!r} is not in the current SidecarSet: containers cannot"
                " be added or renamed after creation, running pods could never receive them"
                " (create another SidecarSet instead)",
            )
        elif _effective_upgrade_type(old) != _effective_upgrade_type(container):
            yield FieldError.invalid(
                cpath.child("upgradeStrategy", "upgradeType"),
                _effective_upgrade_type(container),
                f"is immutable (was {_effective_upgrade_type(old)})",
            )
    before_init = {c.name: c for c in previous.spec.init_containers if c.is_native_sidecar}
    for i, container in enumerate(sidecarset.spec.init_containers):
        old = before_init.get(container.name)
        if old is not None and _effective_upgrade_type(old) != _effective_upgrade_type(container):
            yield FieldError.invalid(
                path.child("initContainers").index(i).child("upgradeStrategy", "upgradeType"),
                _effective_upgrade_type(container),
                f"is immutable (was {_effective_upgrade_type(old)})",
            )


_STRANDED = (
    "changes to fields other than image cannot be applied to running pods in place;"
    " existing pods keep the old definition until they are recreated"
)


def _hash_spec(sidecarset: SidecarSet) -> dict[str, object]:
    spec: dict[str, object] = {
        "containers": [
            defaults.default_container(c.body, inject_policy=PodInjectPolicy.BEFORE_APP_CONTAINER)
            for c in sidecarset.spec.containers
        ]
    }
    if sidecarset.spec.init_containers:
        spec["initContainers"] = [
            defaults.default_container(c.body, inject_policy=PodInjectPolicy.AFTER_APP_CONTAINER)
            for c in sidecarset.spec.init_containers
        ]
    return spec


def edit_warnings(sidecarset: SidecarSet, previous: SidecarSet) -> Iterator[str]:
    """Warn when an edit strands running pods (behaviour.md §11.7): hash-without-image changes."""
    new_spec, old_spec = _hash_spec(sidecarset), _hash_spec(previous)
    if hashing.spec_hash_without_image(new_spec) == hashing.spec_hash_without_image(old_spec):
        return
    groups = ["containers"]
    # Init containers are hashed, all of them, once any is a native sidecar (behaviour.md §2.1).
    if any(c.is_native_sidecar for s in (sidecarset, previous) for c in s.spec.init_containers):
        groups.append("initContainers")
    for key in groups:
        new_items = _encodings(new_spec.get(key))
        old_items = _encodings(old_spec.get(key))
        for name, encoding in new_items.items():
            before = old_items.get(name)
            if before is None:
                if key == "initContainers":
                    yield (
                        f"spec.{key}[{name}]: a new init container changes the SidecarSet hash"
                        " while it has a native sidecar; running pods cannot be updated in place"
                        " until they are recreated"
                    )
            elif before != encoding:
                yield f"spec.{key}[{name}]: {_STRANDED}"
        for name in old_items.keys() - new_items.keys():
            yield (
                f"spec.{key}[{name}]: removing it changes the SidecarSet hash; running pods keep"
                " it and cannot be updated in place until they are recreated"
            )


def _encodings(items: object) -> dict[str, str]:
    if not isinstance(items, list):
        return {}
    return {
        str_field(c, "name"): hashing.container_encoding(c, without_image=True)
        for c in items
        if isinstance(c, Mapping)
    }
