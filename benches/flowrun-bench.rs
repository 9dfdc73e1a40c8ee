//! The benchmark behind `hack/bench.sh`: the operator (release build) on the real local API
//! server and the local AppFlow endpoint, measured from the outside, printed as a table.
//!
//! Scenarios (each in a namespace of its own, with an operator watching only that namespace):
//! - `raw`: the rate at which a minimal Rust client (kube, keep-alive, the operator's
//!   concurrency) server-side-applies FlowRun status, measured right before each burst; the
//!   operator's ideal start rate is that divided by the FlowRun writes of a start (the start
//!   record with the finalizer, and `Running`). With the API server's CPU per patch.
//! - `burst`: N FlowRuns created at once; started runs per second (creation -> `executionId`
//!   seen by a watch) and the latency percentiles.
//! - `paced`: FlowRuns created at a steady rate (100/s and 20/s); latency percentiles.
//! - `latency`: the burst with 100 ms added to every AppFlow call.
//! - `economy`: full lifecycles; StartFlow calls and API server writes per FlowRun (from the
//!   API server's audit log, so `hack/bench.sh` starts it with `FLOWRUN_AUDIT=1`).
//! - `describe`: DescribeFlowExecutionRecords calls per poll tick per flow, for many runs of
//!   a few flows.
//! - `footprint`: operator RSS idle and after N full lifecycles in one namespace, CPU seconds
//!   per 1,000 runs, and the API server's and etcd's RSS for context.
//! - `backlog`: N FlowRuns created while no operator runs (downtime, a GitOps sync), then the
//!   operator starts; for long runs (600 s, none ends while measured) and short runs (2 s, so
//!   completions compete with starts): starts per second, time to all `Running` (and, for short
//!   runs, to all finished), and the ratio to the ideal: the raw write rate measured right
//!   before, divided by the operator's FlowRun writes per start in the measured window (from
//!   the audit log). Also raw rates by merge patch and with two watches, for context.
//! - `schedules`: N FlowRunSchedules firing in the same minute (`M * * * *`, M the coming
//!   minute, so only once while it watches), the operator at the default StartFlow rate limit:
//!   slot-to-FlowRun and slot-to-started latency (the slot's wall-clock time to the moment a
//!   watch saw its FlowRun, and its executionId) p50/p99, the operator's RSS before the
//!   schedules and after their slot, and N raw creates before them as the ceiling. It leaves
//!   its objects.
//! - `scale` (only with `--only scale`: seeding 100,000 FlowRuns takes minutes): N FlowRuns
//!   kept, most finished; the operator's start-to-ready time, memory, AppFlow calls for the
//!   finished ones and API-server requests at start; the same with two shards (`scale.rs`).
//!
//! Every scenario reports the CPU time (from `/proc`) the API server and etcd used per start
//! or lifecycle, and the operator's.
//!
//! The raw, burst and backlog scenarios delete their FlowRuns and events when measured and
//! restart the API server (etcd kept), so that each scenario meets an API server as fresh as
//! the first.
//!
//! Usage: `cargo bench --bench flowrun-bench -- [--quick] [--only raw,burst,...,backlog]`
//! (scenarios: raw, burst, paced, latency, economy, describe, schedules, footprint, backlog).
//! Every wait is
//! bounded; the run stops by itself. Results also go to `target/bench/results.md`.

#[path = "../tests/support/mod.rs"]
mod support;

mod scale;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flowrun_api::FlowRunSchedule;
use flowrun_api::flowrun::{FlowRun, FlowRunSpec, Phase};
use futures::StreamExt;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, CustomResourceExt, ResourceExt};
use serde_json::json;
use support::appflow_local::Fault;
use support::cluster::{client, cluster, cluster_sh, install_crd, unique_namespace};
use support::flowruns::World;
use support::operator::{Operator, process_footprint};

const FLOWS: &str = r#"
flows:
  - name: bench
    runSeconds: 600
  - name: life
    runSeconds: 2
  - name: f0
    runSeconds: 3600
  - name: f1
    runSeconds: 3600
  - name: f2
    runSeconds: 3600
  - name: f3
    runSeconds: 3600
  - name: one
    runSeconds: 3600
"#;

/// The operator's user in the audit log (its client certificate's CN).
const OPERATOR_USER: &str = "flowrun-operator";

/// The operator's --concurrency, also used by the raw client.
const CONCURRENCY: usize = 32;
/// FlowRun writes of one start: the start record with the finalizer (metadata), and `Running`
/// (status).
const WRITES_PER_START: f64 = 2.0;
/// The operator's --poll-initial-interval here (its default): the tracker's tick.
const TICK: Duration = Duration::from_secs(5);

struct Sizes {
    raw_patches: usize,
    bursts: Vec<usize>,
    /// (FlowRuns, per second)
    paced: Vec<(usize, f64)>,
    latency_burst: usize,
    economy: usize,
    describe_per_flow: usize,
    describe_one: usize,
    describe_window: Duration,
    footprint: usize,
    /// FlowRuns waiting when the operator starts.
    backlog: usize,
    /// FlowRunSchedules firing in the same minute.
    schedules: usize,
    /// (FlowRuns kept, of which running)
    scale: (usize, usize),
}

impl Sizes {
    fn full() -> Self {
        Sizes {
            raw_patches: 3000,
            bursts: vec![1000, 5000],
            paced: vec![(1000, 100.0), (400, 20.0)],
            latency_burst: 1000,
            economy: 300,
            describe_per_flow: 50,
            describe_one: 250,
            describe_window: Duration::from_secs(60),
            footprint: 10_000,
            backlog: 2000,
            schedules: 1000,
            scale: (100_000, 1000),
        }
    }

    fn quick() -> Self {
        Sizes {
            raw_patches: 600,
            bursts: vec![200],
            paced: vec![(200, 100.0)],
            latency_burst: 200,
            economy: 50,
            describe_per_flow: 20,
            describe_one: 150,
            describe_window: Duration::from_secs(20),
            footprint: 1000,
            backlog: 300,
            schedules: 200,
            scale: (5000, 100),
        }
    }
}

/// The results table: measure, value, target (or context).
#[derive(Default)]
struct Table {
    rows: Vec<(String, String, String)>,
}

impl Table {
    fn add(&mut self, measure: impl Into<String>, value: impl Into<String>, target: &str) {
        let row = (measure.into(), value.into(), target.to_owned());
        println!("  {:<58} {:>22}   {}", row.0, row.1, row.2);
        self.rows.push(row);
    }

    fn markdown(&self) -> String {
        let mut text = String::from("| Measure | Value | Target / note |\n|---|---:|---|\n");
        for (measure, value, target) in &self.rows {
            text.push_str(&format!("| {measure} | {value} | {target} |\n"));
        }
        text
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|arg| arg == "--quick");
    let only: Option<Vec<String>> = args
        .iter()
        .position(|arg| arg == "--only")
        .and_then(|at| args.get(at + 1))
        .map(|list| list.split(',').map(str::to_owned).collect());
    let wanted = |name: &str| {
        only.as_ref()
            .is_none_or(|only| only.iter().any(|o| o == name))
    };
    let sizes = if quick { Sizes::quick() } else { Sizes::full() };

    let client = client().await;
    install_crd(&client, &FlowRun::crd()).await;
    let mut table = Table::default();
    println!(
        "flowrun-bench: {} cores, {} MiB memory, cluster {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        mem_total_mib(),
        cluster().kubeconfig.display()
    );
    let started = Instant::now();

    let mut bursts = Vec::new();
    if wanted("burst") {
        bursts.extend(
            sizes
                .bursts
                .iter()
                .map(|&n| (n, None, None, format!("burst-{n}"))),
        );
    }
    if wanted("paced") {
        for &(n, rate) in &sizes.paced {
            bursts.push((n, Some(rate), None, format!("paced-{n}-at-{rate}")));
        }
    }
    if wanted("latency") {
        bursts.push((
            sizes.latency_burst,
            None,
            Some(Duration::from_millis(100)),
            format!("latency-{}", sizes.latency_burst),
        ));
    }
    for (n, pace, latency, label) in bursts {
        println!(
            "== {label}: {n} FlowRuns{}{}",
            pace.map_or(String::new(), |r| format!(" at {r}/s")),
            latency.map_or(String::new(), |l| format!(
                ", {l:?} added to every AppFlow call"
            ))
        );
        // The raw limit right before each burst: the machine's load changes over a long run.
        let ideal = if wanted("raw") {
            let raw = raw_limit(&client, sizes.raw_patches, RawWrite::Apply, 0).await;
            table.add(
                format!(
                    "Raw status patches/s before {label} (kube client, keep-alive, 32 at once)"
                ),
                raw.to_string(),
                "same run",
            );
            Some(raw.rate / WRITES_PER_START)
        } else {
            None
        };
        let result = burst(n, pace, latency, &label).await;
        let what = match (pace, latency) {
            (Some(rate), _) => format!("{n} FlowRuns at a steady {rate:.0}/s"),
            (None, Some(latency)) => {
                format!("Burst of {n}, +{}ms per AppFlow call", latency.as_millis())
            }
            (None, None) => format!("Burst of {n}"),
        };
        if pace.is_none() {
            let ratio = ideal.map_or(String::new(), |ideal| {
                format!("{:.2} of ideal {ideal:.0}/s", result.rate / ideal)
            });
            let target = if latency.is_some() {
                "throughput from concurrency"
            } else {
                "ratio >= 0.7"
            };
            table.add(
                format!("{what}: started runs/s"),
                format!("{:.0} ({ratio})", result.rate),
                target,
            );
        }
        let target = if pace == Some(100.0) {
            "p99 <= 250 ms"
        } else {
            ""
        };
        table.add(
            format!("{what}: latency p50 / p95 / p99 / max"),
            format!(
                "{} / {} / {} / {} ms",
                ms(result.p50),
                ms(result.p95),
                ms(result.p99),
                ms(result.max)
            ),
            target,
        );
        table.add(
            format!("{what}: StartFlow calls per FlowRun"),
            format!("{:.2}", result.start_calls as f64 / n as f64),
            "1.00",
        );
        table.add(
            format!("{what}: Running events dropped (queue full; statuses unaffected)"),
            format!("{} of {n}", result.events_dropped),
            "",
        );
        table.add(
            format!("{what}: CPU ms per start: operator / API server / etcd"),
            result.cpu.ms_per(n),
            "where the time goes",
        );
        table.add(
            format!("{what}: cores busy: machine / API server / etcd / operator"),
            result.cpu.cores(),
            "load",
        );
    }
    // Before the scenarios that leave their FlowRuns behind (footprint's 10,000 weigh on the API
    // server even after a restart: it lists them all into its watch cache).
    if wanted("backlog") {
        println!(
            "== backlog: {} FlowRuns waiting when the operator starts",
            sizes.backlog
        );
        backlog(&client, sizes.backlog, sizes.raw_patches, &mut table).await;
    }
    if wanted("economy") {
        println!("== economy: {} full lifecycles", sizes.economy);
        economy(sizes.economy, &mut table).await;
    }
    if wanted("describe") {
        println!(
            "== describe: 4 flows x {} runs and 1 flow x {} runs",
            sizes.describe_per_flow, sizes.describe_one
        );
        describe(
            sizes.describe_per_flow,
            sizes.describe_one,
            sizes.describe_window,
            &mut table,
        )
        .await;
    }
    if wanted("schedules") {
        println!(
            "== schedules: {} FlowRunSchedules firing in the same minute",
            sizes.schedules
        );
        schedules(sizes.schedules, &mut table).await;
    }
    if wanted("footprint") {
        println!(
            "== footprint: {} FlowRuns, full lifecycles",
            sizes.footprint
        );
        footprint(sizes.footprint, &mut table).await;
    }

    // Only when asked for by name: it keeps 100,000 FlowRuns in the cluster.
    if only
        .as_ref()
        .is_some_and(|only| only.iter().any(|o| o == "scale"))
    {
        let (n, running) = sizes.scale;
        println!("== scale: {n} FlowRuns kept, {running} of them running");
        scale::scale(n, running, &mut table).await;
    }

    let markdown = table.markdown();
    let out = support::cluster::repo_root().join("target/bench");
    std::fs::create_dir_all(&out).expect("create target/bench");
    std::fs::write(out.join("results.md"), &markdown).expect("write target/bench/results.md");
    println!(
        "\n{markdown}\nTotal {:.0} s. Also in target/bench/results.md",
        started.elapsed().as_secs_f64()
    );
}

fn ms(duration: Duration) -> String {
    format!("{}", duration.as_millis())
}

fn mem_total_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

fn names(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i:05}")).collect()
}

/// The operator as the README runs it, with its defaults, except the StartFlow rate limit
/// (20/s by default, to spare AppFlow's quota), lifted so the operator itself is measured.
fn start_operator(world: &World) -> Operator {
    start_operator_with(world, &[])
}

/// [`start_operator`] with more flags.
fn start_operator_with(world: &World, extra: &[String]) -> Operator {
    let args: Vec<String> = bench_args(world)
        .into_iter()
        .chain(extra.iter().cloned())
        .collect();
    start_operator_from(world, &args)
}

/// The operator with exactly these flags.
fn start_operator_from(world: &World, args: &[String]) -> Operator {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Operator::start_with(
        &cluster().operator_kubeconfig,
        &world.namespace,
        world.appflow.endpoint_url(),
        &args,
    )
}

/// The benchmark's operator flags: short polls and retries, and no StartFlow rate limit, so
/// that the operator's own capacity is measured.
fn bench_args(world: &World) -> Vec<String> {
    vec![
        format!("--watch-namespaces={}", world.namespace),
        "--log-level=info".to_owned(),
        "--poll-initial-interval=5s".to_owned(),
        "--poll-max-interval=1m".to_owned(),
        "--retry-initial-delay=2s".to_owned(),
        "--retry-max-delay=5m".to_owned(),
        "--aws-timeout=30s".to_owned(),
        "--start-rate-limit=100000".to_owned(),
        format!("--concurrency={CONCURRENCY}"),
    ]
}

/// Waits (bounded: 60 s) until the operator's `/readyz` answers 200.
async fn wait_ready(operator: &Operator) {
    let url = format!("{}/readyz", operator.http_url().await);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = reqwest::get(&url).await
            && response.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the operator was not ready within 60 s: {}",
            operator.log_path().display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates `names` as FlowRuns of `flow`: `concurrency` at a time, or paced at `rate` per
/// second. Returns when each create request was sent.
async fn create(
    api: &Api<FlowRun>,
    names: &[String],
    flow: &str,
    concurrency: usize,
    rate: Option<f64>,
) -> HashMap<String, Instant> {
    let start = tokio::time::Instant::now();
    futures::stream::iter(names.iter().enumerate())
        .map(|(i, name)| async move {
            if let Some(rate) = rate {
                tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
            }
            let sent = Instant::now();
            let flowrun = FlowRun::new(name, FlowRunSpec::new(flow));
            let mut tries = 0;
            while let Err(error) = api.create(&PostParams::default(), &flowrun).await {
                tries += 1;
                assert!(tries < 20, "failed to create FlowRun {name}: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (name.clone(), sent)
        })
        .buffer_unordered(if rate.is_some() { 512 } else { concurrency })
        .collect()
        .await
}

/// The first moment a watch saw each FlowRun satisfy `done`, recorded by a background watch:
/// one map per condition watched, so that one watch (one watcher for the API server to feed)
/// serves several.
struct Seen {
    at: Arc<Mutex<Vec<HashMap<String, Instant>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Seen {
    /// Starts the watch and returns once its initial list is done.
    async fn watch(api: Api<FlowRun>, done: fn(&FlowRun) -> bool) -> Self {
        Self::watch_each(api, &[done]).await
    }

    /// Like [`Seen::watch`], recording when each of `dones` became true, in that order.
    async fn watch_each(api: Api<FlowRun>, dones: &[fn(&FlowRun) -> bool]) -> Self {
        let dones = dones.to_vec();
        let at = Arc::new(Mutex::new(vec![HashMap::new(); dones.len()]));
        let (ready, synced) = tokio::sync::oneshot::channel();
        let task = {
            let at = at.clone();
            tokio::spawn(async move {
                let mut ready = Some(ready);
                let mut stream =
                    std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(watcher::Event::InitDone) => {
                            if let Some(ready) = ready.take() {
                                let _ = ready.send(());
                            }
                        }
                        Ok(watcher::Event::Apply(flowrun) | watcher::Event::InitApply(flowrun)) => {
                            let now = Instant::now();
                            let mut at = at.lock().expect("lock");
                            for (done, seen) in dones.iter().zip(at.iter_mut()) {
                                if done(&flowrun) {
                                    seen.entry(flowrun.name_any()).or_insert(now);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            })
        };
        tokio::time::timeout(Duration::from_secs(60), synced)
            .await
            .expect("the watch did not sync within 60 s")
            .expect("the watch task ended");
        Seen { at, task }
    }

    /// FlowRuns seen satisfying the `which`th condition.
    fn count(&self, which: usize) -> usize {
        self.at.lock().expect("lock")[which].len()
    }

    /// Waits (bounded) until `count` FlowRuns were seen satisfying the (first) condition.
    async fn wait_for(&self, count: usize, within: Duration, operator: &Operator) {
        self.wait_for_each(0, count, within, operator).await;
    }

    /// Waits (bounded) until `count` FlowRuns were seen satisfying the `which`th condition.
    async fn wait_for_each(
        &self,
        which: usize,
        count: usize,
        within: Duration,
        operator: &Operator,
    ) {
        let deadline = Instant::now() + within;
        while self.count(which) < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} FlowRuns got there within {within:?}; operator log: {}",
                self.count(which),
                operator.log_path().display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the watch; what the (first) condition recorded.
    fn take(self) -> HashMap<String, Instant> {
        self.take_each().swap_remove(0)
    }

    /// Stops the watch; what each condition recorded, in order.
    fn take_each(self) -> Vec<HashMap<String, Instant>> {
        self.task.abort();
        std::mem::take(&mut *self.at.lock().expect("lock"))
    }
}

fn has_execution(flowrun: &FlowRun) -> bool {
    flowrun
        .status
        .as_ref()
        .is_some_and(|status| status.execution_id.is_some())
}

fn finished(flowrun: &FlowRun) -> bool {
    flowrun.phase() == Phase::Succeeded && flowrun.finalizers().is_empty()
}

/// How the raw client writes FlowRun status.
#[derive(Clone, Copy, PartialEq)]
enum RawWrite {
    /// Server-side apply under one field manager, as the operator writes status and metadata.
    Apply,
    /// A JSON merge patch of the same status.
    Merge,
}

/// A raw limit: status writes per second, and the API server's and etcd's CPU per write.
struct Raw {
    rate: f64,
    cpu: Cpu,
    patches: usize,
}

impl std::fmt::Display for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} (API server {:.2} / etcd {:.2} ms CPU each; cores busy: {})",
            self.rate,
            self.cpu.apiserver * 1000.0 / self.patches as f64,
            self.cpu.etcd * 1000.0 / self.patches as f64,
            self.cpu.cores()
        )
    }
}

/// Raw limit: `patches` writes of a realistic status (`how`), `CONCURRENCY` at a time,
/// round-robin over 256 FlowRuns no operator watches, with `watches` plain watches of the
/// namespace open (0: no watch fan-out). Every patch changes the message, so each is a real
/// write to etcd.
async fn raw_limit(client: &Client, patches: usize, how: RawWrite, watches: usize) -> Raw {
    let namespace = unique_namespace(client, "bench-raw").await;
    let api: Api<FlowRun> = Api::namespaced(client.clone(), &namespace);
    let targets = names("raw", 256);
    create(&api, &targets, "bench", 64, None).await;
    let mut watchers = Vec::new();
    for _ in 0..watches {
        watchers.push(Seen::watch(api.clone(), |_| false).await);
    }
    let now = jiff::Timestamp::now().to_string();
    let status = |i: usize| {
        let condition = |type_: &str, status: &str| {
            json!({"type": type_, "status": status, "reason": "Running", "message": format!("patch {i}"),
                   "lastTransitionTime": now, "observedGeneration": 1})
        };
        json!({
            "apiVersion": "appflow.flowrun.dev/v1alpha1", "kind": "FlowRun",
            "status": {
                "phase": "Running", "clientToken": "8f0c8a8e-0000-4000-8000-000000000000",
                "executionId": "5b0e8a4e-4b7e-4a53-9c1e-0d1f6f9a2c11", "region": "us-east-1",
                "flowArn": "arn:aws:appflow:us-east-1:123456789012:flow/bench", "flowStatus": "Active",
                "startTime": now, "startAttempts": 0, "message": format!("patch {i}"), "observedGeneration": 1,
                "conditions": [condition("Ready", "False"), condition("Reconciling", "True"), condition("Stalled", "False")],
            }
        })
    };
    let params = match how {
        RawWrite::Apply => PatchParams::apply("flowrun-bench").force(),
        RawWrite::Merge => PatchParams::default(),
    };
    let cpu_before = Cpu::now(None);
    let started = Instant::now();
    let failures = futures::stream::iter(0..patches)
        .map(|i| {
            let (api, params, name, patch) =
                (&api, &params, &targets[i % targets.len()], status(i));
            async move {
                let patch = match how {
                    RawWrite::Apply => Patch::Apply(&patch),
                    RawWrite::Merge => Patch::Merge(&patch),
                };
                api.patch_status(name, params, &patch).await.is_err()
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = Cpu::now(None).since(cpu_before);
    assert_eq!(failures, 0, "raw status patches failed");
    for watcher in watchers {
        watcher.take();
    }
    reset(client, &namespace).await;
    Raw {
        rate: patches as f64 / elapsed,
        cpu,
        patches,
    }
}

/// Creates per second of `n` FlowRuns, 64 at a time, in a namespace no operator watches.
async fn raw_creates(client: &Client, n: usize) -> f64 {
    let namespace = unique_namespace(client, "bench-raw-creates").await;
    let api: Api<FlowRun> = Api::namespaced(client.clone(), &namespace);
    let started = Instant::now();
    create(&api, &names("raw", n), "bench", 64, None).await;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    reset(client, &namespace).await;
    rate
}

/// The operator's open sockets (its connections to the API server and AppFlow, and listeners).
fn open_sockets(operator: &Operator) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", operator.pid()))
        .map(|fds| {
            fds.filter_map(Result::ok)
                .filter(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// `flowrun_events_dropped_total` from the operator's metrics.
async fn events_dropped(operator: &Operator) -> u64 {
    let url = format!("{}/metrics", operator.http_url().await);
    let text = reqwest::get(&url)
        .await
        .expect("operator metrics")
        .text()
        .await
        .expect("operator metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix("flowrun_events_dropped_total "))
        .and_then(|count| count.trim().parse().ok())
        .expect("flowrun_events_dropped_total in the metrics")
}

/// Deletes a measured scenario's FlowRuns (finalizers first: no operator runs any more) and
/// events, then restarts the API server (etcd kept). This API server has no garbage collector,
/// and after a burst of thousands its heap stays large (1.8 GB after 6,000 FlowRuns, even once
/// they are deleted): without this, each scenario would run on a server weighed down by the
/// ones before, and its figures would depend on their order.
async fn reset(client: &Client, namespace: &str) {
    let flowruns: Api<FlowRun> = Api::namespaced(client.clone(), namespace);
    let held: Vec<String> = flowruns
        .list_metadata(&ListParams::default())
        .await
        .expect("list FlowRuns")
        .items
        .into_iter()
        .filter(|flowrun| !flowrun.finalizers().is_empty())
        .map(|flowrun| flowrun.name_any())
        .collect();
    let release = json!({"metadata": {"finalizers": null}});
    futures::stream::iter(&held)
        .for_each_concurrent(CONCURRENCY, |name| {
            let (flowruns, release) = (&flowruns, &release);
            async move {
                flowruns
                    .patch(name, &PatchParams::default(), &Patch::Merge(release))
                    .await
                    .expect("release a FlowRun");
            }
        })
        .await;
    let (delete, all) = (DeleteParams::default(), ListParams::default());
    flowruns
        .delete_collection(&delete, &all)
        .await
        .expect("delete FlowRuns");
    Api::<Event>::namespaced(client.clone(), namespace)
        .delete_collection(&delete, &all)
        .await
        .expect("delete events");
    let state_dir = cluster().kubeconfig.parent().expect("state directory");
    cluster_sh(state_dir, &["stop-apiserver"]);
    cluster_sh(state_dir, &["start-apiserver"]);
}

/// Writes a burst's samples to `target/bench/<label>.csv` for hack/bench-plots.py: per FlowRun,
/// when its `executionId` was seen (seconds since the first create) and its start latency
/// (creation to `executionId`, milliseconds). Runs never seen are left out.
fn write_samples(
    label: &str,
    first: Instant,
    sent: &HashMap<String, Instant>,
    seen: &HashMap<String, Instant>,
) {
    let mut samples: Vec<(f64, f64)> = sent
        .iter()
        .filter_map(|(name, sent)| {
            let at = seen.get(name)?;
            Some((
                at.saturating_duration_since(first).as_secs_f64(),
                at.saturating_duration_since(*sent).as_secs_f64() * 1000.0,
            ))
        })
        .collect();
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut csv = String::from("seen_s,latency_ms\n");
    for (seen_s, latency_ms) in samples {
        csv.push_str(&format!("{seen_s:.4},{latency_ms:.3}\n"));
    }
    let out = support::cluster::repo_root().join("target/bench");
    std::fs::create_dir_all(&out).expect("create target/bench");
    std::fs::write(out.join(format!("{label}.csv")), csv).expect("write the burst's samples");
}

struct BurstResult {
    rate: f64,
    p50: Duration,
    p95: Duration,
    p99: Duration,
    max: Duration,
    start_calls: u64,
    events_dropped: u64,
    cpu: Cpu,
}

async fn burst(n: usize, pace: Option<f64>, latency: Option<Duration>, label: &str) -> BurstResult {
    let world = World::new(&format!("bench-{label}"), FLOWS).await;
    if let Some(latency) = latency {
        world
            .appflow
            .set_faults(&[Fault::latency("*", latency)])
            .await;
    }
    let operator = start_operator(&world);
    wait_ready(&operator).await;
    let seen = Seen::watch(world.flowruns.clone(), has_execution).await;
    let cpu_before = Cpu::now(Some(&operator));
    let first = Instant::now();
    let sent = create(&world.flowruns, &names("run", n), "bench", 64, pace).await;
    seen.wait_for(n, Duration::from_secs(900), &operator).await;
    let cpu = Cpu::now(Some(&operator)).since(cpu_before);
    let seen = seen.take();
    let last = seen.values().max().copied().unwrap_or(first);
    let mut latencies: Vec<Duration> = sent
        .iter()
        .map(|(name, sent)| {
            seen.get(name)
                .map_or(Duration::MAX, |at| at.saturating_duration_since(*sent))
        })
        .collect();
    write_samples(label, first, &sent, &seen);
    latencies.sort();
    let quantile = |q: f64| {
        latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    let stats = world.appflow.stats().await;
    let events_dropped = events_dropped(&operator).await;
    drop(operator);
    reset(&world.client, &world.namespace).await;
    BurstResult {
        rate: n as f64 / last.duration_since(first).as_secs_f64(),
        p50: quantile(0.50),
        p95: quantile(0.95),
        p99: quantile(0.99),
        max: quantile(1.0),
        start_calls: stats.calls("StartFlow"),
        events_dropped,
        cpu,
    }
}

/// Counts the audit log's requests in `namespace` by user, verb and resource (with
/// subresource); only those received within `window` (Unix seconds, from and to) if given.
/// Needs the cluster started with `FLOWRUN_AUDIT=1`.
fn audit_counts(
    namespace: &str,
    window: Option<(f64, f64)>,
) -> Option<BTreeMap<(String, String, String), u64>> {
    let dir = cluster().kubeconfig.parent()?.to_path_buf();
    let mut text = std::fs::read_to_string(dir.join("audit.log")).ok()?;
    // The API server rotates the log at 100 MB (audit-<time>.log), which the scale
    // scenario's seeding passes.
    for entry in std::fs::read_dir(&dir).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("audit-") && name.ends_with(".log") {
            text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    let needle = format!("\"namespace\":\"{namespace}\"");
    let mut counts = BTreeMap::new();
    for line in text.lines().filter(|line| line.contains(&needle)) {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let Some((from, to)) = window {
            let received = event["requestReceivedTimestamp"]
                .as_str()
                .and_then(|time| time.parse::<jiff::Timestamp>().ok())
                .map(|time| time.as_microsecond() as f64 / 1e6);
            if !received.is_some_and(|at| (from..=to).contains(&at)) {
                continue;
            }
        }
        let user = event["user"]["username"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let verb = event["verb"].as_str().unwrap_or_default().to_owned();
        let object = &event["objectRef"];
        let mut resource = object["resource"].as_str().unwrap_or_default().to_owned();
        if let Some(subresource) = object["subresource"].as_str() {
            resource = format!("{resource}/{subresource}");
        }
        *counts.entry((user, verb, resource)).or_insert(0) += 1;
    }
    Some(counts)
}

const WRITE_VERBS: [&str; 4] = ["create", "update", "patch", "delete"];

async fn economy(n: usize, table: &mut Table) {
    let world = World::new("bench-economy", FLOWS).await;
    let operator = start_operator(&world);
    wait_ready(&operator).await;
    let seen = Seen::watch(world.flowruns.clone(), finished).await;
    let cpu_before = Cpu::now(Some(&operator));
    create(&world.flowruns, &names("life", n), "life", 32, None).await;
    seen.wait_for(n, Duration::from_secs(600), &operator).await;
    seen.take();
    // Let the last events and audit entries land: the operator goes quiet once all are done.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu = Cpu::now(Some(&operator)).since(cpu_before);
    let stats = world.appflow.stats().await;
    table.add(
        format!("Economy ({n} full lifecycles): StartFlow calls per FlowRun"),
        format!("{:.2}", stats.calls("StartFlow") as f64 / n as f64),
        "exactly 1.00",
    );
    table.add(
        "Economy: CPU ms per lifecycle (create included): operator / API server / etcd",
        cpu.ms_per(n),
        "where the time goes",
    );
    let Some(counts) = audit_counts(&world.namespace, None) else {
        table.add(
            "Economy: API server writes per FlowRun",
            "no audit log",
            "run via hack/bench.sh (FLOWRUN_AUDIT=1)",
        );
        return;
    };
    let per_run = |resource: &str| {
        counts
            .iter()
            .filter(|((user, verb, res), _)| {
                user == OPERATOR_USER && res == resource && WRITE_VERBS.contains(&verb.as_str())
            })
            .map(|(_, count)| *count)
            .sum::<u64>() as f64
            / n as f64
    };
    let (metadata, status, events) = (
        per_run("flowruns"),
        per_run("flowruns/status"),
        per_run("events"),
    );
    table.add(
        "Economy: FlowRun writes per FlowRun (metadata + status)",
        format!("{:.2} ({metadata:.2} + {status:.2})", metadata + status),
        "<= 4",
    );
    table.add(
        "Economy: event writes per FlowRun",
        format!("{events:.2}"),
        "",
    );
    table.add(
        "Economy: all operator writes per FlowRun",
        format!("{:.2}", metadata + status + events),
        "<= 4",
    );
    let reads: u64 = counts
        .iter()
        .filter(|((user, verb, _), _)| {
            user == OPERATOR_USER && !WRITE_VERBS.contains(&verb.as_str())
        })
        .map(|(_, count)| *count)
        .sum();
    table.add(
        "Economy: operator reads (get/list/watch) in the namespace",
        format!("{reads}"),
        "context",
    );
    println!("  audit counts: {counts:?}");
}

async fn describe(per_flow: usize, one: usize, window: Duration, table: &mut Table) {
    let world = World::new("bench-describe", FLOWS).await;
    let operator = start_operator(&world);
    wait_ready(&operator).await;
    let seen = Seen::watch(world.flowruns.clone(), has_execution).await;
    let cpu_before = Cpu::now(Some(&operator));
    let flows = ["f0", "f1", "f2", "f3"];
    for flow in flows {
        create(&world.flowruns, &names(flow, per_flow), flow, 32, None).await;
    }
    create(&world.flowruns, &names("one", one), "one", 32, None).await;
    seen.wait_for(
        flows.len() * per_flow + one,
        Duration::from_secs(300),
        &operator,
    )
    .await;
    seen.take();
    let started = flows.len() * per_flow + one;
    let cpu_starts = Cpu::now(Some(&operator)).since(cpu_before);
    // Past the first reads and InProgress writes.
    tokio::time::sleep(TICK * 2).await;
    let cpu_before = Cpu::now(Some(&operator));
    let from = epoch_seconds();
    tokio::time::sleep(window).await;
    let to = epoch_seconds();
    let cpu_polling = Cpu::now(Some(&operator)).since(cpu_before);
    let requests = world.appflow.requests().await;
    let calls = |flow: &str| {
        requests
            .iter()
            .filter(|r| {
                r.operation == "DescribeFlowExecutionRecords"
                    && r.flow_name.as_deref() == Some(flow)
                    && (from..to).contains(&r.time)
            })
            .count() as f64
    };
    let ticks = (to - from) / TICK.as_secs_f64();
    let few: f64 = flows.iter().map(|flow| calls(flow)).sum::<f64>() / flows.len() as f64 / ticks;
    table.add(
        format!("Describe calls per 5 s tick per flow ({per_flow} active runs per flow, 4 flows)"),
        format!("{few:.2}"),
        "1",
    );
    table.add(
        format!("Describe calls per 5 s tick, one flow with {one} active runs"),
        format!("{:.2}", calls("one") / ticks),
        "1 read; pages of 100 records",
    );
    table.add(
        format!("Describe: CPU ms per start ({started} created and started): operator / API server / etcd"),
        cpu_starts.ms_per(started),
        "where the time goes",
    );
    table.add(
        format!(
            "Describe: CPU ms per 5 s tick while {started} run (polls only): operator / API server / etcd"
        ),
        cpu_polling.ms_per(ticks.round() as usize),
        "polls write nothing",
    );
}

fn epoch_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

/// `(busy, total)` CPU ticks of the whole machine since boot, all cores (`/proc/stat`).
fn machine_ticks() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("cpu "))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|field| field.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: f64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
    (total - idle, total)
}

/// `(RSS KiB, peak KiB, CPU seconds)` of the cluster's `apiserver` or `etcd`.
fn component(name: &str) -> Option<(u64, u64, f64)> {
    let dir: PathBuf = cluster().kubeconfig.parent()?.to_path_buf();
    let pid: u32 = std::fs::read_to_string(dir.join(format!("{name}.pid")))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    process_footprint(pid)
}

fn component_rss_mib(name: &str) -> Option<f64> {
    component(name).map(|(rss, _, _)| rss as f64 / 1024.0)
}

fn component_cpu(name: &str) -> f64 {
    component(name).map_or(0.0, |(_, _, cpu)| cpu)
}

/// CPU seconds (user + system, from `/proc`) used so far by the operator, the API server and
/// etcd, and the whole machine's busy and total CPU ticks (all cores, `/proc/stat`); the
/// difference of two readings is what a scenario cost each of them, and how busy the machine
/// was meanwhile. The API server and etcd must not restart between the two.
#[derive(Clone, Copy, Default)]
struct Cpu {
    operator: f64,
    apiserver: f64,
    etcd: f64,
    machine_busy: f64,
    machine_total: f64,
    /// Unix seconds.
    wall: f64,
}

impl Cpu {
    /// Now; the operator's part is 0 without an operator.
    fn now(operator: Option<&Operator>) -> Self {
        let (machine_busy, machine_total) = machine_ticks();
        Cpu {
            operator: operator
                .and_then(Operator::footprint)
                .map_or(0.0, |(_, _, cpu)| cpu),
            apiserver: component_cpu("apiserver"),
            etcd: component_cpu("etcd"),
            machine_busy,
            machine_total,
            wall: epoch_seconds(),
        }
    }

    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            operator: self.operator - before.operator,
            apiserver: self.apiserver - before.apiserver,
            etcd: self.etcd - before.etcd,
            machine_busy: self.machine_busy - before.machine_busy,
            machine_total: self.machine_total - before.machine_total,
            wall: self.wall - before.wall,
        }
    }

    /// "machine / API server / etcd / operator" in cores busy on average (a difference).
    fn cores(self) -> String {
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let of = |seconds: f64| seconds / self.wall.max(1e-9);
        format!(
            "{:.2} / {:.2} / {:.2} / {:.2} of {cores:.0}",
            self.machine_busy / self.machine_total.max(1.0) * cores,
            of(self.apiserver),
            of(self.etcd),
            of(self.operator)
        )
    }

    /// "operator / API server / etcd" in milliseconds per one of `count`.
    fn ms_per(self, count: usize) -> String {
        let ms = |seconds: f64| seconds * 1000.0 / count.max(1) as f64;
        format!(
            "{:.1} / {:.1} / {:.1}",
            ms(self.operator),
            ms(self.apiserver),
            ms(self.etcd)
        )
    }
}

/// `n` schedules `* * * * *`, created and seen by the operator before a minute boundary; at
/// the slot, when each FlowRun appears and when its run started, measured from the slot's
/// wall-clock time. The operator runs with the default `--start-rate-limit` (20 per second):
/// a slot's burst of starts is exactly what it is for. For the ceiling, `n` plain creates by
/// the benchmark's own client first, with no operator writing.
async fn schedules(n: usize, table: &mut Table) {
    let world = World::new("bench-schedules", FLOWS).await;
    let raw = raw_creates(&world.client, n).await;
    table.add(
        format!("Raw creates: {n} FlowRuns, 64 at a time, no operator writing"),
        format!("{:.0}/s: the last after {:.1} s", raw, n as f64 / raw),
        "ceiling for slot to FlowRun",
    );
    let args: Vec<String> = bench_args(&world)
        .into_iter()
        .filter(|arg| !arg.starts_with("--start-rate-limit"))
        .collect();
    let operator = start_operator_from(&world, &args);
    wait_ready(&operator).await;
    let (before, _, _) = operator.footprint().expect("operator runs");
    let api: Api<FlowRunSchedule> = Api::namespaced(world.client.clone(), &world.namespace);
    // Creating them and their first status must not straddle the slot: past second 30 of a
    // minute, start with the next one.
    let second = epoch_seconds() % 60.0;
    if second > 30.0 {
        tokio::time::sleep(Duration::from_secs_f64(60.0 - second + 0.5)).await;
    }
    let slot = (epoch_seconds() / 60.0).ceil() * 60.0;
    // Each schedule fires at this minute of every hour: once while the benchmark watches.
    let cron = format!("{} * * * *", (slot as u64 / 60) % 60);
    futures::stream::iter(names("every-minute", n))
        .map(|name| {
            let (api, cron) = (api.clone(), &cron);
            async move {
                let schedule: FlowRunSchedule = serde_json::from_value(json!({
                    "apiVersion": "appflow.flowrun.dev/v1alpha1",
                    "kind": "FlowRunSchedule",
                    "metadata": {"name": name},
                    "spec": {"schedule": cron, "flowRunTemplate": {"spec": {"flowName": "life"}}},
                }))
                .expect("a FlowRunSchedule");
                api.create(&PostParams::default(), &schedule)
                    .await
                    .unwrap_or_else(|error| panic!("create {name}: {error}"));
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
    let seen = Seen::watch_each(world.flowruns.clone(), &[|_| true, has_execution]).await;
    let created = epoch_seconds();
    assert!(
        created < slot - 2.0,
        "creating {n} schedules took until {:.1} s before the slot",
        slot - created
    );
    // The slot as an Instant, for the watch's record.
    let slot_at = Instant::now() + Duration::from_secs_f64(slot - epoch_seconds());
    // The schedules alone, each seen and given its status, just before their slot.
    tokio::time::sleep_until((slot_at - Duration::from_secs(1)).into()).await;
    let (scheduled, _, _) = operator.footprint().expect("operator runs");
    seen.wait_for_each(0, n, Duration::from_secs(90), &operator)
        .await;
    // 20 starts per second: n / 20 s, and some room.
    let starts_within = Duration::from_secs_f64(n as f64 / 20.0 + 60.0);
    seen.wait_for_each(1, n, starts_within, &operator).await;
    let seen = seen.take_each();
    let quantiles = |seen: &HashMap<String, Instant>| {
        let mut latencies: Vec<Duration> = seen
            .values()
            .map(|at| at.saturating_duration_since(slot_at))
            .collect();
        latencies.sort();
        let quantile = |q: f64| {
            latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1]
        };
        format!(
            "{} / {} / {} ms",
            ms(quantile(0.5)),
            ms(quantile(0.99)),
            ms(quantile(1.0))
        )
    };
    let (after, peak, _) = operator.footprint().expect("operator runs");
    let sockets_after = open_sockets(&operator);
    // Idle connections of the burst close after the client pools' idle timeouts (90 s).
    tokio::time::sleep(Duration::from_secs(100)).await;
    let (settled, _, _) = operator.footprint().expect("operator runs");
    let sockets_settled = open_sockets(&operator);
    table.add(
        format!("{n} schedules firing in one minute: slot to FlowRun p50 / p99 / max"),
        quantiles(&seen[0]),
        "p99 < 2 s",
    );
    table.add(
        format!("{n} schedules: slot to run started (executionId) p50 / p99 / max"),
        quantiles(&seen[1]),
        "20 starts/s (the default limit)",
    );
    table.add(
        format!("{n} schedules: operator RSS before / after their slot (peak)"),
        format!(
            "{:.1} / {:.1} MiB ({:.1}), growth {:.1} MiB per 1,000",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            peak as f64 / 1024.0,
            (after as f64 - before as f64) / 1024.0 * 1000.0 / n as f64
        ),
        "growth < 16 MiB per 1,000",
    );
    table.add(
        format!("{n} schedules: RSS 1 s before their slot (the schedules alone)"),
        format!(
            "{:.1} MiB, growth {:.1} MiB per 1,000",
            scheduled as f64 / 1024.0,
            (scheduled as f64 - before as f64) / 1024.0 * 1000.0 / n as f64
        ),
        "what the growth holds",
    );
    table.add(
        format!(
            "{n} schedules: RSS 100 s later (the burst's idle connections closed); open sockets"
        ),
        format!(
            "{:.1} MiB, growth {:.1} MiB per 1,000; sockets {sockets_after} then {sockets_settled}",
            settled as f64 / 1024.0,
            (settled as f64 - before as f64) / 1024.0 * 1000.0 / n as f64
        ),
        "what the growth holds",
    );
    // No further slot: the next minute would start n more runs.
    drop(operator);
}

async fn footprint(n: usize, table: &mut Table) {
    let world = World::new("bench-footprint", FLOWS).await;
    let operator = start_operator(&world);
    wait_ready(&operator).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (idle, _, cpu_before) = operator.footprint().expect("operator runs");
    table.add(
        "Operator RSS, idle (watch synced, no FlowRuns)",
        format!("{:.1} MiB", idle as f64 / 1024.0),
        "",
    );
    let seen = Seen::watch(world.flowruns.clone(), finished).await;
    let started = Instant::now();
    let components_before = Cpu::now(None);
    create(&world.flowruns, &names("life", n), "life", 64, None).await;
    seen.wait_for(n, Duration::from_secs(1800), &operator).await;
    let elapsed = started.elapsed();
    seen.take();
    let components = Cpu::now(None).since(components_before);
    let (_, _, cpu_after) = operator.footprint().expect("operator runs");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rss, peak, _) = operator.footprint().expect("operator runs");
    table.add(
        format!("Operator RSS with {n} FlowRuns (all finished) / peak"),
        format!(
            "{:.1} / {:.1} MiB",
            rss as f64 / 1024.0,
            peak as f64 / 1024.0
        ),
        "<= 64 MiB",
    );
    table.add(
        format!(
            "Operator CPU s per 1,000 full lifecycles ({n} in {:.0} s)",
            elapsed.as_secs_f64()
        ),
        format!("{:.1}", (cpu_after - cpu_before) * 1000.0 / n as f64),
        "",
    );
    table.add(
        format!("API server / etcd CPU ms per full lifecycle ({n}, create included)"),
        format!(
            "{:.1} / {:.1}",
            components.apiserver * 1000.0 / n as f64,
            components.etcd * 1000.0 / n as f64
        ),
        "where the time goes",
    );
    table.add(
        "API server / etcd RSS at the end (all scenarios' objects)",
        format!(
            "{:.0} / {:.0} MiB",
            component_rss_mib("apiserver").unwrap_or_default(),
            component_rss_mib("etcd").unwrap_or_default()
        ),
        "context",
    );
}

/// Waits (bounded: 60 s) until a list of the namespace returns `n` FlowRuns.
async fn wait_stored(api: &Api<FlowRun>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored = api
            .list_metadata(&ListParams::default())
            .await
            .map_or(0, |list| list.items.len());
        if stored >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the API server lists {stored} of {n} FlowRuns after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The raw rates for context (once), then each backlog variant after a raw limit of its own.
async fn backlog(client: &Client, n: usize, raw_patches: usize, table: &mut Table) {
    let merge = raw_limit(client, raw_patches, RawWrite::Merge, 0).await;
    table.add(
        "Backlog: raw status merge patches/s (kube client, keep-alive, 32 at once)",
        merge.to_string(),
        "context: the operator applies",
    );
    let watched = raw_limit(client, raw_patches, RawWrite::Apply, 2).await;
    table.add(
        "Backlog: raw status applies/s with 2 watches of the namespace",
        watched.to_string(),
        "context: watch fan-out",
    );
    for (flow, what) in [("bench", "long runs (600 s)"), ("life", "short runs (2 s)")] {
        let raw = raw_limit(client, raw_patches, RawWrite::Apply, 0).await;
        table.add(
            format!("Raw status patches/s before the backlog of {what}"),
            raw.to_string(),
            "same run",
        );
        let run = backlog_run(n, flow).await;
        let label = format!("Backlog of {n}, {what}");
        let writes_per_start = run
            .window_writes
            .map_or(WRITES_PER_START, |writes| writes as f64 / n as f64);
        let ideal = raw.rate / writes_per_start;
        let rate = n as f64 / run.start_window.as_secs_f64();
        let ratio = rate / ideal;
        let how = if run.window_writes.is_some() {
            "from the audit log"
        } else {
            "assumed: no audit log"
        };
        table.add(
            format!("{label}: started runs/s (first to last start seen), ratio to ideal"),
            format!(
                "{rate:.0} ({ratio:.2} of ideal {ideal:.0}/s = raw {:.0} / {writes_per_start:.2} FlowRun writes per start in that window, {how})",
                raw.rate
            ),
            if ratio >= 0.7 {
                "ratio >= 0.7: met"
            } else {
                "ratio >= 0.7: NOT met"
            },
        );
        // The same comparison in API-server CPU rather than in time: what the writes would
        // cost at the raw client's price, over what the API server spent per start. Unlike the
        // ratio above, it does not depend on how much CPU the API server got from the machine
        // in each of the two measurements.
        let raw_ms = raw.cpu.apiserver * 1000.0 / raw.patches as f64;
        let spent_ms = run.cpu_running.apiserver * 1000.0 / n as f64;
        table.add(
            format!(
                "{label}: API-server CPU ratio: raw ms per write x writes per start / ms per start"
            ),
            format!(
                "{:.2} ({raw_ms:.2} x {writes_per_start:.2} / {spent_ms:.1} ms)",
                raw_ms * writes_per_start / spent_ms
            ),
            "context: load-independent",
        );
        table.add(
            format!("{label}: operator start to ready / to all Running"),
            format!(
                "{:.1} s / {:.1} s ({:.0} starts/s from operator start)",
                run.to_ready.as_secs_f64(),
                run.to_running.as_secs_f64(),
                n as f64 / run.to_running.as_secs_f64()
            ),
            "",
        );
        table.add(
            format!("{label}: CPU ms per start, operator start to all Running: operator / API server / etcd"),
            run.cpu_running.ms_per(n),
            "where the time goes",
        );
        table.add(
            format!(
                "{label}: cores busy until all Running: machine / API server / etcd / operator"
            ),
            run.cpu_running.cores(),
            "load",
        );
        if let Some((to_finished, cpu)) = run.finished {
            table.add(
                format!("{label}: operator start to all finished"),
                format!(
                    "{:.1} s ({:.0} lifecycles/s)",
                    to_finished.as_secs_f64(),
                    n as f64 / to_finished.as_secs_f64()
                ),
                "",
            );
            table.add(
                format!("{label}: CPU ms per full lifecycle, operator start to all finished: operator / API server / etcd"),
                cpu.ms_per(n),
                "where the time goes",
            );
        }
        let writes = run.counts.as_ref().map_or_else(
            || "no audit log".to_owned(),
            |counts| {
                counts
                    .iter()
                    .filter(|((user, verb, _), _)| {
                        user == OPERATOR_USER && WRITE_VERBS.contains(&verb.as_str())
                    })
                    .map(|((_, verb, resource), count)| {
                        format!("{verb} {resource} {:.2}", *count as f64 / n as f64)
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        );
        table.add(
            format!("{label}: operator writes per FlowRun, by verb and resource"),
            writes,
            "audit log",
        );
        table.add(
            format!("{label}: StartFlow calls per FlowRun"),
            format!("{:.2}", run.start_calls as f64 / n as f64),
            "1.00",
        );
        table.add(
            format!("{label}: events dropped (queue full; statuses unaffected)"),
            format!(
                "{} of {}",
                run.events_dropped,
                if flow == "bench" { n } else { 2 * n }
            ),
            "",
        );
        if let Some(counts) = &run.counts {
            println!("  audit counts: {counts:?}");
        }
    }
}

struct BacklogRun {
    /// Operator start -> its /readyz answers (its watch has synced).
    to_ready: Duration,
    /// Operator start -> the last `executionId` seen.
    to_running: Duration,
    /// The first -> the last `executionId` seen.
    start_window: Duration,
    /// CPU from operator start to all `Running`.
    cpu_running: Cpu,
    /// Short runs: operator start -> all finished, and the CPU until then.
    finished: Option<(Duration, Cpu)>,
    /// The operator's FlowRun writes (metadata and status) received within the start window.
    window_writes: Option<u64>,
    /// The audit log's requests in the namespace, until the end.
    counts: Option<BTreeMap<(String, String, String), u64>>,
    start_calls: u64,
    events_dropped: u64,
}

/// `n` FlowRuns of `flow` created while no operator runs; then the operator starts.
async fn backlog_run(n: usize, flow: &str) -> BacklogRun {
    let long = flow == "bench";
    let world = World::new(&format!("bench-backlog-{flow}"), FLOWS).await;
    create(&world.flowruns, &names("waiting", n), flow, 64, None).await;
    wait_stored(&world.flowruns, n).await;
    // One watch for both conditions: the same fan-out (the operator's watch and one of the
    // benchmark's) as the other scenarios.
    let seen = Seen::watch_each(world.flowruns.clone(), &[has_execution, finished]).await;
    let cpu_before = Cpu::now(None);
    let (t0, t0_epoch) = (Instant::now(), epoch_seconds());
    let operator = start_operator(&world);
    let (to_ready, ()) = tokio::join!(
        async {
            wait_ready(&operator).await;
            t0.elapsed()
        },
        seen.wait_for(n, Duration::from_secs(600), &operator),
    );
    let cpu_running = Cpu::now(Some(&operator)).since(cpu_before);
    let cpu_finished = if long {
        None
    } else {
        seen.wait_for_each(1, n, Duration::from_secs(600), &operator)
            .await;
        Some(Cpu::now(Some(&operator)).since(cpu_before))
    };
    let mut seen = seen.take_each();
    let done = seen.pop().unwrap_or_default();
    let running = seen.pop().unwrap_or_default();
    let first = running.values().min().copied().unwrap_or(t0);
    let last = running.values().max().copied().unwrap_or(t0);
    let finished = cpu_finished.map(|cpu| {
        let at = done.values().max().copied().unwrap_or(t0);
        (at.duration_since(t0), cpu)
    });
    // Let the last events and audit entries land.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let epoch = |at: Instant| t0_epoch + at.duration_since(t0).as_secs_f64();
    let window_writes =
        audit_counts(&world.namespace, Some((epoch(first), epoch(last)))).map(|counts| {
            counts
                .iter()
                .filter(|((user, verb, resource), _)| {
                    user == OPERATOR_USER
                        && resource.starts_with("flowruns")
                        && WRITE_VERBS.contains(&verb.as_str())
                })
                .map(|(_, count)| count)
                .sum()
        });
    let counts = audit_counts(&world.namespace, None);
    let start_calls = world.appflow.stats().await.calls("StartFlow");
    let events_dropped = events_dropped(&operator).await;
    drop(operator);
    reset(&world.client, &world.namespace).await;
    BacklogRun {
        to_ready,
        to_running: last.duration_since(t0),
        start_window: last.duration_since(first),
        cpu_running,
        finished,
        window_writes,
        counts,
        start_calls,
        events_dropped,
    }
}
