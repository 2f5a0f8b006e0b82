"""The `sidecarset` command (also installed as the kubectl plugin `kubectl-sidecarset`)."""

from __future__ import annotations

import os
import sys

import typer

from sidecarset.cli import cluster, operator
from sidecarset.cli.errors import CliError

app = typer.Typer(
    help="Centrally managed sidecar containers for Kubernetes (OpenKruise SidecarSet "
    "compatible): injection at pod creation and progressive in-place upgrades.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(cluster.app, name="cluster")
app.add_typer(operator.app, name="operator")


def main() -> None:
    """Run the CLI; errors are one line on stderr (a traceback only with SIDECARSET_DEBUG=1)."""
    try:
        app(standalone_mode=False)
    except CliError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as err:  # the last line of defence: one line, not a traceback
        import click

        if isinstance(err, click.exceptions.UsageError):
            err.show()
            sys.exit(2)
        if isinstance(err, click.exceptions.ClickException):
            err.show()
            sys.exit(err.exit_code)
        if os.environ.get("SIDECARSET_DEBUG"):
            raise
        typer.echo(
            f"error: {type(err).__name__}: {err} (set SIDECARSET_DEBUG=1 for details)", err=True
        )
        sys.exit(1)
