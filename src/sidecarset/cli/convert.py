"""`sidecarset convert -f`: SidecarSet manifests in the other served version, for GitOps
repositories moving from apps.kruise.io/v1alpha1 to v1beta1 (or back).

The conversion is the operator's own (`core.conversion`), so a converted manifest applies to
the same stored object as the original. Other documents are printed unchanged.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, Any

import typer

from sidecarset.app import offline
from sidecarset.cli import render
from sidecarset.cli.errors import CliError
from sidecarset.cli.inject import FilenamesOption, read_sources
from sidecarset.cli.options import Output, OutputOption, resolve
from sidecarset.core import conversion


class Version(StrEnum):
    V1BETA1 = "v1beta1"
    V1ALPHA1 = "v1alpha1"


def converted(manifest: offline.Manifest, to: Version | None) -> dict[str, Any]:
    """The document in `to` (None: the other version of its own); other kinds as they are."""
    if not offline.is_sidecarset(manifest):
        return manifest.body
    own = manifest.body.get("apiVersion")
    if to is None:
        target = conversion.V1BETA1 if own == conversion.V1ALPHA1 else conversion.V1ALPHA1
    else:
        target = f"{conversion.API_GROUP}/{to.value}"
    try:
        return conversion.convert(manifest.body, target)
    except conversion.ConversionError as err:
        raise CliError(f"{manifest.where}: {err}") from err


def convert(
    ctx: typer.Context,
    filenames: FilenamesOption,
    to: Annotated[
        Version | None,
        typer.Option(
            "--to",
            help="Convert every SidecarSet to this version (those already in it are unchanged).",
            show_default="the other version of each SidecarSet",
        ),
    ] = None,
    output: OutputOption = None,
) -> None:
    """Print SidecarSet manifests in the other API version (apps.kruise.io v1alpha1 <-> v1beta1).

    Every document of the input is printed in order; SidecarSets are converted exactly as the
    operator's conversion webhook converts them, other documents are printed as they are.
    v1alpha1 `namespace: X` becomes a `namespaceSelector` on `kubernetes.io/metadata.name: X`
    (recorded in the annotation conversion.sidecarset.kruise.io/v1alpha1-namespace, so that
    converting back gives `namespace: X` again); the label
    apps.kruise.io/sidecarset-custom-version becomes `spec.customVersion` and back. A List's
    items are printed as separate documents; YAML comments are not kept. Offline: no cluster
    is contacted.

    \b
    Examples:
      sidecarset convert -f sidecarsets/ > sidecarsets-v1beta1.yaml
      sidecarset convert -f filebeat.yaml --to v1beta1
      kubectl get sidecarsets.v1alpha1.apps.kruise.io -o yaml | sidecarset convert -f -
    """
    target = resolve(ctx, kubeconfig=None, context=None, output=output, default_output=Output.YAML)
    if target.output is Output.TABLE:
        raise typer.BadParameter("convert prints manifests: use yaml or json", param_hint="-o")
    manifests = read_sources(filenames, sys.stdin)
    if not any(offline.is_sidecarset(m) for m in manifests):
        typer.echo("warning: no SidecarSets in the input; nothing is converted", err=True)
    documents = [converted(m, to) for m in manifests]
    if documents:
        typer.echo(render.dump_documents(documents, target.output))
