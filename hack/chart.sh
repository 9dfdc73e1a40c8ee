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

setup() { python_venv "$VENV" "$REQUIREMENTS" "the chart tools"; }

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
