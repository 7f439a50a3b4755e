//! The drill interlock (docs/running.md, "The drill interlock") against real systems: a
//! redis-server of the test's own, databases created here on this machine's PostgreSQL, the
//! in-process S3 server, files in temporary directories. In every case a drill must refuse —
//! before any step (exit 2, no run recorded), or at its step when the value only renders at
//! run time (failed, not retried) — and the live target is afterwards what it was, byte for
//! byte. Controls run the same drills against the drill's own targets: a drill that is not
//! refused really writes, so a bypass would show in the live data too.
//!
//! Each test is a table of cases; a failure names every case that failed and why.

mod common;

#[path = "interlock/files.rs"]
mod files;
#[path = "interlock/postgres.rs"]
mod postgres;
#[path = "interlock/redis.rs"]
mod redis;
#[path = "interlock/shipped.rs"]
mod shipped;
#[path = "interlock/stores.rs"]
mod stores;

use std::path::Path;

use common::{Drillbook, Output, run_ids};

/// What the interlock says when it refuses a drill before it starts.
pub const REFUSED: &str = "refusing to start a drill against live targets";

/// Variables set in drillbook's environment for one case.
pub type Env<'a> = Vec<(&'a str, &'a str)>;

/// The failures of a table of cases, each under its case's name, reported together.
#[derive(Default)]
pub struct Cases(Vec<String>);

impl Cases {
    pub fn check(&mut self, case: &str, result: Result<(), String>) {
        if let Err(problem) = result {
            self.0.push(format!("case `{case}`: {problem}"));
        }
    }

    pub fn assert_all_passed(self) {
        assert!(
            self.0.is_empty(),
            "{} case(s) failed:\n\n{}",
            self.0.len(),
            self.0.join("\n\n")
        );
    }
}

/// A refusal before the start: exit 2, the interlock's words with each of `needles` in them,
/// and no run recorded in `dir`.
pub fn refused_at_start(output: &Output, dir: &Path, needles: &[&str]) -> Result<(), String> {
    let mut problems = Vec::new();
    if output.status != 2 {
        problems.push(format!("exit {} instead of 2", output.status));
    }
    for needle in needles {
        if !output.stderr.contains(needle) {
            problems.push(format!("stderr does not say {needle:?}"));
        }
    }
    let runs = run_ids(dir);
    if !runs.is_empty() {
        problems.push(format!("a run was recorded: {runs:?}"));
    }
    explained(problems, output)
}

/// A run that went through: exit 0.
pub fn ran(output: &Output) -> Result<(), String> {
    let problems = if output.status == 0 {
        Vec::new()
    } else {
        vec![format!("exit {} instead of 0", output.status)]
    };
    explained(problems, output)
}

/// `Ok` without problems; otherwise the problems and what drillbook printed.
pub fn explained(problems: Vec<String>, output: &Output) -> Result<(), String> {
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{}\n--- stdout:\n{}\n--- stderr:\n{}",
        problems.join("; "),
        output.stdout.trim_end(),
        output.stderr.trim_end()
    ))
}

/// `Err` naming `what` when `before` and `after` differ.
pub fn unchanged<T: PartialEq + std::fmt::Debug>(
    what: &str,
    before: &T,
    after: &T,
) -> Result<(), String> {
    if before == after {
        Ok(())
    } else {
        Err(format!(
            "{what} changed:\n  before: {before:?}\n  after:  {after:?}"
        ))
    }
}

/// The first error of `results`, or `Ok`.
pub fn all(results: impl IntoIterator<Item = Result<(), String>>) -> Result<(), String> {
    let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

/// Writes `playbook` into a new directory as `p.yaml` and runs `drillbook run p.yaml ARGS`
/// there, set up further by `setup`.
pub fn run_in_new_dir(
    playbook: &str,
    args: &[&str],
    setup: impl FnOnce(Drillbook) -> Drillbook,
) -> (tempfile::TempDir, Output) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("p.yaml"), playbook).expect("playbook");
    let mut all_args = vec!["run", "p.yaml"];
    all_args.extend(args);
    let output = setup(Drillbook::in_dir(dir.path()).args(&all_args)).run();
    (dir, output)
}

/// Fills `@NAME@` placeholders of a playbook template (YAML is full of braces, so no
/// `format!`).
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    values
        .iter()
        .fold(template.to_string(), |text, (name, value)| {
            text.replace(&format!("@{name}@"), value)
        })
}
