"""`inject`: everything that happens to one pod being created, from matching to the record.

The steps live in their own modules (`matching`, `pod_annotations`, `sidecar_container`,
`placement`); this one runs them in Kruise's order, so the order can be read in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sidecarset.core import pod_contract
from sidecarset.core.errors import FieldError
from sidecarset.core.injection.matching import (
    PodSkip,
    Skip,
    is_active,
    is_injected,
    select_sidecarsets,
)
from sidecarset.core.injection.placement import place, volumes_and_secrets
from sidecarset.core.injection.pod_annotations import patch_metadata, read_hashes, record_injection
from sidecarset.core.injection.pod_json import as_mapping, name_of, objects, str_map, text
from sidecarset.core.injection.result import (
    InjectedContainer,
    Injection,
    InjectionDenied,
    Placement,
    PodShape,
)
from sidecarset.core.injection.sidecar_container import PodContext, build_sidecarset
from sidecarset.core.model import JsonObject, SidecarSet

__all__ = ["inject"]


def inject(
    pod: Mapping[str, object],
    sidecarsets: Sequence[SidecarSet],
    namespace_labels: Mapping[str, str] | None,
    *,
    now: str,
    request_namespace: str,
) -> Injection:
    """Decide what the matching SidecarSets add to a pod being created (behaviour.md §4, §8.1).

    `sidecarsets` are defaulted (hash annotations present), each already the revision to inject
    (`choose_revision`). `namespace_labels` are the labels of the pod's namespace, None when it
    was not found. `now` (RFC 3339) stamps the hash annotations. Pure: `pod` is not modified.

    Raises `InjectionDenied` when the pod cannot be admitted (malformed Kruise annotation,
    MergePatchJson onto non-JSON, resourcesPolicy with no target or a failing expression).
    """
    metadata = as_mapping(pod.get("metadata"))
    spec = as_mapping(pod.get("spec"))
    labels = str_map(metadata.get("labels"))
    annotations = str_map(metadata.get("annotations"))
    namespace = text(metadata.get("namespace")) or request_namespace or "default"
    shape = _pod_shape(pod)
    if not is_active(pod):
        return Injection(namespace=namespace, shape=shape, pod_skip=PodSkip.INACTIVE)
    if pod_contract.is_injection_opted_out(labels, annotations):
        return Injection(namespace=namespace, shape=shape, pod_skip=PodSkip.OPTED_OUT)
    timestamp = pod_contract.normalize_timestamp(now)

    matched, passed_over, warnings = select_sidecarsets(
        sidecarsets, namespace=namespace, namespace_labels=namespace_labels, labels=labels
    )
    if not matched:
        return Injection(
            namespace=namespace, shape=shape, passed_over=passed_over, warnings=tuple(warnings)
        )

    hashes = read_hashes(annotations, pod_contract.HASH_ANNOTATION)
    hashes_without_image = read_hashes(annotations, pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION)
    pending: list[SidecarSet] = []
    for sidecarset in matched:
        if is_injected(sidecarset, spec, hashes):
            passed_over[sidecarset.name] = Skip.ALREADY_INJECTED
        else:
            pending.append(sidecarset)
    matched_names = tuple(s.name for s in matched)
    if not pending:
        return Injection(
            namespace=namespace,
            shape=shape,
            matched=matched_names,
            passed_over=passed_over,
            warnings=tuple(warnings),
        )

    final = dict(annotations)
    for sidecarset in pending:
        final = patch_metadata(final, sidecarset)

    context = PodContext(
        labels=labels,
        annotations=final,
        containers=tuple(objects(spec.get("containers"))),
        init_containers=tuple(objects(spec.get("initContainers"))),
        volume_names=frozenset(name_of(v) for v in objects(spec.get("volumes"))),
        sidecar_names=frozenset(
            c.name for s in matched for c in (*s.spec.init_containers, *s.spec.containers)
        ),
    )
    built = {s.name: build_sidecarset(s, context, warnings) for s in pending}
    injected = tuple(
        s.name for s in pending if built[s.name].init_containers or built[s.name].containers
    )

    init_candidates = sorted(
        (c for s in pending for c in built[s.name].init_containers),
        key=lambda c: text(c.body.get("name")),
    )
    init_containers = place(spec.get("initContainers"), init_candidates, warnings, "initContainer")
    containers = place(
        spec.get("containers"),
        [c for s in pending for c in built[s.name].containers],
        warnings,
        "container",
    )
    _refuse_cross_list_names(spec, init_containers, containers)
    volumes: tuple[JsonObject, ...] = ()
    secrets: tuple[str, ...] = ()
    duplicate_secrets: tuple[int, ...] = ()
    if injected:
        volumes, secrets, duplicate_secrets = volumes_and_secrets(pending, built, spec)
        record_injection(
            final,
            annotations,
            [s for s in pending if s.name in injected],
            built,
            hashes=hashes,
            hashes_without_image=hashes_without_image,
            timestamp=timestamp,
            listed=matched_names,
            warnings=warnings,
        )

    changes = {k: v for k, v in final.items() if annotations.get(k) != v}
    return Injection(
        namespace=namespace,
        shape=shape,
        matched=matched_names,
        injected=injected,
        passed_over=passed_over,
        containers=containers,
        init_containers=init_containers,
        volumes=volumes,
        image_pull_secrets=secrets,
        duplicate_pull_secrets=duplicate_secrets,
        annotations=changes,
        overwritten_annotations=tuple(sorted(k for k in changes if k in annotations)),
        warnings=tuple(warnings),
    )


def _refuse_cross_list_names(
    spec: Mapping[str, object],
    init_containers: Sequence[InjectedContainer],
    containers: Sequence[InjectedContainer],
) -> None:
    """Deny a sidecar whose name is taken in the pod's other container list.

    Container names are unique across `initContainers` and `containers` together. A name met in
    the same list replaces that container (Kruise's rule, in `place`); one met in the other list
    would give the API server a pod it rejects as "Duplicate value", without saying which
    SidecarSet caused it (Kruise creates that pod and lets it be rejected). Naming both here is
    the same refusal, made readable.
    """
    pod_names = {
        "spec.initContainers": {name_of(c) for c in objects(spec.get("initContainers"))},
        "spec.containers": {name_of(c) for c in objects(spec.get("containers"))},
    }
    added = {
        "spec.initContainers": init_containers,
        "spec.containers": containers,
    }
    for field, other in (
        ("spec.containers", "spec.initContainers"),
        ("spec.initContainers", "spec.containers"),
    ):
        taken = pod_names[other] | {
            text(c.body.get("name")) for c in added[other] if c.placement is not Placement.IN_PLACE
        }
        for c in added[field]:
            name = text(c.body.get("name"))
            if c.placement is not Placement.IN_PLACE and name in taken:
                raise InjectionDenied(
                    FieldError.duplicate(
                        f"{field}[{c.index}].name",
                        name,
                        f"SidecarSet {c.sidecarset} injects {name!r}, a name already used in the"
                        f" pod's {other}; container names must be unique across both lists",
                    )
                )


def _pod_shape(pod: Mapping[str, object]) -> PodShape:
    """Which of the lists and maps a patch extends already exist in the pod."""
    metadata = pod.get("metadata")
    spec = pod.get("spec")
    spec_map = as_mapping(spec)

    def length(key: str) -> int | None:
        value = spec_map.get(key)
        return len(value) if isinstance(value, list) else None

    return PodShape(
        has_metadata=isinstance(metadata, Mapping),
        has_annotations=isinstance(as_mapping(metadata).get("annotations"), Mapping),
        has_spec=isinstance(spec, Mapping),
        containers=length("containers"),
        init_containers=length("initContainers"),
        volumes=length("volumes"),
        image_pull_secrets=length("imagePullSecrets"),
    )
