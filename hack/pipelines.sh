#!/usr/bin/env bash
# The pipeline recipes' schema check (examples/argo-workflows): Argo Workflows' published schema
# as Hera's pydantic models, in a Python venv cached in <cache>/pipelines-venv, rebuilt when
# tests/pipelines/requirements.txt changes. tests/pipelines.rs runs `setup` itself.
#
# Usage: hack/pipelines.sh setup            install the tools (once); prints the venv's python
#        hack/pipelines.sh validate FILE... validate Argo Workflows manifests, unknown fields refused
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TESTS=$FLOWRUN_HACK_DIR/../tests/pipelines
VENV=$FLOWRUN_CACHE/pipelines-venv
export PYTHONDONTWRITEBYTECODE=1 # nothing written into the source tree

setup() { python_venv "$VENV" "$TESTS/requirements.txt" "the Argo Workflows schema (Hera)"; }

case ${1:-} in
setup)
  setup
  printf '%s\n' "$VENV/bin/python"
  ;;
validate)
  shift
  setup
  exec "$VENV/bin/python" "$TESTS/validate_argo.py" "$@"
  ;;
*) die "usage: $0 setup|validate FILE..." ;;
esac
