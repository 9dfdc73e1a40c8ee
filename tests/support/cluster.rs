//! The real Kubernetes API server the integration tests run against.
//!
//! By default `hack/cluster.sh up` starts (or reuses) the project's local apiextensions-apiserver
//! and etcd; it is idempotent and locked, so every test process may call it. Setting
//! `FLOWRUN_TEST_KUBECONFIG` points the tests at an existing cluster instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config};

pub const TEST_FIELD_MANAGER: &str = "flowrun-tests";

/// Paths of a running cluster's credentials.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// Admin credentials (what a user's kubectl would use).
    pub kubeconfig: PathBuf,
    /// Credentials for the operator under test: a distinct user, so audit logs can tell it apart.
    pub operator_kubeconfig: PathBuf,
    /// Folder holding kubectl when the machine has none on its PATH.
    pub tool_path: Option<PathBuf>,
}

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Starts the local cluster once per test process (or takes the configured one).
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        if let Ok(path) = std::env::var("FLOWRUN_TEST_KUBECONFIG") {
            let path = PathBuf::from(path);
            return Cluster {
                kubeconfig: path.clone(),
                operator_kubeconfig: path,
                tool_path: None,
            };
        }
        up(None, false, "")
    })
}

/// A cluster of its own in `state_dir`, apart from the shared one: for tests that stop its API
/// server or change its CRDs. Stop and delete it with `cluster_sh(state_dir, &["clean"])`.
pub fn own_cluster(state_dir: &Path, apiserver_args: &str) -> Cluster {
    up(Some(state_dir), false, apiserver_args)
}

/// Like `own_cluster`, with an audit log of every request in `state_dir/audit.log`.
pub fn own_audited_cluster(state_dir: &Path) -> Cluster {
    up(Some(state_dir), true, "")
}

/// Runs `hack/cluster.sh ARGS` on the cluster in `state_dir` (e.g. `stop-apiserver`); panics
/// with its stderr when it fails.
pub fn cluster_sh(state_dir: &Path, args: &[&str]) -> String {
    let output = Command::new("bash")
        .arg(repo_root().join("hack/cluster.sh"))
        .args(args)
        .env("FLOWRUN_CLUSTER_DIR", state_dir)
        .output()
        .expect("failed to run hack/cluster.sh");
    assert!(
        output.status.success(),
        "hack/cluster.sh {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `hack/cluster.sh up`, in `state_dir` or the script's default (FLOWRUN_CLUSTER_DIR).
/// `apiserver_args`: more API server flags, for a cluster of a test's own.
fn up(state_dir: Option<&Path>, audit: bool, apiserver_args: &str) -> Cluster {
    let script = repo_root().join("hack/cluster.sh");
    let mut command = Command::new("bash");
    command
        .arg(&script)
        .arg("up")
        .env("FLOWRUN_APISERVER_EXTRA_ARGS", apiserver_args);
    if audit {
        command.env("FLOWRUN_AUDIT", "1");
    }
    if let Some(state_dir) = state_dir {
        command.env("FLOWRUN_CLUSTER_DIR", state_dir);
    }
    let output = command.output().expect("failed to run hack/cluster.sh");
    assert!(
        output.status.success(),
        "hack/cluster.sh up failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let kubeconfig = PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("hack/cluster.sh up printed no kubeconfig path")
            .trim(),
    );
    let state_dir = kubeconfig
        .parent()
        .expect("kubeconfig lives in the state dir")
        .to_path_buf();
    let tool_path = read_cache_bin(&state_dir);
    Cluster {
        operator_kubeconfig: state_dir.join("operator.kubeconfig"),
        kubeconfig,
        tool_path,
    }
}

/// The `env` file the cluster script writes names the folder with its cached tools.
fn read_cache_bin(state_dir: &Path) -> Option<PathBuf> {
    let env = std::fs::read_to_string(state_dir.join("env")).ok()?;
    env.lines().find_map(|line| {
        let rest = line.strip_prefix("export PATH=")?;
        let first = rest.trim_matches('"').split(':').next()?;
        Some(PathBuf::from(first))
    })
}

/// A copy of the test cluster's admin kubeconfig in `dir`, changed by `edit` (e.g. another
/// namespace or user); returns its path.
pub fn edited_kubeconfig(dir: &Path, edit: impl FnOnce(&mut serde_yaml_ng::Value)) -> PathBuf {
    let text = std::fs::read_to_string(&cluster().kubeconfig).expect("read the kubeconfig");
    let mut config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("a kubeconfig");
    edit(&mut config);
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        serde_yaml_ng::to_string(&config).expect("serialises"),
    )
    .expect("write the kubeconfig");
    path
}

pub async fn client() -> Client {
    client_for(&cluster().kubeconfig).await
}

pub async fn client_for(kubeconfig: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("failed to read kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("failed to load kubeconfig");
    Client::try_from(config).expect("failed to build client")
}

/// A namespace name of its own for each test, so tests never see each other's objects. The
/// local server serves no namespaces; on a full cluster the namespace is created.
pub async fn unique_namespace(client: &Client, prefix: &str) -> String {
    let name = format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let core = client
        .list_core_api_resources("v1")
        .await
        .expect("failed to discover the core API");
    // The local apiextensions-apiserver serves no namespaces: objects need none there.
    if core
        .resources
        .iter()
        .any(|resource| resource.name == "namespaces")
    {
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let namespace = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        namespaces
            .patch(
                &name,
                &PatchParams::apply(TEST_FIELD_MANAGER),
                &Patch::Apply(namespace),
            )
            .await
            .unwrap_or_else(|error| panic!("failed to create namespace {name}: {error}"));
    }
    name
}

/// Server-side applies a CRD and waits until it is established.
pub async fn install_crd(client: &Client, crd: &CustomResourceDefinition) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().expect("CRD has a name");
    crds.patch(
        &name,
        &PatchParams::apply(TEST_FIELD_MANAGER).force(),
        &Patch::Apply(crd),
    )
    .await
    .expect("failed to apply CRD");
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(crds, &name, conditions::is_crd_established()),
    )
    .await
    .expect("CRD was not established within 30 s")
    .expect("failed to watch CRD");
}

/// A `kubectl` command against the test cluster.
pub fn kubectl() -> Command {
    let cluster = cluster();
    let mut command = Command::new("kubectl");
    command.env("KUBECONFIG", &cluster.kubeconfig);
    if let Some(tools) = &cluster.tool_path {
        let path = std::env::var("PATH").unwrap_or_default();
        command.env("PATH", format!("{}:{path}", tools.display()));
    }
    command
}

/// `kubectl apply -f -` of `manifest` in `namespace`, as a user would type it.
pub fn kubectl_apply(namespace: &str, manifest: &str) -> std::process::Output {
    output_with_input(
        kubectl().args(["apply", "--namespace", namespace, "-f", "-"]),
        manifest.as_bytes(),
    )
}

/// Runs `command` to its end; panics with its exit status, stdout and stderr unless it
/// succeeded.
pub fn run_ok(command: &mut Command) -> std::process::Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("failed to run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The SHA-256 of a file, in lower-case hex (`sha256sum`).
pub fn sha256_of(file: &Path) -> String {
    let output = run_ok(Command::new("sha256sum").arg(file));
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum prints the sum first")
        .to_owned()
}

/// Runs `command` with `input` on its stdin; its exit status, stdout and stderr.
pub fn output_with_input(command: &mut Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("run {program}: {error}"));
    // Dropped at the end of the statement: the child sees the end of its input.
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input)
        .unwrap_or_else(|error| panic!("write the input of {program}: {error}"));
    child
        .wait_with_output()
        .unwrap_or_else(|error| panic!("wait for {program}: {error}"))
}

/// A tool that `hack/apiserver/build.sh FLAG` builds or fetches once into the cache and
/// prints the path of, or the path in the environment variable `env` when it is set.
pub fn cached_tool(env: &str, flag: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return PathBuf::from(path);
    }
    let output = Command::new("bash")
        .arg(repo_root().join("hack/apiserver/build.sh"))
        .arg(flag)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|error| panic!("run hack/apiserver/build.sh {flag}: {error}"));
    assert!(
        output.status.success(),
        "hack/apiserver/build.sh {flag} failed"
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}
