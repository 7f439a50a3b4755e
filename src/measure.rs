//! A run measured against its objectives: the RTO and RPO it achieved, the margins, the time
//! spent recovering apart from the time spent waiting for people, and the row a run becomes
//! in a playbook's history. Every report format, the runner's exit code, `history` and
//! prediction read these, so they agree.

use jiff::{SignedDuration, Timestamp};

use crate::duration::Duration;
use crate::event::{Mode, Status};
use crate::outcome::Outcome;
use crate::state::{RunState, StepState};
use crate::steps::Kind;

/// One objective against what the run achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measure {
    /// What the playbook promised (`objectives.rto` / `objectives.rpo`).
    pub objective: Option<Duration>,
    /// What the run achieved; `None` when the RTO clock never stopped or the RPO had no
    /// evidence.
    pub achieved: Option<SignedDuration>,
    /// `achieved <= objective`; `None` when either is missing.
    pub met: Option<bool>,
}

impl Measure {
    fn new(objective: Option<Duration>, achieved: Option<SignedDuration>) -> Measure {
        let met = match (objective, achieved) {
            (Some(objective), Some(achieved)) => Some(achieved <= objective.signed()),
            _ => None,
        };
        Measure {
            objective,
            achieved,
            met,
        }
    }

    /// Objective minus achieved: positive is time to spare, negative is how far over.
    pub(crate) fn margin(&self) -> Option<SignedDuration> {
        Some(self.objective?.signed() - self.achieved?)
    }

    /// One word for the verdict. `missing` is what to say when nothing was achieved: the RTO
    /// is "not reached", the RPO "not measured".
    pub(crate) fn verdict(&self, missing: &'static str) -> &'static str {
        match (self.met, self.achieved) {
            (Some(true), _) => "met",
            (Some(false), _) => "MISSED",
            (None, Some(_)) => "no objective",
            (None, None) => missing,
        }
    }
}

/// The recovery objectives of a run, measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Objectives {
    pub rto: Measure,
    pub rpo: Measure,
}

/// Measures a run against its objectives.
///
/// RTO: from the clock start (`--declared-at`, else the run's start) to the end of the last
/// attempt of the `clock: stop` step, once that step succeeded. A playbook without such a step
/// measures to the end of the last main (non-cleanup) step, but only once the run succeeded:
/// it finished with exit 0 or 3, or — so that the runner can call this before it records its
/// exit code — it has not finished and every main step is done without failure.
///
/// RPO: the clock start minus the `taken_at` output of the succeeded `assess` step whose
/// `backup` a succeeded `restore` brought back (the data actually recovered: a playbook that
/// assesses both the WAL archive and the dumps, and restores the dump, lost what the dump
/// lacks); without one, of the first succeeded `assess` step in plan order. A backup newer than
/// the clock start counts as zero: a recovery cannot lose a negative amount of data.
pub fn objectives(state: &RunState) -> Objectives {
    Objectives {
        rto: Measure::new(
            state.rto,
            rto_end(state).map(|end| elapsed(state.clock_start(), end)),
        ),
        rpo: Measure::new(state.rpo, rpo_achieved(state)),
    }
}

fn rto_end(state: &RunState) -> Option<Timestamp> {
    let planned = state.planned_steps();
    if let Some((_, stop)) = planned.iter().find(|(plan, _)| plan.clock_stop) {
        if stop.status != Status::Succeeded {
            return None;
        }
        return stop.attempts.last().and_then(|a| a.finished_at);
    }
    let main: Vec<&StepState> = planned
        .iter()
        .filter(|(plan, _)| !plan.cleanup)
        .map(|(_, step)| *step)
        .collect();
    let succeeded = match state.finished {
        Some((_, code)) => code == 0 || code == 3,
        None => main.iter().all(|step| ended_well(step)),
    };
    if !succeeded {
        return None;
    }
    main.iter()
        .filter_map(|step| step.attempts.last().and_then(|a| a.finished_at))
        .max()
}

/// Why a run ended that did not succeed though no step failed (aborted, interrupted, an
/// objective missed), so that "nothing failed" is never all a report says: "Aborted by erin
/// before `restore`: wrong region." `None` when a step failed (that is the why) or the run
/// succeeded, waits, or has not finished.
pub fn why_stopped(state: &RunState) -> Option<String> {
    if let Some(abort) = &state.aborted {
        let reason = abort
            .reason
            .as_deref()
            .map(|reason| format!(": {reason}"))
            .unwrap_or_default();
        return Some(format!(
            "Aborted by {} before `{}`{reason}.",
            abort.by, abort.step
        ));
    }
    let failed = state.steps.iter().any(|step| {
        matches!(
            step.status,
            Status::Failed | Status::TimedOut | Status::Rejected | Status::Cancelled
        )
    });
    let outcome = state.outcome()?;
    if failed || matches!(outcome, Outcome::Succeeded | Outcome::WaitingApproval) {
        return None;
    }
    let mut why = format!(
        "No step failed, but the run ended {}",
        state.outcome_name().replace('_', " ")
    );
    if let Some((_, code)) = state.finished {
        why.push_str(&format!(" (exit {code})"));
    }
    let reasons: Vec<&str> = state
        .interruptions
        .iter()
        .map(|(_, reason)| reason.as_str())
        .collect();
    if !reasons.is_empty() {
        why.push_str(&format!(": {}", reasons.join("; ")));
    }
    why.push('.');
    Some(why)
}

/// Done without failing: succeeded, or skipped for a reason of its own (a `when`, a live-only
/// step in a drill) rather than because something upstream went wrong.
fn ended_well(step: &StepState) -> bool {
    step.status == Status::Succeeded || (step.status == Status::Skipped && !step.blocked)
}

fn rpo_achieved(state: &RunState) -> Option<SignedDuration> {
    let succeeded = |kind: fn(Kind) -> bool| {
        state
            .planned_steps()
            .into_iter()
            .map(|(_, step)| step)
            .filter(move |step| step.kind.is_some_and(kind) && step.status == Status::Succeeded)
    };
    let backup = |step: &StepState| step.outputs.get("backup")?.as_str().map(str::to_owned);
    let restored: Vec<String> = succeeded(|kind| kind == Kind::Restore)
        .filter_map(backup)
        .collect();
    let assess = succeeded(Kind::rpo_evidence)
        .find(|step| backup(step).is_some_and(|key| restored.contains(&key)))
        .or_else(|| succeeded(Kind::rpo_evidence).next())?;
    let taken_at: Timestamp = assess.outputs.get("taken_at")?.as_str()?.parse().ok()?;
    Some(elapsed(taken_at, state.clock_start()))
}

/// The time from `start` to `end`, never negative: a journal's records can run backwards
/// (the system clock stepped back, or `DRILLBOOK_CLOCK_OFFSET` changed between a run and its
/// resume, or a journal from before `--declared-at` in the future was refused), and no
/// report may say a recovery took less than no time.
pub(crate) fn elapsed(start: Timestamp, end: Timestamp) -> SignedDuration {
    end.duration_since(start).max(SignedDuration::ZERO)
}

/// When the run ended, or the last thing it recorded.
pub(crate) fn run_end(state: &RunState) -> Timestamp {
    state.finished.map_or(state.last_at, |(at, _)| at)
}

/// From the run's start to its end (or its last record).
pub(crate) fn total_duration(state: &RunState) -> SignedDuration {
    elapsed(state.started_at, run_end(state))
}

/// The time recovery took with human waits taken out: the RTO achieved (or, when the clock
/// never stopped, the whole run) minus the waits that ended inside that window. A wait that
/// ended after the window (an approval for cleanup after recovery) is not subtracted, so the
/// result never goes below zero on account of time that was not in it.
pub(crate) fn recovery_time(state: &RunState, objectives: &Objectives) -> SignedDuration {
    let (window, end) = match objectives.rto.achieved {
        Some(achieved) => (achieved, state.clock_start() + achieved),
        None => (total_duration(state), run_end(state)),
    };
    let waited = state
        .steps
        .iter()
        .filter(|step| step.human_wait_ended.is_some_and(|at| at <= end))
        .fold(SignedDuration::ZERO, |sum, step| sum + step.human_wait);
    (window - waited).max(SignedDuration::ZERO)
}

/// From the step's first attempt start to its last attempt end, when both are known.
pub(crate) fn step_duration(step: &StepState) -> Option<SignedDuration> {
    let (start, end) = step.span()?;
    Some(elapsed(start, end?))
}

/// One finished run as the history shows it.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub run_id: String,
    pub started_at: Timestamp,
    pub mode: Mode,
    /// [`RunState::outcome_name`]: `succeeded`, `objective_missed` or `failed`.
    pub verdict: &'static str,
    pub exit_code: u8,
    pub rto: Measure,
    pub rpo: Measure,
    pub playbook_hash: String,
}

impl Row {
    pub(crate) fn of(state: &RunState) -> Row {
        let measured = objectives(state);
        Row {
            run_id: state.run_id.clone(),
            started_at: state.started_at,
            mode: state.mode,
            verdict: state.outcome_name(),
            exit_code: state.finished.map_or(0, |(_, code)| code),
            rto: measured.rto,
            rpo: measured.rpo,
            playbook_hash: state.playbook_hash.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::fixtures::{self, Journal, at, failed_run, planned};

    fn minutes(n: i64) -> SignedDuration {
        SignedDuration::from_mins(n)
    }

    /// assess, then promote (clock stop) succeeding ten minutes after the start.
    fn recovered(rto: &str, declared_at: Option<Timestamp>) -> RunState {
        let mut promote = planned("promote", "promote");
        promote.clock_stop = true;
        let mut tidy = planned("tidy", "command");
        tidy.cleanup = true;
        let mut journal = Journal::start(
            vec![planned("assess", "assess"), promote, tidy],
            Some(rto),
            None,
            declared_at,
        );
        journal
            .ok("assess", 0, 60)
            .ok("promote", 60, 600)
            .ok("tidy", 600, 900)
            .finish(900, 0);
        journal.state()
    }

    #[test]
    fn rto_is_met_up_to_the_clock_stop_step() {
        let rto = objectives(&recovered("30m", None)).rto;
        assert_eq!(rto.achieved, Some(minutes(10)));
        assert_eq!(rto.met, Some(true));
        assert_eq!(rto.margin(), Some(minutes(20)));
        assert_eq!(rto.verdict("not reached"), "met");
    }

    #[test]
    fn rto_is_missed_when_the_clock_stops_late() {
        let rto = objectives(&recovered("5m", None)).rto;
        assert_eq!(rto.achieved, Some(minutes(10)));
        assert_eq!(rto.met, Some(false));
        assert_eq!(rto.margin(), Some(minutes(-5)));
        assert_eq!(rto.verdict("not reached"), "MISSED");
    }

    #[test]
    fn rto_counts_from_the_declared_incident_time() {
        let rto = objectives(&recovered("30m", Some(at(-1_500)))).rto;
        assert_eq!(rto.achieved, Some(minutes(35)));
        assert_eq!(rto.met, Some(false));
    }

    /// A journal whose declared time is after the clock stop (written before a future
    /// `--declared-at` was refused) measures zero, not a negative RTO.
    #[test]
    fn no_achieved_duration_is_negative() {
        let state = recovered("30m", Some(at(900)));
        let measured = objectives(&state);
        assert_eq!(measured.rto.achieved, Some(SignedDuration::ZERO));
        assert_eq!(measured.rto.met, Some(true));
        assert_eq!(recovery_time(&state, &measured), SignedDuration::ZERO);
        assert_eq!(elapsed(at(60), at(0)), SignedDuration::ZERO);
        assert_eq!(elapsed(at(0), at(60)), SignedDuration::from_secs(60));
    }

    #[test]
    fn rto_is_not_reached_when_the_clock_stop_step_did_not_succeed() {
        let measured = objectives(&failed_run());
        assert_eq!(measured.rto.objective, Duration::parse("30m").ok());
        assert_eq!(measured.rto.achieved, None);
        assert_eq!(measured.rto.met, None);
        assert_eq!(measured.rto.verdict("not reached"), "not reached");
    }

    #[test]
    fn without_a_clock_stop_step_rto_runs_to_the_last_main_step_of_a_successful_run() {
        let mut tidy = planned("tidy", "command");
        tidy.cleanup = true;
        let plan = vec![planned("a", "command"), planned("b", "command"), tidy];
        let mut journal = Journal::start(plan.clone(), Some("30m"), None, None);
        journal
            .ok("a", 0, 60)
            .ok("b", 60, 120)
            .ok("tidy", 120, 3_000);
        // Not finished yet, all main steps fine: the runner can decide its exit code.
        assert_eq!(objectives(&journal.state()).rto.achieved, Some(minutes(2)));
        journal.finish(3_000, 0);
        let rto = objectives(&journal.state()).rto;
        assert_eq!(rto.achieved, Some(minutes(2)));
        assert_eq!(rto.met, Some(true));

        let mut failed = Journal::start(plan, Some("30m"), None, None);
        failed
            .ok("a", 0, 60)
            .attempt(
                "b",
                1,
                60,
                120,
                Status::Failed,
                Some("no"),
                BTreeMap::new(),
                vec![],
            )
            .ok("tidy", 120, 130);
        assert_eq!(objectives(&failed.state()).rto.achieved, None);
        failed.finish(130, 1);
        assert_eq!(objectives(&failed.state()).rto.achieved, None);
    }

    #[test]
    fn rpo_is_the_age_of_the_assessed_backup_at_the_clock_start() {
        let rpo = objectives(&failed_run()).rpo;
        assert_eq!(rpo.achieved, Some(minutes(25)));
        assert_eq!(rpo.met, Some(true));
        assert_eq!(rpo.margin(), Some(minutes(35)));

        let unmeasured = objectives(&recovered("30m", None)).rpo;
        assert_eq!(unmeasured.achieved, None);
        assert_eq!(unmeasured.verdict("not measured"), "not measured");
    }

    #[test]
    fn rpo_is_missed_by_an_old_backup() {
        let plan = vec![planned("assess", "assess")];
        let mut journal = Journal::start(plan, None, Some("1h"), None);
        let old = Timestamp::from_second(fixtures::BASE - 7_200).expect("timestamp");
        journal.attempt(
            "assess",
            1,
            0,
            5,
            Status::Succeeded,
            None,
            BTreeMap::from([("taken_at".into(), old.to_string().into())]),
            vec![],
        );
        let rpo = objectives(&journal.state()).rpo;
        assert_eq!(rpo.achieved, Some(minutes(120)));
        assert_eq!(rpo.met, Some(false));
    }

    #[test]
    fn rpo_is_the_age_of_what_the_restore_brought_back_when_two_assessments_disagree() {
        let plan = vec![
            planned("archive", "assess"),
            planned("dumps", "assess"),
            planned("restore", "restore"),
        ];
        let at = |ago: i64| Timestamp::from_second(fixtures::BASE - ago).expect("timestamp");
        let outputs = |pairs: &[(&str, String)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone().into()))
                .collect::<BTreeMap<_, _>>()
        };
        let run = |restored: Option<&str>| {
            let mut journal = Journal::start(plan.clone(), None, Some("1h"), None);
            journal.attempt(
                "archive",
                1,
                0,
                5,
                Status::Succeeded,
                None,
                outputs(&[
                    ("backup", "base/a.tar.zst".into()),
                    ("taken_at", at(300).to_string()),
                ]),
                vec![],
            );
            journal.attempt(
                "dumps",
                1,
                5,
                10,
                Status::Succeeded,
                None,
                outputs(&[
                    ("backup", "db/b.dump".into()),
                    ("taken_at", at(7_200).to_string()),
                ]),
                vec![],
            );
            if let Some(key) = restored {
                journal.attempt(
                    "restore",
                    1,
                    10,
                    20,
                    Status::Succeeded,
                    None,
                    outputs(&[("backup", key.into())]),
                    vec![],
                );
            }
            objectives(&journal.state()).rpo.achieved
        };
        // The dump was restored: the archive's 5 minutes were not what this recovery got.
        assert_eq!(run(Some("db/b.dump")), Some(minutes(120)));
        assert_eq!(run(Some("base/a.tar.zst")), Some(minutes(5)));
        // Nothing restored (a failover, an assessment alone): the first assessment speaks.
        assert_eq!(run(None), Some(minutes(5)));
    }

    #[test]
    fn recovery_time_leaves_out_human_waits() {
        let state = failed_run();
        let measured = objectives(&state);
        assert_eq!(state.human_wait(), minutes(2));
        // The RTO was not reached, so the window is the whole run: 204 s minus the 120 s wait.
        assert_eq!(
            recovery_time(&state, &measured),
            SignedDuration::from_secs(84)
        );
    }
}
