"""The options every cluster command takes, before or after its name, and how they combine.

`sidecarset --context dev status` and `kubectl sidecarset status --context dev` mean the same:
the command's own value wins, then the global one, then $KUBECONFIG. Light on purpose: `main`
imports it, and the commands' heavy modules load only when a command runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

import typer

OPERATOR_NAMESPACE = "sidecarset-system"


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


SidecarSetArgument = Annotated[str, typer.Argument(help="The SidecarSet.", show_default=False)]
KubeconfigOption = Annotated[
    str | None,
    typer.Option(
        "--kubeconfig",
        help="Kubeconfig file(s), ':'-separated; default: $KUBECONFIG, else ~/.kube/config.",
        show_default=False,
    ),
]
ContextOption = Annotated[
    str | None,
    typer.Option(
        "--context", help="Kubeconfig context; default: the current one.", show_default=False
    ),
]
OutputOption = Annotated[
    Output | None,
    typer.Option("-o", "--output", help="table, json or yaml.", show_default=False),
]
OperatorNamespaceOption = Annotated[
    str,
    typer.Option(
        "--namespace-of-operator",
        envvar="SIDECARSET_OPERATOR_NAMESPACE",
        help="Where the operator keeps SidecarSet revisions (ControllerRevisions).",
    ),
]


@dataclass(frozen=True)
class GlobalOptions:
    """The options given before the command (`sidecarset --context dev status`)."""

    kubeconfig: str | None = None
    context: str | None = None
    output: Output | None = None


@dataclass(frozen=True)
class Target:
    """Which cluster to talk to, and how to print."""

    kubeconfig: str | None
    context: str | None
    output: Output


def resolve(
    ctx: typer.Context,
    *,
    kubeconfig: str | None,
    context: str | None,
    output: Output | None,
    default_output: Output = Output.TABLE,
) -> Target:
    """The command's options, falling back to the global ones, then to $KUBECONFIG."""
    root = ctx.find_root().obj
    given = root if isinstance(root, GlobalOptions) else GlobalOptions()
    return Target(
        kubeconfig=kubeconfig or given.kubeconfig or os.environ.get("KUBECONFIG") or None,
        context=context or given.context,
        output=output or given.output or default_output,
    )
