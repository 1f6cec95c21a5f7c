"""The results of one `make bench` run: one JSON file, PNG charts and a printed table."""
from __future__ import annotations

import json
import time
from typing import Any

from tests.bench.support import RESULTS_DIR

RESULTS: dict[str, Any] = {"benchmarks": {}, "table": []}
_started = [0.0]


def start(run: str) -> None:
    _started[0] = time.monotonic()
    RESULTS["run"] = run
    RESULTS["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    RESULTS["code"] = _code_state()


def _code_state() -> dict[str, Any]:
    """The commit measured, and the files that differed from it (uncommitted work is measured too)."""
    import subprocess

    from tests.bench.support import ROOT

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD"),
            "modified": [line[3:] for line in git("status", "--porcelain").splitlines()
                         if not line[3:].startswith(("tests/", "bench-results/"))]}


def record(name: str, data: dict[str, Any]) -> None:
    RESULTS["benchmarks"][name] = data


def row(figure: str, value: float | None, unit: str, *, baseline: float | None = None,
        baseline_name: str = "", target: str = "", met: bool | None = None,
        ratio: float | None = None) -> None:
    if ratio is None and baseline and value is not None:
        ratio = value / baseline
    RESULTS["table"].append({"figure": figure, "value": value, "unit": unit, "baseline": baseline,
                             "baseline_name": baseline_name,
                             "ratio": None if ratio is None else round(ratio, 3),
                             "target": target, "met": met})


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table_text() -> str:
    header = ("figure", "value", "baseline", "ratio", "target", "met?")
    lines = []
    for r in RESULTS["table"]:
        baseline = "-" if r["baseline"] is None else f"{_fmt(r['baseline'])} ({r['baseline_name']})"
        lines.append((r["figure"], f"{_fmt(r['value'])} {r['unit']}", baseline, _fmt(r["ratio"]), r["target"],
                      _fmt(r["met"])))
    widths = [max(len(str(x)) for x in col)
              for col in zip(header, *lines)] if lines else [len(h) for h in header]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(line, widths)) + " |" for line in lines]
    return "\n".join(out)


def _charts(stamp: str) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b = RESULTS["benchmarks"]
    paths = []
    # Throughput, each figure beside its baseline.
    groups = []
    if "ingest" in b:
        i = b["ingest"]
        groups.append(("answer ingest (req/s)",
                       [("answers", i.get("answers_per_s")), ("/healthz", i.get("healthz_per_s")),
                                                  ("pgbench", i.get("pgbench_tps"))]))
    if "relay" in b:
        groups.append(("relay (events/s)", [("relay", b["relay"].get("events_per_s")),
                                             ("bare producer", b["relay"].get("bare_producer_per_s"))]))
    if "worker" in b:
        groups.append(("worker (events/s)", [("worker", b["worker"].get("events_per_s")),
                                              ("redis-benchmark", b["worker"].get("redis_benchmark_per_s"))]))
    if "fanout" in b:
        f = b["fanout"]
        groups.append(("fan-out (messages/s received)", [
            (k, f.get(k, {}).get("messages_per_s")) for k in ("one_room", "fifty_rooms")]))
    groups = [(title, [(n, v) for n, v in bars if v]) for title, bars in groups]
    groups = [g for g in groups if g[1]]
    if groups:
        fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 4))
        axes = axes if len(groups) > 1 else [axes]
        for ax, (title, bars) in zip(axes, groups):
            names, values = zip(*bars)
            ax.bar(names, values, color=["#3b7dd8", "#999999", "#bbbbbb"][:len(values)])
            ax.set_title(title, fontsize=10)
            for x, v in enumerate(values):
                ax.annotate(f"{v:,.0f}", (x, v), ha="center", va="bottom", fontsize=8)
            ax.tick_params(axis="x", labelsize=8)
        fig.suptitle("Throughput beside same-run baselines (2 cores, everything co-located)", fontsize=10)
        fig.tight_layout()
        path = RESULTS_DIR / f"throughput-{stamp}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(str(path))
    # Latency percentiles.
    series = []
    if "e2e" in b:
        for rate, data in sorted(b["e2e"].get("rates", {}).items(), key=lambda kv: int(kv[0])):
            series.append((f"e2e @{rate}/s", data.get("latency_ms", {})))
    if "fanout" in b:
        for key, label in (("one_room", "fan-out 1 room"), ("fifty_rooms", "fan-out 50 rooms")):
            if key in b["fanout"]:
                series.append((label, b["fanout"][key].get("last_socket_ms", {})))
    if "growth" in b:
        for key in ("empty", "grown"):
            if key in b["growth"]:
                series.append((f"answer {key}", b["growth"][key].get("answer_latency_ms", {})))
    if "ingest" in b and b["ingest"].get("wrk_latency_ms"):
        series.append(("ingest (closed loop)", b["ingest"]["wrk_latency_ms"]))
    if series:
        fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(series) + 2), 4))
        width = 0.27
        for k, p in enumerate(("p50", "p95", "p99")):
            xs = [i + (k - 1) * width for i in range(len(series))]
            ax.bar(xs, [s[1].get(p) or 0 for s in series], width, label=p)
        ax.set_xticks(range(len(series)), [s[0] for s in series], fontsize=8, rotation=15)
        ax.set_ylabel("ms")
        ax.set_yscale("log")
        ax.axhline(50, ls=":", c="gray", lw=0.8)
        ax.axhline(150, ls=":", c="gray", lw=0.8)
        ax.legend(fontsize=8)
        ax.set_title("Latency percentiles (log scale; dotted: 50 ms and 150 ms)", fontsize=10)
        fig.tight_layout()
        path = RESULTS_DIR / f"latency-{stamp}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(str(path))
    return paths


def finish() -> None:
    if not RESULTS["benchmarks"]:
        return
    RESULTS_DIR.mkdir(exist_ok=True)
    RESULTS["wall_time_s"] = round(time.monotonic() - _started[0], 1)
    stamp = RESULTS.get("run", time.strftime("%Y%m%d-%H%M%S"))
    try:
        RESULTS["charts"] = _charts(stamp)
    except Exception as exc:  # noqa: BLE001 - the JSON still matters without charts
        RESULTS["charts"] = []
        RESULTS["chart_error"] = repr(exc)
    path = RESULTS_DIR / f"results-{stamp}.json"
    path.write_text(json.dumps(RESULTS, indent=2, default=str))
    m = RESULTS.get("machine", {})
    print("\n\n== livequiz benchmark", stamp, "==")
    print(f"machine: {m.get('cpu_model')}, {m.get('cores')} cores, {m.get('memory_gb')} GB, "
          f"kernel {m.get('kernel')}, Python {m.get('python')}, PostgreSQL {m.get('postgresql')}, "
          f"Redis {m.get('redis')}, Kafka {m.get('kafka')}")
    print(table_text())
    print(f"results: {path}")
    for chart in RESULTS["charts"]:
        print(f"chart:   {chart}")
    print(f"wall time: {RESULTS['wall_time_s']:.0f} s")
