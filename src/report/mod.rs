//! Reports: what a run did, against its objectives, in five formats. Every report is built
//! from a [`RunState`] alone (itself folded from the journal), so a crashed, resumed, waiting
//! or finished run reports the same way, and nothing that is not in the journal (where secrets
//! are already masked) can leak into a report.
//!
//! The judgement calls — the RTO/RPO arithmetic, the outcome word, the human-wait split and the
//! compact duration form — live in this file so that every format, the runner's exit code and
//! the terminal UI agree on them.

use jiff::{SignedDuration, Timestamp};

use crate::duration::Duration;
use crate::event::{Ask, Mode, PlannedStep, Status};
use crate::state::{Decision, RunState, StepState};

mod communication;
mod html;
mod json;
mod junit;
mod markdown;
mod rto_history;
mod text;

/// The report formats `drillbook report --format` offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// The terminal summary printed at the end of every run.
    Text,
    /// A post-mortem skeleton.
    Markdown,
    /// Stable, documented field names (docs/reports.md), for tools and trend tracking.
    Json,
    /// One testcase per step, so CI shows drills like tests.
    Junit,
    /// One self-contained file with an SVG timeline; no JavaScript, no network.
    Html,
}

/// Renders a report of `state` in `format`.
pub fn render(state: &RunState, format: Format) -> String {
    match format {
        Format::Text => text::render(state),
        Format::Markdown => markdown::render(state),
        Format::Json => json::render(state),
        Format::Junit => junit::render(state),
        Format::Html => html::render(state),
    }
}

/// The HTML report with the RTO of earlier runs of the same playbook beside this one's
/// (`history`: the playbook's rows from [`crate::history`]). The other formats are about the run
/// alone.
pub(crate) fn render_html(state: &RunState, history: &[crate::history::Row]) -> String {
    html::render_with_history(state, history)
}

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
            (Some(objective), Some(achieved)) => Some(achieved <= signed(objective)),
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
        Some(signed(self.objective?) - self.achieved?)
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
/// RPO: the clock start minus the `taken_at` output of the first succeeded `assess` step, in
/// plan order. A backup newer than the clock start counts as zero: a recovery cannot lose a
/// negative amount of data.
pub fn objectives(state: &RunState) -> Objectives {
    Objectives {
        rto: Measure::new(
            state.rto,
            rto_end(state).map(|end| end - state.clock_start()),
        ),
        rpo: Measure::new(state.rpo, rpo_achieved(state)),
    }
}

fn rto_end(state: &RunState) -> Option<Timestamp> {
    let planned = planned_steps(state);
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

/// Done without failing: succeeded, or skipped for a reason of its own (a `when`, a live-only
/// step in a drill) rather than because something upstream went wrong.
fn ended_well(step: &StepState) -> bool {
    step.status == Status::Succeeded || (step.status == Status::Skipped && !step.blocked)
}

fn rpo_achieved(state: &RunState) -> Option<SignedDuration> {
    let assess = planned_steps(state)
        .into_iter()
        .find(|(plan, step)| plan.kind == "assess" && step.status == Status::Succeeded)?
        .1;
    let taken_at: Timestamp = assess.outputs.get("taken_at")?.as_str()?.parse().ok()?;
    Some(
        state
            .clock_start()
            .duration_since(taken_at)
            .max(SignedDuration::ZERO),
    )
}

/// One word for how the run ended, from its recorded exit code. An exit code the engine does
/// not document (it records 0, 1, 3, 4 and 130) reads as "failed" rather than success.
pub fn outcome(state: &RunState) -> &'static str {
    match state.finished {
        None => "unfinished",
        Some((_, 0)) => "succeeded",
        Some((_, 3)) => "objective_missed",
        Some((_, 4)) => "waiting_approval",
        Some((_, 130)) => "interrupted",
        Some(_) => "failed",
    }
}

/// The compact form used in every report and in the progress UI: `850ms`, `12.3s`, `4m05s`,
/// `1h02m`. Precision drops as durations grow because nobody reading a recovery report needs
/// the seconds of a two-hour run; digits are truncated, never rounded up, so `59.96s` does not
/// read as a minute.
/// Rows as left-aligned columns two spaces apart, each line starting with `indent` (trailing
/// spaces trimmed): the text tables of `runs` and `history`.
pub fn columns<const N: usize>(rows: &[[String; N]], indent: &str) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(indent);
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub fn format_duration(d: SignedDuration) -> String {
    let sign = if d.is_negative() && d.as_millis() != 0 {
        "-"
    } else {
        ""
    };
    let millis = d.as_millis().unsigned_abs();
    let body = if millis < 1_000 {
        format!("{millis}ms")
    } else if millis < 60_000 {
        format!("{}.{}s", millis / 1_000, millis % 1_000 / 100)
    } else if millis < 3_600_000 {
        let seconds = millis / 1_000;
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    } else {
        let minutes = millis / 60_000;
        format!("{}h{:02}m", minutes / 60, minutes % 60)
    };
    format!("{sign}{body}")
}

/// A margin with its sign always shown, so "+4m05s" (to spare) and "-4m05s" (over) cannot be
/// confused.
pub(crate) fn format_margin(d: SignedDuration) -> String {
    if d.is_negative() {
        format_duration(d)
    } else {
        format!("+{}", format_duration(d))
    }
}

pub(crate) fn signed(d: Duration) -> SignedDuration {
    // A std Duration beyond SignedDuration's ~292 billion years is not a real objective.
    SignedDuration::try_from(d.as_std()).unwrap_or(SignedDuration::MAX)
}

/// Every planned step with its state, in plan order.
fn planned_steps(state: &RunState) -> Vec<(&PlannedStep, &StepState)> {
    state
        .plan
        .iter()
        .filter_map(|plan| Some((plan, state.step(&plan.id)?)))
        .collect()
}

/// Every step a report shows: the planned ones in plan order, then any the journal names that
/// the current plan does not (the plan changed on resume), so no recorded work disappears.
pub(crate) fn report_steps(state: &RunState) -> Vec<(Option<&PlannedStep>, &StepState)> {
    let mut steps: Vec<(Option<&PlannedStep>, &StepState)> = planned_steps(state)
        .into_iter()
        .map(|(plan, step)| (Some(plan), step))
        .collect();
    for step in &state.steps {
        if !state.plan.iter().any(|plan| plan.id == step.id) {
            steps.push((None, step));
        }
    }
    steps
}

/// When the run ended, or the last thing it recorded.
pub(crate) fn run_end(state: &RunState) -> Timestamp {
    state.finished.map_or(state.last_at, |(at, _)| at)
}

/// From the run's start to its end (or its last record).
pub(crate) fn total_duration(state: &RunState) -> SignedDuration {
    run_end(state).duration_since(state.started_at)
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
        .filter(|step| {
            step.approvals
                .iter()
                .map(|decision| decision.at)
                .max()
                .is_some_and(|at| at <= end)
        })
        .fold(SignedDuration::ZERO, |sum, step| sum + step.human_wait);
    (window - waited).max(SignedDuration::ZERO)
}

/// From the step's first attempt start to its last attempt end, when both are known.
pub(crate) fn step_duration(step: &StepState) -> Option<SignedDuration> {
    let (start, end) = step.span()?;
    Some(end?.duration_since(start))
}

/// A timestamp as people read it in a report: UTC, to the second.
pub(crate) fn format_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The time of day only, unless `at` falls on another day than `reference` (a run approved
/// the next morning), so timelines stay narrow without becoming ambiguous.
pub(crate) fn format_clock(at: Timestamp, reference: Timestamp) -> String {
    let day = |t: Timestamp| t.strftime("%Y-%m-%d").to_string();
    if day(at) == day(reference) {
        at.strftime("%H:%M:%S").to_string()
    } else {
        at.strftime("%Y-%m-%d %H:%M:%S").to_string()
    }
}

/// The first 12 hex digits: enough to tell two versions of a playbook apart at a glance.
pub(crate) fn short_hash(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

pub(crate) fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Drill => "drill",
        Mode::Incident => "incident",
    }
}

pub(crate) fn ask_name(ask: Ask) -> &'static str {
    match ask {
        Ask::Gate => "gate",
        Ask::Attest => "attest",
        Ask::Rerun => "rerun",
    }
}

/// What a decision says, in words that fit its question: a gate is approved, a manual step is
/// attested, a re-run is allowed.
pub(crate) fn decision_phrase(decision: &Decision) -> &'static str {
    match (decision.ask, decision.approved, decision.pre_approved) {
        (Ask::Gate, true, true) => "pre-approved",
        (Ask::Gate, true, false) => "approved",
        (Ask::Gate, false, _) => "rejected",
        (Ask::Attest, true, _) => "attested done",
        (Ask::Attest, false, _) => "declined to attest",
        (Ask::Rerun, true, true) => "re-run pre-approved",
        (Ask::Rerun, true, false) => "re-run approved",
        (Ask::Rerun, false, _) => "re-run refused",
    }
}

/// Whether the step ended badly in a way a reader must look at.
pub(crate) fn is_failure(status: Status) -> bool {
    match status {
        Status::Failed | Status::TimedOut | Status::Rejected | Status::Cancelled => true,
        Status::Pending
        | Status::WaitingApproval
        | Status::Running
        | Status::Succeeded
        | Status::Skipped => false,
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Hand-made journals for the report tests.

    use std::collections::BTreeMap;

    use jiff::Timestamp;

    use crate::duration::Duration;
    use crate::event::{Ask, Event, Mode, PlannedStep, Record, Status};
    use crate::state::RunState;

    /// Base time: 2027-01-15T08:00:00Z.
    pub(crate) const BASE: i64 = 1_800_000_000;

    pub(crate) fn at(second: i64) -> Timestamp {
        Timestamp::from_second(BASE + second).expect("timestamp")
    }

    pub(crate) fn planned(id: &str, kind: &str) -> PlannedStep {
        PlannedStep {
            id: id.into(),
            kind: kind.into(),
            description: None,
            needs: vec![],
            summary: format!("{kind} {id}"),
            cleanup: false,
            clock_stop: false,
            live_only: false,
        }
    }

    /// Builds a journal record by record, numbering them.
    pub(crate) struct Journal {
        records: Vec<Record>,
    }

    impl Journal {
        pub(crate) fn start(
            plan: Vec<PlannedStep>,
            rto: Option<&str>,
            rpo: Option<&str>,
            declared_at: Option<Timestamp>,
        ) -> Journal {
            let duration = |text: &str| Duration::parse(text).expect("duration");
            let mut journal = Journal { records: vec![] };
            journal.push(
                0,
                Event::RunStarted {
                    run_id: "0193-r1".into(),
                    playbook: "database-restore".into(),
                    file: "playbooks/database-restore.yaml".into(),
                    playbook_hash:
                        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
                    mode: Mode::Drill,
                    dry_run: false,
                    declared_at,
                    operator: "ops".into(),
                    pid: 1,
                    rto: rto.map(duration),
                    rpo: rpo.map(duration),
                    vars: BTreeMap::new(),
                    secrets_file: None,
                    max_parallel: 4,
                    steps: plan,
                },
            );
            journal
        }

        pub(crate) fn push(&mut self, second: i64, event: Event) -> &mut Journal {
            self.records.push(Record {
                seq: self.records.len() as u64,
                at: at(second),
                event,
            });
            self
        }

        #[allow(clippy::too_many_arguments)]
        pub(crate) fn attempt(
            &mut self,
            step: &str,
            attempt: u32,
            from: i64,
            to: i64,
            status: Status,
            error: Option<&str>,
            outputs: BTreeMap<String, serde_json::Value>,
            evidence: Vec<String>,
        ) -> &mut Journal {
            self.push(
                from,
                Event::StepStarted {
                    step: step.into(),
                    attempt,
                    params: serde_json::Value::Null,
                },
            );
            self.push(
                to,
                Event::StepFinished {
                    step: step.into(),
                    attempt,
                    status,
                    outputs,
                    error: error.map(str::to_owned),
                    evidence,
                },
            )
        }

        pub(crate) fn ok(&mut self, step: &str, from: i64, to: i64) -> &mut Journal {
            self.attempt(
                step,
                1,
                from,
                to,
                Status::Succeeded,
                None,
                BTreeMap::new(),
                vec![],
            )
        }

        pub(crate) fn gate(
            &mut self,
            step: &str,
            asked: i64,
            decided: i64,
            by: &str,
            approved: bool,
        ) -> &mut Journal {
            self.push(
                asked,
                Event::ApprovalRequested {
                    step: step.into(),
                    ask: Ask::Gate,
                    prompt: format!("run {step}?"),
                    approvers: 1,
                    expires_at: None,
                },
            );
            self.push(
                decided,
                Event::ApprovalDecided {
                    step: step.into(),
                    ask: Ask::Gate,
                    approved,
                    by: by.into(),
                    reason: Some("backup looks right".into()),
                    pre_approved: false,
                },
            )
        }

        pub(crate) fn finish(&mut self, second: i64, exit_code: u8) -> &mut Journal {
            self.push(second, Event::RunFinished { exit_code })
        }

        pub(crate) fn state(&self) -> RunState {
            RunState::fold(&self.records).expect("fold")
        }
    }

    /// Outputs of a notify step's send.
    pub(crate) fn sent(to: &str, message: &str) -> BTreeMap<String, serde_json::Value> {
        BTreeMap::from([
            ("to".into(), to.into()),
            ("message".into(), message.into()),
            ("status".into(), 200.into()),
        ])
    }

    pub(crate) const DECLARE_HOOK: &str = "webhook hooks.slack.com";
    pub(crate) const STATUS_API: &str = "POST status.example.com/api/v1/incidents";

    /// An incident with its messages: `declare` fails once (HTTP 500) then posts; `updates`
    /// calls a status page, then repeats every minute — once failing — until `recover` stops
    /// the clock; `restored` posts a message with a `|` in it; erin writes post-mortem notes.
    pub(crate) fn communication_run() -> RunState {
        let mut recover = planned("recover", "command");
        recover.clock_stop = true;
        let plan = vec![
            planned("declare", "notify"),
            planned("updates", "notify"),
            recover,
            planned("restored", "notify"),
        ];
        let mut journal = Journal::start(plan, Some("30m"), None, None);
        let repeated = |error: Option<&str>| Event::NotificationRepeated {
            step: "updates".into(),
            error: error.map(str::to_owned),
            to: Some(STATUS_API.into()),
            message: Some(r#"{"status":"investigating"}"#.into()),
        };
        journal
            .attempt(
                "declare",
                1,
                1,
                2,
                Status::Failed,
                Some("the receiver answered HTTP 500 Internal Server Error: ok"),
                sent(
                    DECLARE_HOOK,
                    "Incident declared: database down\nDetails in #inc",
                ),
                vec![],
            )
            .attempt(
                "declare",
                2,
                3,
                4,
                Status::Succeeded,
                None,
                sent(
                    DECLARE_HOOK,
                    "Incident declared: database down\nDetails in #inc",
                ),
                vec!["delivered: HTTP 200 OK".into()],
            )
            .attempt(
                "updates",
                1,
                5,
                6,
                Status::Succeeded,
                None,
                sent(STATUS_API, r#"{"status":"investigating"}"#),
                vec![],
            )
            .push(
                6,
                Event::StepStarted {
                    step: "recover".into(),
                    attempt: 1,
                    params: serde_json::Value::Null,
                },
            )
            .push(66, repeated(None))
            .push(
                126,
                repeated(Some("could not send the notification: connection failed")),
            )
            .push(186, repeated(None))
            .push(
                200,
                Event::StepFinished {
                    step: "recover".into(),
                    attempt: 1,
                    status: Status::Succeeded,
                    outputs: BTreeMap::new(),
                    error: None,
                    evidence: vec![],
                },
            )
            .attempt(
                "restored",
                1,
                201,
                202,
                Status::Succeeded,
                None,
                sent(DECLARE_HOOK, "Recovered | all <b>good</b>"),
                vec![],
            )
            .push(
                205,
                Event::PostMortemNotes {
                    root_cause: "A full disk on the primary.".into(),
                    remediation: vec!["Alert on disk usage.".into()],
                    by: "erin".into(),
                },
            )
            .finish(210, 0);
        journal.state()
    }

    /// The error of the failed step: HTML in it must come out escaped, `|` must not break a
    /// Markdown table.
    pub(crate) const RESTORE_ERROR: &str =
        "pg_restore exited with status 1: relation <b>orders</b> | already exists";

    /// A failed drill: `assess` succeeds with a backup 25 minutes older than the start,
    /// alice approves `restore` after a two-minute wait, `restore` fails twice (retried),
    /// `smoke` (the clock-stop step) is skipped because of it, the cleanup step runs.
    pub(crate) fn failed_run() -> RunState {
        let mut smoke = planned("smoke", "smoke-test");
        smoke.clock_stop = true;
        let mut drop_target = planned("drop_target", "command");
        drop_target.cleanup = true;
        let plan = vec![
            planned("assess", "assess"),
            planned("restore", "restore"),
            smoke,
            drop_target,
        ];
        let taken_at = Timestamp::from_second(BASE - 1_500).expect("timestamp");
        let evidence: Vec<String> = (1..=12).map(|n| format!("stderr line {n}")).collect();
        let mut journal = Journal::start(plan, Some("30m"), Some("1h"), None);
        journal
            .attempt(
                "assess",
                1,
                1,
                5,
                Status::Succeeded,
                None,
                BTreeMap::from([
                    ("taken_at".into(), taken_at.to_string().into()),
                    ("backup".into(), "production/2027-01-15.dump".into()),
                ]),
                vec!["newest complete backup: production/2027-01-15.dump".into()],
            )
            .gate("restore", 10, 130, "alice", true)
            .attempt(
                "restore",
                1,
                131,
                140,
                Status::Failed,
                Some("connection refused"),
                BTreeMap::new(),
                vec![],
            )
            .attempt(
                "restore",
                2,
                150,
                200,
                Status::Failed,
                Some(RESTORE_ERROR),
                BTreeMap::new(),
                evidence,
            )
            .push(
                200,
                Event::StepSkipped {
                    step: "smoke".into(),
                    reason: "needs `restore`, which failed".into(),
                    blocked: true,
                },
            )
            .ok("drop_target", 201, 203)
            .finish(204, 1);
        journal.state()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::fixtures::{Journal, at, failed_run, planned};
    use super::*;

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
    fn outcome_follows_the_exit_code() {
        let mut journal = Journal::start(vec![], None, None, None);
        assert_eq!(outcome(&journal.state()), "unfinished");
        for (code, word) in [
            (0, "succeeded"),
            (1, "failed"),
            (3, "objective_missed"),
            (4, "waiting_approval"),
            (130, "interrupted"),
        ] {
            journal.finish(10, code);
            assert_eq!(outcome(&journal.state()), word, "exit {code}");
        }
    }

    #[test]
    fn durations_are_compact() {
        assert_eq!(format_duration(SignedDuration::from_millis(850)), "850ms");
        assert_eq!(
            format_duration(SignedDuration::from_millis(12_345)),
            "12.3s"
        );
        assert_eq!(
            format_duration(SignedDuration::from_millis(59_999)),
            "59.9s"
        );
        assert_eq!(format_duration(SignedDuration::from_secs(245)), "4m05s");
        assert_eq!(format_duration(SignedDuration::from_secs(3_720)), "1h02m");
        assert_eq!(format_duration(SignedDuration::from_secs(-245)), "-4m05s");
        assert_eq!(format_duration(SignedDuration::ZERO), "0ms");
        assert_eq!(format_margin(SignedDuration::from_secs(60)), "+1m00s");
        assert_eq!(format_margin(SignedDuration::from_secs(-60)), "-1m00s");
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
