//! `fail_fast: false`: a failure stops only what needs the failed step; independent steps
//! still start and give their verdict, and the run still ends failed.

mod common;

use std::time::Duration;

use common::Drillbook;

fn run(fail_fast: &str) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    // `broken` fails at once, while `slow` (independent) has not finished; `after_slow` is
    // ready only after the failure; `after_broken` needs the failed step.
    let playbook = format!(
        "version: 1\nname: branches\n{fail_fast}steps:\n  - id: broken\n    kind: command\n    needs: []\n    run: [\"false\"]\n  - id: slow\n    kind: wait\n    needs: []\n    duration: 1s\n  - id: after_slow\n    kind: command\n    needs: [slow]\n    run: [\"true\"]\n  - id: after_broken\n    kind: command\n    needs: [broken]\n    run: [\"true\"]\n"
    );
    std::fs::write(dir.path().join("p.yaml"), playbook).unwrap();
    Drillbook::in_dir(dir.path())
        .args(&["run", "p.yaml"])
        .deadline(Duration::from_secs(60))
        .expect_status(1)
        .run();
    let run = common::only_run(dir.path());
    let mut last = std::collections::BTreeMap::new();
    for record in common::journal(dir.path(), &run) {
        let status = match record["event"].as_str() {
            Some("step_finished") => record["status"].as_str().unwrap_or_default().to_owned(),
            Some("step_skipped") => "skipped".to_owned(),
            _ => continue,
        };
        last.insert(record["step"].as_str().unwrap().to_owned(), status);
    }
    last.into_iter().collect()
}

#[test]
fn without_fail_fast_an_independent_branch_still_runs_after_a_failure() {
    let statuses = run("fail_fast: false\n");
    let of = |id: &str| {
        statuses
            .iter()
            .find(|(s, _)| s == id)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(of("broken"), Some("failed"), "{statuses:?}");
    assert_eq!(of("slow"), Some("succeeded"), "{statuses:?}");
    assert_eq!(of("after_slow"), Some("succeeded"), "{statuses:?}");
    assert_eq!(of("after_broken"), Some("skipped"), "{statuses:?}");
}

#[test]
fn by_default_a_failure_starts_nothing_new() {
    let statuses = run("");
    let of = |id: &str| {
        statuses
            .iter()
            .find(|(s, _)| s == id)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(of("broken"), Some("failed"), "{statuses:?}");
    assert_eq!(of("slow"), Some("succeeded"), "{statuses:?}");
    assert_eq!(of("after_slow"), Some("skipped"), "{statuses:?}");
}
