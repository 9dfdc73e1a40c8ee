//! `kubectl flowrun`: run a flow from a CI job or a terminal, wait for its end, and exit with a
//! code that says how it went. What to show and which exit code is pure (`view`); this file
//! reads the API server and the clock, and writes.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use flowrun_api::schedule::FlowRunSchedule;
use flowrun_api::{FlowRun, FlowRunSpec};
use jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, Resource, ResourceExt};

mod cli;
mod view;

use cli::{
    Cli, Command, GetArgs, Global, Output, RerunArgs, RunArgs, WaitArgs, WaitLimits, WaitOptions,
};
use view::exit;

/// How often a FlowRun waited for is read: a CI gate needs seconds, not milliseconds.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start: {error}");
            return ExitCode::from(exit::ERROR);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// A command that could not do its job: one line for the user and the exit code.
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            code: exit::ERROR,
        }
    }

    fn usage(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            code: exit::TIMEOUT_OR_USAGE,
        }
    }
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    let kube = Kube::connect(&cli.global).await?;
    match cli.command {
        Command::Run(args) => run_flow(&kube, args).await,
        Command::Wait(args) => wait_command(&kube, args).await,
        Command::Rerun(args) => rerun(&kube, args).await,
        Command::Get(args) => get(&kube, args).await,
    }
}

/// The client, the namespace and where the API server is (for error messages).
struct Kube {
    client: Client,
    namespace: String,
    server: String,
}

impl Kube {
    async fn connect(global: &Global) -> Result<Self, Failure> {
        let options = KubeConfigOptions {
            context: global.context.clone(),
            ..KubeConfigOptions::default()
        };
        let config = match &global.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path).map_err(|error| {
                    Failure::new(format!(
                        "cannot read kubeconfig {}: {error}",
                        path.display()
                    ))
                })?;
                Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(unusable)?
            }
            // KUBECONFIG (its files merged, as kubectl does), else ~/.kube/config.
            None if global.context.is_some() => {
                Config::from_kubeconfig(&options).await.map_err(unusable)?
            }
            // Those, else the pod's service account, as kubectl does in a pipeline step.
            None => Config::infer().await.map_err(|error| {
                Failure::new(format!(
                    "cannot find a kubeconfig or in-cluster credentials: {error}"
                ))
            })?,
        };
        let server = config.cluster_url.to_string();
        let namespace = global
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config)
            .map_err(|error| Failure::new(format!("cannot build a client: {error}")))?;
        Ok(Kube {
            client,
            namespace,
            server,
        })
    }

    fn flowruns(&self) -> Api<FlowRun> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// One line that says what went wrong, in the user's terms.
    async fn explain(&self, doing: &str, error: kube::Error) -> Failure {
        let message = match &error {
            kube::Error::Api(status) if status.code == 403 => {
                format!("{doing}: forbidden: {}", status.message)
            }
            kube::Error::Api(status) if status.code == 404 => {
                if self.crd_installed().await {
                    format!("{doing}: {}", status.message)
                } else {
                    format!(
                        "{doing}: the FlowRun CRD is not installed on {} (install the \
                         flowrun-operator chart or kubectl apply -f crds/flowrun.yaml)",
                        self.server
                    )
                }
            }
            kube::Error::Api(status) => format!("{doing}: {}", status.message),
            _ => format!(
                "{doing}: cannot reach the Kubernetes API server at {}: {}",
                self.server,
                root_cause(&error)
            ),
        };
        Failure::new(message)
    }

    /// Whether the API server serves FlowRuns; a failed check counts as installed, so the
    /// server's own message is shown instead.
    async fn crd_installed(&self) -> bool {
        match kube::discovery::group(&self.client, &FlowRun::group(&())).await {
            Ok(group) => group
                .recommended_resources()
                .iter()
                .any(|(resource, _)| resource.kind == FlowRun::kind(&())),
            Err(kube::Error::Discovery(_)) => false,
            Err(kube::Error::Api(status)) if status.code == 404 => false,
            Err(_) => true,
        }
    }
}

fn unusable(error: kube::config::KubeconfigError) -> Failure {
    Failure::new(format!("cannot use the kubeconfig: {error}"))
}

/// The innermost error: "Connection refused (os error 111)" rather than a chain of wrappers.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

async fn run_flow(kube: &Kube, args: RunArgs) -> Result<u8, Failure> {
    let mut flowrun = match (&args.flow, &args.from) {
        (_, Some(from)) => from_schedule(kube, from, args.name.as_deref()).await?,
        (Some(flow), None) => FlowRun {
            metadata: ObjectMeta {
                name: args.name.clone(),
                generate_name: args.name.is_none().then(|| view::generate_name_for(flow)),
                ..ObjectMeta::default()
            },
            spec: FlowRunSpec {
                region: args.region.clone(),
                ..FlowRunSpec::new(flow)
            },
            status: None,
        },
        (None, None) => return Err(Failure::usage("name a flow, or use --from")),
    };
    if let Some(prefix) = &args.generate_name {
        flowrun.metadata.name = None;
        flowrun.metadata.generate_name = Some(prefix.clone());
    }
    create_then_wait(kube, &flowrun, &args.wait, args.output).await
}

/// One FlowRun from the schedule's template, built by the rules the operator uses for a slot.
async fn from_schedule(kube: &Kube, from: &str, name: Option<&str>) -> Result<FlowRun, Failure> {
    let schedule_name = ["flowrunschedule/", "flowrunschedules/", "frs/"]
        .iter()
        .find_map(|prefix| from.strip_prefix(prefix))
        .filter(|name| !name.is_empty())
        .ok_or_else(|| {
            Failure::usage(format!(
                "--from={from}: expected flowrunschedule/NAME (or frs/NAME)"
            ))
        })?;
    let schedules: Api<FlowRunSchedule> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let schedule = match schedules.get(schedule_name).await {
        Ok(schedule) => schedule,
        Err(error) => {
            return Err(kube
                .explain(
                    &format!("cannot read flowrunschedule/{schedule_name}"),
                    error,
                )
                .await);
        }
    };
    Ok(flowrun_core::schedule::manual_flowrun(&schedule, name))
}

async fn create(kube: &Kube, flowrun: &FlowRun) -> Result<FlowRun, Failure> {
    match kube
        .flowruns()
        .create(&PostParams::default(), flowrun)
        .await
    {
        Ok(created) => Ok(created),
        Err(error) => Err(kube.explain("cannot create the FlowRun", error).await),
    }
}

/// Creates the FlowRun and says so (or prints it), then waits for it if asked.
async fn create_then_wait(
    kube: &Kube,
    flowrun: &FlowRun,
    wait: &WaitOptions,
    output: Option<Output>,
) -> Result<u8, Failure> {
    let created = create(kube, flowrun).await?;
    let name = created.name_any();
    if output.is_none() {
        println!("flowrun.appflow.flowrun.dev/{name} created");
    }
    if !wait.wait {
        print_objects(&[created], output)?;
        return Ok(exit::OK);
    }
    wait_for(kube, &[name], &wait.limits, output).await
}

async fn wait_command(kube: &Kube, args: WaitArgs) -> Result<u8, Failure> {
    wait_for(kube, &args.names, &args.limits, args.output).await
}

async fn rerun(kube: &Kube, args: RerunArgs) -> Result<u8, Failure> {
    let original = match kube.flowruns().get(&args.name).await {
        Ok(flowrun) => flowrun,
        Err(error) => {
            return Err(kube
                .explain(&format!("cannot read flowrun/{}", args.name), error)
                .await);
        }
    };
    // Same spec and labels; not the annotations (the operator's start record is one), nor the
    // owner: a rerun is the user's, not a schedule's.
    let flowrun = FlowRun {
        metadata: ObjectMeta {
            generate_name: Some(view::rerun_generate_name(&original)),
            labels: original.metadata.labels.clone(),
            ..ObjectMeta::default()
        },
        spec: original.spec.clone(),
        status: None,
    };
    create_then_wait(kube, &flowrun, &args.wait, args.output).await
}

async fn get(kube: &Kube, args: GetArgs) -> Result<u8, Failure> {
    let flowruns = if args.names.is_empty() {
        let api: Api<FlowRun> = if args.all_namespaces {
            Api::all(kube.client.clone())
        } else {
            kube.flowruns()
        };
        let mut params = ListParams::default();
        if let Some(selector) = &args.selector {
            params = params.labels(selector);
        }
        match api.list(&params).await {
            Ok(list) => list.items,
            Err(error) => return Err(kube.explain("cannot list FlowRuns", error).await),
        }
    } else {
        let mut found = Vec::new();
        for name in &args.names {
            found.push(read(kube, name).await?);
        }
        found
    };
    if args.output.is_some() {
        print_objects(&flowruns, args.output)?;
    } else if flowruns.is_empty() {
        eprintln!("No FlowRuns found in {}.", scope(kube, args.all_namespaces));
    } else {
        let now = Timestamp::now();
        let rows: Vec<_> = flowruns.iter().map(|f| view::row(f, now)).collect();
        print!("{}", view::table(&rows));
    }
    Ok(exit::OK)
}

fn scope(kube: &Kube, all: bool) -> String {
    if all {
        "any namespace".into()
    } else {
        format!("namespace {}", kube.namespace)
    }
}

async fn read(kube: &Kube, name: &str) -> Result<FlowRun, Failure> {
    match kube.flowruns().get(name).await {
        Ok(flowrun) => Ok(flowrun),
        Err(error) => Err(kube
            .explain(&format!("cannot read flowrun/{name}"), error)
            .await),
    }
}

/// Reads the FlowRuns until all are finished, the timeout passes or Ctrl-C; progress goes to
/// stderr, one rewritten line on a terminal, a line per change otherwise.
async fn wait_for(
    kube: &Kube,
    names: &[String],
    limits: &WaitLimits,
    output: Option<Output>,
) -> Result<u8, Failure> {
    let started = Instant::now();
    let mut progress = Progress::new();
    // Listening from here on (the task is polled at the first read below): from now on Ctrl-C
    // ends the wait with a message instead of killing the process.
    let (interrupt_tx, mut interrupted) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = interrupt_tx.send(());
        }
    });
    // A name that does not exist is an error; one that goes away while waited for, a failure.
    let mut current = Vec::with_capacity(names.len());
    for name in names {
        current.push(read(kube, name).await?);
    }
    loop {
        progress.show(&view::phases(&current), started.elapsed());
        let endings: Option<Vec<view::Ending>> = current.iter().map(view::ending).collect();
        if let Some(endings) = endings {
            progress.clear();
            for (flowrun, ending) in current.iter().zip(&endings) {
                report(&view::ending_line(flowrun, ending), output);
            }
            print_objects(&current, output)?;
            return Ok(view::exit_code(&endings));
        }
        let unfinished: Vec<&FlowRun> = current
            .iter()
            .filter(|flowrun| view::ending(flowrun).is_none())
            .collect();
        if let Some(timeout) = limits.timeout.0
            && started.elapsed() >= timeout
        {
            progress.clear();
            eprintln!(
                "timed out after {} waiting for {}; it keeps running",
                view::clock(timeout),
                refs(&unfinished)
            );
            return Ok(exit::TIMEOUT_OR_USAGE);
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            Ok(()) = &mut interrupted => {
                progress.clear();
                return interrupt(kube, &unfinished, limits.cancel_on_interrupt).await;
            }
        }
        current.clear();
        for name in names {
            match kube.flowruns().get_opt(name).await {
                Ok(Some(flowrun)) => current.push(flowrun),
                Ok(None) => {
                    progress.clear();
                    eprintln!("flowrun/{name} was deleted before it finished");
                    return Ok(exit::FAILED);
                }
                Err(error) => {
                    progress.clear();
                    return Err(kube
                        .explain(&format!("cannot read flowrun/{name}"), error)
                        .await);
                }
            }
        }
    }
}

/// Ctrl-C: leave the runs going and say how to stop them, or delete the FlowRuns.
async fn interrupt(kube: &Kube, unfinished: &[&FlowRun], cancel: bool) -> Result<u8, Failure> {
    if !cancel {
        eprintln!(
            "Interrupted: {} keeps running; delete it to cancel its run (kubectl delete -n {} {})",
            refs(unfinished),
            kube.namespace,
            refs(unfinished)
        );
        return Ok(exit::INTERRUPTED);
    }
    for flowrun in unfinished {
        let name = flowrun.name_any();
        if let Err(error) = kube
            .flowruns()
            .delete(&name, &DeleteParams::default())
            .await
        {
            return Err(kube
                .explain(
                    &format!("interrupted, but cannot delete flowrun/{name}"),
                    error,
                )
                .await);
        }
        if flowrun.spec.cancel_on_delete {
            eprintln!("Interrupted: deleted flowrun/{name}; the operator cancels its run");
        } else {
            eprintln!(
                "Interrupted: deleted flowrun/{name}; its run keeps going in AppFlow \
                 (spec.cancelOnDelete is false)"
            );
        }
    }
    Ok(exit::INTERRUPTED)
}

fn refs(flowruns: &[&FlowRun]) -> String {
    flowruns
        .iter()
        .map(|flowrun| view::reference(flowrun))
        .collect::<Vec<_>>()
        .join(" ")
}

/// An ending line: on stdout, unless stdout carries `-o` output.
fn report(line: &str, output: Option<Output>) {
    if output.is_some() {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

fn print_objects(flowruns: &[FlowRun], output: Option<Output>) -> Result<(), Failure> {
    let Some(output) = output else {
        return Ok(());
    };
    let value = match flowruns {
        [one] => serde_json::to_value(one),
        many => serde_json::to_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": many,
        })),
    }
    .map_err(|error| Failure::new(format!("cannot print the FlowRun: {error}")))?;
    let text = match output {
        Output::Json => serde_json::to_string_pretty(&value)
            .map(|json| json + "\n")
            .map_err(|error| error.to_string()),
        Output::Yaml => serde_yaml_ng::to_string(&value).map_err(|error| error.to_string()),
        Output::Name => Ok(flowruns
            .iter()
            .map(|flowrun| format!("flowrun.appflow.flowrun.dev/{}\n", flowrun.name_any()))
            .collect()),
    }
    .map_err(|error| Failure::new(format!("cannot print the FlowRun: {error}")))?;
    print!("{text}");
    Ok(())
}

/// The progress line: on a terminal, one line rewritten in place with the elapsed time; in a
/// CI log, a new line only when the phases change.
struct Progress {
    terminal: bool,
    last: Option<String>,
}

impl Progress {
    fn new() -> Self {
        Progress {
            terminal: std::io::stderr().is_terminal(),
            last: None,
        }
    }

    fn show(&mut self, phases: &str, elapsed: Duration) {
        let mut stderr = std::io::stderr();
        if self.terminal {
            // \r and "erase line": the timer and the phases replace the line before.
            let _ = write!(stderr, "\r\x1b[2K{phases}  {}", view::clock(elapsed));
            let _ = stderr.flush();
            self.last = Some(phases.to_owned());
        } else if self.last.as_deref() != Some(phases) {
            let _ = writeln!(stderr, "[{}] {phases}", view::clock(elapsed));
            self.last = Some(phases.to_owned());
        }
    }

    fn clear(&mut self) {
        if self.terminal && self.last.is_some() {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}
