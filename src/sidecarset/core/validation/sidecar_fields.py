"""The fields Kruise adds to a container (behaviour.md §11.5).

`podInjectPolicy`, `shareVolumePolicy`, `upgradeStrategy` (HotUpgrade's twin image and name
length) and `transferEnv`: Kubernetes knows nothing of them, so they are checked here;
`resourcesPolicy` is checked with the resources it replaces.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import msgspec

from sidecarset.core import selectors
from sidecarset.core.errors import FieldError, Path
from sidecarset.core.model import (
    PodInjectPolicy,
    ShareVolumePolicyType,
    SidecarContainer,
    UpgradeType,
)
from sidecarset.core.validation.container_env import env_name_problems
from sidecarset.core.validation.container_resources import check_resources_policy

_TRANSFER_FIELD_PATH = re.compile(r"metadata\.(labels|annotations)\['(.*)'\]")
_HOT_UPGRADE_SUFFIX_LENGTH = 2  # "-1" / "-2"


def check_sidecar_fields(
    container: SidecarContainer, path: Path, *, init: bool
) -> Iterator[FieldError]:
    policies = [p.value for p in PodInjectPolicy]
    if container.pod_inject_policy and container.pod_inject_policy not in policies:
        yield FieldError.not_supported(
            path.child("podInjectPolicy"), container.pod_inject_policy, policies
        )
    share_types = [t.value for t in ShareVolumePolicyType]
    if container.share_volume_policy.type and container.share_volume_policy.type not in share_types:
        yield FieldError.not_supported(
            path.child("shareVolumePolicy", "type"), container.share_volume_policy.type, share_types
        )
    device_policy = container.share_volume_device_policy
    if device_policy is not None and device_policy.type and device_policy.type not in share_types:
        yield FieldError.not_supported(
            path.child("shareVolumeDevicePolicy", "type"), device_policy.type, share_types
        )
    yield from _check_upgrade_strategy(container, path, init=init)
    yield from _check_transfer_env(container, path)
    if container.resources_policy is not None:
        rpath = path.child("resourcesPolicy")
        if init and not container.is_native_sidecar:
            yield FieldError.invalid(
                rpath,
                msgspec.UNSET,
                "resourcesPolicy is only supported for initContainers with restartPolicy Always",
            )
        yield from check_resources_policy(container, rpath)


def _check_upgrade_strategy(
    container: SidecarContainer, path: Path, *, init: bool
) -> Iterator[FieldError]:
    upath = path.child("upgradeStrategy")
    upgrade_type = container.upgrade_strategy.upgrade_type
    types = [t.value for t in UpgradeType]
    if upgrade_type and upgrade_type not in types:
        yield FieldError.not_supported(upath.child("upgradeType"), upgrade_type, types)
    if not container.is_hot_upgrade:
        return
    if init and not container.is_native_sidecar:
        yield FieldError.invalid(
            upath.child("upgradeType"),
            upgrade_type,
            "HotUpgrade needs a long-running container: an initContainer must set"
            " restartPolicy Always",
        )
    empty_image = container.upgrade_strategy.hot_upgrade_empty_image
    if not empty_image:
        yield FieldError.required(
            upath.child("hotUpgradeEmptyImage"),
            "HotUpgrade runs an idle twin with this image; without it pod creation would fail",
        )
    elif empty_image == container.image:
        yield FieldError.invalid(
            upath.child("hotUpgradeEmptyImage"),
            empty_image,
            "must differ from image: the idle twin would run the real sidecar",
        )
    limit = 63 - _HOT_UPGRADE_SUFFIX_LENGTH
    if len(container.name) > limit:
        yield FieldError.invalid(
            path.child("name"),
            container.name,
            f"must be no more than {limit} characters for HotUpgrade"
            f" (pods get {container.name}-1 and -2)",
        )


def _check_transfer_env(container: SidecarContainer, path: Path) -> Iterator[FieldError]:
    for i, transfer in enumerate(container.transfer_env):
        tpath = path.child("transferEnv").index(i)
        source_from = transfer.source_container_name_from
        field_ref = source_from.field_ref if source_from is not None else None
        if not transfer.source_container_name and field_ref is None:
            yield FieldError.required(
                tpath, "one of sourceContainerName or sourceContainerNameFrom.fieldRef is required"
            )
        elif transfer.source_container_name and field_ref is not None:
            yield FieldError.forbidden(
                tpath.child("sourceContainerNameFrom"),
                "may not be set together with sourceContainerName",
            )
        if not transfer.env_name and not transfer.env_names:
            yield FieldError.required(tpath, "one of envName or envNames is required")
        for j, name in enumerate(transfer.env_names):
            for problem in env_name_problems(name):
                yield FieldError.invalid(tpath.child("envNames").index(j), name, problem)
        if transfer.env_name:
            for problem in env_name_problems(transfer.env_name):
                yield FieldError.invalid(tpath.child("envName"), transfer.env_name, problem)
        if field_ref is None:
            continue
        fpath = tpath.child("sourceContainerNameFrom", "fieldRef")
        if field_ref.api_version and field_ref.api_version != "v1":
            yield FieldError.invalid(
                fpath.child("apiVersion"), field_ref.api_version, 'only "v1" is supported'
            )
        if not field_ref.field_path:
            yield FieldError.required(fpath.child("fieldPath"))
            continue
        subscripted = _TRANSFER_FIELD_PATH.fullmatch(field_ref.field_path)
        if subscripted is None:
            yield FieldError.not_supported(
                fpath.child("fieldPath"),
                field_ref.field_path,
                ["metadata.labels['<KEY>']", "metadata.annotations['<KEY>']"],
            )
            continue
        key = subscripted.group(2)
        checked = key.lower() if subscripted.group(1) == "annotations" else key
        for problem in selectors.qualified_name_problems(checked):
            yield FieldError.invalid(fpath.child("fieldPath"), field_ref.field_path, problem)
