"""What a kubelet would report next for one pod: pure, so its rules are unit-tested.

`step(pod, marks, now, rules)` reads the pod as the API server has it (spec and status) and
returns the `pods/status` patch a kubelet would write next, when to look again, and the updated
transition marks (monotonic times of the last transition per container; they only make the
configured delays precise, and a restarted simulator without them simply moves on at once).

Rules mirrored from the kubelet:
- init containers run in order; a plain one must complete, a native sidecar (restartPolicy
  Always) must have started, before the next starts; app containers start after all of them;
  once an app container has started the pod stays Initialized, even while a native sidecar
  restarts;
- a changed image of a running app container or native sidecar restarts only that container:
  `lastState.terminated`, `restartCount + 1`, then a new `containerID` and `imageID`; a changed
  image of a completed plain init container restarts nothing;
- Ready = every container ready AND every readiness gate condition True; the simulator never
  writes gate conditions itself;
- an image matching the failure rule starts, crashes and restarts forever with a growing
  `restartCount`, never ready.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sidecarset.simulator import images

Pod = Mapping[str, Any]
ContainerStatus = dict[str, Any]


@dataclass(frozen=True)
class Rules:
    start_delay: float = 0.2
    """Seconds from ContainerCreating to running (image pull + start)."""
    ready_delay: float = 0.3
    """Seconds from running to ready (the readiness probe's first success)."""
    crash_after: float = 0.5
    """Seconds a failing image runs before it crashes."""
    crash_backoff: float = 1.0
    """Seconds before a crashed container is started again (kept short for tests)."""
    stop_delay: float = 0.0
    """Seconds an old container takes to stop after its image changed in place. A real kubelet
    sends SIGTERM and waits up to the pod's grace period; a process that ignores SIGTERM (a
    shell as PID 1) is SIGKILLed at its end (exit code 137). Until then it keeps running, on
    its old image. 0: it stops at once, cleanly (exit code 0)."""
    failing_images: re.Pattern[str] | None = field(default_factory=lambda: re.compile(r":broken"))
    """Image references matching this never become ready (crash loop)."""

    def fails(self, image: str) -> bool:
        return self.failing_images is not None and bool(self.failing_images.search(image))


@dataclass(frozen=True)
class Step:
    patch: dict[str, Any] | None
    """Strategic-merge patch for `pods/status`, or None when nothing changed."""
    wake_after: float | None
    """Seconds until something is due (a delay runs out), or None."""
    marks: dict[str, float]
    delete: bool = False
    """The pod is terminating: the kubelet's final grace-0 DELETE is due."""


def rfc3339(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_ip(uid: str) -> str:
    """A loopback address derived from the UID: never dialled, never a private range."""
    h = hashlib.sha256(uid.encode()).digest()
    return f"127.{h[0]}.{h[1]}.{max(1, h[2])}"


def _is_native(spec: Mapping[str, Any]) -> bool:
    return spec.get("restartPolicy") == "Always"


class _Clock:
    """`now` as wall time for status timestamps and as a monotonic float for marks."""

    def __init__(self, wall: datetime, mono: float) -> None:
        self.wall, self.mono, self.iso = wall, mono, rfc3339(wall)


def step(
    pod: Pod, marks: Mapping[str, float], *, wall: datetime, mono: float, rules: Rules
) -> Step:
    meta = pod.get("metadata", {})
    if meta.get("deletionTimestamp"):
        return Step(patch=None, wake_after=None, marks={}, delete=True)
    spec, status = pod.get("spec", {}), pod.get("status", {})
    uid = str(meta.get("uid", ""))
    clock = _Clock(wall, mono)
    new_marks = dict(marks)
    wakes: list[float] = []

    old_init = {s["name"]: s for s in status.get("initContainerStatuses") or []}
    old_main = {s["name"]: s for s in status.get("containerStatuses") or []}

    init_statuses: list[ContainerStatus] = []
    may_start = True
    for c in spec.get("initContainers") or []:
        native = _is_native(c)
        st = _advance(
            c,
            old_init.get(c["name"]),
            uid,
            may_start,
            native=native,
            plain_init=not native,
            clock=clock,
            marks=new_marks,
            wakes=wakes,
            rules=rules,
        )
        init_statuses.append(st)
        done = st.get("started") if native else _completed(st)
        may_start = may_start and bool(done)
    # The kubelet's HasAnyRegularContainerStarted: once an app container has run, the pod stays
    # initialized while a native sidecar restarts (its image changed), and app containers keep
    # being (re)started meanwhile.
    initialized = may_start or _any_started(old_main.values())

    main_statuses = [
        _advance(
            c,
            old_main.get(c["name"]),
            uid,
            initialized,
            native=False,
            plain_init=False,
            clock=clock,
            marks=new_marks,
            wakes=wakes,
            rules=rules,
        )
        for c in spec.get("containers") or []
    ]
    main_statuses.sort(key=lambda s: s["name"])  # the kubelet sorts regular statuses by name

    initialized = initialized or _any_started(main_statuses)
    containers_ready = all(s["ready"] for s in main_statuses) and all(
        s["ready"]
        for s, c in zip(init_statuses, spec.get("initContainers") or [], strict=True)
        if _is_native(c)
    )
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    gates = [g["conditionType"] for g in spec.get("readinessGates") or []]
    missing_gates = [g for g in gates if conditions.get(g, {}).get("status") != "True"]
    unready = [s["name"] for s in main_statuses if not s["ready"]]

    desired: dict[str, tuple[str, str, str]] = {
        "PodReadyToStartContainers": ("True", "", ""),
        "Initialized": ("True", "", "")
        if initialized
        else (
            "False",
            "ContainersNotInitialized",
            "containers with incomplete status: "
            + "["
            + " ".join(s["name"] for s in init_statuses if not _init_done(s))
            + "]",
        ),
        "ContainersReady": ("True", "", "")
        if containers_ready
        else (
            "False",
            "ContainersNotReady",
            f"containers with unready status: [{' '.join(unready)}]",
        ),
    }
    if not containers_ready:
        desired["Ready"] = desired["ContainersReady"]
    elif missing_gates:
        desired["Ready"] = (
            "False",
            "ReadinessGatesNotReady",
            f"the status of pod readiness gate {missing_gates[0]!r} is not True",
        )
    else:
        desired["Ready"] = ("True", "", "")

    changed_conditions = []
    for ctype, (cstatus, reason, message) in desired.items():
        old = conditions.get(ctype)
        if (
            old
            and old.get("status") == cstatus
            and old.get("reason", "") == reason
            and (old.get("message", "") == message)
        ):
            continue
        cond: dict[str, Any] = {
            "type": ctype,
            "status": cstatus,
            "lastProbeTime": None,
            "lastTransitionTime": (
                old["lastTransitionTime"]
                if old and old.get("status") == cstatus and old.get("lastTransitionTime")
                else clock.iso
            ),
        }
        if reason or old:
            # A status patch merges conditions by type: an absent field keeps its old value, so
            # a condition turning True must delete its reason and message with explicit nulls
            # (else the stored condition never matches and the pod is patched again forever).
            cond["reason"] = reason or None
        if message or old:
            cond["message"] = message or None
        if meta.get("generation") is not None:
            cond["observedGeneration"] = meta["generation"]
        changed_conditions.append(cond)

    running = initialized and any(s.get("started") for s in main_statuses)
    phase = "Running" if running or status.get("phase") == "Running" else "Pending"
    ip = pod_ip(uid)
    new_status: dict[str, Any] = {
        "phase": phase,
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": status.get("startTime") or clock.iso,
        "containerStatuses": main_statuses,
    }
    if init_statuses:
        new_status["initContainerStatuses"] = init_statuses
    if meta.get("generation") is not None:
        new_status["observedGeneration"] = meta["generation"]

    patch_status = {k: v for k, v in new_status.items() if status.get(k) != v}
    if changed_conditions:
        patch_status["conditions"] = changed_conditions
    wake = max(0.0, min(wakes) - mono) if wakes else None
    return Step(
        patch={"status": patch_status} if patch_status else None, wake_after=wake, marks=new_marks
    )


def _any_started(statuses: Iterable[Mapping[str, Any]]) -> bool:
    """Some container is running or has terminated (kubelet HasAnyRegularContainerStarted)."""
    return any({"running", "terminated"} & set(st.get("state", {})) for st in statuses)


def _completed(st: Mapping[str, Any]) -> bool:
    term = st.get("state", {}).get("terminated")
    return bool(term and term.get("exitCode") == 0)


def _init_done(st: Mapping[str, Any]) -> bool:
    return _completed(st) or bool(st.get("started"))


def _advance(
    c: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    uid: str,
    may_start: bool,
    *,
    native: bool,
    plain_init: bool,
    clock: _Clock,
    marks: dict[str, float],
    wakes: list[float],
    rules: Rules,
) -> ContainerStatus:
    """The next status of one container."""
    name, image = c["name"], c.get("image", "")
    key = f"{uid}/{name}"
    if old is None:
        marks[key] = clock.mono
        reason = "ContainerCreating" if may_start else "PodInitializing"
        st: ContainerStatus = {
            "name": name,
            "image": image,
            "imageID": "",
            "ready": False,
            "started": False,
            "restartCount": 0,
            "state": {"waiting": {"reason": reason}},
            "lastState": {},
        }
        if native:
            st["restartPolicy"] = "Always"
        if may_start and rules.start_delay <= 0:
            return _advance(
                c,
                st,
                uid,
                may_start,
                native=native,
                plain_init=plain_init,
                clock=clock,
                marks=marks,
                wakes=wakes,
                rules=rules,
            )
        if may_start:
            wakes.append(clock.mono + rules.start_delay)
        return st

    st = _copy(old)
    state = st.get("state", {})
    since = marks.get(key)

    def due(delay: float) -> bool:
        if since is None or clock.mono - since >= delay:
            return True
        wakes.append(since + delay)
        return False

    if "terminated" in state and plain_init:
        return st  # a completed init container: an image change restarts nothing

    if "running" in state:
        if st["image"] != image:
            if not _stopped(st, key, clock, marks, wakes, rules):
                return st
            marks[key] = clock.mono
            wakes.append(clock.mono + rules.start_delay)
            return st
        if rules.fails(image):
            if due(rules.crash_after):
                _kill(st, clock, exit_code=1, reason="Error")
                st["state"] = {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off restarting failed container {name}",
                    }
                }
                marks[key] = clock.mono
                wakes.append(clock.mono + rules.crash_backoff)
            return st
        if not st["ready"] and due(rules.ready_delay):
            st["ready"] = True
        return st

    waiting = state.get("waiting", {})
    if not may_start:
        return st
    if waiting.get("reason") == "PodInitializing":
        st["state"] = {"waiting": {"reason": "ContainerCreating"}}
        marks[key] = clock.mono
        since = clock.mono
    delay = (
        rules.crash_backoff if waiting.get("reason") == "CrashLoopBackOff" else rules.start_delay
    )
    if not due(delay):
        return st
    restarts = int(st.get("restartCount", 0))
    st.update(
        image=image,
        imageID=images.image_id(image),
        containerID=images.container_id(uid, name, str(restarts), clock.iso, str(clock.mono)),
        started=True,
        ready=False,
    )
    marks[key] = clock.mono
    if plain_init:
        st["started"] = False
        st["state"] = {
            "terminated": {
                "exitCode": 0,
                "reason": "Completed",
                "startedAt": clock.iso,
                "finishedAt": clock.iso,
                "containerID": st["containerID"],
            }
        }
        return st
    st["state"] = {"running": {"startedAt": clock.iso}}
    if rules.fails(image):
        wakes.append(clock.mono + rules.crash_after)
    elif rules.ready_delay <= 0:
        st["ready"] = True
    else:
        wakes.append(clock.mono + rules.ready_delay)
    return st


def _stopped(
    st: ContainerStatus,
    key: str,
    clock: _Clock,
    marks: dict[str, float],
    wakes: list[float],
    rules: Rules,
) -> bool:
    """Stop a container whose image changed: at once and cleanly, or after `stop_delay` with
    the SIGKILL a process ignoring SIGTERM gets. False while it is still stopping."""
    if rules.stop_delay <= 0:
        _kill(st, clock, exit_code=0, reason="Completed")
        return True
    stopping = f"{key}/stopping"
    began = marks.setdefault(stopping, clock.mono)
    if clock.mono - began < rules.stop_delay:
        wakes.append(began + rules.stop_delay)
        return False
    del marks[stopping]
    _kill(st, clock, exit_code=137, reason="Error")
    return True


def _kill(st: ContainerStatus, clock: _Clock, *, exit_code: int, reason: str) -> None:
    started_at = st.get("state", {}).get("running", {}).get("startedAt")
    st["lastState"] = {
        "terminated": {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": started_at,
            "finishedAt": clock.iso,
            "containerID": st.get("containerID"),
        }
    }
    st["state"] = {"waiting": {"reason": "ContainerCreating"}}
    st["ready"] = False
    st["started"] = False
    st["restartCount"] = int(st.get("restartCount", 0)) + 1


def _copy(st: Mapping[str, Any]) -> ContainerStatus:
    return copy.deepcopy(dict(st))
