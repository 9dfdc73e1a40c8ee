#!/usr/bin/env bash
# The Helm chart's tools and tests. There is no Helm binary to install here, so the chart is
# rendered and linted by the real Helm engine that PyPI's helm-python-sdk embeds, and checked
# against Kubernetes' own JSON schemas (kubernetes-validate). Both live in a Python venv cached
# in <cache>/chart-venv, rebuilt when tests/chart/requirements.txt changes.
#
# Usage: hack/chart.sh setup               install the tools (once); prints the venv's python
#        hack/chart.sh test [pytest args]  lint, render and validate the chart (tests/chart/)
#        hack/chart.sh render [args]       print the rendered manifests (tests/chart/render.py
#                                          --help: --namespace, --values-json, --set)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CHART_TESTS=$FLOWRUN_HACK_DIR/../tests/chart
VENV=$FLOWRUN_CACHE/chart-venv
REQUIREMENTS=$CHART_TESTS/requirements.txt
export PYTHONDONTWRITEBYTECODE=1 # nothing written into the source tree

setup() {
  need python3
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "Python 3.11 or newer is required for the chart tests (found $(python3 --version 2>&1))"
  python3 -c 'import venv, ensurepip' 2>/dev/null ||
    die "Python's venv module is required for the chart tests (Debian: apt-get install python3-venv)"
  local want
  want=$(sha256_of "$REQUIREMENTS")
  mkdir -p "$FLOWRUN_CACHE"
  exec 8>"$FLOWRUN_CACHE/.chart-venv.lock"
  flock 8 # concurrent setups (test jobs) install once
  if [[ -x $VENV/bin/python && $(cat "$VENV/.requirements.sha256" 2>/dev/null) == "$want" ]]; then
    exec 8>&-
    return
  fi
  log "installing the chart tools into $VENV (once, about 20 s)"
  rm -rf "$VENV"
  python3 -m venv "$VENV" >&2 || die "creating the venv $VENV failed"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    -r "$REQUIREMENTS" >&2 ||
    die "installing the chart tools (pip install -r tests/chart/requirements.txt) failed; is PyPI reachable?"
  printf '%s\n' "$want" >"$VENV/.requirements.sha256"
  exec 8>&-
}

main() {
  local cmd=${1:-}
  case $cmd in
  setup)
    setup
    printf '%s\n' "$VENV/bin/python"
    ;;
  test)
    shift
    setup
    cd "$CHART_TESTS"
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
    ;;
  render)
    shift
    setup
    "$VENV/bin/python" "$CHART_TESTS/render.py" "$@"
    ;;
  *) die "usage: $0 setup|test [pytest args]|render [args]" ;;
  esac
}

main "$@"
exit
