//! The Helm chart as the tests see it: rendered by the real Helm engine through
//! `tests/chart/render.py`, in the Python venv that `hack/chart.sh setup` installs.

use std::path::PathBuf;
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

use super::cluster::repo_root;

/// The venv's python: `FLOWRUN_CHART_PYTHON`, or where `hack/chart.sh` puts it.
fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("FLOWRUN_CHART_PYTHON") {
        return PathBuf::from(python);
    }
    let cache = std::env::var_os("FLOWRUN_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(|dir| PathBuf::from(dir).join("flowrun-operator"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/flowrun-operator"))
        })
        .expect("HOME is set");
    cache.join("chart-venv/bin/python")
}

/// The objects the chart renders for a release `flowrun-operator` in `namespace` with `values`
/// (CRDs and NOTES.txt excluded).
pub fn render(namespace: &str, values: &Value) -> Vec<Value> {
    let python = python();
    assert!(
        python.exists(),
        "the chart tools are not installed ({} is missing): run hack/chart.sh setup",
        python.display()
    );
    let output = Command::new(&python)
        .arg(repo_root().join("tests/chart/render.py"))
        .args(["--name", "flowrun-operator", "--namespace", namespace])
        .arg("--values-json")
        .arg(values.to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("failed to run tests/chart/render.py");
    assert!(
        output.status.success(),
        "rendering the chart failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("the chart renders UTF-8");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).expect("the chart renders valid YAML"))
        .filter(|object| !object.is_null())
        .collect()
}

/// The objects of one kind.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|object| object["kind"] == kind)
        .collect()
}
