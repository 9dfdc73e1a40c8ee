# shellcheck shell=bash
# A private apt state that downloads Debian packages without installing anything: own
# sources.list, lists, cache and an EMPTY dpkg status file (so apt computes the whole
# dependency closure). /etc/apt and the system's dpkg database are untouched. Sourced by
# hack/apiserver/build.sh (Debian sid: the API server's Go sources, etcd, kubectl, Prometheus)
# and hack/image.sh (Debian bookworm: the image's runtime files and the container tools).
#
# The sourcing script sets, before calling anything here:
#   SUITE    the Debian suite (FLOWRUN_DEBIAN_SUITE may override it)
#   APT_DIR  the private apt state, one per suite
#   DEB_DIR  where .debs are downloaded
#   LOG_DIR  where the logs go
#   BIN      where fetch_binaries installs executables
# Environment:
#   FLOWRUN_DEBIAN_MIRROR   Debian archive URL (default: the Debian archive this machine's
#                           apt sources name; http://127.0.0.1:9/debian simulates offline)
#   FLOWRUN_DEBIAN_KEYRING  keyring that signs the suite

# The archive comes from the machine's own apt sources, so no address is written here.
MIRROR=${FLOWRUN_DEBIAN_MIRROR:-$(apt-get indextargets --format '$(REPO_URI)' 2>/dev/null |
  grep -m1 -E '/debian/?$' | sed 's:/$::' || true)}
KEYRING=${FLOWRUN_DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}

# ---------------------------------------------------------------------------- apt ----

apt_ready=
# Writes the private apt configuration and fetches the package lists (once per run).
apt_init() {
  [[ -n $apt_ready ]] && return
  [[ -n $MIRROR ]] || die "this machine's apt sources name no Debian archive; set FLOWRUN_DEBIAN_MIRROR"
  [[ -r $KEYRING ]] || die "Debian archive keyring $KEYRING not found (set FLOWRUN_DEBIAN_KEYRING)"
  need apt-get dpkg
  mkdir -p "$APT_DIR"/etc/apt.conf.d "$APT_DIR"/etc/preferences.d \
    "$APT_DIR"/state/lists/partial "$APT_DIR"/cache/archives/partial "$LOG_DIR"
  : >"$APT_DIR/state/status" # nothing "installed": apt resolves the complete closure
  printf 'deb [signed-by=%s] %s %s main\n' "$KEYRING" "$MIRROR" "$SUITE" >"$APT_DIR/etc/sources.list"
  # Read via APT_CONFIG before anything else; pointing Dir::Etc at our own (empty)
  # directory keeps the system's apt.conf.d hooks (docker-clean, appstream...) out.
  # Signatures are checked, but not Valid-Until/Date: the archive copy these machines
  # reach can lag behind the clock (the system apt config relaxes the same checks).
  cat >"$APT_DIR/apt.conf" <<EOF
Dir::Etc "$APT_DIR/etc/";
Dir::Etc::SourceList "$APT_DIR/etc/sources.list";
Dir::Etc::SourceParts "/dev/null";
Dir::State "$APT_DIR/state/";
Dir::State::status "$APT_DIR/state/status";
Dir::Cache "$APT_DIR/cache/";
Dir::Log "$APT_DIR/";
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT::Sandbox::User "root";
Acquire::Languages "none";
Acquire::Check-Valid-Until "false";
Acquire::Check-Date "false";
Acquire::Retries "1";
Acquire::http::Timeout "20";
Debug::NoLocking "true";
EOF
  local log=$LOG_DIR/apt-update.log
  log "fetching the package lists of Debian $SUITE from $MIRROR ..."
  if ! papt update --error-on=any >"$log" 2>&1; then
    if grep -qiE 'Could not connect|Temporary failure resolving|Connection (failed|refused|timed out)|Unable to connect|No route to host|Network is unreachable' "$log"; then
      die "cannot reach the Debian archive at $MIRROR (details: $log)"
    fi
    die "apt-get update against $MIRROR $SUITE failed (details: $log)"
  fi
  apt_ready=1
}

# papt ARGS...: apt-get with the private configuration.
papt() { APT_CONFIG=$APT_DIR/apt.conf apt-get -q "$@"; }

# closure PKG...: prints "name version" for every package needed to install PKGs.
closure() {
  local log=$LOG_DIR/apt-closure.log
  if ! papt -s install "$@" >"$log" 2>&1; then
    local missing
    missing=$(sed -nE "s/^E: (Unable to locate package |Package '?)([^' ]+).*/\2/p" "$log" | head -n1)
    [[ -n $missing ]] && die "Debian package '$missing' is not available in $SUITE at $MIRROR (details: $log)"
    die "apt cannot resolve $* (details: $log)"
  fi
  sed -nE 's/^Inst ([^ ]+) \(([^ ]+) .*/\1 \2/p' "$log"
}

# download NAME=VERSION...: fetches .debs into $DEB_DIR (apt-get download saves to cwd).
download() {
  local log=$LOG_DIR/apt-download.log
  mkdir -p "$DEB_DIR"
  (cd "$DEB_DIR" && papt download "$@") >"$log" 2>&1 ||
    die "downloading $# package(s) from $MIRROR failed (details: $log)"
}

# deb_file NAME VERSION: path of a downloaded .deb (apt encodes ':' in epochs as %3a).
deb_file() {
  local f
  f=$(compgen -G "$DEB_DIR/${1}_${2//:/%3a}_*.deb" | head -n1) || true
  [[ -n $f ]] || die "package $1 $2 was not downloaded (details: $LOG_DIR/apt-download.log)"
  printf '%s\n' "$f"
}

# fetch_binaries PKG PATH_IN_PKG...: downloads a Debian package once and installs the named
# executables into $BIN under their own names.
fetch_binaries() {
  local pkg=$1 ver tmp path
  shift
  apt_init
  ver=$(closure "$pkg" | awk -v p="$pkg" '$1 == p { print $2 }')
  [[ -n $ver ]] || die "apt did not select a version of $pkg (details: $LOG_DIR/apt-closure.log)"
  download "$pkg=$ver"
  tmp=$(mktemp -d "$FLOWRUN_CACHE/unpack.XXXXXX")
  dpkg -x "$(deb_file "$pkg" "$ver")" "$tmp"
  for path in "$@"; do
    [[ -x $tmp/$path ]] || die "$pkg $ver has no executable /$path"
    install -m 0755 "$tmp/$path" "$BIN/$(basename "$path").tmp"
    mv -f "$BIN/$(basename "$path").tmp" "$BIN/$(basename "$path")"
    printf '%s %s\n' "$pkg" "$ver" >"$BIN/.$(basename "$path").version"
    log "  $(basename "$path") <- $pkg $ver"
  done
  rm -rf "$tmp" "$DEB_DIR"/"${pkg}"_*.deb
}

