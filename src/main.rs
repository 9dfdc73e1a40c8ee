//! The `flowrun-operator` controller binary.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use clap::Parser;
use flowrun_operator::appflow::SdkAppFlow;
use flowrun_operator::controller::{self, Context};
use flowrun_operator::flowrun::FlowRun;
use flowrun_operator::settings::{LogFormat, Settings};
use kube::api::{Api, ListParams};
use tracing_subscriber::EnvFilter;

/// How long start-up waits for the API server before giving up with a clear error.
const API_SERVER_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> ExitCode {
    let settings = Settings::parse();
    if let Err(error) = init_logging(&settings) {
        eprintln!("error: {error:#}");
        return ExitCode::from(2);
    }
    match run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(settings: &Settings) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&settings.log_level)
        .with_context(|| format!("invalid --log-level {:?}", settings.log_level))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match settings.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("failed to load Kubernetes credentials (in-cluster or KUBECONFIG)")?;
    let version = tokio::time::timeout(API_SERVER_TIMEOUT, client.apiserver_version())
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {API_SERVER_TIMEOUT:?}"))
        .and_then(|answer| answer.map_err(anyhow::Error::from))
        .context("failed to reach the Kubernetes API server")?;
    check_crd_installed(&client).await?;

    let sdk_config = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(settings.aws_timeout())
                .build(),
        )
        .load()
        .await;
    let policy = settings.policy(sdk_config.region().map(ToString::to_string));
    if policy.default_region.is_none() {
        tracing::warn!(
            "No default AWS region (--default-region or AWS_REGION): FlowRuns must set spec.region"
        );
    }
    tracing::info!(
        kubernetes = %version.git_version,
        default_region = policy.default_region.as_deref().unwrap_or_default(),
        namespaces = ?settings.watch_namespaces,
        "Started flowrun-operator"
    );

    let appflow = Arc::new(SdkAppFlow::new(sdk_config));
    let ctx = Arc::new(Context::new(
        client,
        appflow,
        policy,
        settings.start_rate_limit,
        settings.poll_tick(),
    ));
    controller::run(ctx, &settings.watch_namespaces, settings.concurrency).await;
    tracing::info!("Stopped flowrun-operator");
    Ok(())
}

/// Without the CRD the watch would fail forever; say what to do instead.
async fn check_crd_installed(client: &kube::Client) -> anyhow::Result<()> {
    let flowruns: Api<FlowRun> = Api::all(client.clone());
    match flowruns
        .list_metadata(&ListParams::default().limit(1))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            bail!("the FlowRun CRD is not installed; install it with: kubectl apply -f crds/")
        }
        Err(error) => Err(error).context("failed to list FlowRuns"),
    }
}
