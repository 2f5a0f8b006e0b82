"""SidecarSet defaulting, as Kruise's mutating webhook does it (behaviour.md §1.7).

`apply_defaults` works on the raw JSON object so that container and volume bodies keep every
field they carry. It fills the strategy defaults, the Kubernetes container and volume defaults
Kruise applies (they are part of the hash input), rounds resource quantities up to milli-units
and spells them as Go writes them, then overwrites the two hash annotations. The SidecarSet
mutating webhook and the offline CLI use it; its output is what `hashing` and `validation` see.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from typing import Final

from sidecarset.core import hashing, pod_contract, resources_expr
from sidecarset.core.model import (
    PatchPolicy,
    PodInjectPolicy,
    RevisionPolicy,
    ShareVolumePolicyType,
    UpdateStrategyType,
    UpgradeType,
)

__all__ = [
    "DEFAULT_REVISION_HISTORY_LIMIT",
    "apply_defaults",
    "default_container",
    "default_volume",
    "image_pull_policy",
]

DEFAULT_REVISION_HISTORY_LIMIT: Final = 10
TERMINATION_MESSAGE_PATH: Final = "/dev/termination-log"
DEFAULT_FILE_MODE: Final = 420  # 0644, the Kubernetes default for projected files
TOKEN_EXPIRATION_SECONDS: Final = 3600

# Every VolumeSource member of k8s.io/api v0.32; a volume setting none of them becomes emptyDir.
VOLUME_SOURCES: Final = (
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
)

JsonDict = dict[str, object]


def apply_defaults(obj: Mapping[str, object]) -> JsonDict:
    """Return a defaulted deep copy of a SidecarSet JSON object, hash annotations included.

    Never mutates `obj`; idempotent; total: values of the wrong JSON type are left as they are
    (validation reports them) instead of raising. Fields that already have a value keep it.
    """
    result: JsonDict = copy.deepcopy(dict(obj))
    spec = _child(result, "spec")
    _default_update_strategy(_child(spec, "updateStrategy"))
    for key, policy in (
        ("initContainers", PodInjectPolicy.AFTER_APP_CONTAINER),
        ("containers", PodInjectPolicy.BEFORE_APP_CONTAINER),
    ):
        items = spec.get(key)
        if isinstance(items, list):
            spec[key] = [
                default_container(c, inject_policy=policy) if isinstance(c, Mapping) else c
                for c in items
            ]
    volumes = spec.get("volumes")
    if isinstance(volumes, list):
        spec["volumes"] = [default_volume(v) if isinstance(v, Mapping) else v for v in volumes]
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = DEFAULT_REVISION_HISTORY_LIMIT
    patches = spec.get("patchPodMetadata")
    if isinstance(patches, list):
        for patch in patches:
            if isinstance(patch, dict) and not patch.get("patchPolicy"):
                patch["patchPolicy"] = PatchPolicy.RETAIN.value
    injection = spec.get("injectionStrategy")
    if isinstance(injection, dict):
        revision = injection.get("revision")
        if isinstance(revision, dict) and not revision.get("policy"):
            revision["policy"] = RevisionPolicy.ALWAYS.value

    metadata = _child(result, "metadata")
    annotations = metadata.get("annotations")
    if not isinstance(annotations, dict):
        annotations = {}
        metadata["annotations"] = annotations
    annotations[pod_contract.HASH_ANNOTATION] = hashing.spec_hash(spec)
    annotations[pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION] = hashing.spec_hash_without_image(spec)
    return result


def _child(parent: JsonDict, key: str) -> JsonDict:
    """parent[key] as a dict, created when absent or null (a wrong type is replaced by a copy)."""
    value = parent.get(key)
    if isinstance(value, dict):
        return value
    if value is not None:
        # A non-object where Go expects a struct: Go's decoder would have refused the object.
        # Leave it for validation to report, and default into a detached dict.
        return {}
    created: JsonDict = {}
    parent[key] = created
    return created


def _default_update_strategy(strategy: JsonDict) -> None:
    if not strategy.get("type"):
        strategy["type"] = UpdateStrategyType.ROLLING_UPDATE.value
    if strategy.get("maxUnavailable") is None:
        strategy["maxUnavailable"] = 1
    if strategy.get("partition") is None:
        strategy["partition"] = 0


# --- containers -------------------------------------------------------------------------------


def default_container(body: Mapping[str, object], *, inject_policy: PodInjectPolicy) -> JsonDict:
    """A defaulted copy of one sidecar (init) container body (Kruise `setDefaultSidecarContainer`).

    `inject_policy` is the default position: BeforeAppContainer for containers,
    AfterAppContainer for init containers. Startup probes are not defaulted (Kruise doesn't).
    """
    container: JsonDict = copy.deepcopy(dict(body))
    if not container.get("podInjectPolicy"):
        container["podInjectPolicy"] = inject_policy.value
    _default_field(container, "upgradeStrategy", "upgradeType", UpgradeType.COLD_UPGRADE.value)
    _default_field(container, "shareVolumePolicy", "type", ShareVolumePolicyType.DISABLED.value)
    if not container.get("imagePullPolicy"):
        container["imagePullPolicy"] = image_pull_policy(container.get("image"))
    if not container.get("terminationMessagePath"):
        container["terminationMessagePath"] = TERMINATION_MESSAGE_PATH
    if not container.get("terminationMessagePolicy"):
        container["terminationMessagePolicy"] = "File"
    for port in _dicts(container.get("ports")):
        if not port.get("protocol"):
            port["protocol"] = "TCP"
    for transfer in _dicts(container.get("transferEnv")):
        source = transfer.get("sourceContainerNameFrom")
        if isinstance(source, dict):
            _default_field_selector(source.get("fieldRef"))
    for env in _dicts(container.get("env")):
        value_from = env.get("valueFrom")
        if isinstance(value_from, dict):
            _default_field_selector(value_from.get("fieldRef"))
    resources = container.get("resources")
    if isinstance(resources, dict):
        for kind in ("limits", "requests"):
            resource_list = resources.get(kind)
            if isinstance(resource_list, dict):
                resources[kind] = {k: _round_up_milli(v) for k, v in resource_list.items()}
    for probe_key in ("livenessProbe", "readinessProbe"):
        probe = container.get(probe_key)
        if isinstance(probe, dict):
            _default_probe(probe)
    lifecycle = container.get("lifecycle")
    if isinstance(lifecycle, dict):
        for hook in ("postStart", "preStop"):
            handler = lifecycle.get(hook)
            if isinstance(handler, dict):
                _default_http_get(handler.get("httpGet"))
    policy = container.get("resourcesPolicy")
    if isinstance(policy, dict) and policy.get("targetContainersNameRegex") in (None, ""):
        # A CRD schema default: the API server fills it when absent. Kruise's webhook drops an
        # empty value (Go `omitempty`) and the API server then defaults it, so "" is stored as
        # `.*` there too; a manifest written for Kruise must not be refused here.
        policy["targetContainersNameRegex"] = ".*"
    return container


def _default_field(container: JsonDict, key: str, field: str, value: str) -> None:
    holder = container.get(key)
    if holder is None:
        holder = {}
        container[key] = holder
    if isinstance(holder, dict) and not holder.get(field):
        holder[field] = value


def _dicts(value: object) -> list[JsonDict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _default_field_selector(selector: object) -> None:
    if isinstance(selector, dict) and not selector.get("apiVersion"):
        selector["apiVersion"] = "v1"


def _default_probe(probe: JsonDict) -> None:
    for key, value in (
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ):
        if not probe.get(key):
            probe[key] = value
    _default_http_get(probe.get("httpGet"))


def _default_http_get(action: object) -> None:
    if isinstance(action, dict):
        if not action.get("path"):
            action["path"] = "/"
        if not action.get("scheme"):
            action["scheme"] = "HTTP"


def _round_up_milli(raw: object) -> object:
    """The quantity as Go writes it back after `RoundUp(Milli)`; unparsable values unchanged."""
    try:
        return resources_expr.quantity_from_json(raw).round_up_milli().to_json()
    except resources_expr.QuantityError:
        return raw


# --- image pull policy ------------------------------------------------------------------------

# The distribution/reference grammar (as vendored by Kubernetes 1.32).
_ALNUM = "[a-z0-9]+"
_SEPARATOR = "(?:[._]|__|[-]+)"
_PATH_COMPONENT = f"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = f"(?:{_DOMAIN_COMPONENT}(?:\\.{_DOMAIN_COMPONENT})*|\\[(?:[a-fA-F0-9:]+)\\])"
_NAME = f"(?:{_HOST}(?::[0-9]+)?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(f"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?")
_IDENTIFIER = re.compile("[a-f0-9]{64}")
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_MAX_NAME_LENGTH = 255


def image_pull_policy(image: object) -> str:
    """`Always` for a `:latest` or untagged, undigested image; `IfNotPresent` otherwise.

    Kubernetes' rule (`SetDefaults_Container` via `ParseImageName`): an image that does not parse
    as a normalized reference has no tag, so it gets `IfNotPresent` too.
    """
    tag = _image_tag(image) if isinstance(image, str) else None
    return "Always" if tag == "latest" else "IfNotPresent"


def _image_tag(image: str) -> str | None:
    """The tag ParseImageName reports: "latest" when neither tag nor digest; None if invalid."""
    if _IDENTIFIER.fullmatch(image):
        return None
    slash = image.find("/")
    if slash == -1 or (
        not any(c in image[:slash] for c in ".:")
        and image[:slash] != "localhost"
        and image[:slash].lower() == image[:slash]
    ):
        domain, remainder = "docker.io", image
    else:
        domain, remainder = image[:slash], image[slash + 1 :]
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in remainder:
        remainder = f"library/{remainder}"
    colon = remainder.find(":")
    remote_name = remainder[:colon] if colon >= 0 else remainder
    if remote_name.lower() != remote_name:
        return None
    match = _REFERENCE.fullmatch(f"{domain}/{remainder}")
    if match is None or len(match.group(1)) > _MAX_NAME_LENGTH:
        return None
    tag, digest = match.group(2), match.group(3)
    if digest is not None and not _is_supported_digest(digest):
        return None
    if tag is None and digest is None:
        return "latest"
    return tag


def _is_supported_digest(digest: str) -> bool:
    algorithm, _, encoded = digest.partition(":")
    length = _DIGEST_LENGTHS.get(algorithm)
    return length == len(encoded) and re.fullmatch("[a-f0-9]+", encoded) is not None


# --- volumes ----------------------------------------------------------------------------------


def default_volume(body: Mapping[str, object]) -> JsonDict:
    """A defaulted copy of one volume (Kruise `SetDefaultPodVolumes`): emptyDir for a volume
    without a source, `defaultMode: 420` for file projections, hostPath `type: ""`, field
    selector apiVersion `v1`, token expiry 3600 s.
    """
    volume: JsonDict = copy.deepcopy(dict(body))
    if all(volume.get(source) is None for source in VOLUME_SOURCES):
        volume["emptyDir"] = {}
    for source, defaults in _SOURCE_DEFAULTS.items():
        section = volume.get(source)
        if isinstance(section, dict):
            defaults(section)
    return volume


def _host_path(section: JsonDict) -> None:
    if section.get("type") is None:
        section["type"] = ""


def _mode(section: JsonDict) -> None:
    if section.get("defaultMode") is None:
        section["defaultMode"] = DEFAULT_FILE_MODE


def _downward_api(section: JsonDict) -> None:
    _mode(section)
    for item in _dicts(section.get("items")):
        _default_field_selector(item.get("fieldRef"))


def _projected(section: JsonDict) -> None:
    _mode(section)
    for source in _dicts(section.get("sources")):
        downward = source.get("downwardAPI")
        if isinstance(downward, dict):
            for item in _dicts(downward.get("items")):
                _default_field_selector(item.get("fieldRef"))
        token = source.get("serviceAccountToken")
        if isinstance(token, dict) and token.get("expirationSeconds") is None:
            token["expirationSeconds"] = TOKEN_EXPIRATION_SECONDS


_SOURCE_DEFAULTS: Final[dict[str, Callable[[JsonDict], None]]] = {
    "hostPath": _host_path,
    "secret": _mode,
    "downwardAPI": _downward_api,
    "configMap": _mode,
    "projected": _projected,
}
