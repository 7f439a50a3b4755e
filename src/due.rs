//! Which drills are due: a playbook is proven only by a run that passed, recently, of the
//! playbook as it is now. One that never passed, passed too long ago, or was edited since its
//! last pass (a changed step is an untested step) is due again.

use std::fmt::Write as _;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::duration::Duration;
use crate::state::RunState;

/// The cadence of a playbook that declares none, when none is given.
pub const DEFAULT_EVERY: &str = "92d";

/// A playbook to check, with its file as it is now.
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    pub name: String,
    pub file: String,
    /// The file's hash (`loader::Source::hash`, as runs record it), or why it cannot be read.
    pub hash: Result<String, String>,
    /// Its own cadence (`schedule: { every: … }`), when it declares one.
    pub every: Option<Duration>,
}

impl Candidate {
    /// The playbook in `file` as it is now.
    pub(crate) fn of_file(file: &std::path::Path) -> Result<Candidate, crate::validate::Invalid> {
        let (source, playbook) = crate::validate::load(file)?;
        Ok(Candidate {
            name: playbook.name,
            file: file.display().to_string(),
            hash: Ok(source.hash()),
            every: playbook.every,
        })
    }

    /// The cadence it is judged by: the one `given` (`--every`), else its own, else 92 days.
    pub(crate) fn cadence(&self, given: Option<Duration>) -> Duration {
        given
            .or(self.every)
            .unwrap_or_else(|| Duration::parse(DEFAULT_EVERY).expect("the default cadence parses"))
    }
}

/// The answer for one playbook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub name: String,
    pub file: String,
    pub due: bool,
    pub reason: String,
    /// The newest passing run: its id and start.
    pub last_passed: Option<(String, Timestamp)>,
    /// The cadence it was judged by.
    pub every: Duration,
}

/// Every playbook with runs (`runs` newest first), at the file its newest run recorded, by
/// name.
pub(crate) fn known(runs: &[RunState]) -> Vec<Candidate> {
    let mut newest: Vec<&RunState> = Vec::new();
    for run in runs {
        if !newest.iter().any(|seen| seen.playbook == run.playbook) {
            newest.push(run);
        }
    }
    newest.sort_by(|a, b| a.playbook.cmp(&b.playbook));
    newest
        .into_iter()
        .map(|run| {
            let path = std::path::Path::new(&run.file);
            // A file that no longer validates still has a hash: it changed since it passed.
            Candidate::of_file(path).unwrap_or_else(|_| Candidate {
                name: run.playbook.clone(),
                file: run.file.clone(),
                hash: crate::loader::read(path)
                    .map(|source| source.hash())
                    .map_err(|error| error.message.clone()),
                every: None,
            })
        })
        .collect()
}

/// The newest run of `name` that passed: exit 0, not a dry run, drill or incident alike.
fn last_pass<'a>(runs: &'a [RunState], name: &str) -> Option<&'a RunState> {
    runs.iter()
        .filter(|run| run.playbook == name && !run.dry_run)
        .filter(|run| run.finished.is_some_and(|(_, code)| code == 0))
        .max_by(|a, b| {
            a.started_at
                .cmp(&b.started_at)
                .then(a.run_id.cmp(&b.run_id))
        })
}

pub(crate) fn check(
    candidate: &Candidate,
    runs: &[RunState],
    every: Duration,
    now: Timestamp,
) -> Verdict {
    let passed = last_pass(runs, &candidate.name);
    let verdict = |due: bool, reason: String| Verdict {
        name: candidate.name.clone(),
        file: candidate.file.clone(),
        due,
        reason,
        last_passed: passed.map(|run| (run.run_id.clone(), run.started_at)),
        every,
    };
    let Some(passed) = passed else {
        return match &candidate.hash {
            Ok(_) => verdict(true, "never passed".into()),
            Err(why) => verdict(true, format!("never passed, and {why}")),
        };
    };
    let age = now.duration_since(passed.started_at);
    let when = format!(
        "{}, {}",
        passed.started_at.strftime("%Y-%m-%d"),
        days_ago(age)
    );
    match &candidate.hash {
        Err(why) => verdict(
            true,
            format!("{why}; cannot tell whether it changed since it last passed on {when}"),
        ),
        Ok(hash) if *hash != passed.playbook_hash => verdict(
            true,
            format!(
                "changed since it last passed on {when} (run {})",
                passed.run_id
            ),
        ),
        Ok(_) if age > every.signed() => {
            verdict(true, format!("last passed {when} (every {every})"))
        }
        Ok(_) => verdict(false, format!("passed {when} (run {})", passed.run_id)),
    }
}

fn days_ago(age: SignedDuration) -> String {
    match age.as_hours().div_euclid(24) {
        0 => "today".into(),
        1 => "1 day ago".into(),
        days => format!("{days} days ago"),
    }
}

/// One line per playbook that is due, or "nothing due".
pub(crate) fn render_text(verdicts: &[Verdict]) -> String {
    let mut out = String::new();
    for verdict in verdicts.iter().filter(|v| v.due) {
        let _ = writeln!(out, "{}: {}", verdict.name, verdict.reason);
    }
    if out.is_empty() {
        out.push_str("nothing due\n");
    }
    out
}

#[derive(Serialize)]
struct JsonDue<'a> {
    every: String,
    due: bool,
    playbooks: Vec<JsonPlaybook<'a>>,
}

#[derive(Serialize)]
struct JsonPlaybook<'a> {
    name: &'a str,
    file: &'a str,
    /// The cadence it was judged by (its own `schedule`, or `--every`).
    every: String,
    due: bool,
    reason: &'a str,
    last_passed_run: Option<&'a str>,
    last_passed_at: Option<String>,
}

/// Every playbook checked, due or not, for schedulers and dashboards.
pub(crate) fn render_json(verdicts: &[Verdict], every: Duration) -> String {
    let report = JsonDue {
        every: every.to_string(),
        due: verdicts.iter().any(|v| v.due),
        playbooks: verdicts
            .iter()
            .map(|v| JsonPlaybook {
                name: &v.name,
                file: &v.file,
                every: v.every.to_string(),
                due: v.due,
                reason: &v.reason,
                last_passed_run: v.last_passed.as_ref().map(|(id, _)| id.as_str()),
                last_passed_at: v.last_passed.as_ref().map(|(_, at)| at.to_string()),
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&report).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{BASE, Journal};

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn candidate(hash: Result<&str, &str>) -> Candidate {
        Candidate {
            name: "database-restore".into(),
            file: "playbooks/database-restore.yaml".into(),
            hash: hash.map(str::to_owned).map_err(str::to_owned),
            every: None,
        }
    }

    fn finished(code: u8) -> RunState {
        let mut journal = Journal::start(vec![], None, None, None);
        journal.finish(10, code);
        journal.state()
    }

    fn days(n: i64) -> Timestamp {
        Timestamp::from_second(BASE + n * 86_400).expect("timestamp")
    }

    fn every(text: &str) -> Duration {
        Duration::parse(text).expect("duration")
    }

    #[test]
    fn a_recent_pass_of_the_same_playbook_is_not_due() {
        let verdict = check(&candidate(Ok(HASH)), &[finished(0)], every("92d"), days(3));
        assert!(!verdict.due, "{verdict:?}");
        assert_eq!(
            verdict.reason,
            "passed 2027-01-15, 3 days ago (run 0193-r1)"
        );
        assert_eq!(render_text(&[verdict]), "nothing due\n");
    }

    #[test]
    fn an_old_pass_is_due() {
        let verdict = check(
            &candidate(Ok(HASH)),
            &[finished(0)],
            every("92d"),
            days(115),
        );
        assert!(verdict.due);
        assert_eq!(
            verdict.reason,
            "last passed 2027-01-15, 115 days ago (every 92d)"
        );
    }

    #[test]
    fn a_changed_playbook_counts_as_not_passed() {
        let verdict = check(
            &candidate(Ok("0000")),
            &[finished(0)],
            every("92d"),
            days(1),
        );
        assert!(verdict.due);
        assert_eq!(
            verdict.reason,
            "changed since it last passed on 2027-01-15, 1 day ago (run 0193-r1)"
        );
    }

    #[test]
    fn failures_and_dry_runs_are_not_passes() {
        let mut dry = finished(0);
        dry.dry_run = true;
        let runs = [finished(1), finished(3), dry];
        let verdict = check(&candidate(Ok(HASH)), &runs, every("92d"), days(1));
        assert!(verdict.due);
        assert_eq!(verdict.reason, "never passed");
        assert_eq!(verdict.last_passed, None);
        assert_eq!(render_text(&[verdict]), "database-restore: never passed\n");
    }

    #[test]
    fn a_missing_file_is_reported() {
        let missing = candidate(Err("cannot read `x.yaml`: not found"));
        let verdict = check(&missing, &[finished(0)], every("92d"), days(0));
        assert!(verdict.due);
        assert_eq!(
            verdict.reason,
            "cannot read `x.yaml`: not found; cannot tell whether it changed since it last passed on 2027-01-15, today"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render_json(&[verdict], every("92d"))).expect("json");
        assert_eq!(json["due"], true);
        assert_eq!(json["playbooks"][0]["last_passed_run"], "0193-r1");
    }
}
