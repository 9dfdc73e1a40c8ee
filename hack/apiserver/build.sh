#!/usr/bin/env bash
# Builds, once, the binaries behind the local Kubernetes API server (hack/cluster.sh) and
# caches them under $FLOWRUN_CACHE_DIR (default ~/.cache/flowrun-operator):
#
#   bin/flowrun-apiserver  our main.go around upstream k8s.io/apiextensions-apiserver
#   bin/etcd               from Debian's etcd-server package
#   bin/kubectl            from Debian's kubectl package, only if none is on PATH
#   bin/VERSIONS           the exact Debian package versions the above came from
#
# and, with --prometheus, bin/prometheus and bin/promtool from Debian's prometheus and promtool
# packages
# (for the alerting-rule and dashboard tests, tests/monitoring.rs),
# and, with --argocd-lua, bin/argocd-lua: our hack/argocd-lua/main.go on Debian's
# gopher-lua sources, the Lua VM Argo CD runs health checks and resource actions in
# (tests/argocd.rs).
#
# Why Debian packages: this project's machines reach no download site but the package
# registries, and Debian sid ships the apiextensions-apiserver sources with every Go
# dependency (golang-*-dev, sources under /usr/share/gocode/src), Go itself, etcd and
# kubectl. We never install anything: a private apt state (own sources.list, lists,
# cache and an EMPTY dpkg status file, so apt computes the whole dependency closure)
# downloads the .debs, `dpkg -x` unpacks them into a private prefix, and Go builds our
# main in GOPATH mode from there. /etc/apt and the system's dpkg database are untouched.
#
# Usage: build.sh            ensure the binaries (a no-op in well under a second when cached)
#        build.sh --prometheus ensure prometheus and promtool; prints their directory
#        build.sh --argocd-lua ensure bin/argocd-lua; prints its path
#        build.sh --prune    drop packages, sources and Go build cache; keep bin/
#        build.sh --go-env   print `export` lines for the private Go (e.g. to run gofmt)
#
# Environment:
#   FLOWRUN_APISERVER_BIN   use this API server binary instead of building ours
#   FLOWRUN_ETCD_BIN        use this etcd binary instead of Debian's
#   FLOWRUN_DEBIAN_MIRROR   Debian archive URL (default: the Debian archive this machine's
#                           apt sources name; http://127.0.0.1:9/debian simulates offline)
#   FLOWRUN_DEBIAN_SUITE    suite to take packages from (default sid: only sid packages
#                           golang-k8s-apiextensions-apiserver-dev)
#   FLOWRUN_DEBIAN_KEYRING  keyring that signs that suite
set -euo pipefail
# shellcheck source-path=SCRIPTDIR/.. source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source-path=SCRIPTDIR/.. source=debian.sh
. "$FLOWRUN_HACK_DIR/debian.sh"

# Bump when the build recipe changes in a way that needs a rebuild of the API server.
RECIPE=1
MAIN_GO=$FLOWRUN_HACK_DIR/apiserver/main.go
GO_PKGS=(golang-k8s-apiextensions-apiserver-dev golang-go)

SUITE=${FLOWRUN_DEBIAN_SUITE:-sid}
APT_DIR=$FLOWRUN_CACHE/apt
DEB_DIR=$FLOWRUN_CACHE/debs
PREFIX=$FLOWRUN_CACHE/prefix  # unpacked golang-* packages: Go toolchain + Go sources
GOPATH_OWN=$FLOWRUN_CACHE/gopath  # holds only our main package
LOG_DIR=$FLOWRUN_CACHE/logs
BIN=$FLOWRUN_BIN_DIR

# ------------------------------------------------------------------ Go sources -------

# Unpacks the golang-* part of the closure of GO_PKGS into $PREFIX (skipped if done).
ensure_prefix() {
  [[ -f $PREFIX/.packages ]] && return
  apt_init
  local t0 list specs=() name ver
  t0=$(now_ms)
  # The closure also holds libc & co (irrelevant for a CGO_ENABLED=0 build): keep golang-*.
  list=$(closure "${GO_PKGS[@]}" | awk '$1 ~ /^golang-/' | sort)
  [[ -n $list ]] || die "apt resolved no golang-* packages (details: $LOG_DIR/apt-closure.log)"
  while read -r name ver; do specs+=("$name=$ver"); done <<<"$list"
  log "downloading ${#specs[@]} golang-* packages (~330 MB) ..."
  download "${specs[@]}"
  log "unpacking them (~2.5 GB) ..."
  rm -rf "$PREFIX" "$PREFIX.tmp"
  mkdir -p "$PREFIX.tmp"
  local files=()
  while read -r name ver; do files+=("$(deb_file "$name" "$ver")"); done <<<"$list"
  # shellcheck disable=SC2016 # $0 and $f belong to the inner sh
  printf '%s\0' "${files[@]}" |
    xargs -0 -n 16 -P "$(nproc)" sh -c 'for f; do dpkg -x "$f" "$0" || exit 255; done' "$PREFIX.tmp" \
      >"$LOG_DIR/unpack.log" 2>&1 || die "unpacking packages failed (details: $LOG_DIR/unpack.log)"
  printf '%s\n' "$list" >"$PREFIX.tmp/.packages"
  mv "$PREFIX.tmp" "$PREFIX"
  rm -f "${files[@]}" # the unpacked tree is all we need from now on
  log "  packages ready in $((($(now_ms) - t0) / 1000)) s"
}

# Sets GOROOT and the Go environment for a hermetic GOPATH-mode build from $PREFIX.
go_env() {
  GOROOT=$(compgen -G "$PREFIX/usr/lib/go-[0-9]*" | sort -V | tail -n1) ||
    die "no Go toolchain under $PREFIX/usr/lib (try: $0 --prune)"
  export GOROOT GOPATH="$GOPATH_OWN:$PREFIX/usr/share/gocode" GOCACHE=$FLOWRUN_CACHE/go-build
  # GOPATH mode, no network, no toolchain switching, no cgo (the host may lack a C
  # toolchain and sid's libc headers anyway), no user go.env/GOFLAGS leaking in.
  export GO111MODULE=off GOPROXY=off GOTOOLCHAIN=local GOENV=off CGO_ENABLED=0 GOFLAGS=
  export PATH=$GOROOT/bin:$PATH
  unset GOOS GOARCH GOBIN
}

# Kubernetes version matching the packaged sources: staging repos are tagged v0.X.Y
# for Kubernetes v1.X.Y, and Debian versions them 0.X.Y-N (maybe with +ds / epoch).
kube_version() {
  local v
  v=$(awk '$1 == "golang-k8s-apiextensions-apiserver-dev" { print $2 }' "$PREFIX/.packages")
  v=${v#*:}
  [[ $v =~ ^0\.([0-9]+)\.([0-9]+) ]] || die "cannot derive a Kubernetes version from apiextensions-apiserver $v"
  printf 'v1.%s.%s\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
}

# build_key FILE: what a cached binary built from the main.go FILE must match (recipe + its
# contents).
build_key() { printf 'recipe=%s main.go-sha256=%s\n' "$RECIPE" "$(sha256_of "$1")"; }
apiserver_key() { build_key "${1:-$MAIN_GO}"; }

build_apiserver() {
  ensure_prefix
  go_env
  local kv minor src=$GOPATH_OWN/src/flowrun.local/apiserver log=$LOG_DIR/go-build.log t0 key
  kv=$(kube_version)
  minor=${kv#v1.}
  minor=${minor%%.*}
  # A main package builds only from inside GOPATH in GOPATH mode: copy it there.
  mkdir -p "$src" "$BIN"
  cp "$MAIN_GO" "$src/main.go"
  key=$(apiserver_key "$src/main.go") # of the copy: what is compiled, even if edited meanwhile
  log "compiling flowrun-apiserver $kv (a few minutes on 2 cores when the Go cache is cold) ..."
  t0=$(now_ms)
  # Without the version stamp the server reports v0.0.0 and kubectl refuses it.
  local pkgv=k8s.io/component-base/version
  if ! (cd "$src" && go build -trimpath -o "$BIN/flowrun-apiserver.tmp" -ldflags \
    "-s -w -X $pkgv.gitVersion=$kv -X $pkgv.gitMajor=1 -X $pkgv.gitMinor=$minor -X $pkgv.gitTreeState=clean" \
    .) >"$log" 2>&1; then
    die "the Go build of flowrun-apiserver failed (log: $log)"
  fi
  mv -f "$BIN/flowrun-apiserver.tmp" "$BIN/flowrun-apiserver"
  {
    printf '# flowrun-apiserver %s, from hack/apiserver/main.go %s\n' "$kv" "${key#* }"
    cat "$PREFIX/.packages"
  } >"$BIN/.flowrun-apiserver.version"
  printf '%s\n' "$key" >"$BIN/.flowrun-apiserver.key"
  log "  compiled in $((($(now_ms) - t0) / 1000)) s"
}

write_versions() {
  {
    echo "# Debian packages ($SUITE) the binaries in this directory were made from."
    cat "$BIN"/.etcd.version "$BIN"/.kubectl.version "$BIN"/.prometheus.version \
      "$BIN"/.promtool.version "$BIN"/.flowrun-apiserver.version "$BIN"/.argocd-lua.version \
      2>/dev/null || true
  } >"$BIN/VERSIONS"
}

# ------------------------------------------------------------------ argocd-lua -------

LUA_MAIN_GO=$FLOWRUN_HACK_DIR/argocd-lua/main.go
LUA_PKGS=(golang-github-yuin-gopher-lua-dev)
LUA_PREFIX=$FLOWRUN_CACHE/lua-prefix # gopher-lua's sources and the Go packages they need

# Unpacks the golang-* closure of LUA_PKGS that the API server's prefix lacks (the Go
# toolchain is shared) into $LUA_PREFIX (skipped if done).
ensure_lua_prefix() {
  [[ -f $LUA_PREFIX/.packages ]] && return
  ensure_prefix
  apt_init
  local list specs=() files=() name ver
  list=$(closure "${LUA_PKGS[@]}" | awk '$1 ~ /^golang-/' | sort |
    grep -vxFf "$PREFIX/.packages" || true)
  [[ -n $list ]] || die "apt resolved no package for ${LUA_PKGS[*]} (details: $LOG_DIR/apt-closure.log)"
  while read -r name ver; do specs+=("$name=$ver"); done <<<"$list"
  log "downloading gopher-lua's sources (${#specs[@]} package(s)) ..."
  download "${specs[@]}"
  rm -rf "$LUA_PREFIX" "$LUA_PREFIX.tmp"
  mkdir -p "$LUA_PREFIX.tmp"
  while read -r name ver; do files+=("$(deb_file "$name" "$ver")"); done <<<"$list"
  for f in "${files[@]}"; do dpkg -x "$f" "$LUA_PREFIX.tmp"; done
  printf '%s\n' "$list" >"$LUA_PREFIX.tmp/.packages"
  mv "$LUA_PREFIX.tmp" "$LUA_PREFIX"
  rm -f "${files[@]}"
}

build_argocd_lua() {
  ensure_lua_prefix
  go_env
  export GOPATH=$GOPATH:$LUA_PREFIX/usr/share/gocode
  local src=$GOPATH_OWN/src/flowrun.local/argocd-lua log=$LOG_DIR/go-build-argocd-lua.log key
  mkdir -p "$src" "$BIN"
  cp "$LUA_MAIN_GO" "$src/main.go"
  key=$(build_key "$src/main.go")
  log "compiling argocd-lua (gopher-lua $(awk '$1 == "golang-github-yuin-gopher-lua-dev" { print $2 }' "$LUA_PREFIX/.packages")) ..."
  (cd "$src" && go build -trimpath -o "$BIN/argocd-lua.tmp" -ldflags "-s -w" .) >"$log" 2>&1 ||
    die "the Go build of argocd-lua failed (log: $log)"
  mv -f "$BIN/argocd-lua.tmp" "$BIN/argocd-lua"
  {
    printf '# argocd-lua, from hack/argocd-lua/main.go %s\n' "${key#* }"
    cat "$LUA_PREFIX/.packages"
  } >"$BIN/.argocd-lua.version"
  printf '%s\n' "$key" >"$BIN/.argocd-lua.key"
}

# ------------------------------------------------------------------------ main -------

main() {
  case ${1:-} in
  --prune)
    mkdir -p "$FLOWRUN_CACHE"
    exec 9>"$FLOWRUN_CACHE/.build.lock"
    flock 9
    rm -rf "$APT_DIR" "$DEB_DIR" "$PREFIX" "$PREFIX.tmp" "$LUA_PREFIX" "$LUA_PREFIX.tmp" \
      "$GOPATH_OWN" "$FLOWRUN_CACHE/go-build"
    log "pruned; kept $BIN"
    return
    ;;
  --go-env)
    go_env
    printf 'export %s=%q\n' GOROOT "$GOROOT" GOPATH "$GOPATH" GOCACHE "$GOCACHE" GO111MODULE off \
      GOPROXY off GOTOOLCHAIN local GOENV off CGO_ENABLED 0 PATH "$PATH"
    return
    ;;
  --prometheus)
    mkdir -p "$BIN"
    exec 9>"$FLOWRUN_CACHE/.build.lock"
    flock 9
    if [[ ! -x $BIN/prometheus || ! -x $BIN/promtool ]]; then
      fetch_binaries prometheus usr/bin/prometheus
      fetch_binaries promtool usr/bin/promtool
      write_versions
    fi
    printf '%s\n' "$BIN"
    return
    ;;
  --argocd-lua)
    mkdir -p "$BIN"
    exec 9>"$FLOWRUN_CACHE/.build.lock"
    flock 9
    if [[ ! -x $BIN/argocd-lua || "$(cat "$BIN/.argocd-lua.key" 2>/dev/null)" != "$(build_key "$LUA_MAIN_GO")" ]]; then
      build_argocd_lua
      write_versions
    fi
    printf '%s\n' "$BIN/argocd-lua"
    return
    ;;
  "") ;;
  *) die "usage: $0 [--prune|--go-env|--prometheus|--argocd-lua]" ;;
  esac

  mkdir -p "$BIN"
  # Serialize concurrent callers (e.g. parallel test jobs running `cluster.sh up`).
  exec 9>"$FLOWRUN_CACHE/.build.lock"
  flock 9

  local changed=
  if [[ -z ${FLOWRUN_APISERVER_BIN:-} ]]; then
    [[ -f $MAIN_GO ]] || die "$MAIN_GO is missing"
    if [[ ! -x $BIN/flowrun-apiserver || "$(cat "$BIN/.flowrun-apiserver.key" 2>/dev/null)" != "$(apiserver_key)" ]]; then
      build_apiserver
      changed=1
    fi
  fi
  if [[ -z ${FLOWRUN_ETCD_BIN:-} && ! -x $BIN/etcd ]]; then
    fetch_binaries etcd-server usr/bin/etcd
    changed=1
  fi
  if ! command -v kubectl >/dev/null 2>&1 && [[ ! -x $BIN/kubectl ]]; then
    fetch_binaries kubectl usr/bin/kubectl
    changed=1
  fi
  if [[ -n $changed || ! -f $BIN/VERSIONS ]]; then write_versions; fi
}

# exit right here: if this file is edited while it runs, bash must not read on.
main "$@"; exit
