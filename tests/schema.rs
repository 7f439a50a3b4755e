//! The committed JSON Schema is what the Rust types generate, and it describes the shipped
//! playbooks (editors use it through the `yaml-language-server` comment).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn schema() -> serde_json::Value {
    let text =
        std::fs::read_to_string(root().join("schemas/playbook.schema.json")).expect("schema file");
    serde_json::from_str(&text).expect("schema is JSON")
}

fn yaml_as_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("playbook");
    serde_saphyr::from_str(&text).expect("playbook is YAML")
}

#[test]
fn committed_schema_matches_the_types() {
    let committed =
        std::fs::read_to_string(root().join("schemas/playbook.schema.json")).expect("schema file");
    let generated = drillbook::schema::playbook_schema_json();
    assert!(
        committed == generated,
        "schemas/playbook.schema.json is stale: run `cargo run -- schema > schemas/playbook.schema.json`"
    );
}

#[test]
fn shipped_playbooks_satisfy_the_schema() {
    let validator = jsonschema::validator_for(&schema()).expect("schema compiles");
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("playbooks")).expect("playbooks/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let instance = yaml_as_json(&path);
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
        checked += 1;
    }
    assert_eq!(checked, 11, "expected the eleven shipped playbooks");
}

#[test]
fn the_schema_refuses_what_the_validator_refuses() {
    let validator = jsonschema::validator_for(&schema()).expect("schema compiles");
    let good = serde_json::json!({
        "version": 1, "name": "t",
        "steps": [{ "id": "a", "kind": "command", "run": ["true"] }]
    });
    assert!(validator.is_valid(&good));
    for bad in [
        serde_json::json!({ "version": 1, "name": "t", "steps": [{ "id": "a", "kind": "command", "run": ["true"], "timout": "5m" }] }),
        serde_json::json!({ "version": 1, "name": "t", "steps": [{ "id": "a", "kind": "comand", "run": ["true"] }] }),
        serde_json::json!({ "version": 1, "name": "t", "steps": [{ "id": "a", "kind": "restore", "store": "/s" }] }),
        serde_json::json!({ "version": 1, "name": "t", "steps": [{ "id": "a", "kind": "manual", "instructions": "x", "timeout": "10min" }] }),
        serde_json::json!({ "version": 1, "name": "t", "objectivs": {}, "steps": [] }),
    ] {
        assert!(!validator.is_valid(&bad), "schema accepted {bad}");
    }
}
