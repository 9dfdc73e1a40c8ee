//! `scale`: N FlowRuns kept in the cluster (all but `running` finished, as a year of history
//! without TTL leaves them), then the operator starts: its time to ready (the initial list of
//! every FlowRun in scope), its memory, the AppFlow calls the finished ones cause, and the
//! API-server requests it makes while starting (from the audit log). Then the same with two
//! shards (`team=a`, `team=b`), each with half of the FlowRuns.
//!
//! Seeding is part of the figures: the FlowRuns are created `SEED_CONCURRENCY` at a time, each
//! finished one with its final status written through the status subresource right after its
//! create (what the operator would have left); the running ones are started by an operator of
//! their own before the measured one starts.

use std::time::{Duration, Instant};

use flowrun_api::flowrun::{FlowRun, FlowRunSpec, Phase};
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::support::flowruns::World;
use super::support::operator::Operator;
use super::{FLOWS, Table, audit_counts, epoch_seconds, start_operator_with};

const SEED_CONCURRENCY: usize = 64;
/// The finished FlowRuns' flow: any AppFlow call naming it is caused by a finished FlowRun.
const FINISHED_FLOW: &str = "life";
/// An hour long: the running ones must outlast the seeding (17 min for 100,000 here).
const RUNNING_FLOW: &str = "f0";

fn team(i: usize) -> &'static str {
    if i.is_multiple_of(2) { "a" } else { "b" }
}

fn labelled(name: &str, flow: &str, team: &str) -> FlowRun {
    let mut flowrun = FlowRun::new(name, FlowRunSpec::new(flow));
    flowrun
        .labels_mut()
        .insert("team".to_owned(), team.to_owned());
    flowrun
}

/// Creates a finished FlowRun and writes its final status, retrying (bounded) while the API
/// server is busy.
async fn seed_finished(api: &Api<FlowRun>, name: String, team: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match api
            .create(
                &PostParams::default(),
                &labelled(&name, FINISHED_FLOW, team),
            )
            .await
        {
            Ok(_) => break,
            Err(kube::Error::Api(status)) if status.code == 409 => break,
            Err(error) => assert!(Instant::now() < deadline, "create {name}: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = json!({"status": {
        "phase": "Succeeded",
        "executionId": format!("seeded-{name}"),
        "executionStatus": "Successful",
        "startTime": "2026-01-01T00:00:00Z",
        "completionTime": "2026-01-01T00:01:00Z",
        "recordsProcessed": 100,
    }});
    loop {
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
        {
            Ok(_) => return,
            Err(error) => assert!(Instant::now() < deadline, "status of {name}: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one start of an operator cost.
struct Start {
    /// From the process start to `/readyz` 200: the initial list of every FlowRun in scope.
    ready: Duration,
    /// From the process start until it had reconciled every FlowRun in scope once.
    reconciled: Duration,
    rss_mib: f64,
    peak_mib: f64,
    /// The audit log's window of this start: from the process start to every FlowRun
    /// reconciled (Unix seconds).
    window: (f64, f64),
}

/// Starts an operator and waits (bounded: 300 s each) until it is ready, then until it has
/// reconciled each of the `flowruns` in its scope once (its reconcile counter), and reads its
/// memory then, with the peak of the whole start.
async fn start_and_measure(world: &World, extra: &[String], flowruns: usize) -> (Operator, Start) {
    let from = epoch_seconds();
    let started = Instant::now();
    let operator = start_operator_with(world, extra);
    let url = format!("{}/readyz", operator.http_url().await);
    loop {
        if let Ok(response) = reqwest::get(&url).await
            && response.status().is_success()
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "not ready within 300 s: {}",
            operator.log_path().display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = started.elapsed();
    loop {
        let reconciles = operator.metric("flowrun_reconciles_total").await;
        if reconciles.is_some_and(|count| count >= flowruns as f64) {
            break;
        }
        assert!(
            started.elapsed() < ready + Duration::from_secs(300),
            "{reconciles:?} of {flowruns} reconciled 300 s after ready: {}",
            operator.log_path().display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reconciled = started.elapsed();
    let (rss, peak, _) = operator.footprint().expect("the operator runs");
    let start = Start {
        ready,
        reconciled,
        rss_mib: rss as f64 / 1024.0,
        peak_mib: peak as f64 / 1024.0,
        window: (from, epoch_seconds()),
    };
    (operator, start)
}

/// The operator's requests in `window` by verb and resource, from the audit log: reads
/// (list pages, watches) and, separately, writes.
fn requests_text(namespace: &str, window: (f64, f64)) -> (String, u64) {
    let counts = audit_counts(namespace, Some(window)).unwrap_or_default();
    let mut text = Vec::new();
    let mut writes = 0;
    for ((user, verb, resource), count) in counts {
        if user == super::OPERATOR_USER {
            text.push(format!("{count} {verb} {resource}"));
            if super::WRITE_VERBS.contains(&verb.as_str()) {
                writes += count;
            }
        }
    }
    (text.join(", "), writes)
}

fn add_start(table: &mut Table, what: &str, start: &Start) {
    table.add(
        format!("Scale: {what}: start to ready / to all reconciled once"),
        format!(
            "{:.1} / {:.1} s",
            start.ready.as_secs_f64(),
            start.reconciled.as_secs_f64()
        ),
        "ready <= 30 s",
    );
    table.add(
        format!("Scale: {what}: RSS when all reconciled / peak"),
        format!("{:.0} / {:.0} MiB", start.rss_mib, start.peak_mib),
        "<= 200 MiB",
    );
}

/// The machine's load average over the last minute, for the figures' context.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

/// AppFlow calls naming `flow` since `from` (Unix seconds).
async fn calls_for(world: &World, flow: &str, from: f64) -> usize {
    world
        .appflow
        .requests()
        .await
        .iter()
        .filter(|request| request.flow_name.as_deref() == Some(flow) && request.time >= from)
        .count()
}

pub async fn scale(n: usize, running: usize, table: &mut Table) {
    let world = World::new("bench-scale", FLOWS).await;
    let api = world.flowruns.clone();

    // The running ones, started for real by an operator of their own.
    let seeding = Instant::now();
    let runs: Vec<String> = (0..running).map(|i| format!("run-{i:06}")).collect();
    futures::stream::iter(runs.iter().enumerate())
        .map(|(i, name)| {
            let api = api.clone();
            async move {
                api.create(
                    &PostParams::default(),
                    &labelled(name, RUNNING_FLOW, team(i)),
                )
                .await
                .unwrap_or_else(|error| panic!("create {name}: {error}"));
            }
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
    {
        let mut starter = start_operator_with(&world, &[]);
        world
            .wait_all(
                running,
                Duration::from_secs(300),
                Some(&starter),
                |flowrun| flowrun.phase() == Phase::Running,
            )
            .await;
        starter.terminate(Duration::from_secs(30));
    }
    let finished = n - running;
    let seed_finished_at = Instant::now();
    futures::stream::iter(0..finished)
        .map(|i| seed_finished(&api, format!("done-{i:06}"), team(i)))
        .buffer_unordered(SEED_CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
    let seeded = seeding.elapsed();
    table.add(
        format!("Scale: seeding {n} FlowRuns ({running} started by an operator, {finished} created + status)"),
        format!(
            "{:.0} s ({:.0} finished/s)",
            seeded.as_secs_f64(),
            finished as f64 / seed_finished_at.elapsed().as_secs_f64()
        ),
        "context",
    );

    // One operator for all of them: paged lists, then the default (auto), which picks a
    // streaming list on this API server.
    for (what, extra) in [
        (
            "one operator, paged lists",
            vec!["--initial-list=paged".to_owned()],
        ),
        ("one operator, the default --initial-list=auto", Vec::new()),
    ] {
        let load = load_average();
        let (operator, start) = start_and_measure(&world, &extra, n).await;
        drop(operator);
        add_start(
            table,
            &format!("{what}, {n} FlowRuns (load {load})"),
            &start,
        );
        let (requests, writes) = requests_text(&world.namespace, start.window);
        table.add(
            format!("Scale: {what}: API-server requests from start to all reconciled"),
            requests,
            "context (audit log)",
        );
        table.add(
            format!("Scale: {what}: writes among them"),
            writes.to_string(),
            "0 (finished and running ones alike)",
        );
        table.add(
            format!("Scale: {what}: AppFlow calls caused by the {finished} finished FlowRuns"),
            calls_for(&world, FINISHED_FLOW, start.window.0)
                .await
                .to_string(),
            "0",
        );
    }

    // What paging spares: the same FlowRuns in one response.
    let listed = Instant::now();
    let request = kube::core::Request::new(api.resource_url())
        .list(&ListParams::default())
        .expect("a list request");
    let body = world
        .client
        .request_text(request)
        .await
        .expect("an unpaged list");
    table.add(
        format!("Scale: one unpaged list of the {n} FlowRuns (what pages of 500 avoid)"),
        format!(
            "{:.0} MiB in {:.1} s",
            body.len() as f64 / 1024.0 / 1024.0,
            listed.elapsed().as_secs_f64()
        ),
        "context",
    );
    drop(body);

    // Two shards, started together, each with half.
    let load = load_average();
    let from = epoch_seconds();
    let (shard_a, shard_b) = (
        ["--watch-label-selector=team=a".to_owned()],
        ["--watch-label-selector=team=b".to_owned()],
    );
    let (a, b) = tokio::join!(
        start_and_measure(&world, &shard_a, n / 2),
        start_and_measure(&world, &shard_b, n / 2),
    );
    for (shard, (_, start)) in ["team=a", "team=b"].iter().zip([&a, &b]) {
        add_start(
            table,
            &format!(
                "two shards started together, shard {shard} ({} FlowRuns, load {load})",
                n / 2
            ),
            start,
        );
    }
    // Both shards' requests together: the audit log knows them as one user.
    let to = a.1.window.1.max(b.1.window.1);
    drop((a, b));
    let (requests, writes) = requests_text(&world.namespace, (from, to));
    table.add(
        "Scale: two shards: API-server requests from start to all reconciled (both)",
        requests,
        "context (audit log)",
    );
    table.add(
        "Scale: two shards: writes among them",
        writes.to_string(),
        "0",
    );
    table.add(
        "Scale: two shards: AppFlow calls caused by finished FlowRuns",
        calls_for(&world, FINISHED_FLOW, from).await.to_string(),
        "0",
    );
}
