"""The Helm chart, rendered by the real Helm engine (helm-python-sdk) and checked against the
Kubernetes JSON schemas (kubernetes-validate, strict) of the oldest and newest supported
Kubernetes minors. Run with `hack/chart.sh test`.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from render import CHART, merge, render

REPO = CHART.parents[1]
RELEASE = "flowrun-operator"
NAMESPACE = "flowrun-system"
# The oldest minor the operator supports (k8s-openapi's v1_33) and the newest schemas bundled.
KUBE_VERSIONS = ["1.33.0", "1.37.0"]
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
STANDARD_LABELS = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
]

# Non-default values, each rendered, linted and validated like the defaults.
MATRIX: dict[str, dict] = {
    "defaults": {},
    "one-replica": {"replicaCount": 1},
    "namespace-scoped": {"controller": {"watchNamespaces": ["team-a", "team-b"]}},
    "no-leader-election": {"replicaCount": 1, "leaderElection": {"enabled": False}},
    "aws": {
        "aws": {"region": "eu-west-1"},
        "controller": {"defaultRegion": "eu-central-1"},
        "serviceAccount": {
            "annotations": {
                "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/flowrun-operator"
            }
        },
    },
    "monitoring": {
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}}
    },
    "alerts-and-dashboard": {
        "metrics": {
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {
                "enabled": True,
                "labels": {"release": "prometheus"},
                "alertLabels": {"team": "data"},
                "selector": 'job="flowrun",cluster="eu"',
                "stuckStartingMinutes": 30,
                "noLeaderFor": "2m",
            },
            "dashboard": {"enabled": True, "annotations": {"grafana_folder": "Operators"}},
        }
    },
    "network-policy": {
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
                },
                {"podSelector": {"matchLabels": {"role": "scraper"}}},
            ],
            "apiServerPorts": [6443],
            "extraEgress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 3128, "protocol": "TCP"}]}],
        }
    },
    "network-policy-closed": {"networkPolicy": {"enabled": True}},
    "shards": {
        "sharding": {
            "label": "team",
            "shards": [
                {"name": "a"},
                {
                    "name": "b",
                    "selector": "team in (b, c)",
                    "replicas": 1,
                    "aws": {"region": "eu-west-1", "roleArn": "arn:aws:iam::123456789012:role/flowrun-b"},
                },
            ],
            "catchAll": {"replicas": 3, "aws": {"region": "us-east-1"}},
        },
        "serviceAccount": {"annotations": {"example.com/owner": "data"}},
    },
    "shards-namespace-scoped": {
        "controller": {"watchNamespaces": ["team-a"]},
        "sharding": {"label": "team", "shards": [{"name": "a"}], "catchAll": {"enabled": False}},
    },
    "existing-service-account": {
        "serviceAccount": {"create": False, "name": "ops-robot"},
        "rbac": {"create": False},
    },
    "everything-else": {
        "replicaCount": 3,
        "fullnameOverride": "appflow",
        "image": {"digest": "sha256:" + "ab" * 32, "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "registry"}],
        "controller": {
            "concurrency": 4,
            "startRateLimit": 5,
            "awsTimeout": "1m",
            "notFoundGrace": "1h30m",
            "retryInitialDelay": "500ms",
            "retryMaxDelay": "10m",
            "pollInitialInterval": "10s",
            "pollMaxInterval": "5m",
            "logFormat": "text",
            "logLevel": "info,flowrun_operator=debug",
        },
        "leaderElection": {
            "leaseName": "appflow-leader",
            "leaseDuration": "30s",
            "renewDeadline": "20s",
            "retryPeriod": "4s",
        },
        "extraArgs": ["--log-level=debug"],
        "extraEnv": [{"name": "AWS_MAX_ATTEMPTS", "value": "5"}],
        "metrics": {"port": 9090, "bindAddress": "::", "service": {"annotations": {"a": "b"}}},
        "podDisruptionBudget": {"minAvailable": "50%"},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
        "terminationGracePeriodSeconds": 60,
        "podAnnotations": {"example.com/team": "data"},
        "podLabels": {"team": "data"},
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "flowrun-operator"}},
                        },
                    }
                ]
            }
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "flowrun-operator"}},
            }
        ],
    },
}


def objects(values: dict | None = None) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(render(values or {}, name=RELEASE, namespace=NAMESPACE)) if doc]


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def deployment(values: dict | None = None) -> dict:
    [found] = of_kind(objects(values), "Deployment")
    return found


def container_env(values: dict | None = None) -> dict[str, str]:
    [container] = deployment(values)["spec"]["template"]["spec"]["containers"]
    return {var["name"]: var.get("value") for var in container["env"]}


@pytest.mark.parametrize("case", MATRIX)
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_chart_passes_helm_lint(case: str, kube_version: str) -> None:
    report = helm.lint(CHART, MATRIX[case], strict=True, namespace=NAMESPACE, kube_version=f"v{kube_version}")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


@pytest.mark.parametrize("case", MATRIX)
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_rendered_object_is_valid_kubernetes(case: str, kube_version: str) -> None:
    docs = objects(MATRIX[case])
    assert docs
    for doc in docs:
        if doc["kind"] in {"ServiceMonitor", "PrometheusRule"}:
            # Not built-in kinds: no schema in kubernetes-validate; checked in their own tests
            # (the rules also by promtool, tests/monitoring.rs).
            continue
        kubernetes_validate.validate(doc, kube_version, strict=True)


def test_the_crds_are_valid() -> None:
    with helm.Chart.load(CHART) as chart:
        crds = [doc for crd in chart.crds for doc in yaml.safe_load_all(crd["data"]) if doc]
    assert {crd["metadata"]["name"] for crd in crds} >= {"flowruns.appflow.flowrun.dev"}
    for crd in crds:
        assert crd["kind"] == "CustomResourceDefinition"
        for kube_version in KUBE_VERSIONS:
            kubernetes_validate.validate(crd, kube_version, strict=True)


@pytest.mark.parametrize("case", MATRIX)
def test_every_object_has_the_standard_labels_and_the_release_namespace(case: str) -> None:
    watched = MATRIX[case].get("controller", {}).get("watchNamespaces", [])
    for doc in objects(MATRIX[case]):
        name = f'{doc["kind"]}/{doc["metadata"]["name"]}'
        labels = doc["metadata"].get("labels", {})
        assert [label for label in STANDARD_LABELS if label not in labels] == [], name
        assert labels["app.kubernetes.io/instance"] == RELEASE
        namespace = doc["metadata"].get("namespace")
        if doc["kind"] in CLUSTER_SCOPED:
            assert namespace is None, name
        elif doc["kind"] in {"Role", "RoleBinding"} and namespace in watched:
            assert doc["metadata"]["name"] in {RELEASE, f"{RELEASE}-tenant"}, name
        else:
            assert namespace == NAMESPACE, name


def test_the_pod_is_hardened() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    # The API token: not automounted, projected into this one container, short-lived.
    assert pod["automountServiceAccountToken"] is False
    [account] = of_kind(objects(), "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    [volume] = pod["volumes"]
    [token] = [s["serviceAccountToken"] for s in volume["projected"]["sources"] if "serviceAccountToken" in s]
    assert token["expirationSeconds"] <= 3607
    assert container["volumeMounts"] == [
        {"name": volume["name"], "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": True}
    ]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_values_reach_the_operator_as_its_flags() -> None:
    env = container_env()
    assert env["FLOWRUN_LEADER_ELECTION"] == "true"
    assert env["FLOWRUN_LEADER_ELECTION_LEASE_NAME"] == RELEASE
    assert env["FLOWRUN_METRICS_ADDRESS"] == "0.0.0.0:8080"
    assert env["FLOWRUN_LOG_FORMAT"] == "json"
    assert "FLOWRUN_WATCH_NAMESPACES" not in env and "AWS_REGION" not in env

    env = container_env(MATRIX["everything-else"])
    assert env["FLOWRUN_METRICS_ADDRESS"] == "[::]:9090"
    assert env["FLOWRUN_NOT_FOUND_GRACE"] == "1h30m"
    assert env["FLOWRUN_LEADER_ELECTION_LEASE_NAME"] == "appflow-leader"
    assert env["AWS_MAX_ATTEMPTS"] == "5"
    assert container_env(MATRIX["namespace-scoped"])["FLOWRUN_WATCH_NAMESPACES"] == "team-a,team-b"
    assert container_env(MATRIX["aws"])["AWS_REGION"] == "eu-west-1"
    assert container_env(MATRIX["no-leader-election"])["FLOWRUN_LEADER_ELECTION"] == "false"
    assert deployment(MATRIX["everything-else"])["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "ghcr.io/flowrun-dev/flowrun-operator@sha256:" + "ab" * 32
    )


def rules_by_role(docs: list[dict]) -> dict[tuple[str, str | None, str], list[dict]]:
    return {
        (doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"]): doc["rules"]
        for doc in docs
        if doc["kind"] in {"Role", "ClusterRole"}
    }


def test_rbac_has_no_wildcards_and_leases_only_in_the_release_namespace() -> None:
    for case in MATRIX:
        for (kind, namespace, _), rules in rules_by_role(objects(MATRIX[case])).items():
            for rule in rules:
                for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                    assert "*" not in rule.get(field, []), (case, rule)
                if "leases" in rule["resources"]:
                    assert (kind, namespace) == ("Role", NAMESPACE), (case, rule)


def test_cluster_wide_install_uses_one_cluster_role() -> None:
    docs = objects()
    roles = rules_by_role(docs)
    assert set(roles) == {
        ("ClusterRole", None, RELEASE),
        ("ClusterRole", None, f"{RELEASE}-tenant"),  # bound by admins, not to the operator
        ("Role", NAMESPACE, f"{RELEASE}-leader-election"),
    }
    [binding] = of_kind(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}]


def test_namespace_scoped_install_grants_nothing_cluster_wide() -> None:
    docs = objects(MATRIX["namespace-scoped"])
    assert not of_kind(docs, "ClusterRole") and not of_kind(docs, "ClusterRoleBinding")
    assert set(rules_by_role(docs)) == {
        ("Role", "team-a", RELEASE),
        ("Role", "team-b", RELEASE),
        ("Role", "team-a", f"{RELEASE}-tenant"),
        ("Role", "team-b", f"{RELEASE}-tenant"),
        ("Role", NAMESPACE, f"{RELEASE}-leader-election"),
    }
    for binding in of_kind(docs, "RoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}]


def test_without_leader_election_there_is_no_lease_permission() -> None:
    for rules in rules_by_role(objects(MATRIX["no-leader-election"])).values():
        assert all("leases" not in rule["resources"] for rule in rules)


def test_disruption_budget_only_with_more_than_one_replica() -> None:
    assert of_kind(objects(), "PodDisruptionBudget")[0]["spec"]["minAvailable"] == 1
    assert of_kind(objects(MATRIX["one-replica"]), "PodDisruptionBudget") == []
    assert of_kind(objects({"podDisruptionBudget": {"enabled": False}}), "PodDisruptionBudget") == []


def test_service_monitor_is_optional_and_scrapes_the_metrics_service() -> None:
    assert of_kind(objects(), "ServiceMonitor") == []
    docs = objects(MATRIX["monitoring"])
    [monitor] = of_kind(docs, "ServiceMonitor")
    [service] = of_kind(docs, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [p["name"] for p in service["spec"]["ports"]]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    with pytest.raises(helm.HelmError, match="needs metrics.service.enabled"):
        objects(merge(MATRIX["monitoring"], {"metrics": {"service": {"enabled": False}}}))


def by_name(docs: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in of_kind(docs, kind)}


def env_of(deployment: dict) -> dict[str, str]:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return {var["name"]: var.get("value") for var in container["env"]}


def test_each_shard_is_a_deployment_with_its_selector_service_account_and_lease() -> None:
    docs = objects(MATRIX["shards"])
    deployments = by_name(docs, "Deployment")
    assert set(deployments) == {f"{RELEASE}-a", f"{RELEASE}-b", f"{RELEASE}-catch-all"}
    # (selector, replicas, region, the Lease the operator derives: tests flowrun-core's
    # shard::tests names the same hashes)
    expected = {
        "a": ("team=a", 2, None, f"{RELEASE}-289b4946fe"),
        "b": ("team in (b, c)", 1, "eu-west-1", f"{RELEASE}-db05b97f49"),
        "catch-all": ("!team", 3, "us-east-1", f"{RELEASE}-8a0845ab99"),
    }
    roles = rules_by_role(docs)
    accounts = by_name(docs, "ServiceAccount")
    for shard, (selector, replicas, region, lease) in expected.items():
        found = deployments[f"{RELEASE}-{shard}"]
        env = env_of(found)
        assert env["FLOWRUN_WATCH_LABEL_SELECTOR"] == selector
        assert env["FLOWRUN_LEADER_ELECTION_LEASE_NAME"] == RELEASE
        assert env.get("AWS_REGION") == region
        assert found["spec"]["replicas"] == replicas
        # Distinct pod selectors: no Deployment adopts another shard's pods.
        assert found["spec"]["selector"]["matchLabels"]["appflow.flowrun.dev/shard"] == shard
        pod = found["spec"]["template"]
        assert pod["metadata"]["labels"]["appflow.flowrun.dev/shard"] == shard
        assert pod["spec"]["serviceAccountName"] == f"{RELEASE}-{shard}"
        assert accounts[f"{RELEASE}-{shard}"]["metadata"]["annotations"]["example.com/owner"] == "data"
        # Each shard may get and update its own Lease only.
        lease_rules = roles[("Role", NAMESPACE, f"{RELEASE}-{shard}-leader-election")]
        assert [rule.get("resourceNames") for rule in lease_rules] == [None, [lease]]
        [binding] = [
            b for b in of_kind(docs, "RoleBinding") if b["metadata"]["name"] == f"{RELEASE}-{shard}-leader-election"
        ]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{RELEASE}-{shard}", "namespace": NAMESPACE}]
    assert accounts[f"{RELEASE}-b"]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith("role/flowrun-b")
    assert "eks.amazonaws.com/role-arn" not in accounts[f"{RELEASE}-a"]["metadata"]["annotations"]
    [binding] = of_kind(docs, "ClusterRoleBinding")
    assert [subject["name"] for subject in binding["subjects"]] == [f"{RELEASE}-{s}" for s in ("a", "b", "catch-all")]
    budgets = by_name(docs, "PodDisruptionBudget")
    assert set(budgets) == {f"{RELEASE}-a", f"{RELEASE}-catch-all"}, "only shards with more than one replica"
    assert budgets[f"{RELEASE}-a"]["spec"]["selector"]["matchLabels"]["appflow.flowrun.dev/shard"] == "a"


def test_the_lease_hash_ignores_spaces_as_the_operator_does() -> None:
    def lease(selector: str) -> str:
        values = {"sharding": {"label": "team", "shards": [{"name": "a", "selector": selector}]}}
        [role] = [r for r in of_kind(objects(values), "Role") if r["metadata"]["name"] == f"{RELEASE}-a-leader-election"]
        return role["rules"][1]["resourceNames"][0]

    assert lease(" team  ==  a ") == lease("team=a") == f"{RELEASE}-289b4946fe"
    assert lease("team in ( b ,c )") == f"{RELEASE}-db05b97f49"


def test_without_shards_there_is_one_deployment_as_before() -> None:
    docs = objects()
    [found] = of_kind(docs, "Deployment")
    assert found["metadata"]["name"] == RELEASE
    assert "FLOWRUN_WATCH_LABEL_SELECTOR" not in env_of(found)
    assert "appflow.flowrun.dev/shard" not in found["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize(
    ("sharding", "message"),
    [
        ({"shards": [{"name": "a"}]}, "sharding.label is required"),
        ({"label": "team", "shards": [{"name": "a"}, {"name": "a"}]}, 'the name "a" is used twice'),
        ({"label": "team", "shards": [{"name": "a", "selector": "tier=gold"}]}, "does not read sharding.label"),
    ],
)
def test_shards_that_cannot_work_are_refused_naming_the_problem(sharding: dict, message: str) -> None:
    with pytest.raises(helm.HelmError, match=message):
        objects({"sharding": sharding})


def test_a_shard_role_needs_its_own_service_account() -> None:
    values = {
        "serviceAccount": {"create": False, "name": "ops-robot"},
        "sharding": {"label": "team", "shards": [{"name": "a", "aws": {"roleArn": "arn:aws:iam::123456789012:role/a"}}]},
    }
    with pytest.raises(helm.HelmError, match="needs serviceAccount.create"):
        objects(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": 2}, "additional properties 'replicas' not allowed"),
        ({"replicaCount": "two"}, "at '/replicaCount': got string, want integer"),
        ({"controller": {"logFormat": "xml"}}, "at '/controller/logFormat': value must be one of 'json', 'text'"),
        ({"controller": {"awsTimeout": "soon"}}, "at '/controller/awsTimeout': 'soon' does not match pattern"),
        ({"controller": {"concurrency": 0}}, "at '/controller/concurrency': minimum: got 0, want 1"),
        ({"controller": {"watchNamespaces": ["Team_A"]}}, "at '/controller/watchNamespaces/0'"),
        ({"controller": {"watchNamespace": ["team-a"]}}, "additional properties 'watchNamespace' not allowed"),
        ({"aws": {"region": "Ireland"}}, "at '/aws/region': 'Ireland' does not match pattern"),
        ({"leaderElection": {"enabled": "yes"}}, "at '/leaderElection/enabled': got string, want boolean"),
        ({"leaderElection": {"leaseDuration": "1500ms"}}, "at '/leaderElection/leaseDuration'"),
        ({"metrics": {"port": 70000}}, "at '/metrics/port': maximum: got 70,000, want 65,535"),
        ({"image": {"digest": "latest"}}, "at '/image/digest': 'latest' does not match pattern"),
        ({"metrics": {"prometheusRule": {"noLeaderFor": "a while"}}}, "at '/metrics/prometheusRule/noLeaderFor'"),
        ({"metrics": {"prometheusRule": {"stuckStartingMinutes": 0}}}, "at '/metrics/prometheusRule/stuckStartingMinutes'"),
        ({"metrics": {"dashboard": {"label": ""}}}, "at '/metrics/dashboard/label'"),
        ({"networkPolicy": {"metricsFrom": [{"namespace": "monitoring"}]}}, "at '/networkPolicy/metricsFrom/0'"),
        ({"networkPolicy": {"apiServerPorts": [0]}}, "at '/networkPolicy/apiServerPorts/0'"),
        ({"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": 12}}}, "got number, want string"),
        ({"sharding": {"shards": [{"name": "Payments"}]}}, "at '/sharding/shards/0/name'"),
        ({"sharding": {"shards": [{"name": "a", "replica": 2}]}}, "additional properties 'replica' not allowed"),
        ({"sharding": {"catchAll": {"aws": {"roleArn": "payments"}}}}, "at '/sharding/catchAll/aws/roleArn'"),
        ({"sharding": {"label": "team=a"}}, "at '/sharding/label'"),
    ],
)
def test_bad_values_are_refused_with_a_message_naming_them(values: dict, message: str) -> None:
    with pytest.raises(helm.HelmValuesError) as refused:
        render(values)
    assert message in str(refused.value), str(refused.value)


def test_default_image_is_the_one_the_dockerfile_builds() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    cargo = tomllib.loads((REPO / "Cargo.toml").read_text())
    dockerfile = (REPO / "Dockerfile").read_text()
    assert cargo["package"]["version"] == {"workspace": True}, "the operator's version is the workspace's"
    version = cargo["workspace"]["package"]["version"]
    assert chart["appVersion"] == version, "Chart.yaml appVersion != Cargo.toml version"
    assert values["image"]["tag"] == "", "the default tag must follow appVersion"
    assert f'{values["image"]["repository"]}:{chart["appVersion"]}' in dockerfile, "docker build -t in the Dockerfile"
    final_stage = dockerfile.rsplit("\nFROM ", 1)[1]
    user = re.search(r"^USER (\d+):(\d+)$", final_stage, re.M)
    assert user and int(user[1]) == values["podSecurityContext"]["runAsUser"] == int(user[2])
    assert re.search(rf"^EXPOSE {values['metrics']['port']}$", final_stage, re.M)
    assert ":nonroot" in final_stage.splitlines()[0]
    assert 'ENTRYPOINT ["/usr/local/bin/flowrun-operator"]' in final_stage


def test_notes_say_how_to_check_and_use_the_install() -> None:
    with helm.Chart.load(CHART) as chart:
        notes = chart.render({}, name=RELEASE, namespace=NAMESPACE)["flowrun-operator/templates/NOTES.txt"]
    assert f"rollout status deployment/{RELEASE}" in notes
    assert "kind: FlowRun" in notes
    assert "IRSA" in notes and "EKS Pod Identity" in notes


def test_tenant_role_reads_but_never_writes_policies() -> None:
    for values, kind in [({}, "ClusterRole"), (MATRIX["namespace-scoped"], "Role")]:
        tenant = [role for role in of_kind(objects(values), kind) if role["metadata"]["name"] == f"{RELEASE}-tenant"]
        assert tenant, kind
        for role in tenant:
            policy_verbs = {verb for rule in role["rules"] if "flowrunpolicies" in rule["resources"] for verb in rule["verbs"]}
            assert policy_verbs == {"get", "list", "watch"}
    assert not [role for role in of_kind(objects({"rbac": {"tenantRole": False}}), "ClusterRole") if role["metadata"]["name"].endswith("-tenant")]


def test_prometheus_rule_is_optional_and_follows_its_values() -> None:
    assert of_kind(objects(), "PrometheusRule") == []
    [rule] = of_kind(objects(MATRIX["alerts-and-dashboard"]), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    alerts = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert set(alerts) == {
        "FlowRunsFailing",
        "FlowRunStartOutcomeUnknown",
        "FlowRunStuckStarting",
        "FlowRunAppFlowThrottled",
        "FlowRunOperatorNoLeader",
        "FlowRunReconcileErrors",
        "FlowRunEventsDropped",
    }
    for name, alert in alerts.items():
        assert alert["labels"]["team"] == "data", name
        assert 'job="flowrun",cluster="eu"' in alert["expr"], name
        assert "flowrun-operator-metrics" not in alert["expr"], name
    assert "> 1800" in alerts["FlowRunStuckStarting"]["expr"]
    assert alerts["FlowRunOperatorNoLeader"]["for"] == "2m"
    # By default the rules select the ServiceMonitor's job: the metrics Service's name.
    [default] = of_kind(objects({"metrics": {"prometheusRule": {"enabled": True}}}), "PrometheusRule")
    [service] = of_kind(objects(), "Service")
    assert f'job="{service["metadata"]["name"]}"' in default["spec"]["groups"][0]["rules"][0]["expr"]


def test_service_monitor_keeps_the_flowruns_namespace_label() -> None:
    [monitor] = of_kind(objects(MATRIX["monitoring"]), "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True


def test_dashboard_is_optional_and_carries_the_sidecar_label_and_the_json() -> None:
    assert [c for c in of_kind(objects(), "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")] == []
    [config_map] = of_kind(objects(MATRIX["alerts-and-dashboard"]), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Operators"}
    shipped = json.loads((CHART / "dashboards" / "flowrun-operator.json").read_text())
    assert json.loads(config_map["data"]["flowrun-operator.json"]) == shipped
    assert shipped["uid"] == "flowrun-operator" and shipped["panels"]
    custom = objects({"metrics": {"dashboard": {"enabled": True, "label": "dashboards", "labelValue": "flowrun"}}})
    assert of_kind(custom, "ConfigMap")[0]["metadata"]["labels"]["dashboards"] == "flowrun"


def test_network_policy_admits_only_the_named_scrapers_and_lets_out_only_dns_and_443() -> None:
    assert of_kind(objects(), "NetworkPolicy") == []
    docs = objects(MATRIX["network-policy"])
    [policy] = of_kind(docs, "NetworkPolicy")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["podSelector"]["matchLabels"].items() <= deployment(MATRIX["network-policy"])["spec"]["template"]["metadata"]["labels"].items()
    [ingress] = spec["ingress"]
    [container] = deployment(MATRIX["network-policy"])["spec"]["template"]["spec"]["containers"]
    assert [p["name"] for p in container["ports"]] == ["http"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert ingress["from"] == MATRIX["network-policy"]["networkPolicy"]["metricsFrom"]
    dns, tls, extra = spec["egress"]
    assert dns == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    assert tls == {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]}
    assert extra == MATRIX["network-policy"]["networkPolicy"]["extraEgress"][0]
    # Nobody named: no ingress at all; egress DNS and 443 only.
    [closed] = of_kind(objects(MATRIX["network-policy-closed"]), "NetworkPolicy")
    assert closed["spec"]["ingress"] == []
    assert [r["ports"] for r in closed["spec"]["egress"]] == [dns["ports"], [{"port": 443, "protocol": "TCP"}]]
