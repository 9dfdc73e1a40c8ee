//! Prints the FlowRun CustomResourceDefinition as YAML. `crds/flowrun.yaml` holds its output,
//! and a test fails when the two differ: after changing the Rust types, run
//! `cargo run --bin crdgen > crds/flowrun.yaml`.

fn main() -> anyhow::Result<()> {
    print!("{}", flowrun_operator::flowrun::crd_yaml()?);
    Ok(())
}
