"""Plots of the benchmark's burst scenarios, from the samples benches/flowrun-bench.rs writes
(target/bench/<scenario>.csv: per FlowRun, when its executionId was seen and its start latency).

Usage: python bench-plots.py DIR   writes DIR/start-latency.png and DIR/started-per-second.png
hack/bench.sh runs it in the venv it makes from benches/requirements.txt (matplotlib).
"""

import csv
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def load(path):
    with path.open() as f:
        rows = list(csv.DictReader(f))
    return [float(r["seen_s"]) for r in rows], [float(r["latency_ms"]) for r in rows]


def quantile(sorted_values, q):
    return sorted_values[max(1, math.ceil(len(sorted_values) * q)) - 1]


def main():
    out = Path(sys.argv[1])
    scenarios = {p.stem: load(p) for p in sorted(out.glob("*.csv"))}
    if not scenarios:
        sys.exit(f"no samples (*.csv) in {out}: run the burst, paced or latency scenario")

    # Start latency: one empirical distribution per scenario, on a log axis (ms to seconds).
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    for name, (_, latencies) in scenarios.items():
        values = sorted(latencies)
        fractions = [(i + 1) / len(values) for i in range(len(values))]
        label = f"{name}: p50 {quantile(values, 0.5):.0f} ms, p99 {quantile(values, 0.99):.0f} ms"
        ax.step(values, fractions, where="post", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("start latency: FlowRun created -> executionId seen (ms, log scale)")
    ax.set_ylabel("fraction of FlowRuns")
    ax.set_ylim(0, 1.01)
    ax.axhline(0.99, color="grey", linewidth=0.6, linestyle=":")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Start latency distribution")
    fig.tight_layout()
    fig.savefig(out / "start-latency.png")
    plt.close(fig)

    # Started per second: executionIds seen in each second since the first create.
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    for name, (seen, _) in scenarios.items():
        seconds = math.ceil(max(seen)) + 1
        counts = [0] * seconds
        for s in seen:
            counts[int(s)] += 1
        ax.step(range(seconds), counts, where="post", label=f"{name} ({len(seen)} in {max(seen):.1f} s)")
    ax.set_xlabel("seconds since the first FlowRun was created")
    ax.set_ylabel("runs started in that second")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("Started per second over the burst")
    fig.tight_layout()
    fig.savefig(out / "started-per-second.png")
    plt.close(fig)


if __name__ == "__main__":
    main()
