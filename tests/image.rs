//! The operator's image (hack/image.sh) as a container runtime sees it: built twice with one
//! digest, in step with the Dockerfile, carrying an SBOM of exactly the binary's crates, and run
//! by runc the way the chart's Deployment runs it (its user, read-only root filesystem, no
//! capabilities, its args and environment, the credentials mounted read-only) against the real
//! API server and the local AppFlow endpoint.
//! hack/test.sh builds the release binary and names it in FLOWRUN_RELEASE_BINARY.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use flowrun_api::flowrun::Phase;
use support::chart;
use support::cluster::{cluster, repo_root, run_ok, sha256_of};
use support::flowruns::World;

const RUN_FLOWS: &str = r#"
flows:
  - name: image-flow
    triggerType: OnDemand
    runSeconds: 1
"#;

fn release_binary() -> PathBuf {
    // Never skipped in silence: a skip would read as a pass.
    std::env::var_os("FLOWRUN_RELEASE_BINARY")
        .expect(
            "FLOWRUN_RELEASE_BINARY is not set: run the suite with hack/test.sh, which builds the \
             release binary and sets it, or build it (cargo build --release --locked --bin \
             flowrun-operator) and set FLOWRUN_RELEASE_BINARY=target/release/flowrun-operator",
        )
        .into()
}

/// `hack/image.sh build [--out DIR]` on the release binary: the image's directory.
fn build_image(out: Option<&Path>) -> PathBuf {
    let mut command = Command::new(repo_root().join("hack/image.sh"));
    command
        .arg("build")
        .env("FLOWRUN_IMAGE_BINARY", release_binary());
    if let Some(out) = out {
        command.arg("--out").arg(out);
    }
    let output = run_ok(&mut command);
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// The directory holding runc and umoci (`hack/image.sh tools` fetches them once).
fn tools() -> PathBuf {
    let output = run_ok(Command::new(repo_root().join("hack/image.sh")).arg("tools"));
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}

fn scratch(name: &str) -> PathBuf {
    let dir = repo_root().join(format!(
        "target/test-image/{name}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// The file of a blob in the image's OCI layout.
fn blob_path(image: &Path, descriptor: &Value) -> PathBuf {
    let digest = descriptor["digest"].as_str().expect("a digest");
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    image.join("oci/blobs/sha256").join(hex)
}

/// The manifest the image layout's index names (hack/image.sh writes one).
fn image_manifest(image: &Path) -> Value {
    let index: Value =
        serde_json::from_str(&read(&image.join("oci/index.json"))).expect("index.json");
    serde_json::from_str(&read(&blob_path(image, &index["manifests"][0]))).expect("a manifest")
}

/// The image's config (the OCI config blob its manifest names).
fn image_config(image: &Path) -> Value {
    let manifest = image_manifest(image);
    serde_json::from_str(&read(&blob_path(image, &manifest["config"]))).expect("a config")
}

#[test]
fn two_builds_of_the_same_inputs_give_one_digest() {
    let dir = scratch("reproducible");
    let first = build_image(Some(&dir.join("first")));
    let second = build_image(Some(&dir.join("second")));
    let digest = read(&first.join("digest"));
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert_eq!(
        digest,
        read(&second.join("digest")),
        "the image digests differ"
    );
    // The docker archive too, byte for byte.
    assert_eq!(
        sha256_of(&first.join("image.tar")),
        sha256_of(&second.join("image.tar")),
        "the docker archives differ"
    );
    std::fs::remove_dir_all(&dir).expect("remove the scratch directory");
}

/// The Dockerfile's last stage: its USER, EXPOSE, ENTRYPOINT and LABEL instructions.
fn dockerfile_runtime_stage() -> BTreeMap<String, Vec<String>> {
    let text = read(&repo_root().join("Dockerfile"));
    let joined = text.replace("\\\n", " ");
    let stage = joined
        .rsplit_once("\nFROM ")
        .map(|(_, stage)| stage)
        .expect("a FROM line");
    let mut instructions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in stage.lines().map(str::trim) {
        if let Some((keyword, rest)) = line.split_once(' ')
            && ["USER", "EXPOSE", "ENTRYPOINT", "LABEL"].contains(&keyword)
        {
            instructions
                .entry(keyword.to_owned())
                .or_default()
                .push(rest.trim().to_owned());
        }
    }
    instructions
}

/// `key="value" key2="value2"` as a LABEL instruction writes them.
fn dockerfile_labels(instructions: &[String]) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for instruction in instructions {
        let mut rest = instruction.as_str();
        while let Some((key, after)) = rest.split_once("=\"") {
            let (value, after) = after.split_once('"').expect("a closing quote");
            labels.insert(key.trim().to_owned(), value.to_owned());
            rest = after;
        }
    }
    labels
}

#[test]
fn dockerfile_builds_the_same_user_entrypoint_port_and_labels() {
    let config = image_config(&build_image(None));
    let dockerfile = dockerfile_runtime_stage();
    let one = |keyword: &str| -> String {
        match dockerfile.get(keyword).map(Vec::as_slice) {
            Some([value]) => value.clone(),
            other => panic!("the Dockerfile's runtime stage has {keyword} {other:?}"),
        }
    };
    assert_eq!(config["config"]["User"], one("USER"));
    let entrypoint: Value = serde_json::from_str(&one("ENTRYPOINT")).expect("ENTRYPOINT [json]");
    assert_eq!(config["config"]["Entrypoint"], entrypoint);
    assert_eq!(
        config["config"]["ExposedPorts"],
        json!({ format!("{}/tcp", one("EXPOSE")): {} })
    );
    let image_labels: BTreeMap<String, String> =
        serde_json::from_value(config["config"]["Labels"].clone()).expect("labels");
    let labels = dockerfile_labels(&dockerfile["LABEL"]);
    assert!(
        labels
            .keys()
            .any(|key| key.starts_with("org.opencontainers.image.")),
        "{labels:?}"
    );
    assert_eq!(image_labels, labels, "image (left) and Dockerfile (right)");
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
}

/// The target the release binary is built for (cargo's host).
fn host_target() -> String {
    let output = run_ok(Command::new("rustc").arg("-vV"));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_owned()
}

/// Name and version of every package the operator binary is built from, by cargo's own
/// resolver: its normal dependencies, transitively, for the target (no build or dev
/// dependencies), without the operator package itself.
fn binary_packages() -> BTreeSet<(String, String)> {
    let output = run_ok(
        Command::new(env!("CARGO"))
            .args(["tree", "--locked", "--offline", "--edges", "normal"])
            .args(["--package", "flowrun-operator", "--target", &host_target()])
            .args(["--prefix", "none", "--format", "{p}"])
            .current_dir(repo_root()),
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let version = words
                .next()?
                .strip_prefix('v')
                .expect("a version after the name");
            Some((name.to_owned(), version.to_owned()))
        })
        .filter(|(name, _)| name != "flowrun-operator")
        .collect()
}

#[test]
fn the_image_carries_an_sbom_of_exactly_the_binarys_crates() {
    let image = build_image(None);
    let sbom_text = read(&image.join("sbom.cdx.json"));

    // The same file in the image (its one layer), where scanners of the running image find it.
    let manifest = image_manifest(&image);
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "{manifest}");
    let in_image = run_ok(
        Command::new("tar")
            .arg("-xzOf")
            .arg(blob_path(&image, &layers[0]))
            .arg("./usr/local/share/doc/flowrun-operator/sbom.cdx.json"),
    );
    assert_eq!(
        String::from_utf8_lossy(&in_image.stdout),
        sbom_text,
        "the SBOM in the image and beside it differ"
    );

    let sbom: Value = serde_json::from_str(&sbom_text).expect("the SBOM is JSON");
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    assert_eq!(sbom["specVersion"], "1.5");
    assert_eq!(
        sbom["metadata"]["component"]["name"], "flowrun-operator",
        "it describes the operator"
    );
    assert_eq!(
        sbom["metadata"]["component"]["version"],
        env!("CARGO_PKG_VERSION")
    );
    // Nothing that changes from one build to the next.
    assert!(
        sbom.get("serialNumber").is_none(),
        "{}",
        sbom["serialNumber"]
    );
    let epoch: i64 = read(&image.join("source-date-epoch"))
        .trim()
        .parse()
        .expect("an epoch");
    let timestamp: jiff::Timestamp = sbom["metadata"]["timestamp"]
        .as_str()
        .expect("a timestamp")
        .parse()
        .expect("an RFC 3339 timestamp");
    assert_eq!(timestamp.as_second(), epoch);

    let listed: BTreeSet<(String, String)> = sbom["components"]
        .as_array()
        .expect("components")
        .iter()
        .map(|component| {
            let field = |key: &str| component[key].as_str().expect(key).to_owned();
            (field("name"), field("version"))
        })
        .collect();
    let expected = binary_packages();
    assert_eq!(
        listed.difference(&expected).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "in the SBOM, not in the binary's dependency tree"
    );
    assert_eq!(
        expected.difference(&listed).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "in the binary's dependency tree, not in the SBOM"
    );
    for name in ["aws-sdk-appflow", "kube"] {
        let version = |set: &BTreeSet<(String, String)>| {
            set.iter()
                .find(|(listed, _)| listed == name)
                .map(|(_, version)| version.clone())
        };
        assert!(version(&listed).is_some(), "{name} is not in the SBOM");
        assert_eq!(version(&listed), version(&expected), "{name}'s version");
    }
}

fn effective_uid() -> u32 {
    read(Path::new("/proc/self/status"))
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|uid| uid.parse().ok())
        .expect("an effective uid in /proc/self/status")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A runc container, killed and deleted when dropped (a failing test leaves none behind).
struct Container {
    runc: PathBuf,
    state: PathBuf,
    name: String,
    process: Child,
}

impl Container {
    fn runc(&self) -> Command {
        let mut command = Command::new(&self.runc);
        command.arg("--root").arg(&self.state);
        command
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.runc().args(["kill", &self.name, "KILL"]).output();
        let _ = self.process.wait();
        let _ = self.runc().args(["delete", "--force", &self.name]).output();
    }
}

/// The pod spec's settings as the kubelet would apply them to the OCI runtime spec that umoci
/// made from the image: the container's securityContext over the pod's, args after the image's
/// entrypoint, the env (fieldRefs resolved), and the volume mounts.
fn apply_deployment(spec: &mut Value, pod: &Value, mounts: &[(String, PathBuf)], env: &[String]) {
    let container = &pod["containers"][0];
    let security = |key: &str| {
        let value = &container["securityContext"][key];
        if value.is_null() {
            pod["securityContext"][key].clone()
        } else {
            value.clone()
        }
    };
    assert_eq!(security("runAsNonRoot"), true);
    assert!(
        container.get("command").is_none(),
        "the chart keeps the image's entrypoint"
    );
    let process = &mut spec["process"];
    process["terminal"] = json!(false);
    process["user"] = json!({ "uid": security("runAsUser"), "gid": security("runAsGroup") });
    if let Some(args) = container["args"].as_array() {
        process["args"]
            .as_array_mut()
            .expect("the image's entrypoint")
            .extend(args.iter().cloned());
    }
    process["env"]
        .as_array_mut()
        .expect("the image's env")
        .extend(env.iter().map(|line| json!(line)));
    assert_eq!(
        security("capabilities"),
        json!({ "drop": ["ALL"] }),
        "the chart drops every capability and adds none"
    );
    process["capabilities"] = json!({
        "bounding": [], "effective": [], "inheritable": [], "permitted": [], "ambient": []
    });
    process["noNewPrivileges"] = json!(security("allowPrivilegeEscalation") == false);
    spec["root"]["readonly"] = security("readOnlyRootFilesystem");
    assert_eq!(spec["root"]["readonly"], true);
    // The host's network, so the container reaches the API server and endpoint on 127.0.0.1.
    spec["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .retain(|namespace| namespace["type"] != "network");
    let spec_mounts = spec["mounts"].as_array_mut().expect("mounts");
    for (destination, source) in mounts {
        spec_mounts.push(json!({
            "destination": destination, "type": "bind", "source": source,
            "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]
        }));
    }
}

#[tokio::test]
async fn image_runs_a_flowrun_as_the_charts_deployment_and_stops_on_sigterm() {
    assert_eq!(
        effective_uid(),
        0,
        "this test runs the image with runc, which needs root here (CI runs as root): run \
         hack/test.sh as root"
    );
    let tools = tools();
    let image = build_image(None);
    let world = World::new("image", RUN_FLOWS).await;
    let dir = scratch("run");

    // The chart's Deployment, for this test's namespace, port and endpoint.
    let port = free_port();
    let values = json!({
        "aws": { "region": "us-east-1" },
        "metrics": { "bindAddress": "127.0.0.1", "port": port },
        "controller": { "watchNamespaces": [world.namespace], "pollInitialInterval": "1s" },
        "extraEnv": [
            { "name": "KUBECONFIG", "value": "/var/run/secrets/kubernetes.io/serviceaccount/kubeconfig" },
            { "name": "AWS_ENDPOINT_URL_APPFLOW", "value": world.appflow.endpoint_url() },
            { "name": "AWS_ACCESS_KEY_ID", "value": "AKIDIMAGE" },
            { "name": "AWS_SECRET_ACCESS_KEY", "value": "image-secret" },
            { "name": "AWS_EC2_METADATA_DISABLED", "value": "true" },
        ],
    });
    let objects = chart::render(&world.namespace, &values);
    let deployment = chart::of_kind(&objects, "Deployment")[0];
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let pod_name = "flowrun-operator-image-0";
    let env: Vec<String> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|var| {
            let name = var["name"].as_str().expect("a name");
            let value = match var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => pod_name.to_owned(),
                Some("metadata.namespace") => world.namespace.clone(),
                Some(other) => panic!("no value for fieldRef {other}"),
                None => var["value"].as_str().expect("a value").to_owned(),
            };
            format!("{name}={value}")
        })
        .collect();

    // The credentials where the chart mounts the API token, as the kubelet writes a projected
    // token for a pod whose containers share one runAsUser: owned by it, mode 0600. The local
    // API server takes client certificates, not tokens, so a kubeconfig stands for the token.
    let mount = container["volumeMounts"][0]["mountPath"]
        .as_str()
        .expect("the API token's mount");
    assert_eq!(container["volumeMounts"][0]["readOnly"], true);
    let secrets = dir.join("serviceaccount");
    std::fs::create_dir(&secrets).expect("create the credentials directory");
    let kubeconfig = secrets.join("kubeconfig");
    File::create(&kubeconfig)
        .and_then(|mut file| file.write_all(read(&cluster().operator_kubeconfig).as_bytes()))
        .expect("write the kubeconfig");
    std::fs::set_permissions(&kubeconfig, std::fs::Permissions::from_mode(0o600))
        .expect("chmod the kubeconfig");
    std::os::unix::fs::chown(&kubeconfig, Some(65532), Some(65532)).expect("chown the kubeconfig");

    // The image as a runtime bundle, then the pod's settings on top.
    let bundle = dir.join("bundle");
    run_ok(
        Command::new(tools.join("umoci"))
            .args(["unpack", "--image"])
            .arg(format!(
                "{}:{}",
                image.join("oci").display(),
                env!("CARGO_PKG_VERSION")
            ))
            .arg(&bundle),
    );
    let config_path = bundle.join("config.json");
    let mut spec: Value = serde_json::from_str(&read(&config_path)).expect("config.json");
    assert_eq!(
        spec["process"]["user"],
        json!({ "uid": 65532, "gid": 65532 })
    );
    apply_deployment(&mut spec, pod, &[(mount.to_owned(), secrets.clone())], &env);
    std::fs::write(&config_path, spec.to_string()).expect("write config.json");

    let log_path = dir.join("container.log");
    let log = File::create(&log_path).expect("create the log");
    let state = dir.join("runc");
    let name = format!("flowrun-image-{}", uuid::Uuid::new_v4().simple());
    let process = Command::new(tools.join("runc"))
        .arg("--root")
        .arg(&state)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&name)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("share the log"))
        .stderr(log)
        .spawn()
        .expect("start runc");
    let mut container = Container {
        runc: tools.join("runc"),
        state,
        name,
        process,
    };
    let logs = || read(&log_path);

    let url = format!("http://127.0.0.1:{port}/readyz");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = container.process.try_wait() {
            panic!("the container exited ({status}):\n{}", logs());
        }
        if let Ok(response) = reqwest::get(&url).await
            && response.status().is_success()
        {
            break;
        }
        assert!(Instant::now() < deadline, "not ready:\n{}", logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("ready {:?} after runc run", started.elapsed());

    world.create("image", "image-flow").await;
    world
        .wait_for("image", Duration::from_secs(60), None, |status| {
            status.phase == Some(Phase::Succeeded)
        })
        .await;
    assert_eq!(world.appflow.stats().await.executions("image-flow"), 1);

    // What the kubelet does on a pod's deletion: SIGTERM, then SIGKILL after the grace period.
    let grace = Duration::from_secs(
        pod["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("terminationGracePeriodSeconds"),
    );
    let stopping = Instant::now();
    run_ok(container.runc().args(["kill", &container.name, "TERM"]));
    let status = loop {
        if let Some(status) = container.process.try_wait().expect("poll runc") {
            break status;
        }
        assert!(
            stopping.elapsed() < grace,
            "still running {grace:?} after SIGTERM:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit {status} after SIGTERM:\n{}", logs());
    eprintln!(
        "stopped {:?} after SIGTERM (grace {grace:?})",
        stopping.elapsed()
    );
    let logs = logs();
    assert!(logs.contains("Stopped flowrun-operator"), "{logs}");
    drop(container);
    std::fs::remove_dir_all(&dir).expect("remove the scratch directory");
}
