//! A run's state, folded from its journal. `resume`, `status` and every report read this; none
//! of them trusts anything but the journal.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use crate::duration::Duration;
use crate::event::{Ask, Event, Mode, PlannedStep, Record, Status};

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
    pub finished: Option<(Timestamp, u8)>,
    /// Time of the last record.
    pub last_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct StepState {
    pub id: String,
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
    /// Time this step spent waiting for a human decision.
    pub human_wait: SignedDuration,
}

#[derive(Clone, Debug)]
pub struct Attempt {
    pub number: u32,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub status: Status,
    pub error: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Question {
    pub ask: Ask,
    pub prompt: String,
    pub approvers: u32,
    pub asked_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

#[derive(Clone, Debug)]
pub struct Decision {
    pub ask: Ask,
    pub approved: bool,
    pub by: String,
    pub at: Timestamp,
    pub reason: Option<String>,
    pub pre_approved: bool,
}

impl StepState {
    fn new(id: &str) -> StepState {
        StepState {
            id: id.to_owned(),
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
        }
    }

    /// Distinct people who said yes to `ask` since `since`.
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
            plan: steps.clone(),
            steps: steps.iter().map(|s| StepState::new(&s.id)).collect(),
            resumes: Vec::new(),
            interruptions: Vec::new(),
            finished: None,
            last_at: first.at,
        };
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
                    self.plan = plan.clone();
                    for planned in plan {
                        self.step_mut(&planned.id);
                    }
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
                });
            }
            Event::StepFinished {
                step,
                attempt,
                status,
                outputs,
                error,
                evidence,
            } => {
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
            Event::RetryScheduled { .. } | Event::NotificationRepeated { .. } => {}
            Event::ApprovalRequested {
                step,
                ask,
                prompt,
                approvers,
                expires_at,
            } => {
                let step = self.step_mut(step);
                step.status = Status::WaitingApproval;
                step.waiting_since.get_or_insert(at);
                step.question = Some(Question {
                    ask: *ask,
                    prompt: prompt.clone(),
                    approvers: *approvers,
                    asked_at: at,
                    expires_at: *expires_at,
                });
            }
            Event::ApprovalDecided {
                step,
                ask,
                approved,
                by,
                reason,
                pre_approved,
            } => {
                let step = self.step_mut(step);
                step.approvals.push(Decision {
                    ask: *ask,
                    approved: *approved,
                    by: by.clone(),
                    at,
                    reason: reason.clone(),
                    pre_approved: *pre_approved,
                });
                // The question stays open until enough distinct people said yes.
                let settled = !approved
                    || step.question.as_ref().is_none_or(|q| {
                        step.approvals_for(q.ask, q.asked_at) >= q.approvers as usize
                    });
                if settled {
                    if let Some(since) = step.waiting_since.take() {
                        step.human_wait += at.duration_since(since);
                    }
                    step.question = None;
                    step.status = if *approved {
                        Status::Pending
                    } else {
                        Status::Rejected
                    };
                }
            }
            Event::Interrupted { reason } => self.interruptions.push((at, reason.clone())),
            Event::RunFinished { exit_code } => self.finished = Some((at, *exit_code)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, second: i64, event: Event) -> Record {
        Record {
            seq,
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
    fn a_journal_must_start_the_run() {
        let records = vec![record(0, 0, Event::RunFinished { exit_code: 0 })];
        assert!(RunState::fold(&records).is_err());
        assert!(RunState::fold(&[]).is_err());
    }
}
