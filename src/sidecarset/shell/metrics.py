"""Prometheus metrics, all prefixed `sidecarset_`, with units in the name.

Defined once here so every module increments the same series; served by the probe server.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WEBHOOK_LATENCY = Histogram(
    "sidecarset_webhook_request_duration_seconds",
    "Time to answer one AdmissionReview or ConversionReview, by webhook.",
    ["webhook"],
    # Fine below 5 ms, where a healthy webhook answers (the budget is 2 ms at p99).
    buckets=(
        0.00025,
        0.0005,
        0.00075,
        0.001,
        0.0015,
        0.002,
        0.003,
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1.0,
        2.5,
    ),
)
WEBHOOK_REQUESTS = Counter(
    "sidecarset_webhook_requests_total",
    "AdmissionReviews and ConversionReviews answered, by webhook and outcome "
    "(patched, allowed, denied, converted, failed, malformed, not_ready, error).",
    ["webhook", "outcome"],
)
INJECTIONS = Counter(
    "sidecarset_injections_total",
    "Pods injected with a SidecarSet's sidecars, by SidecarSet.",
    ["sidecarset"],
)
INJECTION_FAILURES = Counter(
    "sidecarset_injection_failures_total",
    "Pod admissions refused because injection could not be done, by reason.",
    ["reason"],
)
QUEUE_DEPTH = Gauge(
    "sidecarset_workqueue_depth",
    "Keys ready in the reconcile queue, waiting for a worker (not those waiting for a delay).",
)
RECONCILE_DURATION = Histogram(
    "sidecarset_reconcile_duration_seconds",
    "Time of one SidecarSet reconcile.",
)
RECONCILE_ERRORS = Counter(
    "sidecarset_reconcile_errors_total",
    "Reconciles that ended in an error, by kind (conflict: retried at once; terminal: not "
    "retried; error: retried with backoff).",
    ["kind"],
)
RECONCILE_ERROR_KINDS = ("conflict", "terminal", "error")
ROLLOUT_PODS = Gauge(
    "sidecarset_pods",
    "Pods of a SidecarSet by state (matched, updated, ready, updated_ready, missed_injection).",
    ["sidecarset", "state"],
)
POD_UPDATES = Counter(
    "sidecarset_pod_updates_total",
    "In-place pod updates written, by SidecarSet and result (ok, conflict, error).",
    ["sidecarset", "result"],
)
POD_CONDITIONS_WAITING = Gauge(
    "sidecarset_pod_conditions_waiting",
    "Pods whose SidecarSetUpgradable condition is decided but not yet written: those writes use "
    "only API rate that no pod update is waiting for.",
)
LEADER = Gauge("sidecarset_leader", "1 while this replica runs the controller.")
API_REQUESTS = Counter(
    "sidecarset_api_requests_total",
    "Requests this process sent to the API server, by verb (GET, LIST, WATCH, POST, PATCH, PUT, "
    "DELETE) and resource (pods, pods/status, sidecarsets/status, ...).",
    ["verb", "resource"],
)
INFORMER_RELISTS = Counter(
    "sidecarset_informer_relists_total",
    "Full relists, by resource.",
    ["resource"],
)

for kind in RECONCILE_ERROR_KINDS:
    RECONCILE_ERRORS.labels(kind=kind)
for outcome in ("patched", "allowed", "denied", "malformed", "not_ready", "error"):
    for webhook in ("mutate-pod", "validate-sidecarset", "mutate-sidecarset"):
        WEBHOOK_REQUESTS.labels(webhook=webhook, outcome=outcome)
for outcome in ("converted", "failed", "malformed", "error"):
    WEBHOOK_REQUESTS.labels(webhook="convert-sidecarset", outcome=outcome)
