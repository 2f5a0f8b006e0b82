"""Probes and lifecycle hooks: one handler each, valid timings (behaviour.md §11.4).

A broken handler would make every pod the SidecarSet lands in fail Kubernetes' pod validation,
so it is refused when the SidecarSet is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from sidecarset.core.errors import FieldError, Path
from sidecarset.core.validation.container_ports import check_port_number, port_name_problems
from sidecarset.core.validation.fields import (
    JsonMap,
    check_enum,
    has_field,
    int_field,
    map_field,
    object_items,
    str_field,
    str_list,
)

_PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
_LIFECYCLE_HANDLERS = ("exec", "httpGet", "tcpSocket", "sleep")
_TERMINATION_GRACE_SECONDS = 30  # the fake pod Kruise validates sidecars in uses the default


def _check_handler_count(
    handler: JsonMap, kinds: Sequence[str], path: Path
) -> Iterator[FieldError]:
    present = [k for k in kinds if has_field(handler, k)]
    if not present:
        yield FieldError.required(path, "must specify a handler type")
    elif len(present) > 1:
        yield FieldError.forbidden(
            path.child(present[1]), "may not specify more than 1 handler type"
        )


def check_probe(probe: JsonMap, kind: str, path: Path) -> Iterator[FieldError]:
    yield from _check_handler_count(probe, _PROBE_HANDLERS, path)
    yield from _check_actions(probe, path)
    for key in (
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ):
        value = int_field(probe, key)
        if value is not None and value < 0:
            yield FieldError.invalid(path.child(key), value, "must be greater than or equal to 0")
    success = int_field(probe, "successThreshold")
    if kind != "readinessProbe" and success not in (None, 0, 1):
        yield FieldError.invalid(path.child("successThreshold"), success, "must be 1")
    grace = int_field(probe, "terminationGracePeriodSeconds")
    if has_field(probe, "terminationGracePeriodSeconds") and kind == "readinessProbe":
        yield FieldError.forbidden(
            path.child("terminationGracePeriodSeconds"), "must not be set for readinessProbes"
        )
    elif grace is not None and grace <= 0:
        yield FieldError.invalid(
            path.child("terminationGracePeriodSeconds"), grace, "must be greater than 0"
        )


def check_lifecycle_handler(handler: JsonMap, path: Path) -> Iterator[FieldError]:
    yield from _check_handler_count(handler, _LIFECYCLE_HANDLERS, path)
    yield from _check_actions(handler, path)
    sleep = map_field(handler, "sleep")
    if sleep is not None:
        seconds = int_field(sleep, "seconds")
        if seconds is not None and not 0 <= seconds <= _TERMINATION_GRACE_SECONDS:
            yield FieldError.invalid(
                path.child("sleep", "seconds"),
                seconds,
                "must be non-negative and less than terminationGracePeriodSeconds "
                f"({_TERMINATION_GRACE_SECONDS})",
            )


def _check_target_port(port: JsonMap, path: Path) -> Iterator[FieldError]:
    value = port.get("port")
    if value is None:
        yield FieldError.required(path.child("port"))
    elif isinstance(value, str):
        for problem in port_name_problems(value):
            yield FieldError.invalid(path.child("port"), value, problem)
    else:
        yield from check_port_number(int_field(port, "port"), path.child("port"), allow_zero=False)


_HTTP_HEADER_NAME = re.compile(r"[-A-Za-z0-9!#$%&'*+.^_`|~]+")


def _check_actions(handler: JsonMap, path: Path) -> Iterator[FieldError]:
    exec_action = map_field(handler, "exec")
    if exec_action is not None and not str_list(exec_action, "command"):
        yield FieldError.required(path.child("exec", "command"))
    http_get = map_field(handler, "httpGet")
    if http_get is not None:
        hpath = path.child("httpGet")
        yield from _check_target_port(http_get, hpath)
        yield from check_enum(http_get, "scheme", hpath, ("HTTP", "HTTPS"))
        for i, header in object_items(http_get, "httpHeaders"):
            name = str_field(header, "name")
            if _HTTP_HEADER_NAME.fullmatch(name) is None:
                yield FieldError.invalid(
                    hpath.child("httpHeaders").index(i).child("name"),
                    name,
                    "must be a valid HTTP header name",
                )
    tcp = map_field(handler, "tcpSocket")
    if tcp is not None:
        yield from _check_target_port(tcp, path.child("tcpSocket"))
    grpc = map_field(handler, "grpc")
    if grpc is not None:
        yield from check_port_number(
            int_field(grpc, "port"), path.child("grpc", "port"), allow_zero=False
        )
