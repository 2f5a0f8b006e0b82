"""Where one pod stands against one SidecarSet: matched, updated, candidate, blocked or in flight.

`classify` is the per-pod judgement behind rollout planning (behaviour.md §7.2) and status
(§9.1); it also reports whether the pod's sidecars run what its spec says ("state consistent",
§7.6) and whether the pod is available. Everything is computed from a `PodView` and the
SidecarSet alone.

Differences from Kruise, on purpose:

* Completion of an in-place update also requires the container status `image` to name the spec
  image (after normalising `docker.io/library/` and `:latest` forms); a changed imageID alone is
  not enough, so a tag that was re-pushed or two tags sharing an imageID cannot fake completion
  (behaviour.md §12.4). Digest images are judged per container, not all-or-nothing.
* Native sidecars (init containers with `restartPolicy: Always`) are sidecars like any other:
  they are checked for consistency and may be updated in place.
* A pod without `kruise.io/sidecarset-injected-list` but with this SidecarSet's entry in its hash
  annotation (pods injected by very old Kruise) is matched, so its list can be backfilled
  (behaviour.md §7.5 step 4); Kruise never matches such pods, which leaves that step unreachable.
"""

from __future__ import annotations

import operator
from collections.abc import Collection, Mapping, Sequence
from enum import StrEnum
from typing import Literal

import msgspec

from sidecarset.core import ordering, pod_contract
from sidecarset.core.model import SidecarContainer, SidecarSet, SidecarSetSpec
from sidecarset.core.podview import ContainerStatusView, PodKey, PodView

__all__ = [
    "Blocker",
    "Judged",
    "Judgements",
    "Location",
    "PodState",
    "PodStateKind",
    "Sidecar",
    "classify",
    "hot_upgrade_pending",
    "is_flip_ready",
    "is_matched",
    "is_pod_available",
    "is_state_consistent",
    "is_structurally_consistent",
    "is_updated",
    "normalize_image",
    "same_image",
    "sidecar_container_names",
    "sidecars",
    "working_twin",
]

Location = Literal["containers", "initContainers"]
"""Where a sidecar lives in a pod spec, named as the pod spec field."""


class Sidecar(msgspec.Struct, frozen=True, kw_only=True):
    """A sidecar of a SidecarSet as it lives in a pod: where, and under which container names.

    `names` is `(S,)` for a cold sidecar and `(S-1, S-2)` for a HotUpgrade one.
    """

    spec: SidecarContainer
    location: Location

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_hot(self) -> bool:
        return self.spec.is_hot_upgrade

    @property
    def names(self) -> tuple[str, ...]:
        return pod_contract.hot_upgrade_names(self.name) if self.is_hot else (self.name,)

    @property
    def empty_image(self) -> str:
        return self.spec.upgrade_strategy.hot_upgrade_empty_image


def sidecars(sidecarset: SidecarSet) -> tuple[Sidecar, ...]:
    """The in-place-updatable sidecars: native sidecar init containers, then containers.

    Plain init containers run once at pod start and are never updated.
    """
    return _derived(sidecarset)[0]


def _container_places(sidecarset: SidecarSet) -> tuple[tuple[Location, str], ...]:
    """(location, container name) of every sidecar container, both twins of hot ones."""
    return _derived(sidecarset)[1]


_Derived = tuple[tuple[Sidecar, ...], tuple[tuple[Location, str], ...]]


def _derived(sidecarset: SidecarSet) -> _Derived:
    # Asked for every pod of every round: remembered per SidecarSet object (held, so its id
    # cannot be reused while remembered).
    cached = _derived_of.get(id(sidecarset))
    if cached is not None and cached[0] is sidecarset:
        return cached[1]
    native = tuple(
        Sidecar(spec=c, location="initContainers")
        for c in sidecarset.spec.init_containers
        if c.is_native_sidecar
    )
    regular = tuple(Sidecar(spec=c, location="containers") for c in sidecarset.spec.containers)
    found = native + regular
    derived = (found, tuple((s.location, name) for s in found for name in s.names))
    if len(_derived_of) >= 1024:
        _derived_of.clear()
    _derived_of[id(sidecarset)] = (sidecarset, derived)
    return derived


_derived_of: dict[int, tuple[SidecarSet, _Derived]] = {}


def sidecar_container_names(sidecarset: SidecarSet) -> tuple[str, ...]:
    """Every pod container name the SidecarSet's sidecars occupy (both twins of hot sidecars)."""
    return tuple(name for sidecar in sidecars(sidecarset) for name in sidecar.names)


class PodStateKind(StrEnum):
    UPDATED = "updated"
    """The pod's hash entry equals the SidecarSet's hash: nothing left to do for it."""
    CANDIDATE = "candidate"
    """Outdated and upgradable in place: waits for its turn."""
    NOT_UPGRADABLE = "notUpgradable"
    """Outdated, and the difference cannot be applied to a live pod (`blocker` says why)."""
    IN_FLIGHT = "inFlight"
    """Outdated, and a previous in-place update of a sidecar is still rolling in the kubelet."""


class Blocker(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Why a pod cannot be updated in place: the field to look at, and what is wrong with it."""

    field: str
    message: str


class PodState(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One pod judged against one SidecarSet.

    `consistent`: every sidecar container runs what the pod spec says (behaviour.md §7.6).
    `ready`: Running, Ready, not being deleted, and no hot upgrade awaiting its reset (§9.1).
    `hot_upgrade_pending`: some hot sidecar's idle twin still has a real image (§8.3).
    """

    kind: PodStateKind
    consistent: bool
    ready: bool
    hot_upgrade_pending: bool = False
    blocker: Blocker | None = None
    in_flight: tuple[str, ...] = ()

    @property
    def updated(self) -> bool:
        return self.kind is PodStateKind.UPDATED

    @property
    def available(self) -> bool:
        """Counted in `readyPods`: consistent and ready."""
        return self.consistent and self.ready


def classify(sidecarset: SidecarSet, pod: PodView) -> PodState:
    """Judge a matched pod (see `is_matched`) against the SidecarSet; total for any pod.

    Order of judgement (behaviour.md §7.2): updated, then not upgradable (hash-without-image
    differs or cannot be read, a native sidecar is missing), then in flight (a sidecar
    container is Ready but not yet consistent with its spec), else candidate. A not-ready or
    crash-looping sidecar is still a candidate: that is how a bad image gets replaced. A pod
    whose `kruise.io/sidecarset-hash` cannot be read is not updated, as in Kruise, and its update
    rewrites the annotation (`rollout.PodUpdate.repairs`).
    """
    return _judge_with(sidecarset, pod, _pod_facts(sidecarset, pod))


class _Facts(msgspec.Struct, frozen=True, gc=False):
    """What judging a pod reads of the SidecarSet except its images and hash: the sidecars'
    verdicts (consistent or not), and whether the pod is consistent, mid hot upgrade and ready.
    An edit of images only (a new hash) leaves them as they were (`Judgements`)."""

    verdicts: dict[str, bool]
    consistent: bool
    pending: bool
    ready: bool


def _pod_facts(sidecarset: SidecarSet, pod: PodView) -> _Facts:
    verdicts = _verdicts(sidecarset, pod)
    consistent = len(pod.spec.containers) == len(pod.status.container_statuses) and all(
        verdicts.values()
    )
    pending = hot_upgrade_pending(sidecarset, pod)
    return _Facts(verdicts, consistent, pending, pod.is_running_and_ready and not pending)


def _judge_with(sidecarset: SidecarSet, pod: PodView, facts: _Facts) -> PodState:
    """`classify`'s answer from the pod's facts: the hash decides the rest."""
    judged = PodState(
        kind=PodStateKind.CANDIDATE,
        consistent=facts.consistent,
        ready=facts.ready,
        hot_upgrade_pending=facts.pending,
    )
    try:
        updated = is_updated(sidecarset, pod)
    except pod_contract.MalformedAnnotation:
        # As Kruise: an unreadable hash annotation means "not updated"; the update rewrites it.
        updated = False
    if updated:
        return msgspec.structs.replace(judged, kind=PodStateKind.UPDATED)

    blocker = _upgrade_blocker(sidecarset, pod)
    if blocker is not None:
        return msgspec.structs.replace(judged, kind=PodStateKind.NOT_UPGRADABLE, blocker=blocker)

    if facts.consistent:
        return judged  # no sidecar is still rolling
    rolling = tuple(
        name
        for sidecar in sidecars(sidecarset)
        for name in sidecar.names
        if _is_ready_container(pod, sidecar.location, name) and not facts.verdicts[name]
    )
    if rolling:
        return msgspec.structs.replace(judged, kind=PodStateKind.IN_FLIGHT, in_flight=rolling)
    return judged


def is_updated(sidecarset: SidecarSet, pod: PodView) -> bool:
    """The pod's `kruise.io/sidecarset-hash` entry equals the SidecarSet's hash annotation.

    Raises `pod_contract.MalformedAnnotation` when the pod's hash annotation cannot be read.
    """
    entry = pod_contract.read_upgrade_spec(
        pod.annotations, pod_contract.HASH_ANNOTATION, sidecarset.name
    )
    pod_hash = entry.hash if entry is not None else ""
    return pod_hash == sidecarset.metadata.annotations.get(pod_contract.HASH_ANNOTATION, "")


def _upgrade_blocker(sidecarset: SidecarSet, pod: PodView) -> Blocker | None:
    set_hash = sidecarset.metadata.annotations.get(pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION, "")
    try:
        entry = pod_contract.read_upgrade_spec(
            pod.annotations, pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION, sidecarset.name
        )
    except pod_contract.MalformedAnnotation as exc:
        return Blocker(field=exc.error.path, message=exc.error.detail)
    if entry is None or not entry.hash:
        return Blocker(
            field=pod_contract.annotation_path(pod_contract.HASH_WITHOUT_IMAGE_ANNOTATION),
            message=f"the pod has no hash-without-image entry for SidecarSet {sidecarset.name}",
        )
    if entry.hash != set_hash:
        message = _changed_message(sidecarset, entry)
        return Blocker(field=_changed_field(sidecarset), message=message)
    for sidecar in sidecars(sidecarset):
        if sidecar.location == "initContainers" and any(
            pod.init_container(name) is None for name in sidecar.names
        ):
            return Blocker(
                field=f"spec.initContainers[{sidecar.name}]",
                message=f"native sidecar {sidecar.name} is not in the pod; it can only arrive "
                "with a new pod",
            )
    return None


def _changed_field(sidecarset: SidecarSet) -> str:
    if any(c.is_native_sidecar for c in sidecarset.spec.init_containers):
        return "spec.containers or spec.initContainers"
    return "spec.containers"


def _changed_message(sidecarset: SidecarSet, entry: pod_contract.UpgradeSpec) -> str:
    current = {sidecar.name for sidecar in sidecars(sidecarset)}
    injected = set(entry.sidecar_list or ())
    base = (
        "a sidecar field other than image changed since the pod was injected "
        "(kruise.io/sidecarset-hash-without-image differs); only images can change in place, "
        "so the change reaches this pod when it is recreated"
    )
    if entry.sidecar_list is None or injected == current:
        return base
    parts = []
    if added := sorted(current - injected):
        parts.append("added " + ", ".join(added))
    if removed := sorted(injected - current):
        parts.append("removed " + ", ".join(removed))
    return f"sidecars {'; '.join(parts)} since the pod was injected; {base}"


Judged = tuple[PodKey, PodView, PodState]
"""A matched pod with its key and its state against the SidecarSet."""

_BY_KEY = operator.itemgetter(0)


class Judgements:
    """What `is_matched` and `classify` said about each pod, kept from one round to the next.

    Judging every pod is nearly all of a round's work with thousands of pods, and between two
    rounds almost every pod, and the SidecarSet, are the very same immutable objects (a store
    keeps an object until its resource changes). `judge` reuses a judgement when the pod is the
    very object it was made from and the SidecarSet reads the same to a judge (same name,
    annotations and spec: a status write alone makes a new object that judges alike), judges the
    rest, and keeps only the pods of its latest call, so it never holds on to a pod the caller
    has let go. When nothing changed at all, the sorted answer of the previous call is returned
    as it was. After an edit of the sidecars' images only, each unchanged pod keeps its facts
    (matched, the containers' verdicts, readiness: none reads an image of the SidecarSet) and
    only the hash is compared again. Results are exactly those of `is_matched` and `classify`.
    """

    def __init__(self) -> None:
        self._sidecarset: SidecarSet | None = None
        self._by_pod: dict[int, tuple[PodView, PodKey, _Facts | None, PodState | None]] = {}
        self._sorted: tuple[Judged, ...] = ()
        self.sort_keys = ordering.SortKeys()
        """The update order's keys of the same pods, kept alike (see `ordering.order`)."""

    def judge(self, sidecarset: SidecarSet, pods: Sequence[PodView]) -> tuple[Judged, ...]:
        """Each matched pod among `pods` with its key and state, sorted by key."""
        previous = self._sidecarset
        alike = previous is not None and (
            sidecarset is previous or _judged_alike(sidecarset, previous)
        )
        facts_alike = alike or (previous is not None and _facts_alike(sidecarset, previous))
        known = self._by_pod if facts_alike else {}
        kept: dict[int, tuple[PodView, PodKey, _Facts | None, PodState | None]] = {}
        changed = False
        for pod in pods:
            hit = known.get(id(pod))
            if hit is None or hit[0] is not pod:
                changed = True
                facts = _pod_facts(sidecarset, pod) if is_matched(sidecarset, pod) else None
                state = None if facts is None else _judge_with(sidecarset, pod, facts)
                hit = (pod, pod.key, facts, state)
            elif not alike and hit[2] is not None:
                hit = (pod, hit[1], hit[2], _judge_with(sidecarset, pod, hit[2]))
            kept[id(pod)] = hit
        self._sidecarset, self._by_pod = sidecarset, kept
        if changed or not alike or len(kept) != len(known):
            judged = [
                (key, pod, state) for pod, key, _, state in kept.values() if state is not None
            ]
            judged.sort(key=_BY_KEY)
            self._sorted = tuple(judged)
        return self._sorted


def _judged_alike(a: SidecarSet, b: SidecarSet) -> bool:
    """Everything `is_matched` and `classify` read of a SidecarSet is equal."""
    return (
        a.metadata.name == b.metadata.name
        and a.metadata.annotations == b.metadata.annotations
        and a.spec == b.spec
    )


def _facts_alike(a: SidecarSet, b: SidecarSet) -> bool:
    """Equal but for the sidecars' images and the hash that follows them: a pod's `_Facts`
    against one hold against the other."""
    return (
        a.metadata.name == b.metadata.name
        and _without_hash(a.metadata.annotations) == _without_hash(b.metadata.annotations)
        and _without_images(a.spec) == _without_images(b.spec)
    )


def _without_hash(annotations: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in annotations.items() if k != pod_contract.HASH_ANNOTATION}


def _without_images(spec: SidecarSetSpec) -> SidecarSetSpec:
    return msgspec.structs.replace(
        spec,
        containers=tuple(_without_image(c) for c in spec.containers),
        init_containers=tuple(_without_image(c) for c in spec.init_containers),
    )


def _without_image(container: SidecarContainer) -> SidecarContainer:
    body = {k: v for k, v in container.body.items() if k != "image"}
    return msgspec.structs.replace(container, image="", body=body)


# --- matching (behaviour.md §3.2) ----------------------------------------------------------------


def is_matched(sidecarset: SidecarSet, pod: PodView) -> bool:
    """The pod belongs to this SidecarSet's rollout and status (behaviour.md §3.2).

    The caller has already selected the pod with `spec.selector` and the namespace scope. This
    adds: active, injected by this SidecarSet, and structurally consistent with it.
    """
    return (
        pod.is_active
        and _is_injected(sidecarset.name, pod)
        and is_structurally_consistent(sidecarset, pod)
    )


def _is_injected(name: str, pod: PodView) -> bool:
    if pod.annotations.get(pod_contract.INJECTED_LIST_ANNOTATION, ""):
        return name in pod_contract.read_injected_list(pod.annotations)
    try:
        entries = pod_contract.read_upgrade_specs(pod.annotations, pod_contract.HASH_ANNOTATION)
    except pod_contract.MalformedAnnotation:
        return False
    return name in entries


def is_structurally_consistent(sidecarset: SidecarSet, pod: PodView) -> bool:
    """Every cold sidecar container exists in the pod; every hot one has both twins and a
    working-twin entry. Pods injected with the other upgrade type fail this and are left alone
    (behaviour.md §8.5). Native sidecars are not checked: a missing one makes it not upgradable.
    """
    try:
        working = pod_contract.read_working_hot_upgrade(pod.annotations)
    except pod_contract.MalformedAnnotation:
        working = {}
    for container in sidecarset.spec.containers:
        if container.is_hot_upgrade:
            first, second = pod_contract.hot_upgrade_names(container.name)
            if container.name not in working or pod.container(first) is None:
                return False
            if pod.container(second) is None:
                return False
        elif pod.container(container.name) is None:
            return False
    return True


# --- hot upgrade ------------------------------------------------------------------------------


def working_twin(sidecar: Sidecar, pod: PodView) -> tuple[str, str]:
    """(working, idle) twin names of a hot sidecar, from the working-twin annotation.

    As Kruise: the working twin is `S-1` only when the annotation says so, else `S-2`.
    """
    first, second = pod_contract.hot_upgrade_names(sidecar.name)
    try:
        working = pod_contract.read_working_hot_upgrade(pod.annotations)
    except pod_contract.MalformedAnnotation:
        working = {}
    if working.get(sidecar.name) == first:
        return first, second
    return second, first


def hot_upgrade_pending(sidecarset: SidecarSet, pod: PodView) -> bool:
    """Some hot sidecar's idle twin still runs a real image: the reset (§8.3) has not happened."""
    for sidecar in sidecars(sidecarset):
        if not sidecar.is_hot:
            continue
        _, idle = working_twin(sidecar, pod)
        image = _spec_image(pod, sidecar.location, idle)
        if image is not None and image != sidecar.empty_image:
            return True
    return False


def is_flip_ready(sidecarset: SidecarSet, pod: PodView) -> bool:
    """The pod's hot upgrade may be completed by resetting the idle twins (behaviour.md §8.3).

    A hot upgrade is pending, every sidecar container except the idle twins is consistent, every
    working twin reports Ready, and the pod is Running and Ready or every container except the
    idle twins reports Ready. The working twins are checked themselves, beyond Kruise: the reset
    stops the only other twin serving, and a pod Ready condition is derived data that may lag
    the container statuses.
    """
    if not hot_upgrade_pending(sidecarset, pod):
        return False
    hot = [(s.location, *working_twin(s, pod)) for s in sidecars(sidecarset) if s.is_hot]
    if not all(_is_ready_container(pod, location, working) for location, working, _ in hot):
        return False
    idle = {idle for _, _, idle in hot}
    checked = {name for name in sidecar_container_names(sidecarset) if name not in idle}
    if not is_state_consistent(sidecarset, pod, checked):
        return False
    if pod.is_running_and_ready:
        return True
    statuses = pod.status.container_statuses + pod.status.init_container_statuses
    return all(status.ready for status in statuses if status.name not in idle)


# --- readiness and state consistency (behaviour.md §9.1, §7.6) -----------------------------------


def is_pod_available(sidecarset: SidecarSet, pod: PodView) -> bool:
    """Counted in `readyPods`: state consistent, Running and Ready, no pending hot-upgrade reset."""
    return (
        pod.is_running_and_ready
        and not hot_upgrade_pending(sidecarset, pod)
        and is_state_consistent(sidecarset, pod)
    )


def is_state_consistent(
    sidecarset: SidecarSet, pod: PodView, names: Collection[str] | None = None
) -> bool:
    """The kubelet runs what the pod spec says for these sidecar containers (default: all).

    Per container: a digest image is consistent when the status imageID has the same repository
    and digest. Otherwise, a container we never updated in place is consistent; one we did is
    consistent once its status image names the spec image. When the runtime reports a bare image
    ID as the status image (no name to compare), a changed imageID is taken as done, as Kruise
    does. A malformed in-place-update-state annotation counts as no record.
    """
    verdicts = _verdicts(sidecarset, pod)
    # Kruise checks the container count even when no name is checked.
    regular_ok = len(pod.spec.containers) == len(pod.status.container_statuses)
    checked = verdicts.keys() if names is None else names
    return regular_ok and all(verdicts.get(name, True) for name in checked)


def _verdicts(sidecarset: SidecarSet, pod: PodView) -> dict[str, bool]:
    """Per sidecar container name: consistent (names absent from the pod pass, as Kruise)."""
    regular_ok = len(pod.spec.containers) == len(pod.status.container_statuses)
    init_ok = len(pod.spec.init_containers) == len(pod.status.init_container_statuses)
    recorded = _recorded_image_ids(sidecarset.name, pod.annotations)
    verdicts: dict[str, bool] = {}
    for location, name in _container_places(sidecarset):
        ok = regular_ok and (init_ok or location == "containers")
        image = _spec_image(pod, location, name)
        if ok and image is not None:
            status = _status(pod, location, name)
            ok = status is not None and _container_consistent(image, status, recorded.get(name))
        verdicts[name] = ok
    return verdicts


def _container_consistent(image: str, status: ContainerStatusView, recorded: str | None) -> bool:
    if _digest_of(image):
        return _digest_matches(image, status.image_id)
    if recorded is None:
        return True
    if same_image(status.image, image):
        return True
    if _is_bare_image_id(status.image):
        return status.image_id != recorded
    return False


def _recorded_image_ids(name: str, annotations: Mapping[str, str]) -> dict[str, str]:
    try:
        states = pod_contract.read_inplace_update_state(annotations)
    except pod_contract.MalformedAnnotation:
        return {}
    state = states.get(name)
    if state is None or state.last_image_ids is None:
        return {}
    return dict(state.last_image_ids)


def _is_ready_container(pod: PodView, location: Location, name: str) -> bool:
    status = _status(pod, location, name)
    return status is not None and status.ready


def _spec_image(pod: PodView, location: Location, name: str) -> str | None:
    container = pod.container(name) if location == "containers" else pod.init_container(name)
    return None if container is None else container.image


def _status(pod: PodView, location: Location, name: str) -> ContainerStatusView | None:
    if location == "containers":
        return pod.container_status(name)
    return pod.init_container_status(name)


# --- image references -------------------------------------------------------------------------

_DEFAULT_DOMAIN = "docker.io"
_OFFICIAL_PREFIX = "library/"


def normalize_image(reference: str) -> str:
    """The fully qualified form of an image reference, as the container runtimes report it.

    `nginx` -> `docker.io/library/nginx:latest`; `index.docker.io/x/y:1` -> `docker.io/x/y:1`;
    a transport prefix such as `docker-pullable://` is dropped; digests are kept (no `:latest`
    is added to a digest reference). Strings that are not references are returned trimmed.
    """
    ref = _strip_scheme(reference.strip())
    name, _, digest = ref.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    if not name:
        return ref
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost"):
        domain, path = _DEFAULT_DOMAIN, name
    else:
        domain, path = first, rest
    if domain == "index.docker.io":
        domain = _DEFAULT_DOMAIN
    if domain == _DEFAULT_DOMAIN and "/" not in path:
        path = _OFFICIAL_PREFIX + path
    result = f"{domain}/{path}"
    if tag:
        result += f":{tag}"
    elif not digest:
        result += ":latest"
    if digest:
        result += f"@{digest}"
    return result


def same_image(a: str, b: str) -> bool:
    """Two references name the same image once normalised (`nginx` is `docker.io/library/nginx`)."""
    return a == b or normalize_image(a) == normalize_image(b)


def _strip_scheme(ref: str) -> str:
    scheme, sep, rest = ref.partition("://")
    return rest if sep and "/" not in scheme else ref


def _digest_of(ref: str) -> str:
    _, _, digest = _strip_scheme(ref).partition("@")
    return digest


def _is_bare_image_id(ref: str) -> bool:
    stripped = _strip_scheme(ref)
    return stripped.startswith("sha256:") and "/" not in stripped


def _repository(ref: str) -> str:
    return normalize_image(ref.partition("@")[0]).rsplit(":", 1)[0] if ref else ""


def _digest_matches(image: str, image_id: str) -> bool:
    """Spec image `repo@sha256:x` against a status imageID (`docker-pullable://repo@sha256:x`)."""
    stripped = _strip_scheme(image_id)
    digest = _digest_of(image)
    if "@" not in stripped:
        # A bare image ID names no repository; compare the digest alone.
        return stripped == digest
    return _digest_of(stripped) == digest and _repository(stripped) == _repository(
        _strip_scheme(image)
    )
