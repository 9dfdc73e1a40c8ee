#!/usr/bin/env bash
# A real, local Kubernetes API server for tests and manual runs: etcd plus
# flowrun-apiserver (upstream apiextensions-apiserver, see hack/apiserver/), both on
# 127.0.0.1 with random free ports, detached so they outlive this script.
#
# Usage: hack/cluster.sh COMMAND
#   up               start (or reuse) the cluster; prints the admin kubeconfig path last
#                    on stdout: KUBECONFIG=$(hack/cluster.sh up)
#   down             stop the API server and etcd, keep the state (certs, data, ports)
#   clean            down, then delete the state directory
#   status           print what runs where; exit 0 only if the API server is ready
#   stop-apiserver [--kill]
#                    stop only the API server (SIGTERM, or SIGKILL with --kill)
#   start-apiserver  start it again with the same port, certificates and etcd
#
# stdout carries only results (kubeconfig path, status); progress and errors go to
# stderr. State, in ${FLOWRUN_CLUSTER_DIR:-<cache>/cluster}:
#   kubeconfig           admin client (CN=flowrun-admin, O=system:masters)
#   operator.kubeconfig  the operator's client (CN=flowrun-operator, O=system:masters),
#                        a distinct user so audit logs tell the operator apart
#   env                  `. env` sets KUBECONFIG, FLOWRUN_CLUSTER_DIR and PATH (kubectl)
#   pki/  etcd/  ports.env  {etcd,apiserver}.{pid,log,cmd}  audit.log  audit-policy.yaml
#
# Environment:
#   FLOWRUN_CLUSTER_DIR    state directory (several clusters can run side by side)
#   FLOWRUN_CACHE_DIR      cache for binaries and the default state (~/.cache/flowrun-operator)
#   FLOWRUN_AUDIT=1        write an audit log (Metadata level, every request) to audit.log
#   FLOWRUN_APISERVER_BIN  use this API server binary (e.g. a kube-apiserver) instead of ours
#   FLOWRUN_ETCD_BIN       use this etcd binary instead of Debian's
#   FLOWRUN_APISERVER_EXTRA_ARGS  extra API server flags (split on whitespace)
#   FLOWRUN_UP_TIMEOUT     seconds to wait for readiness (default 60)
#   FLOWRUN_STOP_TIMEOUT   seconds between SIGTERM and SIGKILL (default 10)
# and build.sh's (FLOWRUN_DEBIAN_MIRROR ...) when binaries must be built.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=${FLOWRUN_CLUSTER_DIR:-$FLOWRUN_CACHE/cluster}
PKI=$STATE/pki
STANDINS=$FLOWRUN_HACK_DIR/apiserver/standins.yaml
UP_TIMEOUT=${FLOWRUN_UP_TIMEOUT:-60}
STOP_TIMEOUT=${FLOWRUN_STOP_TIMEOUT:-10}
APISERVER_BIN=${FLOWRUN_APISERVER_BIN:-$FLOWRUN_BIN_DIR/flowrun-apiserver}
ETCD_BIN=${FLOWRUN_ETCD_BIN:-$FLOWRUN_BIN_DIR/etcd}
ETCD_PORT='' ETCD_PEER_PORT='' APISERVER_PORT=''

# ------------------------------------------------------------------- processes ------
# Each component NAME (etcd, apiserver) has NAME.cmd (its argv, one per line, so a
# restart is identical), NAME.pid and NAME.log (appended across restarts).

# proc_start PID: the process's start time (in clock ticks since boot); fails if there
# is no such process or it is a zombie.
proc_start() {
  local f
  f=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $f && ${f%% *} != Z ]] || return 1
  cut -d' ' -f20 <<<"$f"
}

alive() { proc_start "$1" >/dev/null; }

# pid_of NAME: prints the pid if NAME runs. NAME.pid holds "pid start-time": a pid
# recycled by another process has a different start time (exec keeps it).
pid_of() {
  local pid start argv0
  read -r pid start 2>/dev/null <"$STATE/$1.pid" || return 1
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  if [[ -n $start ]]; then
    [[ "$(proc_start "$pid")" == "$start" ]] || return 1
  else # written by an older cluster.sh (pid only): compare argv[0] instead
    argv0=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n1)
    [[ $argv0 == "$(head -n1 "$STATE/$1.cmd" 2>/dev/null)" ]] || return 1
  fi
  printf '%s\n' "$pid"
}

# spawn NAME: starts NAME.cmd detached and waits for its pid file.
spawn() {
  local name=$1 argv i pid start
  mapfile -t argv <"$STATE/$name.cmd"
  rm -f "$STATE/$name.pid"
  printf '=== %s starting %s\n' "$(date -u +%FT%TZ)" "$name" >>"$STATE/$name.log"
  # setsid: a session of its own, so neither our exit nor a closed terminal stops it.
  # The inner bash records its pid, then execs the program (same pid). fd 9 is our
  # lock: closed so a long-running child does not hold it.
  # shellcheck disable=SC2016 # $$, $0 and $@ are the inner shell's
  (cd "$STATE" && exec setsid bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' \
    "$STATE/$name.pid" "${argv[@]}" </dev/null >>"$STATE/$name.log" 2>&1 9>&-) &
  for ((i = 0; i < 100; i++)); do
    if read -r pid 2>/dev/null <"$STATE/$name.pid"; then
      start=$(proc_start "$pid") || die "$name exited at once (log: $STATE/$name.log)"
      printf '%s %s\n' "$pid" "$start" >"$STATE/$name.pid"
      return
    fi
    sleep 0.02
  done
  die "$name did not start (log: $STATE/$name.log)"
}

# stop NAME [SIGNAL]: signal it, wait up to STOP_TIMEOUT, then SIGKILL.
stop() {
  local name=$1 sig=${2:-TERM} pid i
  if pid=$(pid_of "$name"); then
    kill -"$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      log "$name (pid $pid) ignored SIG$sig for ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while alive "$pid"; do sleep 0.05; done
    fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$STATE/$name.pid"
}

# ------------------------------------------------------------------------ ports -----

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Random ports below Linux's ephemeral range (32768+), so outgoing connections of
# other programs do not collide with them.
pick_port() {
  local i p
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12000))
    if [[ " $* " != *" $p "* ]] && port_free "$p"; then
      printf '%s\n' "$p"
      return
    fi
  done
  die "no free TCP port found on 127.0.0.1 (tried 200 in 20000-31999)"
}

load_ports() {
  # shellcheck disable=SC1091
  [[ -f $STATE/ports.env ]] && . "$STATE/ports.env"
  [[ -n $APISERVER_PORT ]]
}

# Reuses the previous ports when they are still free (kubeconfigs held by running
# tests stay valid), otherwise picks new ones.
choose_ports() {
  if load_ports && port_free "$ETCD_PORT" && port_free "$ETCD_PEER_PORT" && port_free "$APISERVER_PORT"; then
    return
  fi
  ETCD_PORT=$(pick_port)
  ETCD_PEER_PORT=$(pick_port "$ETCD_PORT")
  APISERVER_PORT=$(pick_port "$ETCD_PORT" "$ETCD_PEER_PORT")
  printf 'ETCD_PORT=%s\nETCD_PEER_PORT=%s\nAPISERVER_PORT=%s\n' "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" >"$STATE/ports.env"
}

# -------------------------------------------------------------------------- TLS -----

# A private CA signs the serving certificate (127.0.0.1, localhost) and the client
# certificates. The API server maps a client certificate's CN to the user name and
# its O to groups; system:masters is the group it authorizes.
make_pki() {
  [[ -f $PKI/ca.crt ]] && return # kept across down/up: handed-out kubeconfigs stay valid
  need openssl
  local tmp=$PKI.tmp
  rm -rf "$tmp"
  mkdir -p "$tmp"
  cat >"$tmp/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
EOF
  (
    cd "$tmp"
    key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key"; }
    # leaf NAME SUBJECT EXTENSIONS
    leaf() {
      key "$1"
      openssl req -new -config openssl.cnf -key "$1.key" -subj "$2" -out "$1.csr"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
        -days 3650 -extfile openssl.cnf -extensions "$3" -out "$1.crt"
    }
    key ca
    openssl req -x509 -new -config openssl.cnf -extensions ca -key ca.key -subj /CN=flowrun-local-ca \
      -days 3650 -out ca.crt
    leaf server /CN=flowrun-apiserver server
    leaf flowrun-admin "/O=system:masters/CN=flowrun-admin" client
    leaf flowrun-operator "/O=system:masters/CN=flowrun-operator" client
    # Service-account token keys, needed only by a real kube-apiserver.
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
    openssl pkey -in sa.key -pubout -out sa.pub
    rm -f ./*.csr openssl.cnf
    chmod 600 ./*.key
  ) >"$STATE/openssl.log" 2>&1 || die "creating certificates with openssl failed (log: $STATE/openssl.log)"
  rm -rf "$PKI"
  mv "$tmp" "$PKI"
}

# write_kubeconfig FILE USER: self-contained (certificates embedded).
b64() { base64 -w0 <"$PKI/$1"; }

write_kubeconfig() {
  cat >"$1.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: flowrun-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(b64 ca.crt)
users:
- name: $2
  user:
    client-certificate-data: $(b64 "$2.crt")
    client-key-data: $(b64 "$2.key")
contexts:
- name: flowrun-local
  context:
    cluster: flowrun-local
    user: $2
    namespace: default
current-context: flowrun-local
EOF
  chmod 600 "$1.tmp"
  mv -f "$1.tmp" "$1"
}

write_env() {
  {
    echo "# Source me: . $STATE/env"
    printf 'export KUBECONFIG=%q\n' "$STATE/kubeconfig"
    printf 'export FLOWRUN_CLUSTER_DIR=%q\n' "$STATE"
    # shellcheck disable=SC2016 # $PATH expands when the file is sourced
    printf 'export PATH=%q:"$PATH"\n' "$FLOWRUN_BIN_DIR"
  } >"$STATE/env"
}

# ------------------------------------------------------------------- components -----

is_kube_apiserver() {
  [[ $1 == "$FLOWRUN_BIN_DIR/flowrun-apiserver" ]] && return 1
  [[ $(basename "$1") == kube-apiserver* ]] && return 0
  "$1" --version 2>/dev/null | grep -q '^Kubernetes v'
}

start_etcd() {
  [[ -x $ETCD_BIN ]] || die "etcd binary $ETCD_BIN is not executable"
  # Test settings: fast elections, no fsync (data survives process restarts, not a
  # machine crash; that is fine for a test cluster).
  printf '%s\n' "$ETCD_BIN" --name flowrun --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "flowrun=http://127.0.0.1:$ETCD_PEER_PORT" \
    --heartbeat-interval 10 --election-timeout 100 --unsafe-no-fsync --log-level warn \
    >"$STATE/etcd.cmd"
  spawn etcd
  local deadline=$(($(now_ms) + UP_TIMEOUT * 1000))
  until ! port_free "$ETCD_PORT"; do
    pid_of etcd >/dev/null || die "etcd exited during startup (log: $STATE/etcd.log)"
    (($(now_ms) < deadline)) || die "etcd did not listen within ${UP_TIMEOUT}s (log: $STATE/etcd.log)"
    sleep 0.05
  done
}

# Writes apiserver.cmd for the configured binary.
configure_apiserver() {
  [[ -x $APISERVER_BIN ]] || die "API server binary $APISERVER_BIN is not executable"
  local args=("$APISERVER_BIN"
    --etcd-servers "http://127.0.0.1:$ETCD_PORT"
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT"
    --tls-cert-file "$PKI/server.crt" --tls-private-key-file "$PKI/server.key"
    --client-ca-file "$PKI/ca.crt"
    # No garbage collector runs here: with it enabled, foreground/orphan deletes hang.
    --enable-garbage-collector=false)
  if is_kube_apiserver "$APISERVER_BIN"; then
    # UNTESTED (no kube-apiserver binary can be had on our machines). A real
    # kube-apiserver has Lease/Event built in, authorizes system:masters before RBAC,
    # and insists on service-account token keys and a service IP range. It also
    # enforces NamespaceLifecycle: namespaces must exist (unlike on flowrun-apiserver).
    echo kube-apiserver >"$STATE/mode"
    args+=(--authorization-mode RBAC
      --service-account-issuer https://kubernetes.default.svc.cluster.local
      --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key"
      --service-cluster-ip-range 10.0.0.0/24 --cert-dir "$STATE/kube-apiserver-certs")
  else
    echo flowrun-apiserver >"$STATE/mode"
    args+=(--authentication-skip-lookup)
  fi
  if [[ ${FLOWRUN_AUDIT:-} == 1 ]]; then
    # Every request at Metadata level (user, verb, resource, name, code); RequestReceived
    # is omitted because ResponseComplete repeats it with the status code.
    cat >"$STATE/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
EOF
    args+=(--audit-log-path "$STATE/audit.log" --audit-policy-file "$STATE/audit-policy.yaml")
  fi
  local extra=()
  read -r -a extra <<<"${FLOWRUN_APISERVER_EXTRA_ARGS:-}"
  printf '%s\n' "${args[@]}" "${extra[@]}" >"$STATE/apiserver.cmd"
}

# probe PATH: true if the API server answers PATH (e.g. /readyz) with 200.
probe() {
  if command -v curl >/dev/null; then
    curl -sf --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/flowrun-admin.crt" \
      --key "$PKI/flowrun-admin.key" "https://127.0.0.1:$APISERVER_PORT$1" >/dev/null 2>&1
  else
    kctl get --raw "$1" >/dev/null 2>&1
  fi
}

# wait_ready SECONDS: until /readyz answers; fails if the API server exits or time runs out.
wait_ready() {
  local deadline=$(($(now_ms) + $1 * 1000))
  until probe /readyz; do
    pid_of apiserver >/dev/null || return 2
    (($(now_ms) < deadline)) || return 1
    sleep 0.1
  done
}

start_apiserver() {
  spawn apiserver
  local rc=0
  wait_ready "$UP_TIMEOUT" || rc=$?
  ((rc != 2)) || die "the API server exited during startup (log: $STATE/apiserver.log)"
  ((rc == 0)) || die "the API server was not ready within ${UP_TIMEOUT}s (log: $STATE/apiserver.log)"
}

kctl() {
  local k
  k=$(command -v kubectl 2>/dev/null) || k=$FLOWRUN_BIN_DIR/kubectl
  # Own discovery cache: leave ~/.kube alone.
  "$k" --kubeconfig "$STATE/kubeconfig" --cache-dir "$STATE/kube-cache" "$@"
}

install_standins() {
  [[ $(cat "$STATE/mode") == flowrun-apiserver ]] || return 0
  {
    kctl apply --server-side --force-conflicts --field-manager flowrun-cluster-sh -f "$STANDINS" &&
      kctl wait --for condition=Established --timeout "${UP_TIMEOUT}s" -f "$STANDINS"
  } >"$STATE/standins.log" 2>&1 || die "installing the Lease/Event stand-in CRDs failed (log: $STATE/standins.log)"
}

# --------------------------------------------------------------------- commands -----

cmd_up() {
  local t0
  t0=$(now_ms)
  # Running already? Allow a few seconds: it may have just been (re)started.
  if load_ports && pid_of etcd >/dev/null && pid_of apiserver >/dev/null && wait_ready 5; then
    log "already running: https://127.0.0.1:$APISERVER_PORT"
  else
    "$FLOWRUN_HACK_DIR/apiserver/build.sh"
    # Whatever is left of a previous run is restarted together (etcd takes 0.1 s).
    stop apiserver
    stop etcd
    trap 'stop apiserver; stop etcd' EXIT # a failed `up` leaves nothing running
    make_pki
    choose_ports
    write_kubeconfig "$STATE/kubeconfig" flowrun-admin
    write_kubeconfig "$STATE/operator.kubeconfig" flowrun-operator
    start_etcd
    configure_apiserver
    start_apiserver
    install_standins
    trap - EXIT
    log "up in $(($(now_ms) - t0))ms: apiserver https://127.0.0.1:$APISERVER_PORT ($(cat "$STATE/mode"), pid $(pid_of apiserver)), etcd http://127.0.0.1:$ETCD_PORT (pid $(pid_of etcd))"
  fi
  write_env
  log "to use it: . $STATE/env"
  printf '%s\n' "$STATE/kubeconfig"
}

cmd_down() {
  stop apiserver
  stop etcd
}

cmd_clean() {
  cmd_down
  rm -rf "$STATE"
  log "deleted $STATE"
}

cmd_status() {
  local pid ok=1
  load_ports || true
  if pid=$(pid_of etcd); then
    echo "etcd       running  pid $pid  http://127.0.0.1:$ETCD_PORT"
  else
    echo "etcd       stopped"
    ok=0
  fi
  if pid=$(pid_of apiserver); then
    if probe /readyz; then
      echo "apiserver  running  pid $pid  https://127.0.0.1:$APISERVER_PORT  ready"
    else
      echo "apiserver  running  pid $pid  https://127.0.0.1:$APISERVER_PORT  NOT ready"
      ok=0
    fi
  else
    echo "apiserver  stopped"
    ok=0
  fi
  echo "state      $STATE"
  ((ok))
}

cmd_stop_apiserver() {
  case ${1:-} in
  "") stop apiserver ;;
  --kill) stop apiserver KILL ;;
  *) die "usage: $0 stop-apiserver [--kill]" ;;
  esac
}

cmd_start_apiserver() {
  load_ports || die "no cluster state in $STATE (use: $0 up)"
  pid_of etcd >/dev/null || die "etcd is not running (use: $0 up)"
  if pid_of apiserver >/dev/null && wait_ready 5; then
    log "already running: https://127.0.0.1:$APISERVER_PORT"
  else
    local t0
    t0=$(now_ms)
    stop apiserver
    trap 'stop apiserver' EXIT # do not leave a half-started API server behind
    start_apiserver
    trap - EXIT
    log "apiserver ready in $(($(now_ms) - t0))ms (pid $(pid_of apiserver))"
  fi
  printf '%s\n' "$STATE/kubeconfig"
}

main() {
  local cmd=${1:-}
  case $cmd in
  up | down | clean | status | stop-apiserver | start-apiserver) shift ;;
  *) die "usage: $0 up|down|clean|status|stop-apiserver [--kill]|start-apiserver" ;;
  esac
  if [[ -d $STATE && ! -f $STATE/.lock ]] && [[ $cmd == clean || -n "$(ls -A "$STATE")" ]]; then
    # Never adopt (or delete) a directory that this script did not make.
    die "$STATE is not a cluster state directory (no .lock); set FLOWRUN_CLUSTER_DIR elsewhere"
  fi
  if [[ $cmd == status && ! -d $STATE ]]; then
    echo "no cluster state in $STATE"
    return 1
  fi
  mkdir -p "$STATE"
  if [[ $cmd != status ]]; then
    # One command at a time per state directory (concurrent `up`s from test jobs).
    exec 9>"$STATE/.lock"
    flock 9
  fi
  case $cmd in
  up) cmd_up ;;
  down) cmd_down ;;
  clean) cmd_clean ;;
  status) cmd_status ;;
  stop-apiserver) cmd_stop_apiserver "$@" ;;
  start-apiserver) cmd_start_apiserver ;;
  esac
}

# exit right here: if this file is edited while it runs, bash must not read on.
main "$@"; exit
