//! The `flowrun-operator` controller binary.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use clap::{CommandFactory, Parser};
use flowrun_api::{FlowRun, FlowRunPolicy, FlowRunSchedule};
use flowrun_operator::act::metered::Metered;
use flowrun_operator::act::sdk::SdkAppFlow;
use flowrun_operator::leader;
use flowrun_operator::reconcile::{Context, Limits};
use flowrun_operator::settings::{InitialList, LogFormat, Settings};
use flowrun_operator::shutdown::shutdown_signal;
use flowrun_operator::telemetry::{self, Role, Telemetry};
use flowrun_operator::watch::{self, Scope, scoped_apis};
use kube::api::ListParams;
use tracing_subscriber::EnvFilter;

/// How long start-up waits for the API server before giving up with a clear error.
const API_SERVER_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> ExitCode {
    let settings = Settings::parse();
    let pod_name = env("POD_NAME");
    let election = settings
        .leader_election
        .config(
            env("POD_NAMESPACE"),
            pod_name.clone(),
            settings.watch_label_selector.as_ref(),
        )
        .unwrap_or_else(|error| {
            Settings::command()
                .error(clap::error::ErrorKind::ValueValidation, error)
                .exit()
        });
    if let Err(error) = init_logging(&settings) {
        eprintln!("error: {}", one_line(&error));
        return ExitCode::from(2);
    }
    match run(settings, election, pod_name).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: some errors (kube's config
/// inference among them) repeat their source's text in their own message, and a cause already
/// said is not said again.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain().map(ToString::to_string) {
        if line.contains(&cause) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&cause);
    }
    line
}

fn init_logging(settings: &Settings) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&settings.log_level)
        .with_context(|| format!("invalid --log-level {:?}", settings.log_level))?;
    // Colours only for a terminal: log files and collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match settings.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

async fn run(
    settings: Settings,
    election: Option<leader::Config>,
    pod_name: Option<String>,
) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("failed to load Kubernetes credentials (in-cluster or KUBECONFIG)")?;
    let version = tokio::time::timeout(API_SERVER_TIMEOUT, client.apiserver_version())
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {API_SERVER_TIMEOUT:?}"))
        .and_then(|answer| answer.map_err(anyhow::Error::from))
        .context("failed to reach the Kubernetes API server")?;
    let mut scope = Scope {
        namespaces: settings.watch_namespaces.clone(),
        selector: settings.watch_label_selector.clone(),
        streaming_lists: false,
    };
    check_crd_installed(&client, &scope).await?;
    scope.streaming_lists = match settings.initial_list {
        InitialList::Auto => watch::serves_streaming_lists(&client, &scope.namespaces).await,
        InitialList::Paged => false,
        InitialList::Streaming => true,
    };
    let telemetry = Arc::new(Telemetry::new());
    let address = telemetry::serve(settings.metrics_address, telemetry.clone())
        .await
        .with_context(|| {
            format!(
                "failed to listen on --metrics-address {}",
                settings.metrics_address
            )
        })?;
    tracing::info!(%address, "Serving /metrics, /healthz and /readyz");

    let sdk_config = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(settings.aws_timeout())
                .build(),
        )
        .load()
        .await;
    let rules = settings.rules(sdk_config.region().map(ToString::to_string));
    if rules.default_region.is_none() {
        tracing::warn!(
            "No default AWS region (--default-region or AWS_REGION): FlowRuns must set spec.region"
        );
    }
    tracing::info!(
        kubernetes = %version.git_version,
        default_region = rules.default_region.as_deref().unwrap_or_default(),
        namespaces = ?settings.watch_namespaces,
        label_selector = scope.selector.as_ref().map(ToString::to_string).unwrap_or_default(),
        initial_list = if scope.streaming_lists { "streaming" } else { "paged" },
        lease = election.as_ref().map(|e| e.lease_name.as_str()).unwrap_or_default(),
        "Started flowrun-operator"
    );

    let appflow = Metered::new(Arc::new(SdkAppFlow::new(sdk_config)), telemetry.clone());
    let ctx = Arc::new(Context::new(
        client.clone(),
        appflow,
        rules,
        Limits {
            concurrency: settings.concurrency,
            start_rate: settings.start_rate_limit,
            poll_tick: settings.poll_tick(),
        },
        &settings.watch_namespaces,
        telemetry.clone(),
        pod_name,
    ));
    let stopping = telemetry.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        stopping.set_role(Role::Stopping);
    });
    let work = watch::run(ctx, &scope);
    match election {
        Some(election) => leader::lead(client, election, telemetry, work).await?,
        None => {
            telemetry.set_role(Role::Leading);
            work.await;
        }
    }
    tracing::info!("Stopped flowrun-operator");
    Ok(())
}

/// Without the CRD the watch would fail forever; say what to do instead. Reads only where the
/// operator watches, so a namespace-scoped install needs no cluster-wide permission; with the
/// shard's selector, so a selector the API server reads otherwise is refused at once.
async fn check_crd_installed(client: &kube::Client, scope: &Scope) -> anyhow::Result<()> {
    let sharded = ListParams {
        label_selector: scope.watcher_config().label_selector,
        ..ListParams::default()
    };
    check_served::<FlowRun>(client, &scope.namespaces, &sharded).await?;
    check_served::<FlowRunPolicy>(client, &scope.namespaces, &ListParams::default()).await?;
    check_served::<FlowRunSchedule>(client, &scope.namespaces, &sharded).await
}

/// Lists one object of `K` where the operator will watch it (a namespace-scoped install may
/// not list cluster-wide).
async fn check_served<K>(
    client: &kube::Client,
    namespaces: &[String],
    params: &ListParams,
) -> anyhow::Result<()>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    // One namespace stands for all: the operator's permissions are the same in each (and
    // scoped_apis never returns none).
    let api = scoped_apis::<K>(client, namespaces).swap_remove(0);
    match api.list_metadata(&params.clone().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => bail!(
            "the {} CRD is not installed; install it with: kubectl apply -f crds/",
            K::kind(&())
        ),
        Err(error) => Err(error).with_context(|| format!("failed to list {}s", K::kind(&()))),
    }
}

/// jemalloc gives freed memory back to the system, where glibc's allocator keeps what a burst
/// used: with 10,000 FlowRuns, 57 MiB instead of 72 (docs/performance.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
