"""Output for people and for scripts: aligned tables, YAML and JSON documents, progress bars.

Tables are kubectl-style (upper-case headers, columns padded, three spaces apart), so they read
the same in a terminal and in a CI log. YAML keeps key order, writes multi-line strings as
literal blocks and never emits anchors, so injected manifests diff cleanly against their source.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from sidecarset.cli.options import Output

__all__ = ["dump", "dump_documents", "is_terminal", "table"]

_GAP = "   "


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    cells = [[str(h) for h in headers], *([_cell(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [value.ljust(widths[i]) for i, value in enumerate(row[:-1])]
        lines.append(_GAP.join([*padded, row[-1]]).rstrip())
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


class _Dumper(yaml.SafeDumper):
    """Safe YAML; block literals for multi-line strings; no `&id001` anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_str(value)


_Dumper.add_representer(str, _represent_str)


def _yaml(value: object) -> str:
    return yaml.dump(
        value, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True
    )


def dump(value: object, output: Output) -> str:
    """One value as JSON (indented) or YAML; ends without a newline."""
    if output is Output.YAML:
        return _yaml(value).rstrip("\n")
    return json.dumps(value, indent=2, ensure_ascii=False)


def dump_documents(documents: Sequence[Mapping[str, Any]], output: Output) -> str:
    """Several manifests: a YAML stream (`---` between documents), or JSON (one object as is,
    several as a `v1` List, as kubectl prints them)."""
    if output is Output.JSON:
        if len(documents) == 1:
            return dump(documents[0], output)
        return dump({"apiVersion": "v1", "kind": "List", "items": list(documents)}, output)
    return "\n".join("---\n" + _yaml(doc).rstrip("\n") for doc in documents)


def is_terminal() -> bool:
    return sys.stdout.isatty()
