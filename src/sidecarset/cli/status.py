"""`sidecarset status [NAME] [--watch]`: rollout counters and the condition that explains them.

Reads the status the controller writes; computes nothing itself. `--watch` polls once a second
and shows a change as soon as it is seen: progress bars on a terminal, one line per change
otherwise (CI logs), or one JSON/YAML status object per change with `-o`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from sidecarset.cli import render
from sidecarset.cli.connection import Cluster, connect
from sidecarset.cli.options import (
    ContextOption,
    KubeconfigOption,
    Output,
    OutputOption,
    Target,
    resolve,
)

# The condition that explains the state best comes first: a stall beats progress beats ready.
_PRECEDENCE = ("Stalled", "Progressing", "Ready")


@dataclass(frozen=True)
class Row:
    """One SidecarSet's status as `status` shows it."""

    name: str
    generation: int
    observed_generation: int
    matched: int
    updated: int
    ready: int
    updated_ready: int
    state: str
    message: str

    @property
    def stale(self) -> bool:
        """The controller has not yet reported on the current spec."""
        return self.observed_generation < self.generation


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def summary(conditions: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """(`Stalled: PodsNotUpgradable`, message) from the Ready/Progressing/Stalled conditions.

    The first true condition in the order Stalled, Progressing, Ready names the state; when none
    is true, Ready's reason does (`NotReady: Paused`). No conditions: ("-", "").
    """
    by_type = {str(c.get("type")): c for c in conditions if isinstance(c, Mapping)}
    for type_ in _PRECEDENCE:
        condition = by_type.get(type_)
        if condition is not None and condition.get("status") == "True":
            return f"{type_}: {condition.get('reason') or '-'}", str(condition.get("message", ""))
    ready = by_type.get("Ready")
    if ready is not None:
        return f"NotReady: {ready.get('reason') or '-'}", str(ready.get("message", ""))
    return "-", ""


def row_of(obj: Mapping[str, Any]) -> Row:
    meta = obj.get("metadata") or {}
    st = obj.get("status") or {}
    conditions = st.get("conditions")
    state, message = summary(conditions if isinstance(conditions, list) else [])
    return Row(
        name=str(meta.get("name", "")),
        generation=_int(meta.get("generation")),
        observed_generation=_int(st.get("observedGeneration")),
        matched=_int(st.get("matchedPods")),
        updated=_int(st.get("updatedPods")),
        ready=_int(st.get("readyPods")),
        updated_ready=_int(st.get("updatedReadyPods")),
        state=state,
        message=message,
    )


def _state(row: Row) -> str:
    return (
        f"{row.state} (status of generation {row.observed_generation})"
        if row.stale
        else (row.state)
    )


def _short_state(row: Row) -> str:
    """The reason alone (`Rolling`), for a progress bar's narrow line."""
    if row.state == "-":
        return "no status yet"
    reason = row.state.partition(": ")[2] or row.state
    return f"{reason} (stale)" if row.stale else reason


def status_table(rows: Sequence[Row]) -> str:
    return render.table(
        ("NAME", "MATCHED", "UPDATED", "READY", "UPDATED-READY", "STATE"),
        (
            (r.name, r.matched, r.updated, r.ready, r.updated_ready, _state(r))
            for r in sorted(rows, key=lambda r: r.name)
        ),
    )


def status_line(row: Row, when: datetime) -> str:
    """One change, for logs: time, counters, state and its message."""
    line = (
        f"{when.astimezone(UTC):%H:%M:%S} {row.name} matched={row.matched} "
        f"updated={row.updated} ready={row.ready} updated-ready={row.updated_ready} "
        f"{_state(row)}"
    )
    return f"{line} - {row.message}" if row.message else line


def status_object(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What `-o json|yaml` prints: the name, the generation and the status as stored."""
    meta = obj.get("metadata") or {}
    return {
        "name": meta.get("name", ""),
        "generation": meta.get("generation", 0),
        "status": obj.get("status") or {},
    }


def deleted_line(name: str, when: datetime) -> str:
    return f"{when.astimezone(UTC):%H:%M:%S} {name} deleted"


# --- fetching and watching --------------------------------------------------------------------


async def _fetch(cluster: Cluster, name: str | None) -> list[dict[str, Any]]:
    if name is not None:
        return [await cluster.sidecarset(name)]
    return await cluster.sidecarsets()


class _Bars:
    """Rich progress bars on a terminal: one per SidecarSet, updated-ready out of matched."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn
        from rich.table import Column

        # The bar and the count next to it are the rollout's end state: updated and ready.
        # Short cells, so a SidecarSet stays on one line of an 80-column terminal.
        self._progress = Progress(
            TextColumn(
                "{task.fields[name]}",
                table_column=Column(no_wrap=True, max_width=24, overflow="ellipsis"),
            ),
            BarColumn(bar_width=12),
            TextColumn("{task.fields[updated_ready]}/{task.fields[matched]}"),
            TextColumn("updated {task.fields[updated]} ready {task.fields[ready]}"),
            TextColumn("{task.fields[state]}", table_column=Column(no_wrap=True)),
            auto_refresh=False,
        )
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> _Bars:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def show(self, row: Row) -> None:
        fields: dict[str, Any] = {
            "name": row.name,
            "matched": row.matched,
            "updated": row.updated,
            "ready": row.ready,
            "updated_ready": row.updated_ready,
            "state": _short_state(row),
        }
        total = max(row.matched, 1)
        completed = row.updated_ready if row.matched else 0
        task = self._tasks.get(row.name)
        if task is None:
            self._tasks[row.name] = self._progress.add_task(
                row.name, total=total, completed=completed, **fields
            )
        else:
            self._progress.update(task, total=total, completed=completed, **fields)
        self._progress.refresh()

    def remove(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            self._progress.remove_task(task)
            self._progress.refresh()


async def _watch(
    cluster: Cluster, name: str | None, target: Target, *, interval: float, timeout: float | None
) -> None:
    deadline = None if timeout is None else time.monotonic() + timeout
    seen: dict[str, Row] = {}
    live = target.output is Output.TABLE and render.is_terminal()
    with _Bars() if live else nullcontext(None) as bars:
        while True:
            now = datetime.now(UTC)
            objects = await _fetch(cluster, name)
            current = {row.name: (row, obj) for obj in objects for row in (row_of(obj),)}
            for key in sorted(current):
                row, obj = current[key]
                if seen.get(key) == row:
                    continue
                seen[key] = row
                if bars is not None:
                    bars.show(row)
                elif target.output is Output.TABLE:
                    typer.echo(status_line(row, now))
                elif target.output is Output.JSON:
                    typer.echo(json.dumps(status_object(obj)))  # one line per change
                else:
                    typer.echo("---\n" + render.dump(status_object(obj), target.output))
            for gone in sorted(set(seen) - set(current)):
                del seen[gone]
                if bars is not None:
                    bars.remove(gone)
                else:
                    typer.echo(deleted_line(gone, now))
            if deadline is not None and time.monotonic() + interval > deadline:
                return
            await asyncio.sleep(interval)


def status(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(help="A SidecarSet; default: all.", show_default=False)
    ] = None,
    watch: Annotated[
        bool, typer.Option("-w", "--watch", help="Keep showing changes until Ctrl-C.")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(help="With --watch: stop after this many seconds.", show_default=False),
    ] = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    output: OutputOption = None,
) -> None:
    """Show each SidecarSet's matched, updated, ready and updated-ready pods, and its state.

    STATE is the first true condition among Stalled, Progressing and Ready with its reason
    (e.g. `Progressing: Rolling`, `Stalled: UpdatedPodsFailing`), else `NotReady: <reason>`
    (e.g. `NotReady: Paused`). A status older than the spec says which generation it is of.

    \b
    Examples:
      sidecarset status                      # every SidecarSet, one line each
      sidecarset status filebeat --watch     # progress bars on a terminal, lines in a log
      sidecarset status filebeat -o json     # the status object, for scripts
      kubectl sidecarset status -w --timeout 300 > rollout.log
    """
    target = resolve(ctx, kubeconfig=kubeconfig, context=context, output=output)
    if timeout is not None and not watch:
        raise typer.BadParameter("only makes sense with --watch", param_hint="--timeout")

    async def main() -> None:
        async with connect(target) as cluster:
            if watch:
                await _watch(cluster, name, target, interval=1.0, timeout=timeout)
                return
            objects = await _fetch(cluster, name)
        if target.output is not Output.TABLE:
            shown: object = [status_object(o) for o in objects]
            if name is not None:
                shown = status_object(objects[0])
            typer.echo(render.dump(shown, target.output))
        elif not objects:
            typer.echo("no SidecarSets found", err=True)
        else:
            typer.echo(status_table([row_of(o) for o in objects]))

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        if not watch:
            raise
