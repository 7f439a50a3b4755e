//! The human gates in front of a step — its `approval:`, a `kind: approval` step's question, a
//! manual step's attestation — and how each is settled: from the journal (a decision already
//! recorded), from pre-approval flags, or by asking the operator, until a deadline rejects.

use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use super::run::Shared;
use super::step::Fatal;
use crate::event::{Ask, Event};
use crate::human::{Question, Reply, Withdrawn};
use crate::inbox::Letter;
use crate::model::Step;
use crate::state::StepState;
use crate::steps::StepConfig;
/// The human gates in front of a step, in order: its `approval:`, then for a `kind: approval`
/// step its own question, and for a manual step the attestation.
pub(super) fn gates(step: &Step) -> Vec<Gate> {
    let mut gates = Vec::new();
    if let Some(gate) = &step.approval {
        gates.push(Gate {
            ask: Ask::Gate,
            text: gate.prompt.clone(),
            approvers: gate.approvers,
            timeout: gate.timeout.map(|t| t.0),
        });
    }
    match &step.params {
        // The step's own timeout bounds the wait: for a gate, expiry means "no".
        StepConfig::Approval(approval) => gates.push(Gate {
            ask: Ask::Gate,
            text: approval.prompt.clone(),
            approvers: approval.approvers.unwrap_or(1).max(1),
            timeout: step.timeout.map(|t| t.0),
        }),
        StepConfig::Manual(manual) => gates.push(Gate {
            ask: Ask::Attest,
            text: manual.instructions.clone(),
            approvers: 1,
            timeout: None,
        }),
        _ => {}
    }
    gates
}

/// A question that must be settled before a step runs.
pub(super) struct Gate {
    pub(super) ask: Ask,
    /// The prompt or instructions (rendered before asking).
    pub(super) text: String,
    /// Distinct people whose "yes" is needed.
    pub(super) approvers: u32,
    /// Expiry rejects.
    pub(super) timeout: Option<Duration>,
}

pub(super) enum Settled {
    Yes((String, Timestamp)),
    No,
    Waiting,
    Cancelled,
    /// Incident mode: the step's one question was answered "skip" or "abort".
    Skip(String),
    Abort(String, Option<String>),
}

/// How often a question waiting at a terminal looks for decisions from other shells.
const INBOX_LOOK: Duration = Duration::from_millis(200);

/// Who answered a question first.
enum Answered {
    Here(Option<Reply>),
    Elsewhere(Letter),
}

/// Gets a decision on `ask` from the journal, pre-approval flags, or the operator.
pub(super) async fn settle(
    shared: &std::sync::Arc<Shared>,
    step: &Step,
    prior: Option<&StepState>,
    gate: Gate,
    cancel: &CancellationToken,
) -> Result<Settled, Fatal> {
    let Gate {
        ask,
        text,
        approvers,
        timeout,
    } = gate;
    // Decisions count from the last attempt on: a gate passed before a failed attempt is asked
    // again for the next one.
    let since = prior
        .and_then(|p| p.attempts.last())
        .map_or(Timestamp::MIN, |a| a.started_at);
    let mut yes: Vec<(String, Timestamp)> = prior
        .map(|p| {
            p.approvals
                .iter()
                .filter(|d| d.ask == ask && d.approved && d.at >= since)
                .map(|d| (d.by.clone(), d.at))
                .collect()
        })
        .unwrap_or_default();
    let open = prior
        .and_then(|p| p.question.clone())
        .filter(|q| q.ask == ask);
    let enough = |yes: &Vec<(String, Timestamp)>| {
        let mut people: Vec<&str> = yes.iter().map(|(by, _)| by.as_str()).collect();
        people.sort_unstable();
        people.dedup();
        people.len() >= approvers as usize
    };

    // Pre-approvals are the person's who gave them to `run`, also when another resumes.
    let pre_approver = &shared.pre_approver;
    if shared.pre_approved(&step.id, ask) && !yes.iter().any(|(by, _)| by == pre_approver) {
        let record = shared.emitter.emit(Event::ApprovalDecided {
            step: step.id.clone(),
            ask,
            approved: true,
            by: pre_approver.clone(),
            reason: None,
            pre_approved: true,
        })?;
        yes.push((pre_approver.clone(), record.at));
    }
    if enough(&yes) {
        return Ok(Settled::Yes(yes.last().cloned().unwrap_or_default()));
    }

    let expires_at = match &open {
        Some(question) => question.expires_at,
        None => {
            let expires_at = timeout.and_then(|t| {
                crate::clock::now()
                    .checked_add(jiff::SignedDuration::try_from(t).ok()?)
                    .ok()
            });
            shared.emitter.emit(Event::ApprovalRequested {
                step: step.id.clone(),
                ask,
                prompt: text.clone(),
                approvers,
                expires_at,
            })?;
            expires_at
        }
    };
    let reject = |by: String, reason: Option<String>| {
        shared.emitter.emit(Event::ApprovalDecided {
            step: step.id.clone(),
            ask,
            approved: false,
            by,
            reason,
            pre_approved: false,
        })
    };
    let expired = |reject: &dyn Fn(String, Option<String>) -> Result<_, Fatal>| {
        let waited = timeout.map_or_else(String::new, |t| {
            format!(" within {}", crate::duration::Duration(t))
        });
        reject("timeout".into(), Some(format!("no decision{waited}"))).map(|_| Settled::No)
    };
    loop {
        let remaining = match expires_at {
            Some(at) => {
                let left = at.duration_since(crate::clock::now());
                if left.is_negative() || left.is_zero() {
                    return expired(&reject);
                }
                Some(left.unsigned_abs())
            }
            None => None,
        };
        if !shared.operator.interactive() {
            return Ok(Settled::Waiting);
        }
        let withdrawn = Withdrawn::default();
        let question = Question {
            step: step.id.clone(),
            ask,
            text: text.clone(),
            summary: super::step::shown_summary(shared, step),
            targets: Vec::new(),
            approved_by: yes.iter().map(|(by, _)| by.clone()).collect(),
            approvers,
            elapsed: shared.elapsed(),
            rto: shared.rto,
            incident: shared.mode == crate::event::Mode::Incident,
            withdrawn: withdrawn.clone(),
        };
        let operator = shared.operator.clone();
        let naming = shared.clone();
        let index = shared.playbook.index_of(&step.id);
        let asked = ask_human(shared, cancel, move || {
            let targets = index
                .map(|i| super::step::writes_to(&naming, &naming.playbook.steps[i]))
                .unwrap_or_default();
            operator.ask(&Question {
                targets,
                ..question
            })
        });
        let answered = async {
            tokio::select! {
                reply = asked => Answered::Here(reply),
                letter = letter_for(shared, &step.id) => Answered::Elsewhere(letter),
            }
        };
        let answered = match remaining {
            Some(left) => match tokio::time::timeout(left, answered).await {
                Ok(answered) => answered,
                Err(_) => {
                    withdrawn.raise();
                    return expired(&reject);
                }
            },
            None => answered.await,
        };
        // The terminal stops asking whatever answered: its thread sees the flag and returns.
        withdrawn.raise();
        let reply = match answered {
            Answered::Here(reply) => reply,
            Answered::Elsewhere(letter) => {
                let id = letter.id.clone();
                let (answer, reply) = from_letter(letter, &yes, approvers, &step.id);
                crate::inbox::reply(&shared.run_dir, &id, &answer);
                match reply {
                    Some(reply) => Some(reply),
                    None => continue,
                }
            }
        };
        match reply {
            None => return Ok(Settled::Cancelled),
            Some(Reply::Unavailable) => return Ok(Settled::Waiting),
            Some(reply @ (Reply::Skip { .. } | Reply::Abort { .. })) => {
                shared.emitter.emit(Event::Confirmed {
                    step: step.id.clone(),
                    answer: if matches!(reply, Reply::Skip { .. }) {
                        "skip"
                    } else {
                        "abort"
                    }
                    .into(),
                    waited_ms: 0,
                })?;
                return Ok(match reply {
                    Reply::Skip { by } => Settled::Skip(by),
                    Reply::Abort { by, reason } => Settled::Abort(by, reason),
                    _ => unreachable!("matched above"),
                });
            }
            Some(Reply::No { by, reason }) => {
                reject(by, reason)?;
                return Ok(Settled::No);
            }
            Some(Reply::Yes { by, reason }) => {
                let record = shared.emitter.emit(Event::ApprovalDecided {
                    step: step.id.clone(),
                    ask,
                    approved: true,
                    by: by.clone(),
                    reason,
                    pre_approved: false,
                })?;
                yes.push((by, record.at));
                if enough(&yes) {
                    return Ok(Settled::Yes(yes.last().cloned().unwrap_or_default()));
                }
            }
        }
    }
}

/// The next decision for `step` posted to the run's inbox by `drillbook approve` in another
/// shell; pending forever when none comes.
async fn letter_for(shared: &Shared, step: &str) -> Letter {
    loop {
        if let Some(letter) = crate::inbox::take(&shared.run_dir, step).into_iter().next() {
            return letter;
        }
        tokio::time::sleep(INBOX_LOOK).await;
    }
}

/// A decision from another shell, checked as `drillbook approve` checks one it writes itself:
/// the sender's answer, and the reply it stands for (`None`: refused, keep asking).
fn from_letter(
    letter: Letter,
    yes: &[(String, Timestamp)],
    approvers: u32,
    step: &str,
) -> (crate::inbox::Answer, Option<Reply>) {
    let Letter {
        approved,
        by,
        reason,
        ..
    } = letter;
    if yes.iter().any(|(said, _)| said == &by) {
        return (
            Err(format!(
                "{by} already approved `{step}`; it needs {approvers} different people"
            )),
            None,
        );
    }
    let count = yes.len() + 1;
    let answer = if !approved {
        format!("{by} rejected `{step}`; the running drillbook recorded it")
    } else if count < approvers as usize {
        format!(
            "{by} approved `{step}` ({count} of {approvers} approvals); someone else must approve too"
        )
    } else {
        format!("{by} approved `{step}`; the running drillbook goes on")
    };
    let reply = if approved {
        Reply::Yes { by, reason }
    } else {
        Reply::No { by, reason }
    };
    (Ok(answer), Some(reply))
}

/// Runs a blocking conversation with the operator, one at a time, off the async threads.
/// `None` when the run was cancelled meanwhile.
pub(super) async fn ask_human<T: Send + 'static>(
    shared: &Shared,
    cancel: &CancellationToken,
    ask: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let _turn = tokio::select! {
        turn = shared.asking.lock() => turn,
        _ = cancel.cancelled() => return None,
    };
    tokio::select! {
        answer = tokio::task::spawn_blocking(ask) => answer.ok(),
        _ = cancel.cancelled() => None,
    }
}
