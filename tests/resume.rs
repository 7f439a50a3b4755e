//! Crashes and `resume`: completed work is never repeated, work in flight is re-run only when
//! safe or approved, one live run per playbook, a torn journal is not fatal.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::{Drillbook, Running, events, journal, only_run, wait_for};

/// Waits until the run's journal says `step` started and `busy` holds (the step is really
/// doing its work), then SIGKILLs the process.
fn kill_during(dir: &Path, child: &mut Running, step: &str, busy: impl Fn() -> bool) -> String {
    wait_for(Duration::from_secs(20), "the step to start", || {
        common::step_started(dir, Some(step)) && busy()
    });
    child.kill();
    only_run(dir)
}

fn lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("side"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

const THREE_STEPS: &str = r#"version: 1
name: three
steps:
  - { id: one, kind: command, run: [sh, -c, "echo one >> side"] }
  # Slow the first time only, so the re-run after the crash finishes.
  - { id: two, kind: command, run: [sh, -c, "echo two >> side; [ -e slept ] || { touch slept; sleep 60; }"] }
  - { id: three, kind: command, run: [sh, -c, "echo three >> side"] }
"#;

#[test]
fn sigkill_mid_run_then_resume_repeats_nothing_that_completed() {
    let test = Drillbook::new().playbook("p.yaml", THREE_STEPS);
    let dir = test.dir().to_path_buf();
    let mut child = Drillbook::in_dir(&dir).args(&["run", "p.yaml"]).spawn();
    let run = kill_during(&dir, &mut child, "two", || dir.join("slept").exists());
    assert_eq!(lines(&dir), ["one", "two"]);

    // `two` is a command: not known to be safe to repeat, so a run without a terminal stops
    // and asks.
    let output = Drillbook::in_dir(&dir).args(&["resume", &run]).run();
    assert_eq!(output.status, 4, "{}", output.stderr);
    assert!(
        output
            .stderr
            .contains(&format!("drillbook approve {run} two")),
        "{}",
        output.stderr
    );
    let output = Drillbook::in_dir(&dir)
        .args(&["approve", &run, "two", "--as", "carol"])
        .run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    let output = Drillbook::in_dir(&dir).args(&["resume", &run]).run();
    assert_eq!(output.status, 0, "{}", output.stderr);

    assert_eq!(lines(&dir), ["one", "two", "two", "three"]);
    let records = journal(&dir, &run);
    assert_eq!(events(&records, "step_started", Some("one")).len(), 1);
    assert_eq!(events(&records, "step_started", Some("three")).len(), 1);
    let two = events(&records, "step_started", Some("two"));
    assert_eq!(two.len(), 2);
    assert_eq!(two[1]["attempt"], 2);
    let decided = events(&records, "approval_decided", Some("two"));
    assert_eq!(decided[0]["ask"], "rerun");
    assert_eq!(decided[0]["by"], "carol");
}

/// Found by the failover kill suite: a cleanup command killed in flight asks on resume like a
/// main step, and the run waits (exit 4) — it is not reported as succeeded with the cleanup
/// undone.
#[test]
fn a_cleanup_step_in_flight_pauses_the_resumed_run_until_approved() {
    let test = Drillbook::new().playbook(
        "p.yaml",
        r#"version: 1
name: cleanup-kill
steps:
  - { id: one, kind: command, run: [sh, -c, "echo one >> side"] }
cleanup:
  - { id: undo, kind: command, needs: [], run: [sh, -c, "echo undo >> side; [ -e slept ] || { touch slept; sleep 60; }"] }
  - { id: after, kind: command, needs: [undo], run: [sh, -c, "echo after >> side"] }
"#,
    );
    let dir = test.dir().to_path_buf();
    let mut child = Drillbook::in_dir(&dir).args(&["run", "p.yaml"]).spawn();
    let run = kill_during(&dir, &mut child, "undo", || dir.join("slept").exists());
    let output = Drillbook::in_dir(&dir).args(&["resume", &run]).run();
    assert_eq!(
        output.status, 4,
        "the cleanup waits for a decision\n{}",
        output.stderr
    );
    assert!(
        output
            .stderr
            .contains(&format!("drillbook approve {run} undo")),
        "{}",
        output.stderr
    );
    assert_eq!(lines(&dir), ["one", "undo"], "`after` did not run yet");
    let output = Drillbook::in_dir(&dir)
        .args(&["approve", &run, "undo", "--as", "carol"])
        .run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    let output = Drillbook::in_dir(&dir).args(&["resume", &run]).run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    assert_eq!(lines(&dir), ["one", "undo", "undo", "after"]);
}

#[test]
fn an_idempotent_step_in_flight_is_simply_run_again() {
    let test = Drillbook::new().playbook(
        "p.yaml",
        r#"version: 1
name: idem
steps:
  - { id: one, kind: command, run: [sh, -c, "echo one >> side"] }
  - { id: pause, kind: wait, duration: 2s }
  - { id: three, kind: command, run: [sh, -c, "echo three >> side"] }
"#,
    );
    let dir = test.dir().to_path_buf();
    let mut child = Drillbook::in_dir(&dir).args(&["run", "p.yaml"]).spawn();
    let run = kill_during(&dir, &mut child, "pause", || true);
    let output = Drillbook::in_dir(&dir).args(&["resume", &run]).run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    assert_eq!(lines(&dir), ["one", "three"]);
    let records = journal(&dir, &run);
    assert_eq!(events(&records, "step_started", Some("pause")).len(), 2);
    assert_eq!(events(&records, "run_resumed", None).len(), 1);
}

#[test]
fn one_live_run_per_playbook_and_a_dead_holder_is_taken_over() {
    let test = Drillbook::new().playbook(
        "p.yaml",
        "version: 1\nname: locked\nsteps:\n  - { id: pause, kind: wait, duration: 60s }\n",
    );
    let dir = test.dir().to_path_buf();
    let mut first = Drillbook::in_dir(&dir).args(&["run", "p.yaml"]).spawn();
    wait_for(Duration::from_secs(10), "the first run to start", || {
        common::step_started(&dir, None)
    });
    let run = only_run(&dir);
    let second = Drillbook::in_dir(&dir).args(&["run", "p.yaml"]).run();
    assert_eq!(second.status, 2);
    assert_eq!(
        second.stderr,
        format!("error: run {run} is in progress (pid {})\n", first.id())
    );
    let resumed = Drillbook::in_dir(&dir).args(&["resume", &run]).run();
    assert_eq!(
        resumed.stderr,
        format!("error: run {run} is in progress (pid {})\n", first.id())
    );
    assert_eq!(only_run(&dir), run, "the refused run left a directory");

    first.kill();
    let status = Drillbook::in_dir(&dir).args(&["runs"]).run();
    assert!(status.stdout.contains("stopped"), "{}", status.stdout);
    // The lock died with its holder; a shorter playbook lets the resume finish quickly.
    std::fs::write(
        dir.join("p.yaml"),
        "version: 1\nname: locked\nsteps:\n  - { id: pause, kind: wait, duration: 0s }\n",
    )
    .expect("rewrite");
    let refused = Drillbook::in_dir(&dir).args(&["resume", &run]).run();
    assert_eq!(refused.status, 2);
    assert!(
        refused.stderr.contains("changed since run")
            && refused.stderr.contains("--accept-changed-playbook"),
        "{}",
        refused.stderr
    );
    let resumed = Drillbook::in_dir(&dir)
        .args(&["resume", &run, "--accept-changed-playbook"])
        .run();
    assert_eq!(resumed.status, 0, "{}", resumed.stderr);
}

#[test]
fn a_torn_last_line_is_ignored_on_resume_and_by_reports() {
    let test = Drillbook::new().playbook("p.yaml", THREE_STEPS);
    let dir = test.dir().to_path_buf();
    let mut child = Drillbook::in_dir(&dir).args(&["run", "p.yaml"]).spawn();
    let run = kill_during(&dir, &mut child, "two", || dir.join("slept").exists());
    let path = dir.join(".drillbook/runs").join(&run).join("journal.jsonl");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("journal");
    file.write_all(br#"{"seq":99,"at":"2026-11-24T10:00:00Z","event":"step_fini"#)
        .expect("tear");
    drop(file);

    let status = Drillbook::in_dir(&dir).args(&["status", &run]).run();
    assert_eq!(status.status, 0, "{}", status.stderr);
    assert!(status.stdout.contains("two"), "{}", status.stdout);
    let output = Drillbook::in_dir(&dir)
        .args(&["approve", &run, "two", "--as", "dave"])
        .run();
    assert_eq!(output.status, 2);
    assert_eq!(
        output.stderr,
        format!("error: step `two` of run {run} is not waiting for a decision (it is running)\n")
    );
    let output = Drillbook::in_dir(&dir).args(&["resume", &run]).run();
    assert_eq!(output.status, 4, "{}", output.stderr);
    assert_eq!(
        Drillbook::in_dir(&dir)
            .args(&["approve", &run, "two", "--as", "dave"])
            .run()
            .status,
        0
    );
    let output = Drillbook::in_dir(&dir).args(&["resume", &run]).run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    let text = std::fs::read_to_string(&path).expect("journal");
    assert!(!text.contains("step_fini\""), "the torn line was not cut");
    assert!(
        text.lines()
            .all(|line| serde_json::from_str::<serde_json::Value>(line).is_ok())
    );
}
