#!/usr/bin/env bash
# Packs kubectl-flowrun the way krew installs it: a .tar.gz holding the binary, and a copy of
# plugins/flowrun.yaml whose `sha256` is the archive's (the committed manifest carries zeros:
# the project publishes no release archive yet). Reproducible: sorted entries, fixed owners and
# times (SOURCE_DATE_EPOCH, default the last commit's time), gzip without name or time.
#
# Usage: hack/krew.sh [--binary PATH] [--out DIR]
#   --binary  the kubectl-flowrun binary to pack (default: build it with
#             `cargo build --release --locked -p kubectl-flowrun`)
#   --out     where to write kubectl-flowrun-linux-amd64.tar.gz and flowrun.yaml
#             (default: target/krew)
# Then: kubectl krew install --manifest=DIR/flowrun.yaml --archive=DIR/kubectl-flowrun-linux-amd64.tar.gz
# Prints DIR.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need tar gzip sha256sum sed

repo=$(cd "$FLOWRUN_HACK_DIR/.." && pwd)
binary=""
out="$repo/target/krew"
while (($#)); do
  case $1 in
    --binary) binary=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) die "unknown argument: $1 (usage: hack/krew.sh [--binary PATH] [--out DIR])" ;;
  esac
done
if [[ -z $binary ]]; then
  (cd "$repo" && cargo build --release --locked --quiet -p kubectl-flowrun)
  binary="$repo/target/release/kubectl-flowrun"
fi
[[ -x $binary ]] || die "$binary is not an executable"

epoch=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct)}
archive_name=kubectl-flowrun-linux-amd64.tar.gz
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
install -m 0755 "$binary" "$staging/kubectl-flowrun"
mkdir -p "$out"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
  -C "$staging" -cf - kubectl-flowrun | gzip -n -9 >"$out/$archive_name"
sum=$(sha256sum "$out/$archive_name" | cut -d' ' -f1)
# The committed manifest's sha256 line is the only line that changes.
sed -E "s/^( *sha256: )\"0{64}\"\$/\1\"$sum\"/" "$repo/plugins/flowrun.yaml" >"$out/flowrun.yaml"
grep -q "sha256: \"$sum\"" "$out/flowrun.yaml" ||
  die "plugins/flowrun.yaml has no sha256 line of zeros to fill in"
log "packed $archive_name (sha256 $sum)"
printf '%s\n' "$out"
