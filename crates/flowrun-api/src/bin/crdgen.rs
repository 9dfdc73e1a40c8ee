//! Prints the CustomResourceDefinitions (FlowRun, FlowRunPolicy, FlowRunSchedule) as YAML. `crds/flowrun.yaml` holds its output,
//! and a test fails when the two differ: after changing the Rust types, run
//! `cargo run --bin crdgen > crds/flowrun.yaml`.

fn main() -> Result<(), serde_yaml_ng::Error> {
    print!("{}", flowrun_api::crd_yaml()?);
    Ok(())
}
