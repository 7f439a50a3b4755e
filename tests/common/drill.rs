//! Running the shipped playbooks (and a test's own) to completion, and reading their reports.

use std::path::Path;
use std::time::Duration;

use super::{Output, run_binary_with};

/// The path of a playbook shipped in `playbooks/`.
pub fn shipped(name: &str) -> String {
    format!("{}/playbooks/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs drillbook in `dir` with `args` and `env`, allowing `minutes` for real work.
pub fn drill(dir: &Path, args: &[&str], env: &[(String, String)], minutes: u64) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let output = run_binary_with(dir, &args, env, Duration::from_secs(60 * minutes));
    assert!(!output.stderr.contains("panicked"), "{}", output.stderr);
    output
}

/// `(name, value)` pairs as the environment `drill` takes.
pub fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn json_report(dir: &Path, run: &str) -> serde_json::Value {
    let output = drill(dir, &["report", run, "--format", "json"], &[], 1);
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
