//! The shipped playbooks, and reading the reports of runs of them (and of a test's own).

use std::path::Path;

use super::{Drillbook, minutes};

/// The path of a playbook shipped in `playbooks/`.
pub fn shipped(name: &str) -> String {
    format!("{}/playbooks/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub fn json_report(dir: &Path, run: &str) -> serde_json::Value {
    let output = Drillbook::in_dir(dir)
        .args(&["report", run, "--format", "json"])
        .deadline(minutes(1))
        .run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    serde_json::from_str(&output.stdout).expect("JSON report")
}

pub fn step<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id} in {report}"))
}

/// In a JSON report: how old the data `step` assessed (`outputs.taken_at`) was when the RTO
/// clock started, in seconds; and the RPO the report gives.
pub fn assessed_age(report: &serde_json::Value, id: &str) -> f64 {
    let at = |value: &serde_json::Value| {
        value
            .as_str()
            .unwrap_or_else(|| panic!("not a time: {value}"))
            .parse::<jiff::Timestamp>()
            .expect("a timestamp")
    };
    at(&report["clock_started_at"])
        .duration_since(at(&step(report, id)["outputs"]["taken_at"]))
        .as_secs_f64()
}

pub fn reported_rpo(report: &serde_json::Value) -> f64 {
    report["objectives"]["rpo"]["achieved_seconds"]
        .as_f64()
        .expect("an achieved RPO")
}

/// The runs of `playbook` in `dir` (run ids started in the same second do not sort by time).
pub fn runs_of(dir: &Path, playbook: &str) -> Vec<String> {
    super::run_ids(dir)
        .into_iter()
        .filter(|id| super::journal(dir, id)[0]["playbook"] == playbook)
        .collect()
}

/// The id of the only run of `playbook` in `dir`.
pub fn run_of(dir: &Path, playbook: &str) -> String {
    let mut runs = runs_of(dir, playbook);
    assert_eq!(runs.len(), 1, "runs of {playbook}: {runs:?}");
    runs.pop().expect("a run")
}

/// A value of the kind the secret `name` holds, guessed from its name, on a host of its own
/// that does not resolve (`<name>.invalid`): a Redis URL, an HTTPS webhook, a token, else a
/// PostgreSQL URL.
pub fn secret_value(name: &str) -> String {
    let host = format!("{}.invalid", name.to_lowercase().replace('_', "-"));
    if name.contains("REDIS") {
        format!("redis://{host}:6379/0")
    } else if name.contains("WEBHOOK") {
        format!("https://{host}/hook")
    } else if name.contains("TOKEN") {
        "t0ken-for-a-test".to_string()
    } else {
        format!("postgres://dr@{host}:5432/app")
    }
}
