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

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flowrun_api::flowrun::{FlowRun, FlowRunSpec, Phase};
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::support::flowruns::World;
use super::support::operator::Operator;
use super::{FLOWS, Table, audit_counts, epoch_seconds, start_operator_with};

const SEED_CONCURRENCY: usize = 64;
/// The finished FlowRuns' flow: any AppFlow call naming it is caused by a finished FlowRun.
const FINISHED_FLOW: &str = "life";
const RUNNING_FLOW: &str = "bench";

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
    ready: Duration,
    rss_mib: f64,
    peak_mib: f64,
    /// (verb, resource) -> requests, from the audit log, from its start to its readiness.
    requests: BTreeMap<(String, String), u64>,
}

/// Starts an operator and waits (bounded: 300 s) until it is ready, then 10 s more for its
/// memory to settle.
async fn start_and_measure(world: &World, extra: &[String]) -> (Operator, Start, f64, f64) {
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
    let to = epoch_seconds();
    (
        operator,
        Start {
            ready,
            rss_mib: 0.0,
            peak_mib: 0.0,
            requests: BTreeMap::new(),
        },
        from,
        to,
    )
}

fn settle(operator: &Operator, start: &mut Start, namespace: &str, window: (f64, f64)) {
    let (rss, peak, _) = operator.footprint().expect("the operator runs");
    start.rss_mib = rss as f64 / 1024.0;
    start.peak_mib = peak as f64 / 1024.0;
    let counts = audit_counts(namespace, Some(window)).unwrap_or_default();
    for ((user, verb, resource), count) in counts {
        if user == super::OPERATOR_USER {
            *start.requests.entry((verb, resource)).or_default() += count;
        }
    }
}

fn requests_text(start: &Start) -> String {
    start
        .requests
        .iter()
        .map(|((verb, resource), count)| format!("{count} {verb} {resource}"))
        .collect::<Vec<_>>()
        .join(", ")
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

    // One operator for all of them.
    let (operator, mut one, from, to) = start_and_measure(&world, &[]).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    settle(&operator, &mut one, &world.namespace, (from, to));
    drop(operator);
    let finished_calls = calls_for(&world, FINISHED_FLOW, from).await;
    table.add(
        format!("Scale: one operator, {n} FlowRuns: start to ready"),
        format!("{:.1} s", one.ready.as_secs_f64()),
        "<= 30 s",
    );
    table.add(
        format!("Scale: one operator, {n} FlowRuns: RSS 10 s after ready / peak"),
        format!("{:.0} / {:.0} MiB", one.rss_mib, one.peak_mib),
        "<= 200 MiB",
    );
    table.add(
        format!("Scale: AppFlow calls caused by the {finished} finished FlowRuns"),
        finished_calls.to_string(),
        "0",
    );
    table.add(
        "Scale: API-server requests from start to ready (audit log)",
        requests_text(&one),
        "context",
    );

    // Two shards, started together, each with half.
    let from = epoch_seconds();
    let (shard_a, shard_b) = (
        ["--watch-label-selector=team=a".to_owned()],
        ["--watch-label-selector=team=b".to_owned()],
    );
    let (a, b) = tokio::join!(
        start_and_measure(&world, &shard_a),
        start_and_measure(&world, &shard_b),
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut shards = Vec::new();
    for (operator, mut start, from, to) in [a, b] {
        settle(&operator, &mut start, &world.namespace, (from, to));
        shards.push((operator, start));
    }
    let finished_calls = calls_for(&world, FINISHED_FLOW, from).await;
    for (shard, (_, start)) in ["team=a", "team=b"].iter().zip(&shards) {
        table.add(
            format!(
                "Scale: shard {shard} ({} FlowRuns): start to ready / RSS / peak",
                n / 2
            ),
            format!(
                "{:.1} s / {:.0} / {:.0} MiB",
                start.ready.as_secs_f64(),
                start.rss_mib,
                start.peak_mib
            ),
            "about half of one operator's",
        );
    }
    table.add(
        "Scale: two shards: AppFlow calls caused by finished FlowRuns",
        finished_calls.to_string(),
        "0",
    );
    // Both shards' requests together: the audit log knows them as one user.
    table.add(
        "Scale: two shards: API-server requests from start to ready (both)",
        requests_text(&shards[0].1),
        "context",
    );
}
