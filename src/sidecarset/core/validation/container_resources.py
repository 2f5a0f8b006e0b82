"""A container's resources: fixed, or computed by `resourcesPolicy` (behaviour.md §11.4, §11.5).

Fixed resources follow Kubernetes' rules (names, quantities, requests not above limits); the
computed ones must be expressions that parse and evaluate, since a bad one would otherwise only
show when pods are created.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import msgspec

from sidecarset.core import resources_expr, selectors
from sidecarset.core.errors import FieldError, Path
from sidecarset.core.model import SidecarContainer, TargetContainersMode
from sidecarset.core.validation.fields import JsonMap, map_field, object_items, str_field

_STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def _resource_name_problems(name: str) -> list[str]:
    if name in _STANDARD_RESOURCES or name.startswith("hugepages-"):
        return []
    problems = selectors.qualified_name_problems(name)
    if problems:
        return problems
    if "/" not in name or name.startswith(("kubernetes.io/", "requests.")):
        return ["must be a standard resource for containers"]
    return []


def check_resources(body: JsonMap, path: Path) -> Iterator[FieldError]:
    resources = map_field(body, "resources")
    if resources is None:
        return
    parsed: dict[str, dict[str, resources_expr.Quantity]] = {"limits": {}, "requests": {}}
    for kind in ("limits", "requests"):
        values = map_field(resources, kind)
        for name, raw in (values or {}).items():
            rpath = path.child(kind).key(name)
            for problem in _resource_name_problems(name):
                yield FieldError.invalid(rpath, name, problem)
            try:
                quantity = resources_expr.quantity_from_json(raw)
            except resources_expr.QuantityError:
                continue  # reported as a type problem
            if quantity.value < 0:
                yield FieldError.invalid(
                    rpath, quantity.to_json(), "must be greater than or equal to 0"
                )
            parsed[kind][name] = quantity
    for name, request in parsed["requests"].items():
        limit = parsed["limits"].get(name)
        rpath = path.child("requests").key(name)
        if limit is None:
            continue
        if request.value > limit.value:
            yield FieldError.invalid(
                rpath,
                request.to_json(),
                f"must be less than or equal to {name} limit of {limit.to_json()}",
            )
        elif name not in _STANDARD_RESOURCES and request.value != limit.value:
            yield FieldError.invalid(
                rpath, request.to_json(), f"must be equal to {name} limit of {limit.to_json()}"
            )
    claims: set[str] = set()
    for i, claim in object_items(resources, "claims"):
        name = str_field(claim, "name")
        cpath = path.child("claims").index(i).child("name")
        if not name:
            yield FieldError.required(cpath)
        elif name in claims:
            yield FieldError.duplicate(cpath, name)
        claims.add(name)


def check_resize_policy(body: JsonMap, path: Path) -> Iterator[FieldError]:
    seen: set[str] = set()
    for i, item in object_items(body, "resizePolicy"):
        ipath = path.child("resizePolicy").index(i)
        name = str_field(item, "resourceName")
        if name not in ("cpu", "memory"):
            yield FieldError.not_supported(ipath.child("resourceName"), name, ["cpu", "memory"])
        elif name in seen:
            yield FieldError.duplicate(ipath.child("resourceName"), name)
        seen.add(name)
        policy = str_field(item, "restartPolicy")
        if policy not in ("NotRequired", "RestartContainer"):
            yield FieldError.not_supported(
                ipath.child("restartPolicy"), policy, ["NotRequired", "RestartContainer"]
            )


def check_resources_policy(container: SidecarContainer, path: Path) -> Iterator[FieldError]:
    policy = container.resources_policy
    assert policy is not None
    resources = map_field(container.body, "resources") or {}
    if map_field(resources, "limits") or map_field(resources, "requests"):
        yield FieldError.invalid(
            path, msgspec.UNSET, "resourcesPolicy and resources cannot be configured together"
        )
        return
    modes = [m.value for m in TargetContainersMode]
    if policy.target_containers_mode not in modes:
        if not policy.target_containers_mode:
            yield FieldError.required(path.child("targetContainersMode"), "must be sum or max")
        else:
            yield FieldError.not_supported(
                path.child("targetContainersMode"), policy.target_containers_mode, modes
            )
    regex = policy.target_containers_name_regex
    if not regex:
        yield FieldError.required(path.child("targetContainersNameRegex"), "invalid empty regex")
    else:
        try:
            re.compile(regex)
        except re.error as exc:
            yield FieldError.invalid(
                path.child("targetContainersNameRegex"), regex, f"invalid regex pattern: {exc}"
            )
    expr = policy.resources_expr
    epath = path.child("resourcesExpr")
    if expr.limits is None and expr.requests is None:
        yield FieldError.invalid(
            epath, msgspec.UNSET, "at least one of limits or requests must be configured"
        )
    for kind, values in (("limits", expr.limits), ("requests", expr.requests)):
        if values is None:
            continue
        for variable, text in (("cpu", values.cpu), ("memory", values.memory)):
            if not text:
                continue
            problem = _expression_problem(text, variable)
            if problem is not None:
                yield FieldError.invalid(epath.child(kind, variable), text, problem)


def _expression_problem(text: str, variable: str) -> str | None:
    """Kruise's check: parse and evaluate with the resource's own variable bound to 1."""
    try:
        expression = resources_expr.parse_expression(text)
        expression.evaluate({variable: 1.0})
    except resources_expr.ExpressionError as exc:
        return f"invalid expression: {exc}"
    return None
