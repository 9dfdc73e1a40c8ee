#!/usr/bin/env bash
# The benchmark: the operator (release build) on a fresh local API server (with an audit log)
# and the local AppFlow endpoint, measured from the outside. Prints a table and writes it to
# target/bench/results.md, and the burst scenarios' plots beside it (start-latency.png,
# started-per-second.png, drawn by hack/bench-plots.py with matplotlib in a cached venv).
# Not part of the test command; docs/performance.md has the figures.
#
# Usage: hack/bench.sh [--quick] [--only raw,burst,paced,latency,economy,describe,footprint,backlog,scale]
#   scale runs only when named: it keeps 100,000 FlowRuns in the cluster (seeding takes minutes)
#   --quick   small sizes (about 3 minutes instead of about 15 minutes on 2 cores)
# Environment:
#   FLOWRUN_BENCH_CLUSTER_DIR  the benchmark cluster's state (default <cache>/bench-cluster);
#                              deleted before and after the run, so runs do not pile up objects
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$FLOWRUN_HACK_DIR/.."

need cargo
export FLOWRUN_CLUSTER_DIR=${FLOWRUN_BENCH_CLUSTER_DIR:-$FLOWRUN_CACHE/bench-cluster}
export FLOWRUN_AUDIT=1 # the economy scenario counts the operator's writes in the audit log

log "==> building the benchmark, the operator and the local AppFlow endpoint (release)"
cargo bench --locked --bench flowrun-bench --no-run
# Its own crate: built here so that the first scenario does not wait for it.
cargo build --locked --release --package appflow-local

log "==> a fresh API server in $FLOWRUN_CLUSTER_DIR"
"$FLOWRUN_HACK_DIR/cluster.sh" clean 2>/dev/null || true
"$FLOWRUN_HACK_DIR/cluster.sh" up >/dev/null
trap '"$FLOWRUN_HACK_DIR/cluster.sh" clean 2>/dev/null || true' EXIT

PLOT_VENV=$FLOWRUN_CACHE/bench-venv
python_venv "$PLOT_VENV" benches/requirements.txt "the benchmark's plotting tool"

log "==> running (every wait is bounded; the run stops by itself)"
rm -f target/bench/*.csv target/bench/*.png # plots of this run only
cargo bench --locked --bench flowrun-bench -- "$@"

if compgen -G 'target/bench/*.csv' >/dev/null; then
  PYTHONDONTWRITEBYTECODE=1 "$PLOT_VENV/bin/python" "$FLOWRUN_HACK_DIR/bench-plots.py" target/bench
  log "plots: target/bench/start-latency.png, target/bench/started-per-second.png"
fi
