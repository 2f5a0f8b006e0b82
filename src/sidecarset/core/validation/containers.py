"""Every container and init container of a SidecarSet (behaviour.md §11.4, §11.5).

Kruise validates sidecars by building a fake pod; this walks each container through the same
kinds of checks, restricted to what a sidecar can break, and keeps names unique across init
containers, containers and hot-upgrade twins.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

import msgspec

from sidecarset.core import hashing, pod_contract, selectors
from sidecarset.core.errors import FieldError, Path
from sidecarset.core.model import SidecarContainer, SidecarSet, Volume
from sidecarset.core.validation.container_env import check_env
from sidecarset.core.validation.container_mounts import check_mounts
from sidecarset.core.validation.container_ports import check_ports
from sidecarset.core.validation.container_probes import check_lifecycle_handler, check_probe
from sidecarset.core.validation.container_resources import check_resize_policy, check_resources
from sidecarset.core.validation.container_security import check_security, check_security_context
from sidecarset.core.validation.fields import JsonMap, check_enum, map_field
from sidecarset.core.validation.policy import ValidationPolicy
from sidecarset.core.validation.sidecar_fields import check_sidecar_fields


def pod_names(container: SidecarContainer) -> tuple[str, ...]:
    """The container names a pod receives for this sidecar (HotUpgrade injects two twins)."""
    if container.is_hot_upgrade:
        return pod_contract.hot_upgrade_names(container.name)
    return (container.name,)


def check_all_containers(
    sidecarset: SidecarSet, path: Path, policy: ValidationPolicy
) -> Iterator[FieldError]:
    spec = sidecarset.spec
    volume_names = {v.name: v for v in spec.volumes}
    seen: set[str] = set()
    for key, items in (("initContainers", spec.init_containers), ("containers", spec.containers)):
        for i, container in enumerate(items):
            cpath = path.child(key).index(i)
            init = key == "initContainers"
            if container.name:
                for name in pod_names(container):
                    if name in seen:
                        yield FieldError.duplicate(cpath.child("name"), name)
                    seen.add(name)
            yield from _check_container(container, cpath, init=init, volumes=volume_names)
            yield from check_sidecar_fields(container, cpath, init=init)
            yield from check_security(container, cpath, policy)


def _check_container(
    container: SidecarContainer, path: Path, *, init: bool, volumes: Mapping[str, Volume]
) -> Iterator[FieldError]:
    body = container.body
    for relative, expected in hashing.container_problems(body):
        yield FieldError.type_invalid(
            path.child(relative) if relative else path, _shown(body, relative), expected
        )
    if not container.name:
        yield FieldError.required(path.child("name"))
    else:
        for problem in selectors.dns1123_label_problems(container.name):
            yield FieldError.invalid(path.child("name"), container.name, problem)
    if not container.image:
        yield FieldError.required(path.child("image"))
    elif container.image.strip() != container.image:
        yield FieldError.invalid(
            path.child("image"), container.image, "must not have leading or trailing whitespace"
        )
    yield from check_enum(body, "imagePullPolicy", path, ("Always", "IfNotPresent", "Never"))
    yield from check_enum(body, "terminationMessagePolicy", path, ("File", "FallbackToLogsOnError"))
    restart = container.restart_policy
    if restart is not None:
        if not init:
            yield FieldError.forbidden(
                path.child("restartPolicy"), "may not be set for non-init containers"
            )
        elif restart != "Always":
            yield FieldError.not_supported(path.child("restartPolicy"), restart, ["Always"])
    yield from check_ports(body, path)
    yield from check_env(body, path)
    yield from check_mounts(container, path, volumes)
    yield from check_resources(body, path.child("resources"))
    yield from check_resize_policy(body, path)
    yield from _check_handlers(body, path, plain_init=init and not container.is_native_sidecar)
    yield from check_security_context(body, path)


def _check_handlers(body: JsonMap, path: Path, *, plain_init: bool) -> Iterator[FieldError]:
    """Probes and lifecycle hooks, which only a long-running container may have."""
    for probe_key in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = map_field(body, probe_key)
        if probe is None:
            continue
        if plain_init:
            yield FieldError.forbidden(
                path.child(probe_key),
                "may not be set for init containers without restartPolicy=Always",
            )
        else:
            yield from check_probe(probe, probe_key, path.child(probe_key))
    lifecycle = map_field(body, "lifecycle")
    if lifecycle is not None:
        if plain_init:
            yield FieldError.forbidden(
                path.child("lifecycle"),
                "may not be set for init containers without restartPolicy=Always",
            )
        for hook in ("postStart", "preStop"):
            handler = map_field(lifecycle, hook)
            if handler is not None:
                yield from check_lifecycle_handler(handler, path.child("lifecycle", hook))


def _shown(body: JsonMap, relative: str) -> object:
    """The scalar at a relative path, for an error message (collections are not echoed)."""
    node: object = body
    for match in re.finditer(r"([^.\[\]]+)|\[(\d+)\]", relative):
        name, index = match.group(1), match.group(2)
        if name is not None and isinstance(node, Mapping):
            node = node.get(name)
        elif index is not None and isinstance(node, list) and int(index) < len(node):
            node = node[int(index)]
        else:
            return msgspec.UNSET
    if node is None or isinstance(node, str | int | float | bool):
        return node
    return msgspec.UNSET
