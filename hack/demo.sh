#!/usr/bin/env bash
# The operator's main job, locally: a real Kubernetes API server, the local AppFlow
# endpoint with the example flows, the operator, `kubectl apply -f examples/`, and the
# FlowRuns' status as it changes.
#
# Usage: hack/demo.sh [--keep]
#   --keep   leave the API server, the AppFlow endpoint and the operator running at the
#            end (stop them with: hack/demo.sh --stop)
#   --stop   stop what a --keep run left behind
# Environment:
#   FLOWRUN_DEMO_SECONDS  how long to watch the FlowRuns (default 25)
#   KUBECONFIG is ignored: the demo always uses its own local cluster.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$FLOWRUN_HACK_DIR/.."

export FLOWRUN_CLUSTER_DIR=${FLOWRUN_CLUSTER_DIR:-$FLOWRUN_CACHE/cluster}
DEMO_DIR=$FLOWRUN_CACHE/demo
WATCH_SECONDS=${FLOWRUN_DEMO_SECONDS:-25}
mkdir -p "$DEMO_DIR"

stop_background() {
  local name pid
  for name in operator appflow-local; do
    pid=$(cat "$DEMO_DIR/$name.pid" 2>/dev/null) || continue
    kill "$pid" 2>/dev/null || true
    rm -f "$DEMO_DIR/$name.pid"
  done
}

case ${1:-} in
--stop)
  stop_background
  "$FLOWRUN_HACK_DIR/cluster.sh" down
  exit 0
  ;;
--keep | '') ;;
*) die "unknown argument '$1' (use --keep or --stop)" ;;
esac
keep=${1:-}

need cargo
stop_background
log "==> Building the operator and the local AppFlow endpoint"
cargo build --locked --quiet --bin flowrun-operator --bin appflow-local

log "==> Starting the local Kubernetes API server (the first run builds it, about 3 minutes)"
KUBECONFIG=$("$FLOWRUN_HACK_DIR/cluster.sh" up)
export KUBECONFIG
# kubectl comes from the cluster's tool folder when the machine has none.
# shellcheck source=/dev/null
. "$FLOWRUN_CLUSTER_DIR/env"
if [[ -z $keep ]]; then
  trap 'stop_background; "$FLOWRUN_HACK_DIR/cluster.sh" down >/dev/null 2>&1 || true' EXIT
fi

log "==> Installing the FlowRun CRD"
kubectl apply -f crds/ >&2
kubectl wait --for=condition=Established --timeout=30s crd/flowruns.appflow.flowrun.dev >&2
# Start from a clean slate, so the demo shows every transition again.
kubectl delete flowruns --all --wait=false >/dev/null 2>&1 || true

log "==> Starting the local AppFlow endpoint with the example flows"
rm -f "$DEMO_DIR/appflow.address"
target/debug/appflow-local --config examples/appflow-local/flows.yaml \
  --listen 127.0.0.1:0 --address-file "$DEMO_DIR/appflow.address" \
  >"$DEMO_DIR/appflow-local.log" 2>&1 &
echo $! >"$DEMO_DIR/appflow-local.pid"
for _ in $(seq 100); do [[ -s $DEMO_DIR/appflow.address ]] && break; sleep 0.1; done
[[ -s $DEMO_DIR/appflow.address ]] || die "appflow-local did not start (log: $DEMO_DIR/appflow-local.log)"
endpoint=$(cat "$DEMO_DIR/appflow.address")
log "    AppFlow endpoint: $endpoint"

log "==> Starting the operator (log: $DEMO_DIR/operator.log)"
# Fake credentials: the local endpoint does not check signatures. A short not-found
# grace lets the demo show the FlowNotFound failure without waiting 10 minutes, and retries
# at most 4 s apart make the attempt after the grace come by about 19 s, inside the watch; a
# free loopback port for /metrics keeps the demo from clashing with anything on 8080.
AWS_ENDPOINT_URL_APPFLOW=$endpoint AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=AKIDDEMO AWS_SECRET_ACCESS_KEY=demo AWS_EC2_METADATA_DISABLED=true \
  target/debug/flowrun-operator --not-found-grace=15s --retry-max-delay=4s \
    --metrics-address=127.0.0.1:0 \
  >"$DEMO_DIR/operator.log" 2>&1 &
echo $! >"$DEMO_DIR/operator.pid"

log "==> kubectl apply -f examples/"
kubectl apply -f examples/ >&2

log "==> Watching the FlowRuns for ${WATCH_SECONDS} s"
timeout "$WATCH_SECONDS" kubectl get flowruns --watch --output-watch-events || true

log "==> Final state"
kubectl get flowruns -o wide
log ""
log "==> Conditions of salesforce-to-s3-once"
kubectl get flowrun salesforce-to-s3-once \
  -o jsonpath='{range .status.conditions[*]}{.type}={.status} ({.reason}): {.message}{"\n"}{end}'
log ""
log "==> Events"
kubectl get events.events.k8s.io \
  -o custom-columns=TYPE:.type,REASON:.reason,OBJECT:.regarding.name,NOTE:.note 2>/dev/null || true

if ! kill -0 "$(cat "$DEMO_DIR/operator.pid")" 2>/dev/null; then
  die "the operator stopped; its log: $DEMO_DIR/operator.log"
fi
if [[ -n $keep ]]; then
  log ""
  log "Still running. Try: . $FLOWRUN_CLUSTER_DIR/env && kubectl get fr -o wide"
  log "Stop it all with: hack/demo.sh --stop"
fi
