"""`sidecarset operator run`: the operator process (webhooks, controller, or both)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from sidecarset.app.settings import Mode, OperatorSettings

app = typer.Typer(help="Run the sidecarset operator.", no_args_is_help=True)


@app.command()
def run(
    mode: Annotated[
        Mode,
        typer.Option(
            help="all: webhooks and controller; webhook: admission "
            "only (every replica); controller: status and upgrades "
            "(leader-elected)."
        ),
    ] = Mode.ALL,
    kubeconfig: Annotated[
        str | None,
        typer.Option(
            help="Kubeconfig file; default: in-cluster credentials in a pod, else ~/.kube/config.",
            envvar="KUBECONFIG",
        ),
    ] = None,
    namespace: Annotated[
        str,
        typer.Option(
            envvar="POD_NAMESPACE",
            help="The operator's namespace (Lease, certificates, revisions).",
        ),
    ] = "sidecarset-system",
    local: Annotated[
        bool,
        typer.Option(
            help="Local control plane: URL webhooks on 127.0.0.1, "
            "file certificates, install the CRD."
        ),
    ] = False,
    install_crd: Annotated[
        bool | None,
        typer.Option(
            "--install-crd/--no-install-crd",
            help="Apply the SidecarSet CRD at start (default: only with --local).",
        ),
    ] = None,
    bind_address: Annotated[
        str | None,
        typer.Option(
            help="Address the webhook and probe servers listen on (default: 0.0.0.0; "
            "127.0.0.1 with --local)."
        ),
    ] = None,
    webhook_port: Annotated[
        int, typer.Option(help="HTTPS webhook port (0: any free port).")
    ] = 9443,
    probe_port: Annotated[
        int, typer.Option(help="Port of /healthz, /readyz, /metrics (0: any free port).")
    ] = 8080,
    service_name: Annotated[
        str, typer.Option(help="The webhook's Service (in-cluster webhook configurations).")
    ] = "sidecarset-webhook",
    certificate_secret: Annotated[
        str, typer.Option(help="Secret holding the webhook CA and serving certificate.")
    ] = "sidecarset-webhook-certs",
    lease_name: Annotated[
        str, typer.Option(help="Lease of the controller's leader election.")
    ] = "sidecarset-controller",
    failure_policy: Annotated[
        str, typer.Option(help="Pod injection failurePolicy: Fail or Ignore.")
    ] = "Fail",
    exclude_namespace: Annotated[
        list[str] | None, typer.Option(help="Never inject pods in this namespace (repeatable).")
    ] = None,
    skip_critical_pods: Annotated[
        bool,
        typer.Option(
            help="Never send system-node-critical / system-cluster-critical pods to the "
            "webhook, so they start even with every replica down."
        ),
    ] = True,
    leader_election: Annotated[
        bool, typer.Option(help="Run the controller only while holding the Lease.")
    ] = True,
    lease_duration: Annotated[
        float,
        typer.Option(
            min=3.0,
            help="Seconds a silent leader keeps the Lease (the failover time). The leader renews "
            "it every quarter of that and stops leading after two thirds without a renewal.",
        ),
    ] = 15.0,
    workers: Annotated[int, typer.Option(min=1, max=32, help="Reconcile workers.")] = 3,
    qps: Annotated[float, typer.Option(help="Client-side API request rate limit.")] = 50.0,
    allow_privileged_sidecars: Annotated[
        bool,
        typer.Option(
            help="Allow SidecarSets injecting privileged containers, host namespaces, added "
            "capabilities or hostPath volumes."
        ),
    ] = False,
    failing_after: Annotated[
        float,
        typer.Option(
            help="Seconds an updated pod may stay unavailable before the rollout is "
            "reported Stalled."
        ),
    ] = 300.0,
    drain_seconds: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="After SIGTERM, seconds the webhook keeps answering while /readyz fails, "
            "before it closes (default: 10; 0 with --local). A second signal stops at once.",
        ),
    ] = None,
    whitelist_full_match: Annotated[
        bool,
        typer.Option(
            help="patchPodMetadata whitelist patterns must match the whole annotation key "
            "(default: anywhere in the key, as Kruise matches)."
        ),
    ] = False,
    ready_file: Annotated[
        Path | None, typer.Option(help="Created once the operator is ready (for scripts).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the operator until SIGTERM.

    \b
    Examples:
      sidecarset operator run                          # in a pod: all modes, in-cluster auth
      sidecarset operator run --mode webhook           # admission only, on every replica
      sidecarset operator run --local --kubeconfig .cluster/kubeconfig --webhook-port 0
    """
    from sidecarset.app import run as runner
    from sidecarset.shell import event_loops, logs

    if failure_policy not in ("Fail", "Ignore"):
        raise typer.BadParameter("must be Fail or Ignore", param_hint="--failure-policy")
    logs.configure(log_level)
    settings = OperatorSettings(
        mode=mode,
        kubeconfig=kubeconfig,
        namespace=namespace,
        local=local,
        install_crd=local if install_crd is None else install_crd,
        webhook_host=bind_address or ("127.0.0.1" if local else "0.0.0.0"),
        webhook_port=webhook_port,
        probe_port=probe_port,
        service_name=service_name,
        certificate_secret=certificate_secret,
        lease_name=lease_name,
        failure_policy=failure_policy,
        excluded_namespaces=tuple(exclude_namespace or ()),
        skip_critical_pods=skip_critical_pods,
        leader_election=leader_election,
        lease_duration=lease_duration,
        workers=workers,
        qps=qps,
        allow_privileged_sidecars=allow_privileged_sidecars,
        drain_seconds=(0.0 if local else 10.0) if drain_seconds is None else drain_seconds,
        ready_file=ready_file,
        log_level=log_level,
        failing_after=failing_after,
        whitelist_full_match=whitelist_full_match,
    )
    with asyncio.Runner(loop_factory=event_loops.loop_factory()) as loop_runner:
        loop_runner.run(runner.run(settings))
