//! The committed CRD is the one the Rust types generate.

#[test]
fn committed_crd_matches_the_rust_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/flowrun.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = flowrun_api::crd_yaml().expect("CRD serialises");
    assert!(
        committed == generated,
        "crds/flowrun.yaml is out of date with the Rust types; regenerate it with:\n    cargo run --bin crdgen > crds/flowrun.yaml"
    );
}
