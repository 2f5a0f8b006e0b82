"""The `sidecarset` command (also installed as the kubectl plugin `kubectl-sidecarset`)."""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
import typer.core
import typer.main

from sidecarset.cli import cluster, operator
from sidecarset.cli.errors import CliError
from sidecarset.cli.options import GlobalOptions, Output

# The cluster commands: name -> (module, function). Their modules bring the Kubernetes client,
# the operator's app layer and rich, about a second of imports; `_Commands` loads one only
# when it runs (or help lists it), so `cluster` and `operator` commands start without them.
CLUSTER_COMMANDS: dict[str, tuple[str, str]] = {
    "inject": ("sidecarset.cli.inject", "inject"),
    "status": ("sidecarset.cli.status", "status"),
    "plan": ("sidecarset.cli.plan", "plan"),
    "pause": ("sidecarset.cli.rollout", "pause"),
    "resume": ("sidecarset.cli.rollout", "resume"),
    "history": ("sidecarset.cli.rollout", "history"),
    "rollback": ("sidecarset.cli.rollout", "rollback"),
}


class _Commands(typer.core.TyperGroup):
    """The top-level group, with the cluster commands loaded on first use."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*CLUSTER_COMMANDS, *super().list_commands(ctx)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in CLUSTER_COMMANDS:
            return _load(cmd_name)
        return super().get_command(ctx, cmd_name)


@functools.cache
def _load(name: str) -> Any:
    module, attr = CLUSTER_COMMANDS[name]
    command = getattr(importlib.import_module(module), attr)
    single = typer.Typer()
    single.command(name, help=reflowed(command))(command)
    return typer.main.get_command(single)


app = typer.Typer(
    cls=_Commands,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def reflowed(command: Callable[..., None]) -> str:
    """A command's docstring as help: each paragraph on one line, so the terminal wraps it
    (typer keeps single line breaks); `\\b` blocks (examples) stay as written."""
    text = inspect.cleandoc(command.__doc__ or "")
    return "\n\n".join(
        p if p.startswith("\b") else " ".join(p.splitlines()) for p in text.split("\n\n")
    )


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"sidecarset {version('sidecarset')}")
        raise typer.Exit()


def options(
    ctx: typer.Context,
    kubeconfig: Annotated[
        str | None,
        typer.Option(
            "--kubeconfig",
            envvar="KUBECONFIG",
            help="Kubeconfig file(s) of the cluster commands; default: ~/.kube/config.",
            show_default=False,
        ),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option("--context", help="Kubeconfig context.", show_default=False),
    ] = None,
    output: Annotated[
        Output | None,
        typer.Option(
            "-o", "--output", help="table, json or yaml (inject: yaml or json).", show_default=False
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks of unexpected errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_version
        ),
    ] = False,
) -> None:
    """Centrally managed sidecar containers for Kubernetes (OpenKruise SidecarSet compatible):
    injection at pod creation and progressive in-place upgrades.

    The cluster commands also take --kubeconfig, --context and -o after the command name, as
    `kubectl sidecarset status -o json` passes them.

    \b
    Examples:
      sidecarset status --watch
      sidecarset plan filebeat
      sidecarset inject -f deploy/ > injected.yaml
      kubectl sidecarset pause filebeat
    """
    if debug:
        os.environ["SIDECARSET_DEBUG"] = "1"
    ctx.obj = GlobalOptions(kubeconfig=kubeconfig, context=context, output=output)


app.callback(help=reflowed(options))(options)
app.add_typer(cluster.app, name="cluster")
app.add_typer(operator.app, name="operator")


def main() -> None:
    """Run the CLI; errors are one line on stderr (a traceback only with SIDECARSET_DEBUG=1)."""
    try:
        code = app(standalone_mode=False)  # an Exit raised in a command is returned here
    except CliError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.TyperException as err:  # click's exceptions, as typer vendors them
        usage = err.exit_code == 2
        hint = " (see --help)" if usage else ""
        typer.echo(f"error: {err.format_message()}{hint}", err=True)
        sys.exit(err.exit_code)
    except Exception as err:  # the last line of defence: one line, not a traceback
        if os.environ.get("SIDECARSET_DEBUG"):
            raise
        typer.echo(
            f"error: {type(err).__name__}: {err} (set SIDECARSET_DEBUG=1 for details)", err=True
        )
        sys.exit(1)
    if isinstance(code, int) and code:
        sys.exit(code)
