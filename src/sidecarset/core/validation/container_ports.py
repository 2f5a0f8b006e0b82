"""Container ports: names, numbers, protocols (behaviour.md §11.4).

Kubernetes' port rules, also used by the probe and lifecycle handlers that address a port by
number or by name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from sidecarset.core.errors import FieldError, Path
from sidecarset.core.validation.fields import (
    JsonMap,
    check_enum,
    has_field,
    int_field,
    object_items,
    str_field,
)

_IANA_SVC_NAME = re.compile(r"[-a-z0-9]+")


def port_name_problems(name: str) -> list[str]:
    problems = []
    if len(name) > 15:
        problems.append("must be no more than 15 characters")
    if _IANA_SVC_NAME.fullmatch(name) is None:
        problems.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in name:
        problems.append("must not contain consecutive hyphens")
    if not re.search("[a-z]", name):
        problems.append("must contain at least one letter (a-z)")
    if name.startswith("-") or name.endswith("-"):
        problems.append("must not begin or end with a hyphen")
    return problems


def check_port_number(value: int | None, path: Path, *, allow_zero: bool) -> Iterator[FieldError]:
    if value is None:
        return
    low = 0 if allow_zero else 1
    if not low <= value <= 65535:
        yield FieldError.invalid(path, value, f"must be between {low} and 65535, inclusive")


def check_ports(body: JsonMap, path: Path) -> Iterator[FieldError]:
    names: set[str] = set()
    for i, port in object_items(body, "ports"):
        ppath = path.child("ports").index(i)
        name = str_field(port, "name")
        if name:
            for problem in port_name_problems(name):
                yield FieldError.invalid(ppath.child("name"), name, problem)
            if name in names:
                yield FieldError.duplicate(ppath.child("name"), name)
            names.add(name)
        if not has_field(port, "containerPort"):
            yield FieldError.required(ppath.child("containerPort"))
        yield from check_port_number(
            int_field(port, "containerPort"), ppath.child("containerPort"), allow_zero=False
        )
        yield from check_port_number(
            int_field(port, "hostPort"), ppath.child("hostPort"), allow_zero=True
        )
        yield from check_enum(port, "protocol", ppath, ("TCP", "UDP", "SCTP"))
