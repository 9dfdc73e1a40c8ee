//! appflow-local: a local Amazon AppFlow endpoint that speaks the real restJson1 wire protocol, so
//! the real `aws-sdk-appflow` client works against it unchanged. Flows come from a YAML file (see
//! `examples/appflow-local/flows.yaml`); tests steer it through the control API under `/_local/`.

mod api;
mod app;
mod config;
mod control;
mod errors;
mod faults;
mod model;
mod recorder;
mod sts;
mod wire;

use std::io::IsTerminal as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::info;
use tracing_subscriber::EnvFilter;

use crate::app::App;
use crate::config::Config;

#[derive(Parser)]
#[command(version, about = "A local Amazon AppFlow endpoint for tests and demos")]
struct Cli {
    /// YAML file with the flows to serve (none when omitted).
    #[arg(long, env = "APPFLOW_LOCAL_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "APPFLOW_LOCAL_LISTEN", default_value = "127.0.0.1:4599")]
    listen: SocketAddr,
    /// Once listening, write the endpoint URL (`http://127.0.0.1:PORT`) to this file.
    #[arg(long, env = "APPFLOW_LOCAL_ADDRESS_FILE")]
    address_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("appflow-local: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let listener = TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("failed to listen on {}", cli.listen))?;
    let url = endpoint_url(
        listener
            .local_addr()
            .context("failed to read the bound address")?,
    );
    if let Some(path) = &cli.address_file {
        write_address_file(path, &url)?;
    }
    let mut terminate = signal(SignalKind::terminate()).context("failed to watch for SIGTERM")?;
    let (stopping, stop_signal) = watch::channel(false);
    let flow_count = config.flows.len();
    // The seed only makes probabilistic faults differ between runs.
    let fault_seed = jiff::Timestamp::now().as_nanosecond() as u64;
    let app = Arc::new(App::new(
        config.flows,
        config.roles,
        stop_signal,
        fault_seed,
    ));

    println!("appflow-local listening on {url}");
    info!(flows = flow_count, "Started");
    axum::serve(listener, app::router(app))
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            info!("Shutting down");
            // Releases hung and delayed requests so the graceful shutdown can finish.
            stopping.send_replace(true);
        })
        .await
        .context("failed to serve")?;
    info!("Stopped");
    Ok(())
}

/// A URL clients can dial: a wildcard listen address becomes loopback.
fn endpoint_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Written whole and then renamed, so a reader never sees half an address.
fn write_address_file(path: &Path, url: &str) -> anyhow::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, url)
        .and_then(|()| std::fs::rename(&partial, path))
        .with_context(|| format!("failed to write address file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_url_dials_loopback_for_wildcard_addresses() {
        let cases = [
            ("127.0.0.1:4599", "http://127.0.0.1:4599"),
            ("0.0.0.0:80", "http://127.0.0.1:80"),
            ("[::]:80", "http://[::1]:80"),
            ("10.1.2.3:9", "http://10.1.2.3:9"),
        ];
        for (listen, expected) in cases {
            assert_eq!(endpoint_url(listen.parse().unwrap()), expected);
        }
    }
}
