"""`sidecarset pause | resume | history | rollback`: steering a SidecarSet's rollout.

Pause and resume set `spec.updateStrategy.paused`. History lists the ControllerRevisions the
controller records in its namespace, marking the one that holds the live spec (compared the way
the controller compares them). Rollback writes a revision's injectable fields back into the
live spec with one JSON merge patch, conditional on the resourceVersion it was computed from;
the controller then rolls the pods back in place like any other image change.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from sidecarset.cli import render
from sidecarset.cli.connection import Cluster, connect
from sidecarset.cli.errors import CliError
from sidecarset.cli.options import (
    OPERATOR_NAMESPACE,
    ContextOption,
    KubeconfigOption,
    OperatorNamespaceOption,
    Output,
    OutputOption,
    SidecarSetArgument,
    Target,
    resolve,
)
from sidecarset.core import hashing, model, revisions
from sidecarset.core.errors import ModelError
from sidecarset.core.injection.revision_choice import RESTORED_FIELDS as RESTORED_FIELDS

"""The spec fields a revision holds (Kruise's revision data); rollback restores exactly these."""

_CONTAINER_LISTS = ("initContainers", "containers")


# --- pause / resume ---------------------------------------------------------------------------


async def set_paused(cluster: Cluster, name: str, *, paused: bool) -> tuple[bool, dict[str, Any]]:
    """(changed, the SidecarSet afterwards)."""
    raw = await cluster.sidecarset(name)
    strategy = (raw.get("spec") or {}).get("updateStrategy") or {}
    if bool(strategy.get("paused")) == paused:
        return False, raw
    patched = await cluster.patch_sidecarset(name, {"spec": {"updateStrategy": {"paused": paused}}})
    return True, patched


def _pause_command(ctx: typer.Context, name: str, target: Target, *, paused: bool) -> None:
    async def main() -> tuple[bool, dict[str, Any]]:
        async with connect(target) as cluster:
            return await set_paused(cluster, name, paused=paused)

    changed, obj = asyncio.run(main())
    if target.output is not Output.TABLE:
        typer.echo(render.dump(obj, target.output))
    elif paused:
        typer.echo(
            f"SidecarSet {name} paused: running pods keep their sidecars until "
            f"`sidecarset resume {name}` (new pods are still injected)"
            if changed
            else f"SidecarSet {name} is already paused"
        )
    else:
        typer.echo(
            f"SidecarSet {name} resumed: the rollout continues (`sidecarset plan {name}` "
            "shows the next round)"
            if changed
            else f"SidecarSet {name} is not paused"
        )


def pause(
    ctx: typer.Context,
    name: SidecarSetArgument,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    output: OutputOption = None,
) -> None:
    """Pause the SidecarSet's rollout (spec.updateStrategy.paused: true).

    Running pods keep the sidecars they have; new pods are still injected.

    \b
    Examples:
      sidecarset pause filebeat
      kubectl sidecarset pause filebeat --context prod -o yaml
    """
    target = resolve(ctx, kubeconfig=kubeconfig, context=context, output=output)
    _pause_command(ctx, name, target, paused=True)


def resume(
    ctx: typer.Context,
    name: SidecarSetArgument,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    output: OutputOption = None,
) -> None:
    """Resume a paused rollout (spec.updateStrategy.paused: false).

    \b
    Examples:
      sidecarset resume filebeat
      sidecarset resume filebeat && sidecarset status filebeat --watch
    """
    target = resolve(ctx, kubeconfig=kubeconfig, context=context, output=output)
    _pause_command(ctx, name, target, paused=False)


# --- history ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Revision:
    """One recorded revision of a SidecarSet, as `history` and `rollback` see it."""

    number: int
    name: str
    spec: Mapping[str, Any]
    """The revision data's spec (the restored fields; `$patch` dropped)."""
    current: bool
    created: str

    @property
    def images(self) -> tuple[str, ...]:
        return tuple(
            f"{c.get('name')}={c.get('image')}"
            for key in _CONTAINER_LISTS
            for c in (self.spec.get(key) or ())
            if isinstance(c, Mapping)
        )


def revision_history(live: model.SidecarSet, objects: Sequence[dict[str, Any]]) -> list[Revision]:
    """The SidecarSet's revisions, oldest first; `current` marks the newest one holding the
    live spec, compared as the controller compares them (decoded JSON, not names or bytes)."""
    records = {r.name: r for r in revisions.revision_records(live.name, objects)}
    live_data = revisions.revision_data(live)
    holding = [r for r in records.values() if revisions.same_data(r.data, live_data)]
    current = max(holding, key=lambda r: r.revision).name if holding else None
    history = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name", ""))
        record = records.get(name)
        if record is None:
            continue
        data = obj.get("data")
        spec = data.get("spec") if isinstance(data, dict) else None
        if not isinstance(spec, dict):
            spec = {}
        history.append(
            Revision(
                number=record.revision,
                name=name,
                spec={k: v for k, v in spec.items() if k != "$patch"},
                current=name == current,
                created=str(meta.get("creationTimestamp", "")),
            )
        )
    return sorted(history, key=lambda r: (r.number, r.name))


def history_table(history: Sequence[Revision]) -> str:
    return render.table(
        ("REVISION", "NAME", "CURRENT", "CREATED", "IMAGES"),
        (
            (r.number, r.name, "*" if r.current else "", r.created, ", ".join(r.images))
            for r in history
        ),
    )


def history_dicts(history: Sequence[Revision]) -> list[dict[str, Any]]:
    return [
        {
            "revision": r.number,
            "name": r.name,
            "current": r.current,
            "created": r.created,
            "images": list(r.images),
        }
        for r in history
    ]


async def _load(
    cluster: Cluster, name: str, namespace: str
) -> tuple[dict[str, Any], list[Revision]]:
    raw = await cluster.sidecarset(name)
    try:
        live = model.parse_sidecarset(raw)
    except ModelError as err:
        raise CliError(f"SidecarSet {name!r} cannot be read: {err}") from err
    history = revision_history(live, await cluster.revisions(name, namespace))
    if not history:
        raise CliError(
            f"no revisions of SidecarSet {name!r} in namespace {namespace!r}; the operator "
            "records them there a moment after each change (is --namespace-of-operator right?)"
        )
    return raw, history


def history(
    ctx: typer.Context,
    name: SidecarSetArgument,
    operator_namespace: OperatorNamespaceOption = OPERATOR_NAMESPACE,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    output: OutputOption = None,
) -> None:
    """List the SidecarSet's recorded revisions; * marks the one the live spec matches.

    \b
    Examples:
      sidecarset history filebeat
      sidecarset history filebeat -o json
      sidecarset history filebeat --namespace-of-operator kruise-system
    """
    target = resolve(ctx, kubeconfig=kubeconfig, context=context, output=output)

    async def main() -> list[Revision]:
        async with connect(target) as cluster:
            return (await _load(cluster, name, operator_namespace))[1]

    found = asyncio.run(main())
    if target.output is Output.TABLE:
        typer.echo(history_table(found))
    else:
        typer.echo(render.dump(history_dicts(found), target.output))


# --- rollback ---------------------------------------------------------------------------------


def choose_target(history: Sequence[Revision], to_revision: int | None) -> Revision:
    """The revision to restore: `to_revision`, or else the newest one other than the current.

    "Newest other" rather than "number below the current" keeps a second rollback an undo of
    the first even before the controller renumbers the restored revision as the newest.
    """
    numbers = ", ".join(str(r.number) for r in history)
    if to_revision is not None:
        for rev in history:
            if rev.number == to_revision:
                return rev
        raise CliError(f"no revision {to_revision}; the recorded revisions are {numbers}")
    current = next((r for r in history if r.current), None)
    if current is None:
        raise CliError(
            "the live spec is not in the revision history yet (the controller records it "
            f"within seconds); pass --to-revision (recorded: {numbers})"
        )
    others = [r for r in history if r is not current]
    if not others:
        raise CliError(
            f"revision {current.number} is the only one recorded; nothing to roll back to"
        )
    return others[-1]


def rollback_patch(live_raw: Mapping[str, Any], revision: Revision) -> dict[str, Any]:
    """The merge patch restoring the revision's fields (a field it lacks is removed), made
    conditional on the live object's resourceVersion."""
    spec = {field: revision.spec.get(field) for field in RESTORED_FIELDS}
    meta = live_raw.get("metadata") or {}
    return {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "spec": spec}


def _by_name(items: object) -> dict[str, Mapping[str, Any]]:
    if not isinstance(items, list):
        return {}
    return {str(i.get("name")): i for i in items if isinstance(i, Mapping)}


def _encoded(container: Mapping[str, Any]) -> dict[str, Any]:
    decoded = json.loads(hashing.container_encoding(container, without_image=True))
    return decoded if isinstance(decoded, dict) else {}


def spec_changes(live_spec: Mapping[str, Any], restored: Mapping[str, Any]) -> list[str]:
    """What a rollback changes, one line per container image or field, in spec order.

    Containers are compared as the hash encodes them (defaults filled), so a revision's
    canonical form does not read as a change.
    """
    lines: list[str] = []
    for key in _CONTAINER_LISTS:
        before, after = _by_name(live_spec.get(key)), _by_name(restored.get(key))
        for name, container in after.items():
            old = before.get(name)
            if old is None:
                lines.append(f"{key}[{name}]: added ({container.get('image')})")
                continue
            if old.get("image") != container.get("image"):
                lines.append(f"{key}[{name}].image: {old.get('image')} -> {container.get('image')}")
            old_fields, new_fields = _encoded(old), _encoded(container)
            differing = sorted(
                k
                for k in old_fields.keys() | new_fields.keys()
                if old_fields.get(k) != new_fields.get(k)
            )
            if differing:
                lines.append(f"{key}[{name}]: {', '.join(differing)} changed")
        lines += [f"{key}[{name}]: removed" for name in before if name not in after]
    for key in ("volumes", "imagePullSecrets"):
        before, after = _by_name(live_spec.get(key)), _by_name(restored.get(key))
        lines += [f"{key}[{n}]: added" for n in after if n not in before]
        lines += [f"{key}[{n}]: changed" for n in after if n in before and before[n] != after[n]]
        lines += [f"{key}[{n}]: removed" for n in before if n not in after]
    if (live_spec.get("patchPodMetadata") or None) != (restored.get("patchPodMetadata") or None):
        lines.append("patchPodMetadata: changed")
    return lines


def rollback(
    ctx: typer.Context,
    name: SidecarSetArgument,
    to_revision: Annotated[
        int | None,
        typer.Option(
            "--to-revision", min=1, help="Revision number (see `history`).", show_default=False
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
    ] = False,
    operator_namespace: OperatorNamespaceOption = OPERATOR_NAMESPACE,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    output: OutputOption = None,
) -> None:
    """Restore the sidecars of an earlier revision (default: the one before the current).

    Writes the revision's containers, initContainers, volumes, imagePullSecrets and
    patchPodMetadata into the live spec, and prints what changed. Image changes then roll
    back in place under the update strategy (a paused rollout stays paused); other changes
    reach pods when they are recreated.

    \b
    Examples:
      sidecarset rollback filebeat                    # to the previous revision
      sidecarset rollback filebeat --to-revision 3 --dry-run
      sidecarset history filebeat && sidecarset rollback filebeat --to-revision 1
    """
    target = resolve(ctx, kubeconfig=kubeconfig, context=context, output=output)

    async def main() -> tuple[Revision, list[str], bool]:
        async with connect(target) as cluster:
            raw, found = await _load(cluster, name, operator_namespace)
            chosen = choose_target(found, to_revision)
            changes = spec_changes(raw.get("spec") or {}, chosen.spec)
            if not changes or dry_run:
                return chosen, changes, False
            await cluster.patch_sidecarset(name, rollback_patch(raw, chosen))
            return chosen, changes, True

    chosen, changes, applied = asyncio.run(main())
    if target.output is not Output.TABLE:
        result = {
            "sidecarset": name,
            "revision": chosen.number,
            "revisionName": chosen.name,
            "changes": changes,
            "applied": applied,
        }
        typer.echo(render.dump(result, target.output))
        return
    if not changes:
        typer.echo(
            f"SidecarSet {name} already has the sidecars of revision {chosen.number} "
            f"({chosen.name}); nothing to do"
        )
        return
    verb = "would roll back" if dry_run else "rolled back"
    typer.echo(f"SidecarSet {name} {verb} to revision {chosen.number} ({chosen.name}):")
    for line in changes:
        typer.echo(f"  {line}")
