//! The chart's alerts and dashboard, proved with the real Prometheus tools: `promtool check
//! rules` and `promtool test rules` on the rendered PrometheusRule, and a real Prometheus that
//! scrapes a running operator every second while a run fails, until the failing-run alert
//! fires and every dashboard query answers with a series. `promtool check metrics` lints a
//! real scrape. (The chart's objects themselves are validated in tests/chart/.)

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use flowrun_api::flowrun::Phase;
use serde_json::{Value, json};
use support::cluster::repo_root;
use support::flowruns::World;
use support::prometheus::{Prometheus, chart_rules, promtool};

const FLOWS: &str = r#"
flows:
  - name: broken
    runSeconds: 0.5
    outcome: Error
    errorMessage: "Connector returned 401 Unauthorized"
"#;

/// The job the chart's rules select by default: `<release full name>-metrics`.
const JOB: &str = "flowrun-operator-metrics";

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn alert_rules(rules_yaml: &str) -> Vec<Value> {
    let rules: Value = serde_yaml_ng::from_str(rules_yaml).expect("rules parse");
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn chart_rules_pass_promtool_check_and_their_unit_tests() {
    let rules = chart_rules(&json!({}));
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("rules.yaml"), &rules).expect("write the rules");
    let tests = std::fs::read_to_string(repo_root().join("tests/monitoring/alerts.test.yaml"))
        .expect("tests/monitoring/alerts.test.yaml");
    std::fs::write(dir.path().join("alerts.test.yaml"), &tests).expect("write the tests");

    let checked = promtool(dir.path(), &["check", "rules", "rules.yaml"], None);
    assert!(
        checked.status.success(),
        "promtool check rules:\n{}",
        text(&checked)
    );
    let tested = promtool(dir.path(), &["test", "rules", "alerts.test.yaml"], None);
    assert!(
        tested.status.success(),
        "promtool test rules:\n{}",
        text(&tested)
    );

    // Every alert is tested both ways: expected to fire somewhere, and to stay silent.
    let tests: Value = serde_yaml_ng::from_str(&tests).expect("the unit tests parse");
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|test| test["alert_rule_test"].as_array().into_iter().flatten())
        .collect();
    let tested_when = |alert: &str, fires: bool| {
        cases.iter().any(|case| {
            case["alertname"] == alert
                && case["exp_alerts"]
                    .as_array()
                    .is_some_and(|expected| expected.is_empty() != fires)
        })
    };
    let operations = std::fs::read_to_string(repo_root().join("docs/operations.md"))
        .expect("docs/operations.md");
    let headings: BTreeSet<String> = operations
        .lines()
        .filter_map(|line| line.strip_prefix("### "))
        .map(|heading| heading.trim().to_lowercase())
        .collect();
    let alerts = alert_rules(&rules);
    assert_eq!(alerts.len(), 7, "{rules}");
    for rule in alerts {
        let alert = rule["alert"].as_str().expect("an alert name");
        assert!(tested_when(alert, true), "no unit test where {alert} fires");
        assert!(
            tested_when(alert, false),
            "no unit test where {alert} stays silent"
        );
        let annotations = &rule["annotations"];
        for key in ["summary", "description", "runbook_url"] {
            assert!(annotations[key].is_string(), "{alert} has no {key}");
        }
        let runbook = annotations["runbook_url"].as_str().unwrap_or_default();
        let anchor = runbook.rsplit_once('#').map(|(_, anchor)| anchor);
        assert_eq!(
            anchor,
            Some(alert.to_lowercase().as_str()),
            "{alert}: {runbook}"
        );
        assert!(
            headings.contains(&alert.to_lowercase()),
            "docs/operations.md has no section \"### {alert}\" (its runbook)"
        );
    }
}

/// The dashboard's queries, with its variables as Grafana would fill them.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = repo_root().join("charts/flowrun-operator/dashboards/flowrun-operator.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("the dashboard"))
            .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{} panels", panels.len());
    panels
        .iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            assert!(!targets.is_empty(), "panel {title:?} has no query");
            targets.into_iter().map(move |target| {
                let expr = target["expr"].as_str().expect("a PromQL expr");
                let expr = expr.replace("$job", JOB).replace("$__rate_interval", "30s");
                (title.clone(), expr)
            })
        })
        .collect()
}

#[tokio::test]
async fn prometheus_fires_the_failing_run_alert_and_answers_every_dashboard_query() {
    let started = Instant::now();
    let world = World::new("monitoring", FLOWS).await;
    let operator = world.operator(&[]);
    let base = operator.http_url().await;
    let target = base.trim_start_matches("http://");
    let prometheus = Prometheus::start(JOB, &[target], &chart_rules(&json!({})));
    prometheus.wait_ready(Duration::from_secs(20)).await;

    world.create("copy", "broken").await;
    world
        .wait_for("copy", Duration::from_secs(30), Some(&operator), |status| {
            status.phase == Some(Phase::Failed)
        })
        .await;

    // The failing-run alert, for this namespace and reason, over Prometheus' HTTP API.
    let deadline = Instant::now() + Duration::from_secs(30);
    let alert = loop {
        let alerts = prometheus.alerts().await;
        let failing = alerts.iter().find(|alert| {
            alert["labels"]["alertname"] == "FlowRunsFailing"
                && alert["labels"]["namespace"] == world.namespace.as_str()
                && alert["state"] == "firing"
        });
        if let Some(alert) = failing {
            break alert.clone();
        }
        assert!(
            Instant::now() < deadline,
            "FlowRunsFailing did not fire within 30 s; alerts: {alerts:#?}\nPrometheus log:\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(alert["labels"]["reason"], "ExecutionFailed", "{alert:#}");
    assert_eq!(alert["labels"]["severity"], "warning", "{alert:#}");
    let description = alert["annotations"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(description.contains(&world.namespace), "{description}");

    // Every dashboard query answers, with at least one series (the Job variable, too).
    let jobs = prometheus
        .api("label/job/values", &[("match[]", "flowrun_build_info")])
        .await
        .expect("label values");
    assert_eq!(jobs, json!([JOB]));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut pending = dashboard_queries();
    while !pending.is_empty() {
        let mut unanswered = Vec::new();
        for (title, expr) in pending {
            match prometheus.query(&expr).await {
                Ok(series) if !series.is_empty() => {}
                Ok(_) => unanswered.push((title, expr)),
                Err(error) => panic!("panel {title:?}: {expr} fails: {error}"),
            }
        }
        assert!(
            unanswered.is_empty() || Instant::now() < deadline,
            "dashboard queries without a series after 20 s: {unanswered:#?}"
        );
        pending = unanswered;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // A real scrape, with the run counters in it, follows Prometheus' naming rules.
    let scrape = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics text");
    assert!(scrape.contains("flowrun_runs_finished_total{"), "{scrape}");
    let dir = tempfile::tempdir().expect("a temp dir");
    let linted = promtool(dir.path(), &["check", "metrics"], Some(&scrape));
    assert!(
        linted.status.success() && text(&linted).trim().is_empty(),
        "promtool check metrics:\n{}\non:\n{scrape}",
        text(&linted)
    );
    eprintln!("monitoring test took {:?}", started.elapsed());
}
