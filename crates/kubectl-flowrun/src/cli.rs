//! The command line, kubectl's way: `-n/--namespace`, `--context`, `--kubeconfig` (else the
//! `KUBECONFIG` chain, else ~/.kube/config), `-o`, and `--help` with examples.

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "kubectl flowrun",
    bin_name = "kubectl flowrun",
    version,
    about = "Run Amazon AppFlow flows through FlowRuns, wait for them, and fail a CI job when a run fails",
    after_help = "Exit codes: 0 every FlowRun Succeeded or was Activated; 1 one Failed or was \
                  Canceled; 2 timeout or usage error; 3 the plugin could not do it (no API server, \
                  CRD not installed, forbidden, not found); 130 interrupted (Ctrl-C).",
    after_long_help = "Exit codes:\n  0    every FlowRun Succeeded or was Activated\n  1    a \
                       FlowRun Failed or was Canceled (or was deleted before it finished)\n  2    \
                       the wait timed out, or a usage error\n  3    the plugin could not do it: no \
                       API server, CRD not installed, forbidden, not found\n  130  interrupted \
                       (Ctrl-C); the FlowRun keeps running unless --cancel-on-interrupt\n\n\
                       Examples:\n  kubectl flowrun run salesforce-to-s3 --wait --timeout=1h\n  \
                       kubectl flowrun run --from=flowrunschedule/nightly --wait\n  kubectl \
                       flowrun wait copy-x7k2p -n team-a\n  kubectl flowrun rerun copy-x7k2p \
                       --wait\n  kubectl flowrun get"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The namespace; default: the kubeconfig context's (in a pod, its own), else "default".
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig context to use; default: the current context.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The kubeconfig file; default: the files in KUBECONFIG, else ~/.kube/config, else (in a
    /// pod) its service account.
    #[arg(long, global = true)]
    pub kubeconfig: Option<std::path::PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a FlowRun for a flow (or from a FlowRunSchedule's template), optionally waiting
    /// for its end.
    #[command(
        after_help = "Examples:\n  kubectl flowrun run salesforce-to-s3\n  kubectl \
                            flowrun run salesforce-to-s3 --region eu-west-1 --wait --timeout=30m\n  \
                            kubectl flowrun run salesforce-to-s3 --name copy-now -o name\n  \
                            kubectl flowrun run --from=flowrunschedule/nightly --wait"
    )]
    Run(RunArgs),
    /// Wait until the named FlowRuns finish; the exit code says how they ended.
    #[command(
        after_help = "Examples:\n  kubectl flowrun wait copy-x7k2p\n  kubectl flowrun \
                            wait copy-a copy-b --timeout=1h -n team-a"
    )]
    Wait(WaitArgs),
    /// Create a new FlowRun with the same spec and labels as an existing one (named with
    /// generateName), optionally waiting for its end.
    #[command(
        after_help = "Examples:\n  kubectl flowrun rerun copy-x7k2p\n  kubectl flowrun \
                            rerun copy-x7k2p --wait -o yaml"
    )]
    Rerun(RerunArgs),
    /// List FlowRuns, or show the named ones: phase, duration, records, reason and message.
    #[command(
        visible_alias = "list",
        after_help = "Examples:\n  kubectl flowrun get\n  kubectl flowrun list -l team=sales \
                      -A\n  kubectl flowrun get copy-x7k2p -o yaml"
    )]
    Get(GetArgs),
}

#[derive(Args, Debug)]
pub struct WaitOptions {
    /// Wait until the FlowRun finishes, printing its phase as it changes.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub limits: WaitLimits,
}

#[derive(Args, Debug, Clone)]
pub struct WaitLimits {
    /// Give up waiting after this long (e.g. 90s, 30m, 1h30m; 0: no limit). The FlowRun keeps
    /// running.
    #[arg(long, default_value = "0", value_parser = parse_timeout)]
    pub timeout: Timeout,
    /// On Ctrl-C, delete the FlowRuns waited for, which cancels their runs
    /// (spec.cancelOnDelete); without it they keep running.
    #[arg(long)]
    pub cancel_on_interrupt: bool,
}

/// `--timeout`; `None`: wait as long as it takes. (A newtype: clap reads a bare `Option` as
/// "the flag may be missing".)
#[derive(Clone, Copy, Debug)]
pub struct Timeout(pub Option<std::time::Duration>);

fn parse_timeout(text: &str) -> Result<Timeout, String> {
    crate::view::parse_timeout(text).map(Timeout)
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The AppFlow flow to run.
    #[arg(required_unless_present = "from", conflicts_with = "from")]
    pub flow: Option<String>,
    /// Create the FlowRun from this FlowRunSchedule's template now, as `kubectl create job
    /// --from=cronjob/NAME` does (flowrunschedule/NAME or frs/NAME).
    #[arg(long, value_name = "flowrunschedule/NAME")]
    pub from: Option<String>,
    /// The flow's AWS region; default: the operator's.
    #[arg(long, conflicts_with = "from")]
    pub region: Option<String>,
    /// The FlowRun's name.
    #[arg(long, conflicts_with = "generate_name")]
    pub name: Option<String>,
    /// The prefix of a name the API server completes; default: the flow's (or
    /// schedule's) name.
    #[arg(long)]
    pub generate_name: Option<String>,
    #[command(flatten)]
    pub wait: WaitOptions,
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Output>,
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    /// The FlowRuns to wait for.
    #[arg(required = true)]
    pub names: Vec<String>,
    #[command(flatten)]
    pub limits: WaitLimits,
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Output>,
}

#[derive(Args, Debug)]
pub struct RerunArgs {
    /// The FlowRun to run again.
    pub name: String,
    #[command(flatten)]
    pub wait: WaitOptions,
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Output>,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// FlowRuns to show; none: all of the namespace.
    pub names: Vec<String>,
    /// Only FlowRuns with these labels (e.g. team=sales,env!=dev).
    #[arg(short = 'l', long, conflicts_with = "names")]
    pub selector: Option<String>,
    /// FlowRuns of every namespace.
    #[arg(short = 'A', long, conflicts_with = "names")]
    pub all_namespaces: bool,
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Output>,
}

/// `-o`: the objects as JSON or YAML, or `flowrun.appflow.flowrun.dev/NAME` lines.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
    Name,
}
