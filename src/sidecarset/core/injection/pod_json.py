"""Reading the raw Pod JSON of an admission request, which may be partial or odd-shaped.

Injection works on the pod exactly as the API server sent it (not a parsed model), so that the
JSON patch it produces addresses the same list indexes; these helpers read it defensively.
"""

from __future__ import annotations

from collections.abc import Mapping

from sidecarset.core import pod_contract


def as_mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def objects(value: object) -> list[Mapping[str, object]]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def str_map(value: object) -> dict[str, str]:
    return {str(k): v for k, v in as_mapping(value).items() if isinstance(v, str)}


def text(value: object) -> str:
    return value if isinstance(value, str) else ""


def name_of(item: Mapping[str, object]) -> str:
    return text(item.get("name"))


def first_env_value(container: Mapping[str, object], name: str) -> str:
    """Kruise's GetContainerEnvValue: `value` of the first env entry with this name."""
    for env in objects(container.get("env")):
        if name_of(env) == name:
            return text(env.get("value"))
    return ""


def is_app_container(container: Mapping[str, object]) -> bool:
    return first_env_value(container, pod_contract.INJECTED_ENV) != "true"
