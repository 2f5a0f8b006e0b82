"""Draw docs/img/*.png from bench/results/*.json (`python -m bench.plots`; a full run calls it).

- webhook-latency.png: client p50/p99 and the server's own p99 against the request rate;
- rollout-progress.png: pods on the new sidecar, ready on it, and unavailable over time;
- scale.png: RSS, time to synced, reconcile and decision time against pods cached;
- peer-kruise.png: rollout wall time and peak RSS against pods, ours and kruise-manager.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.harness import RESULTS, ROOT

IMG = ROOT / "docs" / "img"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def webhook_latency(result: dict[str, Any]) -> Path:
    plt = _pyplot()
    steps = result["figures"]["steps"]
    rates = [s["rate"] for s in steps]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(rates, [s["p50_ms"] for s in steps], "o-", label="p50 (client)")
    ax.plot(rates, [s["p99_ms"] for s in steps], "s-", label="p99 (client)")
    ax.plot(rates, [s["server_p99_ms"] for s in steps], "^--", label="p99 (operator histogram)")
    ax.axhline(5, color="grey", linestyle=":", label="5 ms")
    ax.axhline(2, color="green", linestyle=":", label="target 2 ms at 200 req/s")
    ax.set_yscale("log")
    ax.set_xlabel("AdmissionReviews per second (open loop)")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title("Pod webhook: 3 of 100 SidecarSets match")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, "webhook-latency.png")


def rollout_progress(result: dict[str, Any]) -> Path:
    plt = _pyplot()
    rows = result["series"]["progress"]["rows"]
    figures = result["figures"]
    t = [r[0] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(t, [r[1] for r in rows], label="spec on new image")
    ax.plot(t, [r[2] for r in rows], label="ready on new image")
    ax.plot(t, [r[3] for r in rows], label="not ready (unavailable)")
    ax.axhline(
        figures["max_unavailable_allowed"], color="grey", linestyle=":", label="maxUnavailable 10%"
    )
    ax.set_xlabel("seconds since the image change")
    ax.set_ylabel("pods")
    ax.set_title(f"In-place rollout of {figures['pods']} pods")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, "rollout-progress.png")


def scale(result: dict[str, Any]) -> Path:
    plt = _pyplot()
    steps = result["figures"]["steps"]
    pods = [s["pods"] for s in steps]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    axes[0].plot(pods, [s["rss_mib_end"] for s in steps], "o-", label="RSS")
    axes[0].plot(pods, [s["peak_rss_mib"] for s in steps], "s--", label="peak RSS")
    axes[0].axhline(150, color="grey", linestyle=":", label="target 150 MiB")
    axes[0].set_ylabel("MiB")
    axes[0].set_title("operator memory")
    axes[1].plot(pods, [s["seconds_to_caches_synced"] for s in steps], "o-", label="synced")
    axes[1].plot(pods, [s["seconds_to_ready"] for s in steps], "s--", label="ready")
    axes[1].axhline(10, color="grey", linestyle=":", label="target 10 s")
    axes[1].set_ylabel("seconds from process start")
    axes[1].set_title("startup")
    for case, marker, label in (
        ("settled", "o", "decision, settled"),
        ("new_image", "s", "decision, new image"),
    ):
        for memo, line in (("warm", "-"), ("cold", ":")):
            axes[2].plot(
                pods,
                [s["decision"][case][memo]["total_ms_median"] for s in steps],
                marker=marker,
                linestyle=line,
                label=f"{label} ({memo})",
            )
    axes[2].plot(
        pods, [s["reconcile_mean_ms"] for s in steps], "^--", label="operator round (mean)"
    )
    axes[2].plot(
        pods,
        [s.get("first_rounds_mean_ms") for s in steps],
        "v--",
        label="operator round after start",
    )
    axes[2].axhline(50, color="grey", linestyle=":", label="target 50 ms")
    axes[2].set_ylabel("ms (log scale)")
    axes[2].set_yscale("log")
    axes[2].set_title("one SidecarSet round")
    for ax in axes:
        ax.set_xlabel("pods cached")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, "scale.png")


def peer_kruise(result: dict[str, Any]) -> Path:
    """Rollout wall time and peak RSS against pods, both operators at equal client QPS."""
    plt = _pyplot()
    sizes = result["settings"]["sizes"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for operator, marker in (("kruise", "s--"), ("sidecarset", "o-")):
        rollouts = result["summary"][operator]["rollout"]
        for setting, label in (("equal", "equal QPS"), ("default", "its default QPS")):
            if operator == "sidecarset" and setting == "default":
                continue  # ours' default is the equal setting
            axes[0].plot(
                sizes,
                [rollouts[setting][str(n)]["seconds_to_all_pods_updated_and_ready"] for n in sizes],
                marker if setting == "equal" else ":",
                label=f"{operator}, {label}",
            )
        axes[1].plot(
            sizes,
            [rollouts["equal"][str(n)]["operator_peak_rss_mib"] for n in sizes],
            marker,
            label=operator,
        )
    axes[0].set_ylabel("seconds, image change to all pods ready")
    axes[0].set_title("rollout wall time (maxUnavailable 10%)")
    axes[1].set_ylabel("MiB")
    axes[1].set_title("operator peak RSS during the rollout")
    for ax in axes:
        ax.set_xlabel("pods")
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, "peer-kruise.png")


def _save(fig: Any, name: str) -> Path:
    IMG.mkdir(parents=True, exist_ok=True)
    path = IMG / name
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def draw_all() -> list[Path]:
    drawn = []
    for name, draw in (
        ("webhook_server", webhook_latency),
        ("rollout", rollout_progress),
        ("scale", scale),
        ("peer-kruise", peer_kruise),
    ):
        result = _load(name)
        if result is not None:
            drawn.append(draw(result))
    return drawn


if __name__ == "__main__":
    for path in draw_all():
        print(path.relative_to(ROOT))
