#!/usr/bin/env bash
# Builds the operator's OCI image without a container engine, reproducibly, and the container
# tools the image test (tests/image.rs) runs it with.
#
# The image: one layer with the release binary (`cargo build --release --locked`, as the
# Dockerfile builds it) on a runtime filesystem equivalent to distroless cc-debian12:nonroot,
# made from Debian bookworm's own packages unpacked with `dpkg-deb -x` (never installed):
#   libc6, libgcc-s1   glibc and libgcc_s, all the binary links against (ld.so, libc, libm)
#   ca-certificates    only the bundle /etc/ssl/certs/ca-certificates.crt, made from the
#                      package's certificates as its update-ca-certificates would make it
#   base-files         only /etc/os-release, so scanners know the distribution
#   /etc/passwd, /etc/group, /etc/nsswitch.conf  root, nobody and nonroot (65532), as distroless
#   /var/lib/dpkg/status.d/<package>  the packages' control data, where scanners (Trivy,
#                      Grype, Syft) look for a distroless image's packages
#   /usr/local/share/doc/flowrun-operator/sbom.cdx.json  the binary's crates, a CycloneDX SBOM
#                      made by cargo-cyclonedx from `cargo metadata` (see sbom below)
# No shell, no package manager, nothing else. The image config matches the Dockerfile's
# (tests/image.rs checks it): user 65532:65532, entrypoint, port 8080, org.opencontainers labels.
#
# Tools (Debian bookworm packages, unpacked into <cache>/image-tools): GNU tar writes the layer
# (it has every switch a reproducible tar needs); umoci makes the OCI image layout, its config
# and manifest with given timestamps, and unpacks the image into a runtime bundle for runc;
# skopeo converts the layout into a `docker load`-able archive; runc runs it (the test);
# cargo-cyclonedx (cargo install into <cache>/cargo-tools) writes the SBOM. No
# buildah: it needs a containers storage (overlay or vfs) under /var/lib/containers and keeps
# the image there, where umoci works on a plain directory.
#
# Reproducible: every timestamp is SOURCE_DATE_EPOCH (default: the time of the last commit),
# tar entries are sorted with fixed owners, gzip writes no name or time, the SBOM has no serial
# number and the epoch as its time, so the same sources, binary, packages and epoch give the
# same digest.
#
# Usage: hack/image.sh build [--out DIR]  build the image (cached by its inputs under
#                                         <cache>/image/) and print its directory: oci/ (the
#                                         layout, tag = version), image.tar (docker load -i),
#                                         digest (the manifest's), packages (Debian versions),
#                                         sbom.cdx.json (the SBOM the image carries)
#        hack/image.sh tools              fetch runc, umoci and skopeo, install cargo-cyclonedx;
#                                         print runc's, umoci's and skopeo's bin dir
#        hack/image.sh refresh            take the Debian packages' current versions (builds
#                                         otherwise reuse the ones first downloaded)
# Environment:
#   FLOWRUN_IMAGE_BINARY  the operator binary to ship (default: cargo build --release --locked)
#   SOURCE_DATE_EPOCH     the images' timestamps (default: `git log -1 --format=%ct`)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=debian.sh
. "$FLOWRUN_HACK_DIR/debian.sh"
REPO=$(cd "$FLOWRUN_HACK_DIR/.." && pwd)

# distroless cc-debian12 is Debian 12, and the binary is linked against its glibc.
SUITE=bookworm
APT_DIR=$FLOWRUN_CACHE/apt-$SUITE
DEB_DIR=$FLOWRUN_CACHE/debs-$SUITE
LOG_DIR=$FLOWRUN_CACHE/logs
TOOLS=$FLOWRUN_CACHE/image-tools
BIN=$TOOLS/bin
RUNTIME_PKGS=(libc6 libgcc-s1 ca-certificates base-files)
# skopeo links libgpgme, which a minimal Debian lacks; its own dependencies are there.
SKOPEO_LIBS=(libgpgme11 libassuan0 libgpg-error0)
REPOSITORY=ghcr.io/flowrun-dev/flowrun-operator
CYCLONEDX_VERSION=0.5.9
# Where the image carries its SBOM, beside the binary's /usr/local/bin.
SBOM_PATH=usr/local/share/doc/flowrun-operator/sbom.cdx.json

# ------------------------------------------------------------------------ tools ------

# fetch_libraries PKG...: unpacks the packages' shared libraries into $TOOLS/lib.
fetch_libraries() {
  local pkg ver tmp
  mkdir -p "$TOOLS/lib"
  for pkg in "$@"; do
    ver=$(closure "$pkg" | awk -v p="$pkg" '$1 == p { print $2 }')
    download "$pkg=$ver"
    tmp=$(mktemp -d "$FLOWRUN_CACHE/unpack.XXXXXX")
    dpkg-deb -x "$(deb_file "$pkg" "$ver")" "$tmp"
    find "$tmp" -name '*.so.*' -exec cp -a -t "$TOOLS/lib" {} +
    rm -rf "$tmp" "$DEB_DIR"/"${pkg}"_*.deb
  done
}

# tools: runc, umoci and skopeo into $BIN (once).
tools() {
  [[ -x $BIN/runc && -x $BIN/umoci && -x $BIN/skopeo && -f $TOOLS/.libs ]] && return
  mkdir -p "$BIN"
  apt_init
  fetch_binaries runc usr/sbin/runc
  fetch_binaries umoci usr/bin/umoci
  fetch_binaries skopeo usr/bin/skopeo
  fetch_libraries "${SKOPEO_LIBS[@]}"
  printf '%s\n' "${SKOPEO_LIBS[@]}" >"$TOOLS/.libs"
}

# with_apt_lock CMD...: one apt user of the private state at a time (test processes run
# concurrently).
with_apt_lock() {
  mkdir -p "$FLOWRUN_CACHE"
  exec 7>"$FLOWRUN_CACHE/.image-apt.lock"
  flock 7
  "$@"
  exec 7>&-
}

skopeo() { LD_LIBRARY_PATH=$TOOLS/lib "$BIN/skopeo" "$@"; }

# ------------------------------------------------------------------------ image ------

version() { sed -nE '/^\[workspace.package\]/,/^\[/ s/^version = "([^"]+)"/\1/p' "$REPO/Cargo.toml"; }

# ensure_debs: the runtime packages, resolved and downloaded once (the versions the suite has
# then, kept in $DEB_DIR/resolved so later builds are offline and give the same image;
# `hack/image.sh refresh` takes the suite's current versions). Prints "name version file" lines.
ensure_debs() {
  local resolved=$DEB_DIR/resolved name ver file ok=1
  if [[ -f $resolved ]]; then
    while read -r name ver file; do [[ -f $file ]] || ok=; done <"$resolved"
    [[ -n $ok ]] && return
  fi
  mkdir -p "$DEB_DIR"
  apt_init
  for name in "${RUNTIME_PKGS[@]}"; do
    ver=$(closure "$name" | awk -v p="$name" '$1 == p { print $2 }')
    [[ -n $ver ]] || die "apt did not select a version of $name (details: $LOG_DIR/apt-closure.log)"
    compgen -G "$DEB_DIR/${name}_${ver//:/%3a}_*.deb" >/dev/null || download "$name=$ver"
    printf '%s %s %s\n' "$name" "$ver" "$(deb_file "$name" "$ver")"
  done >"$resolved.tmp"
  mv "$resolved.tmp" "$resolved"
}

# sbom FILE EPOCH: the CycloneDX SBOM (JSON, spec 1.5) of the operator binary into FILE: the
# flowrun-operator package's normal dependencies, transitively (no build or dev dependencies,
# which are not in the binary), for the host target the binary is built for, with each crate's
# version, license, checksum (from Cargo.lock) and package URL, and the dependency graph.
# cargo-cyclonedx reads `cargo metadata` and builds nothing. With SOURCE_DATE_EPOCH set it
# writes no serial number and that time as the SBOM's timestamp.
sbom() {
  local file=$1 epoch=$2 bin host name
  need python3
  bin=$(cargo_tool cargo-cyclonedx "$CYCLONEDX_VERSION")
  host=$(rustc -vV | sed -n 's/^host: //p')
  # It writes one SBOM beside each workspace member's Cargo.toml: a name of this process's own
  # keeps concurrent builds apart, and the other members' SBOMs are removed.
  name=.sbom-$$
  if ! (cd "$REPO" && SOURCE_DATE_EPOCH=$epoch PATH=$bin:$PATH cargo cyclonedx --quiet \
    --manifest-path "$REPO/Cargo.toml" --format json --spec-version 1.5 --all --no-build-deps \
    --target "$host" --override-filename "$name") >&2; then
    find "$REPO" -path "$REPO/target" -prune -o -name "$name.json" -exec rm -f {} +
    die "cargo cyclonedx failed"
  fi
  # `cargo metadata` resolves features for the whole workspace at once (the tests',
  # appflow-local's), so cargo-cyclonedx lists crates the binary does not have (ring,
  # serde_urlencoded, getrandom 0.2 and 0.4, ...). cargo tree resolves features as the release
  # build does: only its packages, and the graph's edges between them, stay.
  (cd "$REPO" && cargo tree --locked --quiet --edges normal --package flowrun-operator \
    --target "$host" --prefix none --format '{p}') >"$file.tree"
  python3 - "$REPO/$name.json" "$file.tree" "$REPO" >"$file" <<'EOF'
import json, sys
sbom_path, tree_path, repo = sys.argv[1:]
with open(sbom_path) as f:
    # The workspace's crates' bom-refs are cargo package ids, which carry the checkout's
    # absolute path: made relative, so the image does not depend on (or tell) where it was built.
    sbom = json.loads(f.read().replace('"path+file://' + repo, '"path+file://.'))
with open(tree_path) as f:
    built = {tuple(line.split()[:2]) for line in f if line.strip()}
kept = [c for c in sbom["components"] if (c["name"], "v" + c["version"]) in built]
refs = {c["bom-ref"] for c in kept} | {sbom["metadata"]["component"]["bom-ref"]}
sbom["components"] = kept
sbom["dependencies"] = [
    {**d, "dependsOn": [r for r in d.get("dependsOn", []) if r in refs]}
    for d in sbom["dependencies"] if d["ref"] in refs
]
json.dump(sbom, sys.stdout, indent=2, ensure_ascii=False)
print()
EOF
  rm -f "$file.tree"
  find "$REPO" -path "$REPO/target" -prune -o -name "$name.json" -exec rm -f {} +
}

# make_rootfs DIR BINARY DEBS SBOM: the image's whole filesystem.
make_rootfs() {
  local root=$1 binary=$2 debs=$3 sbom=$4 name ver file tmp
  mkdir -p "$root"/etc/ssl/certs "$root"/usr/local/bin "$root"/var/lib/dpkg/status.d \
    "$root"/usr/share/doc/ca-certificates "$root/${SBOM_PATH%/*}"
  while read -r name ver file; do
    dpkg-deb -f "$file" >"$root/var/lib/dpkg/status.d/$name"
    case $name in
    ca-certificates)
      tmp=$(mktemp -d "$FLOWRUN_CACHE/unpack.XXXXXX")
      dpkg-deb -x "$file" "$tmp"
      # update-ca-certificates concatenates the certificates in this (C locale) order.
      find "$tmp/usr/share/ca-certificates" -name '*.crt' -print0 | LC_ALL=C sort -z |
        xargs -0 cat >"$root/etc/ssl/certs/ca-certificates.crt"
      cp "$tmp/usr/share/doc/ca-certificates/copyright" "$root/usr/share/doc/ca-certificates/"
      rm -rf "$tmp"
      ;;
    base-files)
      tmp=$(mktemp -d "$FLOWRUN_CACHE/unpack.XXXXXX")
      dpkg-deb -x "$file" "$tmp"
      cp "$tmp/usr/lib/os-release" "$root/etc/os-release"
      rm -rf "$tmp"
      ;;
    *) dpkg-deb -x "$file" "$root" ;;
    esac
  done <<<"$debs"
  [[ -s $root/etc/ssl/certs/ca-certificates.crt ]] || die "ca-certificates gave no certificates"
  cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  cat >"$root/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
  # glibc's default without this file asks DNS before /etc/hosts.
  printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
  install -m 0755 "$binary" "$root/usr/local/bin/flowrun-operator"
  install -m 0644 "$sbom" "$root/$SBOM_PATH"
  # Modes must not depend on the builder's umask.
  find "$root" -type d -exec chmod 0755 {} +
  chmod 0644 "$root"/etc/passwd "$root"/etc/group "$root"/etc/nsswitch.conf "$root"/etc/os-release \
    "$root"/etc/ssl/certs/ca-certificates.crt "$root"/var/lib/dpkg/status.d/*
}

# build OUT BINARY EPOCH DEBS SBOM: the image into OUT (which must not exist).
build() {
  local out=$1 binary=$2 epoch=$3 debs=$4 sbom=$5 version created tmp tag
  version=$(version)
  [[ -n $version ]] || die "no version in Cargo.toml's [workspace.package]"
  tag=$version
  created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
  tmp=$out.tmp
  rm -rf "$tmp"
  mkdir -p "$tmp"
  make_rootfs "$tmp/rootfs" "$binary" "$debs" "$sbom"
  # reproducible-builds.org's recipe for GNU tar: sorted names, one mtime, numeric root owner,
  # no atime/ctime in the PAX headers.
  tar --sort=name --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --mtime="@$epoch" --owner=0 --group=0 --numeric-owner -C "$tmp/rootfs" -cf "$tmp/layer.tar" .
  rm -rf "$tmp/rootfs"

  local um=("$BIN/umoci") image="$tmp/oci:$tag" label_args=()
  mapfile -t label_args < <(labels "$version" | sed 's/^/--config.label=/')
  "${um[@]}" init --layout "$tmp/oci"
  "${um[@]}" new --image "$image"
  "${um[@]}" raw add-layer --image "$image" --history.created "$created" \
    --history.created_by "hack/image.sh: ${RUNTIME_PKGS[*]} (Debian $SUITE), flowrun-operator $version" \
    "$tmp/layer.tar"
  "${um[@]}" config --image "$image" --created "$created" --history.created "$created" \
    --history.created_by "hack/image.sh: config" --author "flowrun-operator" \
    --config.user 65532:65532 --config.entrypoint /usr/local/bin/flowrun-operator \
    --config.exposedports 8080/tcp --config.env PATH=/usr/local/bin:/usr/bin:/bin \
    --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --clear config.labels --clear manifest.annotations "${label_args[@]}"
  # umoci keeps the blobs a config edit replaced; drop them.
  "${um[@]}" gc --layout "$tmp/oci"
  rm -f "$tmp/layer.tar"
  skopeo --insecure-policy copy --quiet "oci:$tmp/oci:$tag" "docker-archive:$tmp/image.tar:$REPOSITORY:$tag"
  skopeo inspect --raw "oci:$tmp/oci:$tag" | sha256sum | sed 's/^/sha256:/; s/ .*//' >"$tmp/digest"
  awk '{ print $1, $2 }' <<<"$debs" >"$tmp/packages"
  cp "$sbom" "$tmp/sbom.cdx.json"
  printf '%s\n' "$epoch" >"$tmp/source-date-epoch"
  rm -rf "$out"
  mv "$tmp" "$out"
}

# labels VERSION: the org.opencontainers.image labels, one KEY=VALUE a line (the Dockerfile
# carries the same, tests/image.rs compares them).
labels() {
  cat <<EOF
org.opencontainers.image.title=flowrun-operator
org.opencontainers.image.description=Kubernetes operator that runs Amazon AppFlow flows from FlowRun custom resources
org.opencontainers.image.version=$1
org.opencontainers.image.licenses=Apache-2.0
org.opencontainers.image.source=https://github.com/flowrun-dev/flowrun-operator
org.opencontainers.image.base.name=gcr.io/distroless/cc-debian12:nonroot
EOF
}

main() {
  case ${1:-} in
  tools)
    with_apt_lock tools
    cargo_tool cargo-cyclonedx "$CYCLONEDX_VERSION" >/dev/null
    printf '%s\n' "$BIN"
    ;;
  refresh)
    rm -rf "$DEB_DIR"
    with_apt_lock ensure_debs
    cat "$DEB_DIR/resolved"
    ;;
  build)
    shift
    local out=
    case ${1:-} in
    --out) out=${2:?--out needs a directory} ;;
    "") ;;
    *) die "usage: $0 build [--out DIR]" ;;
    esac
    with_apt_lock tools
    local binary=${FLOWRUN_IMAGE_BINARY:-}
    if [[ -z $binary ]]; then
      (cd "$REPO" && cargo build --release --locked --bin flowrun-operator) >&2
      binary=$REPO/target/release/flowrun-operator
    fi
    [[ -x $binary ]] || die "$binary is not an executable"
    local epoch=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || true)}
    [[ $epoch =~ ^[0-9]+$ ]] || die "set SOURCE_DATE_EPOCH (no git history to take it from)"
    local debs key sbom
    with_apt_lock ensure_debs
    debs=$(cat "$DEB_DIR/resolved")
    sbom=$(mktemp "$FLOWRUN_CACHE/sbom.XXXXXX")
    sbom "$sbom" "$epoch"
    # Everything the image is made of: the binary, the packages, the SBOM, the epoch and this
    # recipe.
    key=$({
      sha256sum <"$binary"
      awk '{ print $1, $2 }' <<<"$debs"
      sha256sum <"$sbom"
      printf '%s\n' "$epoch"
      sha256sum <"${BASH_SOURCE[0]}"
    } | sha256sum | cut -c1-16)
    if [[ -z $out ]]; then
      out=$FLOWRUN_CACHE/image/$key
      mkdir -p "$FLOWRUN_CACHE/image"
      exec 8>"$FLOWRUN_CACHE/image/.lock"
      flock 8 # concurrent callers (test processes) build once
      [[ -f $out/digest ]] || build "$out" "$binary" "$epoch" "$debs" "$sbom"
      exec 8>&-
    else
      build "$out" "$binary" "$epoch" "$debs" "$sbom"
    fi
    rm -f "$sbom"
    log "image $REPOSITORY:$(version) $(cat "$out/digest") in $out"
    printf '%s\n' "$out"
    ;;
  *) die "usage: $0 build [--out DIR] | tools | refresh" ;;
  esac
}

# exit right here: if this file is edited while it runs, bash must not read on.
main "$@"; exit
