//! The operator's command line. Every flag has an environment twin, so the Helm chart and a
//! shell can configure it the same way.

use std::num::NonZeroU32;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use jiff::SignedDuration;

use flowrun_core::decide::Rules;
use flowrun_core::shard::LabelSelector;

mod leader_election;

pub use leader_election::LeaderElectionArgs;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "flowrun-operator",
    version,
    // A flag given twice takes its last value, as in most Kubernetes components.
    args_override_self = true,
    about = "Runs Amazon AppFlow flows from FlowRun custom resources",
    long_about = "Runs Amazon AppFlow flows from FlowRun custom resources.\n\n\
        Kubernetes credentials come from the in-cluster service account or KUBECONFIG; AWS \
        credentials and settings from the standard AWS chain (AWS_REGION, \
        AWS_ENDPOINT_URL_APPFLOW, profiles, IRSA / Pod Identity web identity)."
)]
pub struct Settings {
    /// AWS region for FlowRuns that set no spec.region [default: the AWS SDK's region, e.g. AWS_REGION]
    #[arg(long, env = "FLOWRUN_DEFAULT_REGION")]
    pub default_region: Option<String>,

    /// Namespaces to watch, comma-separated [default: all namespaces]
    #[arg(long, env = "FLOWRUN_WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,

    /// Serve only the FlowRuns and FlowRunSchedules whose labels match this selector (e.g.
    /// team=payments, or !team for the catch-all shard); the Lease name gets a hash of it, so
    /// each shard has its own leader [default: all]
    #[arg(long, env = "FLOWRUN_WATCH_LABEL_SELECTOR", value_parser = parse_selector)]
    pub watch_label_selector: Option<LabelSelector>,

    /// How the FlowRun and FlowRunSchedule watches read what exists, at start and after a
    /// watch expired: paged lists (500 objects a page, any API server), one streaming list (a
    /// watch that sends every object, then a bookmark; needs the API server's WatchList
    /// feature, on by default since Kubernetes 1.34), or auto: streaming when the API server
    /// serves it, asked once at start
    #[arg(long, env = "FLOWRUN_INITIAL_LIST", value_enum, default_value_t = InitialList::Auto)]
    pub initial_list: InitialList,

    /// How many FlowRuns are reconciled at the same time, in all watched namespaces together
    #[arg(long, env = "FLOWRUN_CONCURRENCY", default_value_t = 32,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,

    /// Most StartFlow calls per second, across all FlowRuns
    #[arg(long, env = "FLOWRUN_START_RATE_LIMIT", default_value = "20")]
    pub start_rate_limit: NonZeroU32,

    /// Time limit of one AWS call, SDK retries included (e.g. 30s, 1m)
    #[arg(long, env = "FLOWRUN_AWS_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub aws_timeout: SignedDuration,

    /// How long a FlowRun naming a flow that does not exist keeps retrying before it fails
    #[arg(long, env = "FLOWRUN_NOT_FOUND_GRACE", default_value = "10m", value_parser = parse_duration)]
    pub not_found_grace: SignedDuration,

    /// First delay before StartFlow is retried after a retryable error; doubles each attempt
    #[arg(long, env = "FLOWRUN_RETRY_INITIAL_DELAY", default_value = "2s", value_parser = parse_duration)]
    pub retry_initial_delay: SignedDuration,

    /// Longest delay between two StartFlow attempts
    #[arg(long, env = "FLOWRUN_RETRY_MAX_DELAY", default_value = "5m", value_parser = parse_duration)]
    pub retry_max_delay: SignedDuration,

    /// How often a run is polled right after it started; also the shortest time between two
    /// reads of one flow's run history, however many of its runs are followed
    #[arg(long, env = "FLOWRUN_POLL_INITIAL_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub poll_initial_interval: SignedDuration,

    /// Longest time between two polls of a run; the interval grows with the run's age
    #[arg(long, env = "FLOWRUN_POLL_MAX_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub poll_max_interval: SignedDuration,

    /// How long the operator tries to stop the run of a deleted FlowRun (cancel it, or learn
    /// whether StartFlow started one) before it releases the FlowRun anyway, with a Warning
    /// event (RunAbandoned) naming the run that may still be going
    #[arg(long, env = "FLOWRUN_CANCEL_TIMEOUT", default_value = "15m", value_parser = parse_duration)]
    pub cancel_timeout: SignedDuration,

    /// Refuse FlowRuns in namespaces without a FlowRunPolicy that allows their flow and region
    /// (without it, such namespaces may run any flow as the operator's own identity)
    #[arg(long, env = "FLOWRUN_REQUIRE_POLICY")]
    pub require_policy: bool,

    /// Log format
    #[arg(long, env = "FLOWRUN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, e.g. info or flowrun_operator=debug,kube=info
    #[arg(long, env = "FLOWRUN_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Address of the HTTP server for /metrics, /healthz and /readyz (port 0: any free port)
    #[arg(long, env = "FLOWRUN_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    pub metrics_address: std::net::SocketAddr,

    #[command(flatten)]
    pub leader_election: LeaderElectionArgs,
}

/// How a watch reads the objects that exist (`--initial-list`).
#[derive(ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InitialList {
    /// Streaming when the API server serves it, else paged (`watch::serves_streaming_lists`).
    #[default]
    Auto,
    /// Pages of 500 (kube-runtime's default, as client-go's pager).
    Paged,
    /// A watch with `sendInitialEvents=true`.
    Streaming,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Settings {
    /// The decision rules; `sdk_region` is the AWS chain's region, used when no flag sets one.
    pub fn rules(&self, sdk_region: Option<String>) -> Rules {
        Rules {
            default_region: self.default_region.clone().or(sdk_region),
            not_found_grace: self.not_found_grace,
            retry_initial_delay: self.retry_initial_delay,
            retry_max_delay: self.retry_max_delay,
            poll_initial_interval: self.poll_initial_interval,
            poll_max_interval: self.poll_max_interval,
            require_flowrun_policy: self.require_policy,
            cancel_timeout: self.cancel_timeout,
        }
    }

    /// The shortest poll interval: the tick of the run tracker.
    pub fn poll_tick(&self) -> Duration {
        Duration::try_from(self.poll_initial_interval).unwrap_or_default()
    }

    pub fn aws_timeout(&self) -> Duration {
        Duration::try_from(self.aws_timeout).unwrap_or_default()
    }
}

fn parse_selector(text: &str) -> Result<LabelSelector, String> {
    text.parse()
        .map_err(|error: flowrun_core::shard::InvalidSelector| error.to_string())
}

/// Accepts `30s`, `10m`, `1h 30m` or ISO 8601 (`PT30S`); refuses negative and zero durations.
fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    let duration: SignedDuration = text
        .parse()
        .map_err(|error| format!("not a duration ({error}); use e.g. 30s, 10m or 1h"))?;
    if duration.is_positive() {
        Ok(duration)
    } else {
        Err("must be greater than zero".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_arguments() {
        let settings = Settings::try_parse_from(["flowrun-operator"]).expect("defaults parse");
        assert_eq!(settings.not_found_grace, SignedDuration::from_mins(10));
        assert_eq!(settings.aws_timeout(), Duration::from_secs(30));
        assert!(settings.watch_namespaces.is_empty());
        assert_eq!(settings.watch_label_selector, None);
        assert_eq!(settings.initial_list, InitialList::Auto);
    }

    #[test]
    fn a_label_selector_is_parsed_and_a_bad_one_is_refused_naming_it() {
        let settings =
            Settings::try_parse_from(["flowrun-operator", "--watch-label-selector=team in (a, b)"])
                .expect("flags parse");
        let selector = settings.watch_label_selector.expect("a selector");
        assert_eq!(selector.to_string(), "team in(a,b)");
        let error =
            Settings::try_parse_from(["flowrun-operator", "--watch-label-selector=team=a b"])
                .expect_err("refused")
                .to_string();
        assert!(
            error.contains("invalid label selector \"team=a b\""),
            "{error}"
        );
    }

    #[test]
    fn flags_are_parsed_and_bad_values_are_refused() {
        let settings = Settings::try_parse_from([
            "flowrun-operator",
            "--watch-namespaces=team-a,team-b",
            "--not-found-grace=1h 30m",
            "--log-format=json",
            "--initial-list=streaming",
        ])
        .expect("flags parse");
        assert_eq!(settings.initial_list, InitialList::Streaming);
        assert_eq!(settings.watch_namespaces, ["team-a", "team-b"]);
        assert_eq!(settings.not_found_grace, SignedDuration::from_mins(90));
        assert_eq!(settings.log_format, LogFormat::Json);

        for bad in [
            "--aws-timeout=soon",
            "--aws-timeout=0s",
            "--concurrency=0",
            "--start-rate-limit=0",
            "--log-format=xml",
        ] {
            assert!(
                Settings::try_parse_from(["flowrun-operator", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn metrics_address_defaults_to_every_interface_on_port_8080() {
        let parse = |args: &[&str]| {
            Settings::try_parse_from([&["flowrun-operator"], args].concat())
                .map(|settings| settings.metrics_address.to_string())
        };
        assert_eq!(parse(&[]).expect("default"), "0.0.0.0:8080");
        assert_eq!(
            parse(&["--metrics-address=[::]:9090"]).expect("IPv6"),
            "[::]:9090"
        );
        assert!(parse(&["--metrics-address=8080"]).is_err());
    }
}
