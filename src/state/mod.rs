//! A run's state, folded from its journal. `resume`, `status` and every report read this; none
//! of them trusts anything but the journal.
//!
//! Long, but one idea: the state's types and the one `match` over every journal event that
//! builds them, which must see each other to stay in step.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use crate::duration::Duration;

mod decision;
use crate::event::{Ask, ErrorClass, Event, Mode, PlannedStep, Record, Status};
use crate::outcome::Outcome;
use crate::steps::Kind;
pub use decision::Decision;

#[derive(Clone, Debug)]
pub struct RunState {
    pub run_id: String,
    pub playbook: String,
    pub file: String,
    pub playbook_hash: String,
    pub mode: Mode,
    pub dry_run: bool,
    pub operator: String,
    /// The process that started or last resumed the run.
    pub pid: u32,
    pub started_at: Timestamp,
    pub declared_at: Option<Timestamp>,
    pub rto: Option<Duration>,
    pub rpo: Option<Duration>,
    pub vars: BTreeMap<String, String>,
    pub secrets_file: Option<String>,
    pub max_parallel: usize,
    /// The plan recorded at the start (or at a resume that accepted a changed playbook).
    pub plan: Vec<PlannedStep>,
    /// Every planned step, in plan order, then any step the journal names that the plan
    /// does not (a plan changed on resume).
    pub steps: Vec<StepState>,
    /// Each time the run was picked up again: when, and by whom.
    pub resumes: Vec<(Timestamp, String)>,
    pub interruptions: Vec<(Timestamp, String)>,
    /// The incident operator aborted the run: before which step, who, when and why.
    pub aborted: Option<Abort>,
    /// The journal's hash chain as checked when it was read from its file (`None` for a state
    /// folded from records alone).
    pub journal: Option<crate::chain::Chain>,
    pub finished: Option<(Timestamp, u8)>,
    /// Time of the last record.
    pub last_at: Timestamp,
    /// Every message a notify step sent or tried to send, repeats included, in journal order:
    /// who was told what, and when, is part of the incident's record.
    pub notifications: Vec<Notification>,
    /// What the incident operator wrote for the post-mortem (the last answer, if resumed).
    pub notes: Option<PostMortemNotes>,
    /// The drillbook process that drove the run last, as `run_process` names it.
    pub process: Option<RunProcess>,
    /// `--approve` and `--approve-all` given to `run`.
    pub pre_approval: Option<PreApproval>,
    /// Every program the steps started, in journal order.
    pub children: Vec<JournalledChild>,
}

/// A drillbook process: its pid, and what tells it from a later process with the same pid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunProcess {
    pub pid: u32,
    pub start_time: u64,
    pub boot_id: String,
}

/// Pre-approvals given to `run` (`--approve STEP`, `--approve-all`) and by whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreApproval {
    pub by: String,
    pub account: Option<crate::event::OsAccount>,
    pub all: bool,
    pub steps: Vec<String>,
}

/// A program a step started, as `child_started` recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalledChild {
    pub step: String,
    pub attempt: u32,
    pub pid: u32,
    pub pgid: u32,
    pub start_time: u64,
    pub boot_id: String,
    pub program: String,
}

/// One message sent (or attempted) by a notify step.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub step: String,
    pub at: Timestamp,
    /// "webhook <host>" or "POST <host>/<path>"; `None` in journals older than the field.
    pub to: Option<String>,
    /// The text or body sent, masked and cut.
    pub message: Option<String>,
    /// Why it was not delivered; `None` when the receiver accepted it.
    pub error: Option<String>,
    /// Sent again by `every:`, rather than by the step's own attempt.
    pub repeat: bool,
}

impl Notification {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// An incident's operator stopped the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Abort {
    pub at: Timestamp,
    /// The step they were asked about.
    pub step: String,
    pub by: String,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PostMortemNotes {
    pub root_cause: String,
    pub remediation: Vec<String>,
    pub by: String,
    pub at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct StepState {
    pub id: String,
    /// Its kind, from the plan that names it (parsed once, here); `None` for a kind this
    /// version does not know.
    pub kind: Option<Kind>,
    pub status: Status,
    pub attempts: Vec<Attempt>,
    pub outputs: BTreeMap<String, serde_json::Value>,
    pub error: Option<String>,
    pub evidence: Vec<String>,
    pub skipped_reason: Option<String>,
    /// Skipped because of something upstream: `resume` considers it again.
    pub blocked: bool,
    /// The question open for a human, if any.
    pub question: Option<Question>,
    pub approvals: Vec<Decision>,
    pub waiting_since: Option<Timestamp>,
    /// Time this step spent waiting for a human decision (a gate, an attestation, an
    /// incident's "Proceed?").
    pub human_wait: SignedDuration,
    /// When its last wait for a human ended.
    pub human_wait_ended: Option<Timestamp>,
    /// Incident mode: the operator at the run's terminal is being asked to proceed (who,
    /// since when), until they answer.
    pub confirming: Option<(String, Timestamp)>,
    /// The deciders' SSH keys on record when its question was asked: what its signed
    /// decisions are checked against.
    pub keys: std::collections::BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct Attempt {
    pub number: u32,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub status: Status,
    pub error: Option<String>,
    /// Why trying again could or could not help, for a failed attempt.
    pub error_class: Option<ErrorClass>,
}

#[derive(Clone, Debug)]
pub struct Question {
    pub ask: Ask,
    pub prompt: String,
    pub approvers: u32,
    pub asked_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    /// Who may decide; empty: anyone.
    pub allowed: Vec<String>,
    /// Every decision must be signed.
    pub signed: bool,
}

impl StepState {
    fn new(id: &str) -> StepState {
        StepState {
            id: id.to_owned(),
            kind: None,
            status: Status::Pending,
            attempts: Vec::new(),
            outputs: BTreeMap::new(),
            error: None,
            evidence: Vec::new(),
            skipped_reason: None,
            blocked: false,
            question: None,
            approvals: Vec::new(),
            waiting_since: None,
            human_wait: SignedDuration::ZERO,
            human_wait_ended: None,
            confirming: None,
            keys: Default::default(),
        }
    }

    /// Distinct people who said yes to `ask` since `since`.
    /// Where the decisions that count for the open question start: the last attempt's start
    /// (a gate passed before a failed attempt is asked again), or the beginning — so a
    /// pre-approval recorded just before the question was asked counts, as the engine counts it.
    pub fn decision_window(&self) -> Timestamp {
        self.attempts
            .last()
            .map_or(Timestamp::MIN, |attempt| attempt.started_at)
    }

    pub fn approvals_for(&self, ask: Ask, since: Timestamp) -> usize {
        let mut people: Vec<&str> = self
            .approvals
            .iter()
            .filter(|d| d.ask == ask && d.approved && d.at >= since)
            .map(|d| d.by.as_str())
            .collect();
        people.sort_unstable();
        people.dedup();
        people.len()
    }

    /// When the step's first attempt started and its last one ended.
    pub fn span(&self) -> Option<(Timestamp, Option<Timestamp>)> {
        let first = self.attempts.first()?;
        Some((
            first.started_at,
            self.attempts.last().and_then(|a| a.finished_at),
        ))
    }
}

impl RunState {
    pub fn step(&self, id: &str) -> Option<&StepState> {
        self.steps.iter().find(|s| s.id == id)
    }

    fn step_mut(&mut self, id: &str) -> &mut StepState {
        let index = match self.steps.iter().position(|s| s.id == id) {
            Some(index) => index,
            None => {
                self.steps.push(StepState::new(id));
                self.steps.len() - 1
            }
        };
        &mut self.steps[index]
    }

    /// Every planned step with its state, in plan order.
    pub fn planned_steps(&self) -> Vec<(&PlannedStep, &StepState)> {
        self.plan
            .iter()
            .filter_map(|plan| Some((plan, self.step(&plan.id)?)))
            .collect()
    }

    /// How the run ended, from its recorded exit code; `None` while it has not.
    pub fn outcome(&self) -> Option<Outcome> {
        self.finished.map(|(_, code)| Outcome::from_code(code))
    }

    /// The outcome's word, or `unfinished`; `aborted` for a run its operator stopped.
    pub fn outcome_name(&self) -> &'static str {
        match self.outcome() {
            Some(Outcome::Failed) if self.aborted.is_some() => "aborted",
            outcome => outcome.map_or("unfinished", Outcome::name),
        }
    }

    /// When the RTO clock started: the declared incident time, or the run's start.
    pub fn clock_start(&self) -> Timestamp {
        self.declared_at.unwrap_or(self.started_at)
    }

    /// Total time spent waiting for humans at approval gates.
    pub fn human_wait(&self) -> SignedDuration {
        self.steps
            .iter()
            .map(|s| s.human_wait)
            .fold(SignedDuration::ZERO, |a, b| a + b)
    }

    /// Whether `id` is a step whose finishes are messages sent (a notify step).
    fn sends_messages(&self, id: &str) -> bool {
        self.step(id)
            .and_then(|step| step.kind)
            .is_some_and(Kind::sends_messages)
    }

    /// The plan's steps in the state, with their kinds.
    fn adopt_plan(&mut self, plan: &[PlannedStep]) {
        self.plan = plan.to_vec();
        for planned in plan {
            self.step_mut(&planned.id).kind = Kind::parse(&planned.kind);
        }
    }

    /// Folds a journal into a state. The first record must start the run.
    pub fn fold(records: &[Record]) -> Result<RunState, String> {
        let Some(first) = records.first() else {
            return Err("the journal is empty".into());
        };
        let Event::RunStarted {
            run_id,
            playbook,
            file,
            playbook_hash,
            mode,
            dry_run,
            declared_at,
            operator,
            rto,
            rpo,
            vars,
            pid,
            secrets_file,
            max_parallel,
            steps,
            ..
        } = &first.event
        else {
            return Err("the journal does not start with run_started".into());
        };
        let mut state = RunState {
            run_id: run_id.clone(),
            playbook: playbook.clone(),
            file: file.clone(),
            playbook_hash: playbook_hash.clone(),
            mode: *mode,
            dry_run: *dry_run,
            operator: operator.clone(),
            pid: *pid,
            started_at: first.at,
            declared_at: *declared_at,
            rto: *rto,
            rpo: *rpo,
            vars: vars.clone(),
            secrets_file: secrets_file.clone(),
            max_parallel: *max_parallel,
            plan: Vec::new(),
            steps: Vec::new(),
            resumes: Vec::new(),
            interruptions: Vec::new(),
            aborted: None,
            journal: None,
            finished: None,
            last_at: first.at,
            notifications: Vec::new(),
            notes: None,
            process: None,
            pre_approval: None,
            children: Vec::new(),
        };
        state.adopt_plan(steps);
        for record in &records[1..] {
            state.apply(record);
        }
        Ok(state)
    }

    fn apply(&mut self, record: &Record) {
        let at = record.at;
        self.last_at = at;
        match &record.event {
            Event::RunStarted { .. } => {}
            Event::RunResumed {
                operator,
                playbook_hash,
                steps,
                pid,
            } => {
                self.pid = *pid;
                self.resumes.push((at, operator.clone()));
                self.playbook_hash = playbook_hash.clone();
                self.finished = None;
                if let Some(plan) = steps {
                    self.adopt_plan(plan);
                }
            }
            Event::StepStarted { step, attempt, .. } => {
                let step = self.step_mut(step);
                step.status = Status::Running;
                step.blocked = false;
                step.skipped_reason = None;
                step.attempts.push(Attempt {
                    number: *attempt,
                    started_at: at,
                    finished_at: None,
                    status: Status::Running,
                    error: None,
                    error_class: None,
                });
            }
            Event::StepFinished {
                step,
                attempt,
                status,
                outputs,
                error,
                evidence,
                error_class,
            } => {
                if self.sends_messages(step) && *status != Status::Cancelled {
                    self.notifications.push(Notification {
                        step: step.clone(),
                        at,
                        to: text_output(outputs, "to"),
                        message: text_output(outputs, "message"),
                        error: (*status != Status::Succeeded)
                            .then(|| error.clone().unwrap_or_else(|| status.name().to_owned())),
                        repeat: false,
                    });
                }
                let step = self.step_mut(step);
                step.status = *status;
                step.error = error.clone();
                step.outputs = outputs.clone();
                step.evidence.extend(evidence.iter().cloned());
                if let Some(current) = step
                    .attempts
                    .iter_mut()
                    .rev()
                    .find(|a| a.number == *attempt)
                {
                    current.finished_at = Some(at);
                    current.status = *status;
                    current.error = error.clone();
                    current.error_class = *error_class;
                }
            }
            Event::StepSkipped {
                step,
                reason,
                blocked,
            } => {
                let step = self.step_mut(step);
                step.status = Status::Skipped;
                step.skipped_reason = Some(reason.clone());
                step.blocked = *blocked;
                step.question = None;
            }
            Event::RetryScheduled { .. } => {}
            Event::NotificationRepeated {
                step,
                error,
                to,
                message,
            } => self.notifications.push(Notification {
                step: step.clone(),
                at,
                to: to.clone(),
                message: message.clone(),
                error: error.clone(),
                repeat: true,
            }),
            Event::PostMortemNotes {
                root_cause,
                remediation,
                by,
            } => {
                self.notes = Some(PostMortemNotes {
                    root_cause: root_cause.clone(),
                    remediation: remediation.clone(),
                    by: by.clone(),
                    at,
                })
            }
            Event::ApprovalRequested {
                step,
                ask,
                prompt,
                approvers,
                expires_at,
                allowed,
                keys,
                signed,
            } => {
                let step = self.step_mut(step);
                step.keys = keys.clone();
                step.status = Status::WaitingApproval;
                step.waiting_since.get_or_insert(at);
                step.question = Some(Question {
                    ask: *ask,
                    prompt: prompt.clone(),
                    approvers: *approvers,
                    asked_at: at,
                    expires_at: *expires_at,
                    allowed: allowed.clone(),
                    signed: *signed,
                });
            }
            Event::ApprovalDecided {
                step,
                ask,
                approved,
                by,
                reason,
                pre_approved,
                account,
                signature,
            } => {
                let step = self.step_mut(step);
                let asked_at = step.question.as_ref().map(|q| q.asked_at);
                step.approvals.push(Decision {
                    ask: *ask,
                    approved: *approved,
                    by: by.clone(),
                    at,
                    reason: reason.clone(),
                    pre_approved: *pre_approved,
                    account: account.clone(),
                    signature: signature.clone(),
                    asked_at,
                });
                // The question stays open until enough distinct people said yes.
                let since = step.decision_window();
                let settled = !approved
                    || step
                        .question
                        .as_ref()
                        .is_none_or(|q| step.approvals_for(q.ask, since) >= q.approvers as usize);
                if settled {
                    if let Some(since) = step.waiting_since.take() {
                        step.human_wait += at.duration_since(since);
                        step.human_wait_ended = Some(at);
                    }
                    step.question = None;
                    step.status = if *approved {
                        Status::Pending
                    } else {
                        Status::Rejected
                    };
                }
            }
            Event::Confirmed {
                step, waited_ms, ..
            } => {
                let step = self.step_mut(step);
                step.confirming = None;
                step.human_wait += SignedDuration::from_millis(*waited_ms as i64);
                // Skip or abort answered at a gate: the question's wait ends with it.
                if let Some(since) = step.waiting_since.take() {
                    step.human_wait += at.duration_since(since);
                    step.question = None;
                }
                step.human_wait_ended = Some(at);
            }
            Event::Confirming { step, by } => {
                self.step_mut(step).confirming = Some((by.clone(), at));
            }
            Event::Aborted {
                step, by, reason, ..
            } => {
                let said = match reason {
                    Some(reason) => format!("aborted by {by}: {reason}"),
                    None => format!("aborted by {by}"),
                };
                self.aborted = Some(Abort {
                    at,
                    step: step.clone(),
                    by: by.clone(),
                    reason: reason.clone(),
                });
                let step = self.step_mut(step);
                step.status = Status::Cancelled;
                step.skipped_reason = Some(said);
                step.question = None;
            }
            Event::Interrupted { reason } => self.interruptions.push((at, reason.clone())),
            Event::RunFinished { exit_code } => self.finished = Some((at, *exit_code)),
            Event::RunProcess {
                pid,
                start_time,
                boot_id,
            } => {
                self.process = Some(RunProcess {
                    pid: *pid,
                    start_time: *start_time,
                    boot_id: boot_id.clone(),
                });
            }
            Event::PreApproved {
                by,
                all,
                steps,
                account,
            } => {
                let given = self.pre_approval.get_or_insert_with(|| PreApproval {
                    by: by.clone(),
                    account: account.clone(),
                    all: false,
                    steps: Vec::new(),
                });
                given.all |= *all;
                given.steps.extend(steps.iter().cloned());
            }
            Event::ChildStarted {
                step,
                attempt,
                pid,
                pgid,
                start_time,
                boot_id,
                program,
            } => self.children.push(JournalledChild {
                step: step.clone(),
                attempt: *attempt,
                pid: *pid,
                pgid: *pgid,
                start_time: *start_time,
                boot_id: boot_id.clone(),
                program: program.clone(),
            }),
            Event::ChildStopped { .. } => {}
        }
    }
}

fn text_output(outputs: &BTreeMap<String, serde_json::Value>, name: &str) -> Option<String> {
    outputs.get(name)?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_follows_the_exit_code() {
        let mut journal = crate::fixtures::Journal::start(vec![], None, None, None);
        assert_eq!(journal.state().outcome_name(), "unfinished");
        for (code, word) in [
            (0, "succeeded"),
            (1, "failed"),
            (3, "objective_missed"),
            (4, "waiting_approval"),
            (130, "interrupted"),
        ] {
            journal.finish(10, code);
            assert_eq!(journal.state().outcome_name(), word, "exit {code}");
        }
    }

    fn record(seq: u64, second: i64, event: Event) -> Record {
        Record {
            seq,
            prev: None,
            at: Timestamp::from_second(1_800_000_000 + second).expect("timestamp"),
            event,
        }
    }

    fn started() -> Event {
        Event::RunStarted {
            run_id: "r1".into(),
            playbook: "p".into(),
            file: "p.yaml".into(),
            playbook_hash: "h".into(),
            mode: Mode::Drill,
            dry_run: false,
            declared_at: None,
            operator: "ops".into(),
            pid: 1,
            rto: None,
            rpo: None,
            vars: BTreeMap::new(),
            secrets_file: None,
            max_parallel: 4,
            steps: Vec::new(),
        }
    }

    /// `--approve-all` records the operator's yes just before the gate asks; with two
    /// approvers, one more person's yes settles it, as the engine counts it.
    #[test]
    fn a_pre_approval_before_the_question_counts_towards_four_eyes() {
        let decided = |seq, second, by: &str, pre_approved| {
            record(
                seq,
                second,
                Event::ApprovalDecided {
                    step: "gate".into(),
                    ask: Ask::Gate,
                    approved: true,
                    by: by.into(),
                    reason: None,
                    pre_approved,
                    account: None,
                    signature: None,
                },
            )
        };
        let mut records = vec![
            record(0, 0, started()),
            decided(1, 1, "alice", true),
            record(
                2,
                2,
                Event::ApprovalRequested {
                    step: "gate".into(),
                    ask: Ask::Gate,
                    prompt: "go?".into(),
                    approvers: 2,
                    expires_at: None,
                    allowed: Vec::new(),
                    keys: Default::default(),
                    signed: false,
                },
            ),
        ];
        let waiting = RunState::fold(&records).expect("fold");
        let gate = waiting.step("gate").expect("gate");
        assert_eq!(gate.status, Status::WaitingApproval);
        assert_eq!(gate.approvals_for(Ask::Gate, gate.decision_window()), 1);
        records.push(decided(3, 30, "bob", false));
        let settled = RunState::fold(&records).expect("fold");
        let gate = settled.step("gate").expect("gate");
        assert!(gate.question.is_none(), "alice and bob: two people");
        assert_eq!(gate.status, Status::Pending);
    }

    #[test]
    fn folds_attempts_outputs_and_human_wait() {
        let records = vec![
            record(0, 0, started()),
            record(
                1,
                1,
                Event::StepStarted {
                    step: "a".into(),
                    attempt: 1,
                    params: serde_json::Value::Null,
                },
            ),
            record(
                2,
                2,
                Event::StepFinished {
                    step: "a".into(),
                    attempt: 1,
                    status: Status::Failed,
                    outputs: BTreeMap::new(),
                    error: Some("boom".into()),
                    evidence: vec![],
                    error_class: None,
                },
            ),
            record(
                3,
                3,
                Event::StepStarted {
                    step: "a".into(),
                    attempt: 2,
                    params: serde_json::Value::Null,
                },
            ),
            record(
                4,
                5,
                Event::StepFinished {
                    step: "a".into(),
                    attempt: 2,
                    status: Status::Succeeded,
                    outputs: BTreeMap::from([("x".into(), 7.into())]),
                    error: None,
                    evidence: vec![],
                    error_class: None,
                },
            ),
            record(
                5,
                10,
                Event::ApprovalRequested {
                    step: "b".into(),
                    ask: Ask::Gate,
                    prompt: "ok?".into(),
                    approvers: 1,
                    expires_at: None,
                    allowed: Vec::new(),
                    keys: Default::default(),
                    signed: false,
                },
            ),
            record(
                6,
                70,
                Event::ApprovalDecided {
                    step: "b".into(),
                    ask: Ask::Gate,
                    approved: false,
                    by: "alice".into(),
                    reason: Some("no".into()),
                    pre_approved: false,
                    account: None,
                    signature: None,
                },
            ),
        ];
        let state = RunState::fold(&records).expect("fold");
        let a = state.step("a").expect("a");
        assert_eq!(a.status, Status::Succeeded);
        assert_eq!(a.attempts.len(), 2);
        assert_eq!(a.attempts[0].status, Status::Failed);
        assert_eq!(a.outputs["x"], 7);
        assert_eq!(a.error, None);
        let b = state.step("b").expect("b");
        assert_eq!(b.status, Status::Rejected);
        assert_eq!(b.approvals[0].by, "alice");
        assert_eq!(state.human_wait(), SignedDuration::from_secs(60));
        assert_eq!(
            state
                .steps
                .iter()
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn notifications_fold_from_notify_finishes_and_repeats() {
        let mut start = started();
        if let Event::RunStarted { steps, .. } = &mut start {
            for (id, kind) in [("declare", "notify"), ("work", "command")] {
                steps.push(PlannedStep {
                    id: id.into(),
                    kind: kind.into(),
                    description: None,
                    needs: Vec::new(),
                    summary: String::new(),
                    cleanup: false,
                    clock_stop: false,
                    live_only: false,
                });
            }
        }
        let sent = |message: &str| {
            BTreeMap::from([
                ("to".to_string(), "webhook hooks.example.com".into()),
                ("message".to_string(), message.into()),
            ])
        };
        let finished =
            |step: &str, attempt, status, outputs, error: Option<&str>| Event::StepFinished {
                step: step.into(),
                attempt,
                status,
                outputs,
                error: error.map(str::to_owned),
                evidence: vec![],
                error_class: None,
            };
        let records = vec![
            record(0, 0, start),
            record(
                1,
                1,
                finished("declare", 1, Status::Failed, sent("up"), Some("HTTP 500")),
            ),
            record(
                2,
                2,
                finished("declare", 2, Status::Succeeded, sent("up"), None),
            ),
            // Not a notify step: its finish is no message.
            record(
                3,
                3,
                finished("work", 1, Status::Succeeded, BTreeMap::new(), None),
            ),
            record(
                4,
                4,
                Event::NotificationRepeated {
                    step: "declare".into(),
                    error: None,
                    to: Some("webhook hooks.example.com".into()),
                    message: Some("still up".into()),
                },
            ),
            // A journal from before `to` and `message` were recorded.
            record(
                5,
                5,
                Event::NotificationRepeated {
                    step: "declare".into(),
                    error: Some("connection failed".into()),
                    to: None,
                    message: None,
                },
            ),
            // Cancelled before anything was known to be sent.
            record(
                6,
                6,
                finished(
                    "declare",
                    3,
                    Status::Cancelled,
                    BTreeMap::new(),
                    Some("cancelled"),
                ),
            ),
            record(
                7,
                7,
                Event::PostMortemNotes {
                    root_cause: "disk".into(),
                    remediation: vec!["alert".into()],
                    by: "erin".into(),
                },
            ),
        ];
        let state = RunState::fold(&records).expect("fold");
        let summary: Vec<(bool, Option<&str>, bool)> = state
            .notifications
            .iter()
            .map(|n| (n.repeat, n.message.as_deref(), n.ok()))
            .collect();
        assert_eq!(
            summary,
            [
                (false, Some("up"), false),
                (false, Some("up"), true),
                (true, Some("still up"), true),
                (true, None, false),
            ]
        );
        assert_eq!(state.notifications[0].error.as_deref(), Some("HTTP 500"));
        assert_eq!(
            state.notifications[1].to.as_deref(),
            Some("webhook hooks.example.com")
        );
        assert_eq!(
            state.notifications[2].at,
            record(0, 4, Event::RunFinished { exit_code: 0 }).at
        );
        let notes = state.notes.expect("notes");
        assert_eq!(
            (
                notes.root_cause.as_str(),
                notes.remediation.as_slice(),
                notes.by.as_str()
            ),
            ("disk", &["alert".to_string()][..], "erin")
        );
    }

    #[test]
    fn a_journal_must_start_the_run() {
        let records = vec![record(0, 0, Event::RunFinished { exit_code: 0 })];
        assert!(RunState::fold(&records).is_err());
        assert!(RunState::fold(&[]).is_err());
    }
}
