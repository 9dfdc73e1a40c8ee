"""Validates Argo Workflows manifests against Argo's own schema, strictly: Hera's models of
every Argo type (generated from Argo's published OpenAPI schema), with unknown fields refused
at every level, so a misspelled field fails instead of being dropped as Argo's controller
would drop it.

Usage: validate_argo.py FILE...   exit 0 if every document is valid; otherwise one line per
                                  error on stderr and exit 1.
"""

import sys

import yaml
from hera.workflows.models import ClusterWorkflowTemplate, CronWorkflow, Workflow, WorkflowTemplate
from pydantic import ValidationError

KINDS = {
    model.__name__: model
    for model in (Workflow, WorkflowTemplate, ClusterWorkflowTemplate, CronWorkflow)
}


def errors(path):
    with open(path, encoding="utf-8") as file:
        documents = [d for d in yaml.safe_load_all(file) if d is not None]
    if not documents:
        yield f"{path}: no YAML document"
    for document in documents:
        kind = document.get("kind")
        if document.get("apiVersion") != "argoproj.io/v1alpha1" or kind not in KINDS:
            yield f"{path}: not an Argo Workflows kind: {document.get('apiVersion')} {kind}"
            continue
        try:
            KINDS[kind].model_validate(document, strict=True, extra="forbid")
        except ValidationError as error:
            for detail in error.errors():
                where = ".".join(str(part) for part in detail["loc"])
                yield f"{path}: {kind} {where}: {detail['msg']}"


def main():
    found = [line for path in sys.argv[1:] for line in errors(path)]
    for line in found:
        print(line, file=sys.stderr)
    if not sys.argv[1:]:
        print("usage: validate_argo.py FILE...", file=sys.stderr)
        return 2
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
