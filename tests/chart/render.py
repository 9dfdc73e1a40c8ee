#!/usr/bin/env python3
"""Renders charts/flowrun-operator with the real Helm engine and prints its manifests (CRDs and
NOTES.txt excluded) as one YAML stream, in template order.

    hack/chart.sh render --namespace flowrun-system --values-json '{"replicaCount": 1}'
    hack/chart.sh render --set controller.watchNamespaces={team-a,team-b}

The Rust tests (tests/support/chart.rs) render through this script too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import helm_python as helm

CHART = Path(__file__).resolve().parents[2] / "charts" / "flowrun-operator"


def merge(base: dict, override: dict) -> dict:
    """Deep merge, as Helm merges several values files."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def render(values: dict, *, name: str = "flowrun-operator", namespace: str = "flowrun-system") -> str:
    """The manifests as one YAML stream; raises helm.HelmError for values the schema refuses."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=name, namespace=namespace, is_install=True)
    documents = []
    for template in sorted(manifests):
        if template.endswith("NOTES.txt"):
            continue
        text = manifests[template].strip()
        if text:
            documents.append(f"# Source: {template}\n{text}")
    return "\n---\n".join(documents) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="flowrun-operator", help="release name")
    parser.add_argument("--namespace", default="flowrun-system", help="release namespace")
    parser.add_argument("--values-json", default="{}", help="values as one JSON object")
    parser.add_argument("--set", action="append", default=[], help="a Helm --set expression")
    args = parser.parse_args()
    values = json.loads(args.values_json)
    for expression in args.set:
        values = merge(values, helm.parse_set_string(expression))
    try:
        sys.stdout.write(render(values, name=args.name, namespace=args.namespace))
    except helm.HelmError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
