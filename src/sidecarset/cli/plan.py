"""`sidecarset plan NAME`: what the controller's next round would do, and why for every pod.

Fetches the SidecarSet, every pod (paginated), the namespaces, its revisions and the namespaces
the pod webhook never sees, and runs the controller's own round decision on them
(`round_decision.decide_round`: scope, revision, plan, missed injections, status). The output
keeps the plan's reasons unchanged: the pods the round updates (in update order, with their
image changes), the hold reason of every other matched pod, the budget arithmetic, and the pods
the selector matches that never got the sidecars. Read-only: nothing is written.
This module fetches and runs the command; `plan_explain` decides, `plan_output` prints.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from sidecarset.app import webhooks_config
from sidecarset.cli import render
from sidecarset.cli.connection import CONTROLLER_REVISIONS, Cluster, connect
from sidecarset.cli.errors import CliError
from sidecarset.cli.options import (
    OPERATOR_NAMESPACE,
    ContextOption,
    KubeconfigOption,
    OperatorNamespaceOption,
    Output,
    OutputOption,
    SidecarSetArgument,
    resolve,
)
from sidecarset.cli.plan_explain import (
    INACTIVE,
    NOT_INJECTED,
    OPTED_OUT,
    OTHERS_ONLY,
    Explanation,
    explain,
    selector_text,
)
from sidecarset.cli.plan_output import render_table, to_dict

# The names a reader of `plan` reaches for, whichever of the three modules defines them.
__all__ = [
    "INACTIVE",
    "NOT_INJECTED",
    "OPTED_OUT",
    "OTHERS_ONLY",
    "Explanation",
    "explain",
    "gather_and_explain",
    "plan",
    "render_table",
    "selector_text",
    "to_dict",
    "webhook_scope",
]
from sidecarset.core import model, pod_contract, status
from sidecarset.core.errors import ModelError
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import resource_path

# --- gathering --------------------------------------------------------------------------------


async def webhook_scope(
    cluster: Cluster, operator_namespace: str
) -> tuple[list[str], tuple[str, ...]]:
    """What the registered pod webhook is never called for, as the controller skips it: the
    namespaces its namespaceSelector excludes, and the priority classes its match condition
    skips. The operator's defaults when it cannot be read."""
    path = resource_path(
        "admissionregistration.k8s.io/v1",
        "mutatingwebhookconfigurations",
        name=webhooks_config.MUTATING_NAME,
    )
    defaults = webhooks_config.excluded_namespaces(operator_namespace)
    try:
        found = await cluster.client.get(path)
    except errors.ApiError:
        return defaults, webhooks_config.CRITICAL_PRIORITY_CLASSES
    excluded: set[str] = set()
    skipped: tuple[str, ...] = ()
    for hook in found.get("webhooks") or []:
        for requirement in (hook.get("namespaceSelector") or {}).get("matchExpressions") or []:
            if (
                requirement.get("key") == webhooks_config.NAMESPACE_NAME_LABEL
                and requirement.get("operator") == "NotIn"
            ):
                excluded.update(str(v) for v in requirement.get("values") or [])
        conditions = [c.get("name") for c in hook.get("matchConditions") or []]
        if webhooks_config.SKIP_CRITICAL_CONDITION["name"] in conditions:
            skipped = webhooks_config.CRITICAL_PRIORITY_CLASSES
    return sorted(excluded) or defaults, skipped


async def _revisions(
    cluster: Cluster, name: str, namespace: str
) -> tuple[list[dict[str, Any]], list[str]]:
    path = resource_path(*CONTROLLER_REVISIONS, namespace=namespace)
    try:
        found = await cluster.list_objects(
            path, label_selector=f"{pod_contract.SIDECARSET_NAME_LABEL}={name}"
        )
    except (errors.Forbidden, errors.NotFound) as err:
        return [], [
            f"cannot read the revisions in namespace {namespace!r} ({err.message}); the "
            "revision name is computed from the spec"
        ]
    except errors.ApiError as err:
        raise cluster.failure(f"list ControllerRevisions in {namespace!r}", err) from err
    return found, []


async def _namespace_labels(cluster: Cluster) -> dict[str, dict[str, str]]:
    listed = await cluster.call(
        "list namespaces", lambda: cluster.list_objects(resource_path("v1", "namespaces"))
    )
    return {str(ns["metadata"]["name"]): dict(ns["metadata"].get("labels") or {}) for ns in listed}


async def gather_and_explain(
    cluster: Cluster,
    name: str,
    operator_namespace: str,
    failing_after: timedelta = status.DEFAULT_FAILING_AFTER,
) -> Explanation:
    raw = await cluster.sidecarset(name)
    try:
        sidecarset = model.parse_sidecarset(raw)
    except ModelError as err:
        raise CliError(
            f"SidecarSet {name!r} cannot be read ({err}); the controller does not roll it either"
        ) from err
    pods = await cluster.pods()
    labels = await _namespace_labels(cluster) if sidecarset.spec.namespace_selector else {}
    stored, warnings = await _revisions(cluster, name, operator_namespace)
    excluded, skipped = await webhook_scope(cluster, operator_namespace)
    return explain(
        sidecarset,
        pods,
        stored,
        datetime.now(UTC),
        namespace_labels=labels,
        excluded_namespaces=excluded,
        skipped_priority_classes=skipped,
        warnings=warnings,
        failing_after=failing_after,
    )


def plan(
    ctx: typer.Context,
    name: SidecarSetArgument,
    operator_namespace: OperatorNamespaceOption = OPERATOR_NAMESPACE,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    output: OutputOption = None,
    failing_after: Annotated[
        float,
        typer.Option(
            help="Seconds an updated pod may stay unavailable before the rollout counts as "
            "Stalled: give the operator's own --failing-after, so both judge alike.",
            min=0,
        ),
    ] = status.DEFAULT_FAILING_AFTER.total_seconds(),
) -> None:
    """Show what the controller's next rollout round would do, and why, for every pod.

    Runs the controller's own planner on the live pods: the pods the next round updates, in
    order, with their image changes; for every other matched pod the reason it waits (updated,
    paused, notSelected: outside the canary selector, partition, budget: maxUnavailable spent,
    notUpgradable: with the field that blocks it, inFlight, notUpdate); the budget arithmetic;
    and the pods the selector matches that never got the sidecars (missed injection). Reads
    only; pods the controller has just written and not yet seen are not known here.

    \b
    Examples:
      sidecarset plan filebeat
      sidecarset plan filebeat -o json | jq '.held[] | select(.reason == "notUpgradable")'
      kubectl sidecarset plan filebeat --context prod
    """
    target = resolve(ctx, kubeconfig=kubeconfig, context=context, output=output)

    async def main() -> Explanation:
        async with connect(target) as cluster:
            return await gather_and_explain(
                cluster, name, operator_namespace, timedelta(seconds=failing_after)
            )

    expl = asyncio.run(main())
    if target.output is Output.TABLE:
        typer.echo(render_table(expl))
    else:
        typer.echo(render.dump(to_dict(expl), target.output))
