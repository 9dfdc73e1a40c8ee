//! Shards on the real API server: operators with different `--watch-label-selector`s, each with
//! its own Lease, serve disjoint FlowRuns; the catch-all serves FlowRuns without the shard
//! label; a FlowRun no shard selects is left alone; killing one shard's leader does not slow
//! another shard; FlowRuns relabelled mid-start between shards run exactly once; a schedule's
//! FlowRuns land in the schedule's shard.
//!
//! Each operator has its own AWS access key, so the endpoint's request log says which shard
//! made each call.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use flowrun_api::flowrun::{FlowRun, FlowRunSpec, Phase};
use flowrun_api::schedule::{FlowRunSchedule, RUN_NOW_ANNOTATION, run_now_name};
use flowrun_core::shard::{LabelSelector, lease_name};
use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::appflow_local::Fault;
use support::cluster::{client_for, cluster};
use support::flowruns::{World, exactly_once_violations, uid};
use support::operator::{Operator, metric};
use support::own_cluster::OwnCluster;

const FLOWS: &str = r#"
flows:
  - name: quick
    runSeconds: 0.5
  - name: endless
    runSeconds: 3600
"#;

const WAIT: Duration = Duration::from_secs(30);
const LEASE_BASE: &str = "flowrun-operator";

/// A shard's operator: its selector, its own access key, leader election on a short Lease.
fn shard(world: &World, selector: &str, access_key: &str) -> Operator {
    let args = [
        format!("--watch-label-selector={selector}"),
        "--leader-election".to_owned(),
        format!("--leader-election-namespace={}", world.namespace),
        "--leader-election-lease-duration=3s".to_owned(),
        "--leader-election-renew-deadline=2s".to_owned(),
        "--leader-election-retry-period=500ms".to_owned(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let watch = format!("--watch-namespaces={}", world.namespace);
    let args: Vec<&str> = [watch.as_str()].into_iter().chain(args).collect();
    Operator::start_with_env(
        &cluster().operator_kubeconfig,
        &world.namespace,
        world.appflow.endpoint_url(),
        &args,
        &[("AWS_ACCESS_KEY_ID", access_key)],
    )
}

fn shard_lease(selector: &str) -> String {
    let selector: LabelSelector = selector.parse().expect("a selector");
    lease_name(LEASE_BASE, Some(&selector)).expect("a lease name")
}

async fn wait_leading(operator: &Operator) {
    let base = operator.http_url().await;
    let deadline = Instant::now() + WAIT;
    while metric(&base, "flowrun_leader").await != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "not leading within {WAIT:?}: {}",
            operator.log_path().display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create_labelled(world: &World, name: &str, flow: &str, team: Option<&str>) -> FlowRun {
    let mut flowrun = FlowRun::new(name, FlowRunSpec::new(flow));
    if let Some(team) = team {
        flowrun
            .labels_mut()
            .insert("team".to_owned(), team.to_owned());
    }
    world
        .flowruns
        .create(&PostParams::default(), &flowrun)
        .await
        .unwrap_or_else(|error| panic!("create FlowRun {name}: {error}"))
}

async fn relabel(world: &World, name: &str, team: &str) {
    world
        .flowruns
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": team}}})),
        )
        .await
        .unwrap_or_else(|error| panic!("relabel {name}: {error}"));
}

fn started(flowrun: &FlowRun) -> bool {
    flowrun
        .status
        .as_ref()
        .is_some_and(|status| status.execution_id.is_some())
}

/// The access keys that called StartFlow, by clientToken.
async fn starters(world: &World) -> BTreeMap<String, BTreeSet<String>> {
    let mut by_token: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for request in world.appflow.requests_for("StartFlow").await {
        if let (Some(token), Some(key)) = (request.client_token, request.access_key_id) {
            by_token.entry(token).or_default().insert(key);
        }
    }
    by_token
}

#[tokio::test]
async fn shards_with_their_own_leases_serve_disjoint_flowruns_and_the_catch_all_the_unlabelled() {
    let world = World::new("shards", FLOWS).await;
    let shards = [
        ("team=a", "AKIDSHARDA"),
        ("team=b", "AKIDSHARDB"),
        ("!team", "AKIDCATCHALL"),
    ];
    let operators: Vec<Operator> = shards
        .iter()
        .map(|(selector, key)| shard(&world, selector, key))
        .collect();
    for operator in &operators {
        wait_leading(operator).await;
    }
    // Three Leases, each held by its own shard: all three lead at once.
    let leases: Api<Lease> = Api::namespaced(world.client.clone(), &world.namespace);
    let mut holders = BTreeSet::new();
    for (selector, _) in &shards {
        let lease = leases
            .get(&shard_lease(selector))
            .await
            .unwrap_or_else(|error| panic!("the Lease of shard {selector}: {error}"));
        holders.insert(lease.spec.and_then(|spec| spec.holder_identity));
    }
    assert_eq!(holders.len(), 3, "{holders:?}");

    let runs: &[(&str, Option<&str>, &str)] = &[
        ("a-1", Some("a"), "AKIDSHARDA"),
        ("a-2", Some("a"), "AKIDSHARDA"),
        ("b-1", Some("b"), "AKIDSHARDB"),
        ("b-2", Some("b"), "AKIDSHARDB"),
        ("plain-1", None, "AKIDCATCHALL"),
        ("plain-2", None, "AKIDCATCHALL"),
    ];
    let mut created = Vec::new();
    for (name, team, _) in runs {
        created.push(create_labelled(&world, name, "endless", *team).await);
    }
    // team=c matches no shard: neither team=a, nor team=b, nor the catch-all's !team.
    create_labelled(&world, "orphan", "endless", Some("c")).await;

    let mut done = Vec::new();
    for (name, _, _) in runs {
        done.push(world.wait_until(name, WAIT, None, started).await);
    }
    let stats = world.appflow.stats().await;
    let violations = exactly_once_violations(&done, &stats);
    assert!(violations.is_empty(), "{violations:#?}");
    let by_token = starters(&world).await;
    for ((name, _, key), flowrun) in runs.iter().zip(&created) {
        let callers = by_token.get(&uid(flowrun)).cloned().unwrap_or_default();
        assert_eq!(
            callers,
            BTreeSet::from([(*key).to_owned()]),
            "{name} was started by its shard only"
        );
    }
    // By now every shard has looked at all its FlowRuns; the orphan is Pending with no
    // status, no start record and no AppFlow call: the sign of a FlowRun no shard serves.
    let orphan = world.flowruns.get("orphan").await.expect("the orphan");
    assert_eq!(orphan.status, None);
    assert!(
        orphan.annotations().is_empty(),
        "{:?}",
        orphan.annotations()
    );
    assert_eq!(orphan.phase(), Phase::Pending);
    assert_eq!(
        by_token.get(&uid(&orphan)),
        None,
        "no shard called StartFlow for it"
    );
}

#[tokio::test]
async fn killing_one_shards_leader_does_not_slow_the_other_shard() {
    let world = World::new("shard-kill", FLOWS).await;
    let mut a_leader = shard(&world, "team=a", "AKIDSHARDA1");
    wait_leading(&a_leader).await;
    let a_standby = shard(&world, "team=a", "AKIDSHARDA2");
    let b = shard(&world, "team=b", "AKIDSHARDB");
    wait_leading(&b).await;
    // The standby is up and standing by before the kill.
    let standby_url = a_standby.http_url().await;
    assert_eq!(metric(&standby_url, "flowrun_leader").await, Some(0.0));

    // Shard B's normal start latency, with shard A healthy.
    let (world_ref, b_ref) = (&world, &b);
    let latency = |name: String| {
        let (world, b) = (world_ref, b_ref);
        async move {
            let started_at = Instant::now();
            create_labelled(world, &name, "endless", Some("b")).await;
            world.wait_until(&name, WAIT, Some(b), started).await;
            started_at.elapsed()
        }
    };
    let mut normal = Duration::ZERO;
    for i in 0..5 {
        normal = normal.max(latency(format!("b-before-{i}")).await);
    }

    a_leader.kill();
    let killed = Instant::now();
    create_labelled(&world, "a-during", "endless", Some("a")).await;
    let mut during = Duration::ZERO;
    for i in 0..5 {
        during = during.max(latency(format!("b-during-{i}")).await);
    }
    let window = killed.elapsed();
    // Shard A really had no leader all this while: its FlowRun waited.
    assert!(
        window < Duration::from_secs(2),
        "B's runs took {window:?} in all"
    );
    let a_during = world.flowruns.get("a-during").await.expect("a-during");
    assert!(
        !started(&a_during),
        "shard A started a-during {window:?} after its leader was killed (lease: 3s)"
    );
    // B's slowest start while A had no leader is within its normal latency (plus scheduling
    // noise on a busy machine).
    assert!(
        during <= normal * 3 + Duration::from_millis(300),
        "B's slowest start was {during:?} while A had no leader, {normal:?} before"
    );
    // A's standby takes over its own Lease, and its FlowRun starts.
    wait_leading(&a_standby).await;
    world
        .wait_until("a-during", WAIT, Some(&a_standby), started)
        .await;
    let callers = starters(&world).await;
    assert_eq!(
        callers.get(&uid(&a_during)),
        Some(&BTreeSet::from(["AKIDSHARDA2".to_owned()]))
    );
}

#[tokio::test]
async fn flowruns_relabelled_between_shards_mid_start_run_exactly_once() {
    const RUNS: usize = 12;
    let world = World::new("shard-move", FLOWS).await;
    let a = shard(&world, "team=a", "AKIDSHARDA");
    let b = shard(&world, "team=b", "AKIDSHARDB");
    wait_leading(&a).await;
    wait_leading(&b).await;
    // StartFlow takes effect at once and answers after 1 s: the relabel lands while shard A
    // waits for the answer, so shard B finds a start record and no executionId.
    world
        .appflow
        .set_faults(&[Fault::slow_response("StartFlow", Duration::from_secs(1))])
        .await;
    let names: Vec<String> = (0..RUNS).map(|i| format!("move-{i:02}")).collect();
    let mut created = Vec::new();
    for name in &names {
        created.push(create_labelled(&world, name, "quick", Some("a")).await);
    }
    world.wait_for_calls("StartFlow", RUNS as u64, WAIT).await;
    for name in &names {
        relabel(&world, name, "b").await;
    }
    let done = world
        .wait_all(RUNS, WAIT, Some(&b), |flowrun| {
            flowrun.phase() == Phase::Succeeded && flowrun.finalizers().is_empty()
        })
        .await;
    let stats = world.appflow.stats().await;
    let violations = exactly_once_violations(&done, &stats);
    assert!(violations.is_empty(), "{violations:#?}");
    // The hand-over happened: shard B called StartFlow again for the FlowRuns it took over,
    // with the same token, and AppFlow started nothing new.
    let by_token = starters(&world).await;
    let both = BTreeSet::from(["AKIDSHARDA".to_owned(), "AKIDSHARDB".to_owned()]);
    let handed_over = created
        .iter()
        .filter(|flowrun| by_token.get(&uid(flowrun)) == Some(&both))
        .count();
    assert!(
        handed_over > 0,
        "no FlowRun was started by both shards: {by_token:?}"
    );
    // Only shard B followed them to the end.
    let follows = world
        .appflow
        .requests_for("DescribeFlowExecutionRecords")
        .await;
    let last_a = follows
        .iter()
        .filter(|request| request.access_key_id.as_deref() == Some("AKIDSHARDA"))
        .map(|request| request.time)
        .fold(f64::MIN, f64::max);
    let b_calls = follows
        .iter()
        .filter(|request| request.access_key_id.as_deref() == Some("AKIDSHARDB"))
        .count();
    assert!(b_calls > 0, "shard B never read the history");
    let first_success = done
        .iter()
        .filter_map(|flowrun| flowrun.status.as_ref()?.completion_time.clone())
        .map(|time| time.0.as_millisecond() as f64 / 1000.0)
        .fold(f64::MAX, f64::min);
    assert!(
        last_a < first_success,
        "shard A still read the history after the FlowRuns moved"
    );
}

#[tokio::test]
async fn a_schedules_flowruns_land_in_the_schedules_shard() {
    let world = World::new("shard-schedule", FLOWS).await;
    let a = shard(&world, "team=a", "AKIDSHARDA");
    let b = shard(&world, "team=b", "AKIDSHARDB");
    wait_leading(&a).await;
    wait_leading(&b).await;
    // The template says team=b; the schedule is shard A's, and so are its FlowRuns.
    let schedule: FlowRunSchedule = serde_json::from_value(json!({
        "apiVersion": "appflow.flowrun.dev/v1alpha1",
        "kind": "FlowRunSchedule",
        "metadata": {
            "name": "nightly",
            "labels": {"team": "a"},
            "annotations": {RUN_NOW_ANNOTATION: "first"},
        },
        "spec": {
            "schedule": "0 2 * * *",
            "flowRunTemplate": {
                "metadata": {"labels": {"team": "b", "app": "crm"}},
                "spec": {"flowName": "quick"},
            },
        },
    }))
    .expect("a FlowRunSchedule");
    Api::<FlowRunSchedule>::namespaced(world.client.clone(), &world.namespace)
        .create(&PostParams::default(), &schedule)
        .await
        .expect("create the schedule");
    let name = run_now_name("nightly", "first");
    let flowrun = world.wait_until(&name, WAIT, Some(&a), started).await;
    assert_eq!(flowrun.labels().get("team").map(String::as_str), Some("a"));
    assert_eq!(flowrun.labels().get("app").map(String::as_str), Some("crm"));
    let callers = starters(&world).await;
    assert_eq!(
        callers.get(&uid(&flowrun)),
        Some(&BTreeSet::from(["AKIDSHARDA".to_owned()]))
    );
}

/// The default `--initial-list=auto` streams the initial list where the API server serves it
/// and pages where it does not: on an API server with WatchList switched off, a streaming
/// operator would never be ready. Both serve a FlowRun. Bounds: an own cluster (about 5 s).
#[tokio::test]
async fn the_default_initial_list_streams_where_served_and_pages_where_not() {
    let served = World::new("list-auto", FLOWS).await;
    let off = OwnCluster::up_with_apiserver_args("no-watchlist", "--feature-gates=WatchList=false");
    let refused = World::new_in(
        client_for(&off.cluster.kubeconfig).await,
        "list-auto",
        FLOWS,
    )
    .await;
    for (world, operator, initial_list) in [
        (&served, served.operator(&[]), "streaming"),
        (&refused, off.operator(&refused, &[]), "paged"),
    ] {
        world.create("first", "quick").await;
        world
            .wait_for(
                "first",
                Duration::from_secs(60),
                Some(&operator),
                |status| status.phase == Some(Phase::Succeeded),
            )
            .await;
        let logs = operator.logs();
        let started = logs
            .lines()
            .find(|line| line.contains("Started flowrun-operator"))
            .expect("the start line");
        assert!(
            started.contains(&format!("initial_list=\"{initial_list}\"")),
            "{started}"
        );
    }
}
