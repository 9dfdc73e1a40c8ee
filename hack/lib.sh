# shellcheck shell=bash disable=SC2034 # its variables are used by the scripts sourcing it
# Shared helpers for the scripts under hack/. Source it; it defines functions and a few
# path variables and has no side effects besides that.

# Where this file lives, so every script works from any working directory.
FLOWRUN_HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# One cache for everything the local API server needs: downloaded packages, the unpacked
# Go toolchain and sources, the Go build cache, the built binaries and (by default) the
# cluster state.
FLOWRUN_CACHE=${FLOWRUN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/flowrun-operator}
FLOWRUN_BIN_DIR=$FLOWRUN_CACHE/bin

# All human-readable output goes to stderr: stdout is reserved for machine-readable
# results (for example the kubeconfig path printed by `cluster.sh up`).
log() { printf '%s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# need CMD... : fail with one line if a required command is missing.
need() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' is required but not installed (Debian: apt-get install $c)"
  done
}

# now_ms: wall clock in milliseconds, for the timings we print.
now_ms() { date +%s%3N; }

# sha256_of FILE...: one hash over the given files' contents.
sha256_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

# python_venv VENV REQUIREMENTS WHAT: a cached Python venv with REQUIREMENTS installed, made
# again when that file changes; concurrent callers (test jobs) install once.
python_venv() {
  local venv=$1 requirements=$2 what=$3 want
  need python3
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "Python 3.11 or newer is required for $what (found $(python3 --version 2>&1))"
  python3 -c 'import venv, ensurepip' 2>/dev/null ||
    die "Python's venv module is required for $what (Debian: apt-get install python3-venv)"
  want=$(sha256_of "$requirements")
  mkdir -p "$FLOWRUN_CACHE"
  exec 8>"$venv.lock"
  flock 8
  if [[ -x $venv/bin/python && $(cat "$venv/.requirements.sha256" 2>/dev/null) == "$want" ]]; then
    exec 8>&-
    return
  fi
  log "installing $what into $venv (once, about 20 s)"
  rm -rf "$venv"
  python3 -m venv "$venv" >&2 || die "creating the venv $venv failed"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    -r "$requirements" >&2 ||
    die "installing $what (pip install -r $requirements) failed; is PyPI reachable?"
  printf '%s\n' "$want" >"$venv/.requirements.sha256"
  exec 8>&-
}

# cargo_tool CRATE VERSION: a cargo subcommand installed once (cargo install --locked) into
# <cache>/cargo-tools/CRATE-VERSION; prints its bin directory.
# Concurrent callers (test processes) install once.
cargo_tool() {
  local root=$FLOWRUN_CACHE/cargo-tools/$1-$2
  if [[ ! -x $root/bin/$1 ]]; then
    mkdir -p "$FLOWRUN_CACHE/cargo-tools"
    exec 9>"$root.lock"
    flock 9
    if [[ ! -x $root/bin/$1 ]]; then
      log "installing $1 $2 into $root (once; cargo-deny and cargo-cyclonedx took 10 to 18 minutes each on 2 busy cores)"
      # Without the tools' own release profile (fat or thin LTO, one codegen unit for
      # cargo-deny), the slowest way to compile them: a check of a few seconds does not need
      # the last percent of speed.
      CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
        cargo install --locked --quiet --root "$root" "$1@$2" >&2 || die "cargo install --locked $1@$2 failed"
    fi
    exec 9>&-
  fi
  printf '%s\n' "$root/bin"
}
