//! High availability and observability on the real API server: leader election with a standby
//! that takes over, SIGTERM that finishes the reconcile in flight and releases the Lease, and
//! the /healthz, /readyz and /metrics endpoints.

mod support;

use std::time::{Duration, Instant};

use flowrun_api::flowrun::{FlowRunStatus, Phase};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use support::appflow_local::{Fault, FaultKind};
use support::cluster::client_for;
use support::flowruns::{FLOWS, World};
use support::operator::{Operator, metric};
use support::own_cluster::{OwnCluster, loosened, replace_crd_versions, standin_crd};

/// Waits (bounded) until `condition` holds.
async fn wait_until<F, Fut>(within: Duration, what: &str, condition: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const START: Duration = Duration::from_secs(30);
const LEASE: &str = "flowrun-operator";

fn phase_is(phase: Phase) -> impl Fn(&FlowRunStatus) -> bool {
    move |status| status.phase == Some(phase)
}

/// `(status code, body)` of a GET.
async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|error| panic!("GET {url}: {error}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Waits (bounded) until `series` has `value`; returns how long that took.
async fn wait_for_metric(base: &str, series: &str, value: f64, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let seen = metric(base, series).await;
        if seen == Some(value) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{series} is {seen:?} at {base}, expected {value} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (bounded) until /readyz answers `status` with a body starting with `prefix`.
async fn wait_for_readyz(base: &str, status: u16, prefix: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = get(&format!("{base}/readyz")).await;
        if seen.0 == status && seen.1.starts_with(prefix) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz at {base} says {seen:?}, expected {status} {prefix:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn election_args(namespace: &str, lease: &str, renew: &str, retry: &str) -> Vec<String> {
    vec![
        "--leader-election".to_owned(),
        format!("--leader-election-namespace={namespace}"),
        format!("--leader-election-lease-duration={lease}"),
        format!("--leader-election-renew-deadline={renew}"),
        format!("--leader-election-retry-period={retry}"),
    ]
}

fn start(world: &World, args: &[String]) -> Operator {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    world.operator(&args)
}

async fn holder(world: &World) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(world.client.clone(), &world.namespace);
    leases
        .get(LEASE)
        .await
        .expect("read the lease")
        .spec
        .and_then(|spec| spec.holder_identity)
}

#[tokio::test]
async fn standby_takes_over_when_the_leader_dies_and_no_flow_starts_twice() {
    let world = World::new("failover", FLOWS).await;
    let args = election_args(&world.namespace, "3s", "2s", "500ms");
    let mut first = start(&world, &args);
    let first_url = first.http_url().await;
    wait_for_metric(&first_url, "flowrun_leader", 1.0, START).await;
    wait_for_readyz(&first_url, 200, "ok: leading").await;

    let second = start(&world, &args);
    let second_url = second.http_url().await;
    // The standby is ready (rolling updates and disruption budgets count on it) and says so.
    wait_for_readyz(&second_url, 200, "ok: standby").await;
    assert_eq!(metric(&second_url, "flowrun_leader").await, Some(0.0));
    let first_identity = holder(&world).await.expect("the leader holds the lease");

    world.create("before", "on-demand").await;
    world
        .wait_for("before", START, Some(&first), phase_is(Phase::Running))
        .await;

    // SIGKILL: no release, so the standby must wait for the Lease to expire, and no longer.
    first.kill();
    let took_over = wait_for_metric(&second_url, "flowrun_leader", 1.0, START).await;
    assert!(
        took_over >= Duration::from_secs(2) && took_over <= Duration::from_secs(10),
        "the standby took over {took_over:?} after the leader died (lease: 3s)"
    );
    wait_for_readyz(&second_url, 200, "ok: leading").await;
    let second_identity = holder(&world)
        .await
        .expect("the new leader holds the lease");
    assert_ne!(first_identity, second_identity);

    world.create("after", "on-demand").await;
    world
        .wait_for("after", START, Some(&second), phase_is(Phase::Running))
        .await;
    let stats = world.appflow.stats().await;
    assert_eq!(stats.executions("on-demand"), 2, "{stats:?}");
}

#[tokio::test]
async fn sigterm_finishes_the_reconcile_in_flight_and_releases_the_lease() {
    let world = World::new("sigterm", FLOWS).await;
    // A long lease: a takeover within seconds proves the leader released it.
    let args = election_args(&world.namespace, "30s", "20s", "500ms");
    let mut first = start(&world, &args);
    let first_url = first.http_url().await;
    wait_for_metric(&first_url, "flowrun_leader", 1.0, START).await;
    let second = start(&world, &args);
    let second_url = second.http_url().await;
    wait_for_readyz(&second_url, 200, "ok: standby").await;

    // StartFlow answers after 2 s: SIGTERM arrives while the reconcile waits for it.
    world
        .appflow
        .set_faults(&[Fault::latency("StartFlow", Duration::from_secs(2))])
        .await;
    world.create("in-flight", "on-demand").await;
    let deadline = Instant::now() + START;
    while world.appflow.requests_for("StartFlow").await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no StartFlow call within {START:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let code = first.terminate(Duration::from_secs(20));
    assert_eq!(
        code,
        Some(0),
        "exit code after SIGTERM; log: {}",
        first.logs()
    );
    let exited = Instant::now();

    // The reconcile in flight was finished, not abandoned: its status write landed, and the
    // new leader had no reason to call StartFlow again.
    let logs = first.logs();
    assert!(logs.contains("Started flow"), "{logs}");
    assert!(logs.contains("Released the leader lease"), "{logs}");
    let flowrun = world.flowruns.get("in-flight").await.expect("FlowRun");
    assert_eq!(
        flowrun.status.and_then(|status| status.phase),
        Some(Phase::Running)
    );

    wait_for_metric(&second_url, "flowrun_leader", 1.0, START).await;
    assert!(
        exited.elapsed() < Duration::from_secs(10),
        "the standby took over {:?} after the leader exited (lease: 30s)",
        exited.elapsed()
    );
    world.appflow.clear_faults().await;
    // Wait until the new leader has looked at the FlowRun (it reads the run's history, which
    // only a reconcile of it does), then check that it saw no reason to start it again.
    let reads_before = world
        .appflow
        .stats()
        .await
        .calls("DescribeFlowExecutionRecords");
    world
        .wait_for_calls("DescribeFlowExecutionRecords", reads_before + 1, START)
        .await;
    assert_eq!(world.appflow.stats().await.calls("StartFlow"), 1);
}

#[tokio::test]
async fn probes_and_metrics_report_what_the_operator_does() {
    let world = World::new(
        "telemetry",
        "flows:\n  - name: quick\n    runSeconds: 0.5\n",
    )
    .await;
    // All three SDK attempts of the first StartFlow call are throttled.
    world
        .appflow
        .set_faults(&[Fault::new("StartFlow", FaultKind::Throttling).times(3)])
        .await;
    let operator = world.operator(&[]);
    let url = operator.http_url().await;
    assert_eq!(get(&format!("{url}/healthz")).await, (200, "ok".to_owned()));
    wait_for_readyz(&url, 200, "ok: leading, FlowRun watch synced").await;
    assert_eq!(metric(&url, "flowrun_leader").await, Some(1.0));

    world.create("quick", "quick").await;
    world
        .wait_for("quick", START, Some(&operator), phase_is(Phase::Succeeded))
        .await;

    for (series, value) in [
        (
            r#"flowrun_appflow_calls_total{operation="StartFlow",outcome="throttled"}"#,
            1.0,
        ),
        (
            r#"flowrun_appflow_calls_total{operation="StartFlow",outcome="ok"}"#,
            1.0,
        ),
        (r#"flowrun_flowruns{phase="Succeeded"}"#, 1.0),
        (r#"flowrun_flowruns{phase="Running"}"#, 0.0),
        (
            r#"flowrun_run_duration_seconds_count{phase="Succeeded"}"#,
            1.0,
        ),
    ] {
        // The metrics follow the status write and the watch by a moment.
        wait_for_metric(&url, series, value, Duration::from_secs(10)).await;
    }
    let (status, text) = get(&format!("{url}/metrics")).await;
    assert_eq!(status, 200);
    for series in [
        r#"flowrun_appflow_calls_total{operation="DescribeFlowExecutionRecords",outcome="ok"}"#,
        "flowrun_reconciles_total",
        "flowrun_reconcile_duration_seconds_count",
    ] {
        let value = metric(&url, series).await.unwrap_or_default();
        assert!(value >= 1.0, "{series} is {value} in:\n{text}");
    }
    // No FlowRun names in labels; the namespace only as the run counters' `namespace` label.
    let namespace_label = format!("namespace=\"{}\"", world.namespace);
    assert!(
        text.lines().all(|line| !line.contains("quick\"")
            && (!line.contains(&world.namespace)
                || (line.starts_with("flowrun_runs_") && line.contains(&namespace_label)))),
        "FlowRun names, or namespaces outside the run counters, in labels:\n{text}"
    );
    assert_eq!(
        metric(
            &url,
            &format!(
                "flowrun_runs_finished_total{{{namespace_label},phase=\"Succeeded\",reason=\"Succeeded\"}}"
            )
        )
        .await,
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &url,
            &format!("flowrun_runs_started_total{{{namespace_label}}}")
        )
        .await,
        Some(1.0),
        "{text}"
    );
}

/// A Lease that does not parse must not leave the operator without a leader: it is taken over
/// once it stops changing for a lease duration, and FlowRuns start. Such a Lease is stored
/// while the Lease schema is loose (the stand-in's, like a real API server's, refuses it), then
/// the real schema returns. Bounds: its own cluster; lease 2 s; each wait at most 30 s.
#[tokio::test]
async fn an_unreadable_lease_is_taken_over_once_it_stops_changing() {
    let own = OwnCluster::up("bad-lease");
    let client = client_for(&own.cluster.kubeconfig).await;
    let world = World::new_in(client.clone(), "bad-lease", FLOWS).await;
    let leases: Api<DynamicObject> = Api::namespaced_with(
        world.client.clone(),
        &world.namespace,
        &ApiResource::erase::<Lease>(&()),
    );
    let garbled = |name: &str| -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name},
            "spec": {"holderIdentity": 7, "leaseDurationSeconds": "fifteen"},
        }))
        .expect("object")
    };
    // Whether a garbled Lease is taken is what shows which schema serves (a CRD update
    // reaches the API server's handlers a moment later).
    let accepted = |name: String| {
        let leases = leases.clone();
        async move {
            match leases.create(&PostParams::default(), &garbled(&name)).await {
                Ok(_) => true,
                Err(kube::Error::Api(status)) if status.code == 422 => false,
                Err(error) => panic!("create a garbled Lease: {error}"),
            }
        }
    };
    let strict = standin_crd("leases.coordination.k8s.io");
    replace_crd_versions(&client, &loosened(strict.clone())).await;
    wait_until(
        START,
        "the loose Lease schema takes the garbled Lease",
        || accepted(LEASE.to_owned()),
    )
    .await;
    replace_crd_versions(&client, &strict).await;
    wait_until(
        START,
        "the real Lease schema refuses a garbled Lease",
        || {
            let probe = format!("probe-{}", uuid::Uuid::new_v4().simple());
            let accepted = accepted(probe);
            async move { !accepted.await }
        },
    )
    .await;

    let args = election_args(&world.namespace, "2s", "1500ms", "250ms");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let operator = own.operator(&world, &args);
    world.create("after", "on-demand").await;
    world
        .wait_for("after", START, Some(&operator), phase_is(Phase::Running))
        .await;
    let logs = operator.logs();
    assert!(
        logs.contains("Cannot read the leader lease"),
        "said why it waited: {}",
        operator.log_path().display()
    );
    let holder = holder(&world).await.expect("a holder");
    assert!(!holder.contains("unreadable"), "{holder}");
    assert_eq!(
        metric(&operator.http_url().await, "flowrun_leader").await,
        Some(1.0)
    );
}
