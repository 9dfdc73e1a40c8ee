#!/usr/bin/env bash
# The whole test suite, as CI runs it: format, lints, unit tests and integration tests
# against a real local Kubernetes API server (built on first use, then cached).
#
# Usage: hack/test.sh [extra arguments for cargo nextest / cargo test]
# Environment:
#   FLOWRUN_TEST_KUBECONFIG  run the integration tests against this cluster instead
#   FLOWRUN_CLUSTER_DIR      state directory of the test cluster (default <cache>/test-cluster)
# Needs python3 (3.11+, with venv) for the chart tests: hack/chart.sh installs their tools.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$FLOWRUN_HACK_DIR/.."

need cargo
started=$(now_ms)
stage() { log "==> $* ($(((($(now_ms) - started) + 500) / 1000)) s)"; }

stage "cargo fmt --check"
cargo fmt --all -- --check || die "code is not formatted: run 'cargo fmt --all'"

stage "cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings

stage "cargo deny check licenses bans sources (deny.toml; the first run installs cargo-deny)"
# Offline: these three checks need only Cargo.lock and the crates' manifests. The advisories
# check needs a database these machines cannot fetch (.github/workflows/advisories.yml runs it,
# with the same cargo-deny version).
PATH=$(cargo_tool cargo-deny 0.20.2):$PATH cargo deny --locked --offline --workspace \
  check licenses bans sources

stage "Helm chart: lint, render and validate (hack/chart.sh; the first run installs its tools)"
FLOWRUN_CHART_PYTHON=$("$FLOWRUN_HACK_DIR/chart.sh" setup)
export FLOWRUN_CHART_PYTHON # tests/rbac.rs and tests/chart.rs render the chart with it
"$FLOWRUN_HACK_DIR/chart.sh" test

stage "Prometheus and promtool from Debian's packages (tests/monitoring.rs; fetched once into the cache)"
FLOWRUN_PROMETHEUS_BIN_DIR=$("$FLOWRUN_HACK_DIR/apiserver/build.sh" --prometheus)
export FLOWRUN_PROMETHEUS_BIN_DIR

stage "argocd-lua on Debian's gopher-lua, Argo CD's Lua VM (tests/argocd.rs; built once into the cache)"
FLOWRUN_ARGOCD_LUA=$("$FLOWRUN_HACK_DIR/apiserver/build.sh" --argocd-lua)
export FLOWRUN_ARGOCD_LUA

stage "release binary, as the Dockerfile builds it (tested by tests/release.rs)"
cargo build --release --locked --bin flowrun-operator
export FLOWRUN_RELEASE_BINARY=$PWD/target/release/flowrun-operator

stage "container tools from Debian's packages: runc, umoci, skopeo, and cargo-cyclonedx (tests/image.rs; installed once into the cache)"
"$FLOWRUN_HACK_DIR/image.sh" tools >/dev/null

if [[ -z ${FLOWRUN_TEST_KUBECONFIG:-} ]]; then
  # The tests' own cluster, apart from the one a demo may be running.
  export FLOWRUN_CLUSTER_DIR=${FLOWRUN_CLUSTER_DIR:-$FLOWRUN_CACHE/test-cluster}
  stage "local API server (the first run builds it, about 3 minutes)"
  "$FLOWRUN_HACK_DIR/cluster.sh" up >/dev/null
  trap '"$FLOWRUN_HACK_DIR/cluster.sh" down || true' EXIT
fi

stage "unit and integration tests"
# Built once here, not by whichever test process asks first while the others wait for it.
cargo build --locked --package appflow-local --bin appflow-local
if cargo nextest --version >/dev/null 2>&1; then
  # Doc tests first, as nextest does not run them: flowrun-core's compile_fail checks.
  cargo test --locked --workspace --doc
  cargo nextest run --locked --workspace --no-tests=fail "$@"
else
  cargo test --locked --workspace "$@"
fi
stage "all tests passed"
