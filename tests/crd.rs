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

/// Every description of the generated CRDs, with where it is.
fn descriptions(value: &serde_json::Value, path: &str, found: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("description", serde_json::Value::String(text)) => {
                        found.push((path.to_owned(), text.clone()));
                    }
                    _ => descriptions(child, &format!("{path}.{key}"), found),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                descriptions(child, &format!("{path}[{index}]"), found);
            }
        }
        _ => {}
    }
}

/// `kubectl explain` shows a description as written: the `///` comments' 100-column line
/// breaks must not reach it, while paragraphs stay apart.
#[test]
fn crd_descriptions_keep_each_paragraph_on_one_line() {
    let yaml = flowrun_api::crd_yaml().expect("CRD serialises");
    let mut found = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&yaml) {
        let crd: serde_json::Value = serde::Deserialize::deserialize(document).expect("CRD parses");
        descriptions(&crd, &crd["metadata"]["name"].to_string(), &mut found);
    }
    assert!(found.len() > 50, "{} descriptions", found.len());
    for (path, text) in &found {
        assert_eq!(
            &flowrun_api::description::join_lines(text),
            text,
            "{path}: a line break inside a paragraph"
        );
    }
    let spec = found
        .iter()
        .find(|(path, _)| {
            path.starts_with("\"flowruns.") && path.ends_with("openAPIV3Schema.properties.spec")
        })
        .map(|(_, text)| text.as_str());
    assert_eq!(
        spec,
        Some(
            "A request to run an Amazon AppFlow flow once.\n\nThe operator calls AppFlow StartFlow \
             with the FlowRun's UID as the idempotency token, so the flow is started at most once \
             per FlowRun, and reports the run in `status`."
        )
    );
}
