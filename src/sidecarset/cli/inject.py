"""`sidecarset inject -f`: offline injection for GitOps and CI, the webhook's decision on files.

Reads manifests (files, directories, stdin), takes SidecarSets from them and optionally from the
cluster, and prints every manifest with the sidecars injected into its pod template; the
decision itself is `app.offline`, which calls the webhook's own code.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
import yaml

from sidecarset.app import cached_objects, offline
from sidecarset.app.cached_objects import SidecarSetEntry
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
    Target,
    resolve,
)
from sidecarset.core import pod_contract
from sidecarset.shell.kube import errors
from sidecarset.shell.kube.client import resource_path

SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "-"

FilenamesOption = Annotated[
    list[str],
    typer.Option(
        "-f",
        "--filename",
        help="A manifest file, a directory of them, or - for standard input (repeatable).",
        show_default=False,
    ),
]


# --- reading ----------------------------------------------------------------------------------


def read_sources(sources: Sequence[str], stdin: TextIO) -> list[offline.Manifest]:
    """Every document of every source, in order. A directory means its *.yaml, *.yml and *.json
    files in name order (not recursive); `-` is standard input."""
    manifests: list[offline.Manifest] = []
    for source in sources:
        if source == STDIN:
            manifests.extend(parse_documents(stdin.read(), "<stdin>"))
            continue
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES)
            if not files:
                raise CliError(f"{source}: no .yaml, .yml or .json files in this directory")
        elif path.exists():
            files = [path]
        else:
            raise CliError(f"{source}: no such file or directory")
        for file in files:
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as err:
                raise CliError(f"{file}: cannot read: {err}") from err
            manifests.extend(parse_documents(text, str(file)))
    return manifests


def parse_documents(text: str, source: str) -> list[offline.Manifest]:
    """The objects of a YAML stream or a JSON document; a `List` contributes its items.

    Empty documents are skipped but counted, so indexes match the `---` separators.
    """
    manifests: list[offline.Manifest] = []
    for index, doc in enumerate(_documents(text, source), start=1):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise CliError(
                f"{source}: document {index}: not a Kubernetes object (found a "
                f"{type(doc).__name__}, expected a mapping with apiVersion and kind)"
            )
        items = doc.get("items") if str(doc.get("kind", "")).endswith("List") else None
        if isinstance(items, list):
            for item in items:
                if not isinstance(item, dict):
                    raise CliError(f"{source}: document {index}: a List item is not an object")
                manifests.append(offline.Manifest(source=source, index=index, body=item))
            continue
        if not doc.get("kind"):
            raise CliError(f"{source}: document {index}: has no `kind`")
        manifests.append(offline.Manifest(source=source, index=index, body=doc))
    return manifests


def _documents(text: str, source: str) -> Iterable[object]:
    if source.endswith(".json") or text.lstrip().startswith(("{", "[")):
        try:
            return [json.loads(text)]
        except ValueError as err:
            if source.endswith(".json"):
                raise CliError(f"{source}: document 1: not valid JSON: {err}") from err
    return _yaml_documents(text, source)


def _yaml_documents(text: str, source: str) -> list[object]:
    docs: list[object] = []
    try:
        for doc in yaml.safe_load_all(text):
            docs.append(doc)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise CliError(
            f"{source}: document {len(docs) + 1}: not valid YAML{line}: {problem}"
        ) from err
    return docs


def parse_labels(text: str) -> dict[str, str]:
    """`k=v,k2=v2` -> a dict; raises typer.BadParameter (a usage error) when malformed."""
    labels: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{part!r} is not key=value", param_hint="--namespace-labels")
        labels[key.strip()] = value.strip()
    return labels


def parse_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an RFC 3339 time such as 2025-01-31T12:00:00Z", param_hint="--now"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


# --- the cluster's view -----------------------------------------------------------------------


async def _cluster_sidecarsets(cluster: Cluster) -> list[SidecarSetEntry]:
    entries = [cached_objects.entry(raw) for raw in await cluster.sidecarsets()]
    for entry in entries:
        if entry.sidecarset is None:
            typer.echo(
                f"warning: SidecarSet {entry.name} in the cluster cannot be read and is "
                f"not injected (as by the webhook): {entry.error}",
                err=True,
            )
    return entries


async def _cluster_namespace_labels(
    cluster: Cluster, namespaces: Iterable[str]
) -> dict[str, dict[str, str] | None]:
    labels: dict[str, dict[str, str] | None] = {}
    for name in sorted(set(namespaces)):
        try:
            ns = await cluster.client.get(resource_path("v1", "namespaces", name=name))
        except errors.NotFound:
            labels[name] = None  # as the webhook: namespaceSelector SidecarSets pass it over
            continue
        except errors.ApiError as err:
            raise cluster.failure(f"get namespace {name!r}", err) from err
        labels[name] = dict((ns.get("metadata") or {}).get("labels") or {})
    return labels


async def _cluster_revisions(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    """The operator's ControllerRevisions: the revision names pods record, and pinned
    revisions. Without the right to read them, injection goes on with a warning."""
    path = resource_path(*CONTROLLER_REVISIONS, namespace=namespace)
    try:
        return await cluster.list_objects(path)
    except (errors.Forbidden, errors.NotFound) as err:
        typer.echo(
            f"warning: cannot read ControllerRevisions in namespace {namespace!r} "
            f"({err.message}); revision names are computed from the SidecarSets, and pinned "
            "revisions cannot be resolved",
            err=True,
        )
        return []
    except errors.ApiError as err:
        raise cluster.failure(f"list ControllerRevisions in namespace {namespace!r}", err) from err


# --- the command ------------------------------------------------------------------------------


def inject(
    ctx: typer.Context,
    filenames: FilenamesOption,
    from_cluster: Annotated[
        bool,
        typer.Option(
            "--from-cluster",
            help="Also use the cluster's SidecarSets (the files' own replace those of the same "
            "name) and the cluster's namespace labels.",
        ),
    ] = False,
    namespace: Annotated[
        str | None,
        typer.Option(
            "-n",
            "--namespace",
            help="Namespace of objects that name none.",
            show_default="default",
        ),
    ] = None,
    namespace_labels: Annotated[
        str | None,
        typer.Option(
            "--namespace-labels",
            help="Offline: labels of the namespace, k=v,... (kubernetes.io/metadata.name is "
            "always set), for SidecarSets with a namespaceSelector.",
            show_default=False,
        ),
    ] = None,
    include_sidecarsets: Annotated[
        bool,
        typer.Option(
            "--include-sidecarsets",
            help="Print the input's SidecarSets too (by default only the other documents).",
        ),
    ] = False,
    now: Annotated[
        str | None,
        typer.Option(
            "--now",
            help="Timestamp recorded in the pods' hash annotations (RFC 3339), for output that "
            "does not change between runs.",
            show_default="the current time",
        ),
    ] = None,
    operator_namespace: OperatorNamespaceOption = OPERATOR_NAMESPACE,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    output: OutputOption = None,
) -> None:
    """Inject sidecars into manifests offline, exactly as the webhook injects pods.

    Prints every document of the input in order (SidecarSets only with --include-sidecarsets),
    with the matching SidecarSets' containers, volumes and annotations added to the pod
    template of each Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController,
    Job and CronJob. Pods created from an injected template are left alone by the webhook.
    A List's items are printed as separate documents; YAML comments are not kept.

    \b
    Examples:
      sidecarset inject -f examples/logging/                 # SidecarSet + Deployment on disk
      sidecarset inject -f deploy.yaml --from-cluster        # the cluster's SidecarSets
      kustomize build overlays/prod | sidecarset inject -f - -f sidecarsets/ > rendered.yaml
      sidecarset inject -f app.yaml -f ss.yaml -n shop --namespace-labels team=shop -o json
    """
    target = resolve(
        ctx, kubeconfig=kubeconfig, context=context, output=output, default_output=Output.YAML
    )
    if target.output is Output.TABLE:
        raise typer.BadParameter("inject prints manifests: use yaml or json", param_hint="-o")
    if from_cluster and namespace_labels is not None:
        raise typer.BadParameter(
            "with --from-cluster the namespace labels come from the cluster",
            param_hint="--namespace-labels",
        )
    extra_labels = parse_labels(namespace_labels or "")
    stamp = parse_time(now) if now is not None else datetime.now(UTC)
    manifests = read_sources(filenames, sys.stdin)
    default_namespace = namespace or "default"

    namespaces = {
        offline.namespace_of(m, default_namespace)
        for m in manifests
        if m.kind in offline.POD_TEMPLATE_PATHS
    }
    if from_cluster:
        cluster_entries, labels, stored = asyncio.run(
            _from_cluster(target, namespaces, operator_namespace)
        )
    else:
        cluster_entries, stored = [], []
        labels = {ns: {pod_contract.NAMESPACE_NAME_LABEL: ns, **extra_labels} for ns in namespaces}
    revisions = stored + [m.body for m in manifests if m.kind == "ControllerRevision"]
    try:
        sidecarsets = offline.sidecarsets_from_manifests(
            manifests, cluster=cluster_entries, revisions=revisions
        )
    except offline.ManifestError as err:
        raise CliError(str(err)) from err
    if not sidecarsets:
        where = "the input or the cluster" if from_cluster else "the input (or use --from-cluster)"
        typer.echo(f"warning: no SidecarSets in {where}; nothing is injected", err=True)

    results = []
    for manifest in manifests:
        if offline.is_sidecarset(manifest) and not include_sidecarsets:
            continue
        try:
            result = offline.inject_manifest(
                manifest,
                sidecarsets,
                labels.get(offline.namespace_of(manifest, default_namespace)),
                default_namespace=default_namespace,
                revisions=lambda: revisions,
                now=stamp,
            )
        except offline.ManifestError as err:
            raise CliError(str(err)) from err
        _warn(result)
        results.append(result.body)
    if results:
        typer.echo(render.dump_documents(results, target.output))


async def _from_cluster(
    target: Target, namespaces: Iterable[str], operator_namespace: str
) -> tuple[list[SidecarSetEntry], dict[str, dict[str, str] | None], list[dict[str, Any]]]:
    async with connect(target) as cluster:
        entries = await _cluster_sidecarsets(cluster)
        labels = await _cluster_namespace_labels(cluster, namespaces)
        stored = await _cluster_revisions(cluster, operator_namespace)
    return entries, labels, stored


def _warn(result: offline.InjectedManifest) -> None:
    if result.injection is None:
        return
    for warning in result.injection.warnings:
        typer.echo(f"warning: {result.manifest.where}: {warning}", err=True)
