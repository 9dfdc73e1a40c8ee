//! `kubectl flowrun` end to end, as a CI job runs it: the plugin binary against the real API
//! server, the operator and the local AppFlow endpoint. Each test checks the exit code and what
//! the plugin printed, and then what happened to the FlowRun and in AppFlow.

mod support;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use flowrun_api::FlowRunSpec;
use flowrun_api::flowrun::{FlowRun, Phase};
use flowrun_api::schedule::{FlowRunSchedule, SCHEDULE_LABEL};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use serde_json::json;
use support::cluster::{cluster, cluster_sh, edited_kubeconfig, own_cluster, run_ok, sha256_of};
use support::flowruns::World;
use support::operator::Operator;

const FLOWS: &str = r#"
flows:
  - name: quick
    runSeconds: 0.5
    recordsProcessed: 1200
  - name: broken
    runSeconds: 0.5
    outcome: Error
    errorMessage: "Connector returned 401 Unauthorized"
  - name: endless
    runSeconds: 3600
    cancelSeconds: 0.5
"#;

const WAIT: Duration = Duration::from_secs(60);

fn plugin_binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| support::workspace::binary("kubectl-flowrun"))
}

/// `kubectl-flowrun ARGS -n NAMESPACE` with the test cluster's kubeconfig in KUBECONFIG.
fn plugin(namespace: &str, args: &[&str]) -> Command {
    let mut command = Command::new(plugin_binary());
    command
        .args(args)
        .args(["--namespace", namespace])
        .env("KUBECONFIG", &cluster().kubeconfig)
        .stdin(Stdio::null());
    command
}

/// Runs the plugin to its end: (exit code, stdout, stderr).
fn run(namespace: &str, args: &[&str]) -> (i32, String, String) {
    let output: Output = plugin(namespace, args).output().expect("the plugin runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The plugin's stderr, after checking it could not do the job: exit 3 and one line.
fn one_line_error(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

/// The FlowRun named in `flowrun.appflow.flowrun.dev/NAME created`.
fn created_name(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("flowrun.appflow.flowrun.dev/"))
        .and_then(|rest| rest.strip_suffix(" created"))
        .unwrap_or_else(|| panic!("no created FlowRun in {stdout:?}"))
        .to_owned()
}

#[tokio::test]
async fn run_wait_exits_0_on_success_and_1_with_appflows_message_on_failure() {
    let world = World::new("plugin-outcome", FLOWS).await;
    let operator = world.operator(&[]);

    let (code, stdout, stderr) = run(&world.namespace, &["run", "quick", "--wait"]);
    assert_eq!(
        code,
        0,
        "{stdout}{stderr} (operator log {:?})",
        operator.log_path()
    );
    let name = created_name(&stdout);
    assert!(name.starts_with("quick-"), "{name}");
    assert!(
        stdout.contains(&format!("flowrun/{name} Succeeded, 1200 records processed")),
        "{stdout}"
    );
    // Not a terminal: plain progress lines, one per phase seen.
    assert!(stderr.contains(&format!("flowrun/{name} ")), "{stderr}");
    assert!(!stderr.contains('\r'), "{stderr:?}");

    let (code, stdout, stderr) = run(
        &world.namespace,
        &["run", "broken", "--name", "bad", "--wait", "-o", "json"],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("flowrun/bad Failed (ExecutionFailed): ")
            && stderr.contains("Connector returned 401 Unauthorized"),
        "{stderr}"
    );
    // -o json: stdout is the finished FlowRun and nothing else.
    let printed: FlowRun = serde_json::from_str(&stdout).expect("stdout is a FlowRun");
    assert_eq!(printed.phase(), Phase::Failed);

    // The same exit codes for FlowRuns that exist, waited for together: the worst wins.
    let (code, stdout, _) = run(&world.namespace, &["wait", &name]);
    assert_eq!(code, 0, "{stdout}");
    let (code, stdout, _) = run(&world.namespace, &["wait", &name, "bad"]);
    assert_eq!(code, 1, "{stdout}");
}

#[tokio::test]
async fn a_timeout_exits_2_and_leaves_the_run_going() {
    let world = World::new("plugin-timeout", FLOWS).await;
    let operator = world.operator(&[]);
    // Built before the clock starts: the first call in a process may compile the plugin.
    plugin_binary();

    let started = Instant::now();
    let (code, stdout, stderr) = run(
        &world.namespace,
        &["run", "endless", "--name", "long", "--wait", "--timeout=3s"],
    );
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains("timed out after 0:03 waiting for flowrun/long; it keeps running"),
        "{stderr}"
    );
    world
        .wait_for("long", WAIT, Some(&operator), |status| {
            status.phase == Some(Phase::Running)
        })
        .await;
}

#[tokio::test]
async fn on_a_terminal_progress_is_one_line_rewritten_with_an_elapsed_timer() {
    let world = World::new("plugin-tty", FLOWS).await;
    let _operator = world.operator(&[]);
    let command = format!(
        "{} run endless --name tty --wait --timeout=3s --namespace {}",
        plugin_binary().display(),
        world.namespace
    );
    // util-linux's script(1) gives the plugin a terminal and records what it wrote there.
    let output = Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .env("KUBECONFIG", &cluster().kubeconfig)
        .stdin(Stdio::null())
        .output()
        .expect("script runs");
    let screen = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{screen:?}");
    // Each update returns to the line's start and erases it: one line, its timer counting.
    let updates: Vec<&str> = screen.split("\r\x1b[2K").skip(1).collect();
    for second in ["0:00", "0:01", "0:02"] {
        assert!(
            updates
                .iter()
                .any(|line| line.starts_with("flowrun/tty ")
                    && line.ends_with(&format!("  {second}"))),
            "no update at {second}: {screen:?}"
        );
    }
    assert!(
        !screen.contains("[0:0"),
        "plain CI lines on a terminal: {screen:?}"
    );
    assert!(
        screen.contains("\r\x1b[2Ktimed out after 0:03 waiting for flowrun/tty"),
        "the progress line is cleared before the last word: {screen:?}"
    );
}

#[tokio::test]
async fn usage_errors_exit_2_and_api_errors_exit_3_in_one_line() {
    let world = World::new("plugin-usage", FLOWS).await;
    for args in [
        &["run"][..],
        &["run", "quick", "--name", "a", "--generate-name", "b-"],
        &["run", "quick", "--timeout=soon"],
        &["run", "--from=cronjob/nightly"],
        &["wait"],
        &["frobnicate"],
    ] {
        let (code, stdout, stderr) = run(&world.namespace, args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
    }

    let (code, _, stderr) = run(&world.namespace, &["wait", "missing"]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(
        stderr.trim(),
        "error: cannot read flowrun/missing: flowruns.appflow.flowrun.dev \"missing\" not found"
    );

    // No API server.
    let kubeconfig = std::fs::read_to_string(&cluster().kubeconfig).expect("kubeconfig");
    let dead = tempfile::NamedTempFile::new().expect("temp file");
    let server_line = kubeconfig
        .lines()
        .find(|line| line.trim_start().starts_with("server:"))
        .expect("a server line");
    std::fs::write(
        dead.path(),
        kubeconfig.replace(server_line, "    server: https://127.0.0.1:1"),
    )
    .expect("write kubeconfig");
    let output = plugin(&world.namespace, &["get"])
        .arg("--kubeconfig")
        .arg(dead.path())
        .output()
        .expect("the plugin runs");
    let stderr = one_line_error(&output);
    assert!(
        stderr.contains("cannot reach the Kubernetes API server at https://127.0.0.1:1/"),
        "{stderr}"
    );

    // No kubeconfig and not in a pod.
    let home = tempfile::tempdir().expect("temp dir");
    let output = plugin(&world.namespace, &["get"])
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", home.path())
        .output()
        .expect("the plugin runs");
    let stderr = one_line_error(&output);
    assert!(
        stderr.starts_with("error: cannot find a kubeconfig or in-cluster credentials: "),
        "{stderr}"
    );

    // An API server without the CRD.
    let state = tempfile::tempdir().expect("temp dir");
    let bare = own_cluster(state.path(), "");
    let output = plugin(&world.namespace, &["run", "quick"])
        .arg("--kubeconfig")
        .arg(&bare.kubeconfig)
        .output()
        .expect("the plugin runs");
    cluster_sh(state.path(), &["clean"]);
    let stderr = one_line_error(&output);
    assert!(
        stderr.contains("cannot create the FlowRun: the FlowRun CRD is not installed on"),
        "{stderr}"
    );
}

/// A user the API server knows but grants nothing: on the local cluster a client certificate
/// of its CA without the `system:masters` group (the only group its authorizer allows), on
/// another cluster the admin impersonating a user no RBAC rule names. Returns its kubeconfig in
/// `dir`.
fn kubeconfig_without_rights(dir: &Path) -> PathBuf {
    const USER: &str = "flowrun-test-nobody";
    let admin = &cluster().kubeconfig;
    let text = std::fs::read_to_string(admin).expect("read the kubeconfig");
    let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("a kubeconfig");
    let context = config["current-context"].clone();
    let user_name = config["contexts"]
        .as_sequence()
        .and_then(|contexts| contexts.iter().find(|c| c["name"] == context))
        .map(|c| c["context"]["user"].clone())
        .expect("the current context names a user");
    let ca = admin.parent().expect("the state dir").join("pki");
    let user = if ca.join("ca.key").exists() {
        std::fs::write(dir.join("client.cnf"), "extendedKeyUsage = clientAuth\n").expect("write");
        let (ca_cert, ca_key) = (ca.join("ca.crt"), ca.join("ca.key"));
        let signing = [
            OsStr::new("-CA"),
            ca_cert.as_os_str(),
            OsStr::new("-CAkey"),
            ca_key.as_os_str(),
        ];
        // In `dir`, so only the CA's paths need to be arguments of their own.
        for (args, extra) in [
            (
                "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out nobody.key",
                &[][..],
            ),
            (
                &format!("req -new -subj /CN={USER} -key nobody.key -out nobody.csr"),
                &[],
            ),
            (
                "x509 -req -days 1 -in nobody.csr -CAcreateserial -CAserial ca.srl \
                 -extfile client.cnf -out nobody.crt",
                &signing,
            ),
        ] {
            let output = Command::new("openssl")
                .current_dir(dir)
                .args(args.split_whitespace())
                .args(extra)
                .output()
                .expect("openssl runs");
            assert!(
                output.status.success(),
                "openssl {args}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let (cert, key) = (dir.join("nobody.crt"), dir.join("nobody.key"));
        json!({"client-certificate": cert, "client-key": key})
    } else {
        let mut user = config["users"]
            .as_sequence()
            .and_then(|users| users.iter().find(|u| u["name"] == user_name))
            .map(|u| u["user"].clone())
            .expect("the current user");
        user["as"] = USER.into();
        serde_json::to_value(user).expect("a user")
    };
    edited_kubeconfig(dir, |config| {
        for named in config["users"].as_sequence_mut().expect("users") {
            if named["name"] == user_name {
                named["user"] = serde_yaml_ng::to_value(&user).expect("a user");
            }
        }
    })
}

#[tokio::test]
async fn a_user_without_rights_gets_exit_3_and_one_forbidden_line() {
    let world = World::new("plugin-forbidden", FLOWS).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = kubeconfig_without_rights(dir.path());
    for (args, doing) in [
        (&["run", "quick", "--wait"][..], "cannot create the FlowRun"),
        (&["get"], "cannot list FlowRuns"),
        (&["wait", "some-run"], "cannot read flowrun/some-run"),
        (
            &["run", "--from=flowrunschedule/nightly"],
            "cannot read flowrunschedule/nightly",
        ),
    ] {
        let output = plugin(&world.namespace, args)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .expect("the plugin runs");
        let stderr = one_line_error(&output);
        assert!(
            stderr.starts_with(&format!("error: {doing}: forbidden: "))
                && stderr.contains("flowrun-test-nobody"),
            "{args:?}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    let left = world
        .flowruns
        .list(&Default::default())
        .await
        .expect("list");
    assert!(left.items.is_empty(), "{:?}", left.items);
}

/// Starts `run endless --wait` and returns the plugin process once the FlowRun is Running.
async fn waiting_on_a_running_flowrun(
    world: &World,
    operator: &Operator,
    name: &str,
    extra: &[&str],
) -> Child {
    let child = plugin(
        &world.namespace,
        &[&["run", "endless", "--name", name, "--wait"], extra].concat(),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("the plugin starts");
    world
        .wait_for(name, WAIT, Some(operator), |status| {
            status.phase == Some(Phase::Running)
        })
        .await;
    child
}

/// SIGINT, as Ctrl-C sends it; returns (exit code, stderr).
fn interrupt(child: Child) -> (i32, String) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let output = child.wait_with_output().expect("the plugin ends");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn ctrl_c_leaves_the_flowrun_running_and_says_so() {
    let world = World::new("plugin-interrupt", FLOWS).await;
    let operator = world.operator(&[]);
    let child = waiting_on_a_running_flowrun(&world, &operator, "kept", &[]).await;

    let (code, stderr) = interrupt(child);

    assert_eq!(code, 130, "{stderr}");
    assert!(
        stderr.contains("Interrupted: flowrun/kept keeps running"),
        "{stderr}"
    );
    let flowrun = world.flowruns.get("kept").await.expect("still there");
    assert_eq!(flowrun.metadata.deletion_timestamp, None);
    assert_eq!(flowrun.phase(), Phase::Running);
    assert_eq!(world.appflow.stats().await.calls("CancelFlowExecutions"), 0);
}

#[tokio::test]
async fn ctrl_c_with_cancel_on_interrupt_deletes_the_flowrun_which_cancels_its_run() {
    let world = World::new("plugin-cancel", FLOWS).await;
    let operator = world.operator(&[]);
    let child =
        waiting_on_a_running_flowrun(&world, &operator, "dropped", &["--cancel-on-interrupt"])
            .await;

    let (code, stderr) = interrupt(child);

    assert_eq!(code, 130, "{stderr}");
    assert!(
        stderr.contains("Interrupted: deleted flowrun/dropped; the operator cancels its run"),
        "{stderr}"
    );
    world
        .wait_for_calls("CancelFlowExecutions", 1, Duration::from_secs(30))
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while world
        .flowruns
        .get_opt("dropped")
        .await
        .expect("get")
        .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "FlowRun dropped not deleted within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn run_from_a_schedule_creates_its_templates_flowrun_now() {
    let world = World::new("plugin-from", FLOWS).await;
    let operator = world.operator(&[]);
    let schedules: Api<FlowRunSchedule> = Api::namespaced(world.client.clone(), &world.namespace);
    let schedule: FlowRunSchedule = serde_json::from_value(json!({
        "apiVersion": "appflow.flowrun.dev/v1alpha1",
        "kind": "FlowRunSchedule",
        "metadata": {"name": "nightly"},
        // Once a year: no slot comes during the test.
        "spec": {"schedule": "0 3 1 1 *", "flowRunTemplate": {
            "metadata": {"labels": {"team": "sales"}},
            "spec": {"flowName": "quick"}}},
    }))
    .expect("a FlowRunSchedule");
    let schedule = schedules
        .create(&PostParams::default(), &schedule)
        .await
        .expect("create the schedule");

    let (code, stdout, stderr) = run(
        &world.namespace,
        &[
            "run",
            "--from=flowrunschedule/nightly",
            "--wait",
            "-o",
            "name",
        ],
    );

    assert_eq!(
        code,
        0,
        "{stdout}{stderr} (operator log {:?})",
        operator.log_path()
    );
    let name = stdout
        .trim()
        .strip_prefix("flowrun.appflow.flowrun.dev/")
        .unwrap_or_else(|| panic!("-o name: {stdout:?}"))
        .to_owned();
    assert!(name.starts_with("nightly-manual-"), "{name}");
    let flowrun = world.flowruns.get(&name).await.expect("the FlowRun");
    assert_eq!(flowrun.phase(), Phase::Succeeded);
    assert_eq!(flowrun.spec, schedule.spec.flow_run_template.spec);
    assert_eq!(flowrun.labels()["team"], "sales");
    assert_eq!(flowrun.labels()[SCHEDULE_LABEL], "nightly");
    let owner = &flowrun.owner_references()[0];
    assert_eq!(
        (owner.name.as_str(), owner.controller),
        ("nightly", Some(true))
    );
    assert_eq!(Some(owner.uid.clone()), schedule.uid());
}

#[tokio::test]
async fn rerun_creates_a_new_flowrun_with_the_same_spec_and_labels_and_get_lists_both() {
    let world = World::new("plugin-rerun", FLOWS).await;
    let operator = world.operator(&[]);
    let mut original = FlowRun::new(
        "copy",
        FlowRunSpec {
            region: Some("us-east-1".into()),
            ttl_seconds_after_finished: Some(3600),
            ..FlowRunSpec::new("quick")
        },
    );
    original.labels_mut().insert("team".into(), "sales".into());
    world
        .flowruns
        .create(&PostParams::default(), &original)
        .await
        .expect("create the FlowRun");
    world
        .wait_for("copy", WAIT, Some(&operator), |status| {
            status.phase == Some(Phase::Succeeded)
        })
        .await;

    let (code, stdout, stderr) = run(&world.namespace, &["rerun", "copy", "--wait", "-o", "json"]);

    assert_eq!(code, 0, "{stdout}{stderr}");
    let rerun: FlowRun = serde_json::from_str(&stdout).expect("stdout is a FlowRun");
    assert_ne!(rerun.name_any(), "copy");
    assert_eq!(rerun.metadata.generate_name.as_deref(), Some("copy-"));
    assert_eq!(rerun.spec, original.spec);
    assert_eq!(rerun.labels(), original.labels());
    assert_eq!(rerun.phase(), Phase::Succeeded);

    let (code, stdout, _) = run(&world.namespace, &["get"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with("NAME")
            && lines[0].contains("DURATION")
            && lines[0].contains("MESSAGE"),
        "{stdout}"
    );
    for line in &lines[1..] {
        assert!(
            line.contains("quick") && line.contains("Succeeded") && line.contains("1200"),
            "{stdout}"
        );
    }
}

/// `hack/krew.sh` packs the plugin as krew installs it: the manifest it writes passes the checks
/// krew's manifest validation makes, its sha256 is the archive's, the archive gives `bin` where
/// `files` put it, and the binary there runs. Two packings of one binary are one archive.
#[test]
fn the_krew_manifest_installs_the_plugin_from_its_archive() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pack = |out: &Path| {
        run_ok(
            Command::new("bash")
                .arg(repo.join("hack/krew.sh"))
                .arg("--binary")
                .arg(plugin_binary())
                .arg("--out")
                .arg(out),
        )
    };
    let (first, second) = (
        tempfile::tempdir().expect("temp dir"),
        tempfile::tempdir().expect("temp dir"),
    );
    pack(first.path());
    pack(second.path());
    let archive = first.path().join("kubectl-flowrun-linux-amd64.tar.gz");
    let sum = sha256_of(&archive);
    assert_eq!(
        sum,
        sha256_of(&second.path().join("kubectl-flowrun-linux-amd64.tar.gz")),
        "two packings of one binary differ"
    );

    let written = std::fs::read_to_string(first.path().join("flowrun.yaml")).expect("manifest");
    let committed = std::fs::read_to_string(repo.join("plugins/flowrun.yaml")).expect("manifest");
    let changed: Vec<(&str, &str)> = committed
        .lines()
        .zip(written.lines())
        .filter(|(old, new)| old != new)
        .collect();
    assert_eq!(
        changed,
        [(
            "    sha256: \"0000000000000000000000000000000000000000000000000000000000000000\"",
            format!("    sha256: \"{sum}\"").as_str()
        )],
        "only the sha256 is filled in"
    );

    // What krew's validation checks (pkg/index/validation): the kind, a lower-case name, a
    // semantic version with its v, and per platform a selector, a lower-case hex sha256, a
    // uri, `bin` and `files`.
    let manifest: serde_json::Value = serde_yaml_ng::from_str(&written).expect("manifest YAML");
    assert_eq!(
        manifest["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(manifest["metadata"]["name"], "flowrun");
    assert_eq!(
        manifest["spec"]["version"],
        format!("v{}", env!("CARGO_PKG_VERSION")),
        "the workspace's version"
    );
    for key in ["shortDescription", "description"] {
        assert!(
            manifest["spec"][key]
                .as_str()
                .is_some_and(|text| !text.is_empty())
        );
    }
    let platforms = manifest["spec"]["platforms"].as_array().expect("platforms");
    assert_eq!(platforms.len(), 1);
    let platform = &platforms[0];
    assert_eq!(
        platform["selector"]["matchLabels"],
        json!({"os": "linux", "arch": "amd64"})
    );
    assert_eq!(platform["sha256"], sum.as_str());
    assert_eq!(platform["uri"], "kubectl-flowrun-linux-amd64.tar.gz");

    // Installing: unpack, copy each of `files` from -> to, then `bin` is the plugin.
    let unpacked = tempfile::tempdir().expect("temp dir");
    run_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(&archive)
            .arg("-C")
            .arg(unpacked.path()),
    );
    let installed = tempfile::tempdir().expect("temp dir");
    for file in platform["files"].as_array().expect("files") {
        let from = unpacked.path().join(file["from"].as_str().expect("from"));
        let to = installed.path().join(file["to"].as_str().expect("to"));
        let target = if to.is_dir() {
            to.join(from.file_name().expect("a file name"))
        } else {
            to
        };
        std::fs::copy(&from, &target).expect("copy a file of the archive");
    }
    let bin = installed
        .path()
        .join(platform["bin"].as_str().expect("bin"));
    let help = Command::new(&bin)
        .arg("--help")
        .output()
        .expect("the installed plugin runs");
    assert!(help.status.success());
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("kubectl flowrun"),
        "{}",
        String::from_utf8_lossy(&help.stdout)
    );
}
