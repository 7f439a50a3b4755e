//! One step, from "ready" to a final status: its condition, mode restriction, human gates, then
//! its attempts with timeout and retry. Everything it learns goes through the emitter first.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use super::context::StepView;
use super::retry;
use super::run::Shared;
use crate::event::{Ask, Event, Mode, Status};
use crate::human::{Go, Question, Reply};
use crate::model::Step;
use crate::state::StepState;
use crate::steps::{Done, Kind, StepConfig, StepContext, StepFailure};

/// How a step's turn ended.
pub(crate) enum End {
    Final(Status),
    /// A human must answer first; the run pauses (exit 4) once nothing else can move.
    Waiting,
    /// The incident operator said stop.
    Abort(String),
}

/// The journal could not be written: nothing may go on.
pub(crate) type Fatal = String;

pub(crate) async fn drive(
    shared: Arc<Shared>,
    index: usize,
    cancel: CancellationToken,
) -> Result<End, Fatal> {
    let step = &shared.playbook.steps[index];
    let prior = shared.prior[index].as_ref();
    let skip = |reason: String| -> Result<End, Fatal> {
        shared.context.set_step(
            &step.id,
            StepView {
                status: Status::Skipped,
                outputs: Default::default(),
                skipped_reason: Some(reason.clone()),
            },
        );
        shared.emitter.emit(Event::StepSkipped {
            step: step.id.clone(),
            reason,
            blocked: false,
        })?;
        Ok(End::Final(Status::Skipped))
    };

    if let Some(condition) = &step.when {
        match shared.context.eval(condition, &step.id) {
            Ok(true) => {}
            Ok(false) => return skip(format!("condition `{condition}` is false")),
            Err(error) => return fail_before_start(&shared, step, prior, error),
        }
    }
    if step.live_only && shared.mode == Mode::Drill {
        return skip("live-only: a drill does not run it (use --mode incident)".into());
    }

    let interrupted_attempt = prior
        .filter(|p| {
            p.status == Status::Running || p.question.as_ref().is_some_and(|q| q.ask == Ask::Rerun)
        })
        .and_then(|p| p.attempts.last());
    if let Some(attempt) = interrupted_attempt.filter(|_| !step.kind.idempotent()) {
        let text = format!(
            "`{}` was running when the run stopped (attempt {}, started {}); it may have partly happened.",
            step.id, attempt.number, attempt.started_at
        );
        let question = Gate {
            ask: Ask::Rerun,
            text,
            approvers: 1,
            timeout: None,
        };
        match settle(&shared, step, prior, question, &cancel).await? {
            Settled::Yes(_) => {}
            Settled::No => return Ok(End::Final(Status::Rejected)),
            Settled::Waiting => return Ok(End::Waiting),
            Settled::Cancelled => return Ok(End::Final(Status::Cancelled)),
        }
    }

    if shared.mode == Mode::Incident && shared.operator.interactive() {
        let operator = shared.operator.clone();
        let (id, summary) = (step.id.clone(), step.params.summary());
        let (elapsed, rto) = (shared.elapsed(), shared.rto);
        let go = ask_human(&shared, &cancel, move || {
            operator.confirm(&id, &summary, elapsed, rto)
        })
        .await;
        match go {
            Some(Go::Proceed) => {}
            Some(Go::Skip { by }) => return skip(format!("skipped by {by}")),
            Some(Go::Abort { by }) => return Ok(End::Abort(by)),
            None => return Ok(End::Final(Status::Cancelled)),
        }
    }

    let mut gates = gates(step);
    // Nobody at a terminal confirms each step of an incident: a live-only step (one that
    // touches production) then needs a yes of its own — `--approve STEP`, `--approve-all`,
    // or `drillbook approve` while the run waits.
    if shared.mode == Mode::Incident
        && !shared.operator.interactive()
        && step.live_only
        && step.approval.is_none()
    {
        gates.insert(
            0,
            Gate {
                ask: Ask::Gate,
                text: format!(
                    "`{}` is live-only: {}. Run it?",
                    step.id,
                    step.params.summary()
                ),
                approvers: 1,
                timeout: None,
            },
        );
    }
    let mut decided = None;
    for mut gate in gates {
        gate.text = match shared.context.render(&gate.text, &step.id) {
            Ok(text) => text,
            Err(error) => return fail_before_start(&shared, step, prior, error),
        };
        match settle(&shared, step, prior, gate, &cancel).await? {
            Settled::Yes(who) => decided = Some(who),
            Settled::No => return Ok(End::Final(Status::Rejected)),
            Settled::Waiting => return Ok(End::Waiting),
            Settled::Cancelled => return Ok(End::Final(Status::Cancelled)),
        }
    }

    attempts(&shared, index, &cancel, decided).await
}

/// The human gates in front of a step, in order: its `approval:`, then for a `kind: approval`
/// step its own question, and for a manual step the attestation.
fn gates(step: &Step) -> Vec<Gate> {
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
struct Gate {
    ask: Ask,
    /// The prompt or instructions (rendered before asking).
    text: String,
    /// Distinct people whose "yes" is needed.
    approvers: u32,
    /// Expiry rejects.
    timeout: Option<Duration>,
}

enum Settled {
    Yes((String, Timestamp)),
    No,
    Waiting,
    Cancelled,
}

/// Gets a decision on `ask` from the journal, pre-approval flags, or the operator.
async fn settle(
    shared: &Shared,
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

    if shared.pre_approved(&step.id, ask) && !yes.iter().any(|(by, _)| *by == shared.operator_name)
    {
        let record = shared.emitter.emit(Event::ApprovalDecided {
            step: step.id.clone(),
            ask,
            approved: true,
            by: shared.operator_name.clone(),
            reason: None,
            pre_approved: true,
        })?;
        yes.push((shared.operator_name.clone(), record.at));
    }
    if enough(&yes) {
        return Ok(Settled::Yes(yes.last().cloned().unwrap_or_default()));
    }

    let expires_at = match &open {
        Some(question) => question.expires_at,
        None => {
            let expires_at = timeout.and_then(|t| {
                Timestamp::now()
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
                let left = at.duration_since(Timestamp::now());
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
        let question = Question {
            step: step.id.clone(),
            ask,
            text: text.clone(),
            summary: step.params.summary(),
            approved_by: yes.iter().map(|(by, _)| by.clone()).collect(),
            approvers,
            elapsed: shared.elapsed(),
            rto: shared.rto,
        };
        let operator = shared.operator.clone();
        let asked = ask_human(shared, cancel, move || operator.ask(&question));
        let reply = match remaining {
            Some(left) => match tokio::time::timeout(left, asked).await {
                Ok(reply) => reply,
                Err(_) => return expired(&reject),
            },
            None => asked.await,
        };
        match reply {
            None => return Ok(Settled::Cancelled),
            Some(Reply::Unavailable) => return Ok(Settled::Waiting),
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

/// Runs a blocking conversation with the operator, one at a time, off the async threads.
/// `None` when the run was cancelled meanwhile.
async fn ask_human<T: Send + 'static>(
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

/// A step that fails before any attempt (its condition or prompt would not render).
fn fail_before_start(
    shared: &Shared,
    step: &Step,
    prior: Option<&StepState>,
    error: String,
) -> Result<End, Fatal> {
    let attempt = next_attempt(prior);
    shared.emitter.emit(Event::StepStarted {
        step: step.id.clone(),
        attempt,
        params: serde_json::Value::Null,
    })?;
    shared.emitter.emit(Event::StepFinished {
        step: step.id.clone(),
        attempt,
        status: Status::Failed,
        outputs: Default::default(),
        error: Some(error),
        evidence: Vec::new(),
    })?;
    Ok(End::Final(Status::Failed))
}

fn next_attempt(prior: Option<&StepState>) -> u32 {
    prior
        .and_then(|p| p.attempts.last())
        .map_or(1, |a| a.number + 1)
}

/// The attempts: each recorded before it starts and after it ends, with the timeout around
/// it and the backoff between.
async fn attempts(
    shared: &Arc<Shared>,
    index: usize,
    cancel: &CancellationToken,
    decided: Option<(String, Timestamp)>,
) -> Result<End, Fatal> {
    let step = &shared.playbook.steps[index];
    let first = next_attempt(shared.prior[index].as_ref());
    let mut status = Status::Failed;
    for n in 0..step.retry.attempts {
        let attempt = first + n;
        let params = render_params(shared, step);
        shared.emitter.emit(Event::StepStarted {
            step: step.id.clone(),
            attempt,
            params: params.as_ref().ok().cloned().unwrap_or_default(),
        })?;
        let outcome = match params {
            Err(error) => Outcome::Failed(StepFailure::new(error)),
            Ok(_) => run_once(shared, step, attempt, cancel, decided.as_ref()).await,
        };
        let (outputs, error, evidence);
        let permanent = matches!(&outcome, Outcome::Failed(failure) if failure.permanent);
        (status, outputs, error, evidence) = match outcome {
            Outcome::Done(done) => (Status::Succeeded, done.outputs, None, done.evidence),
            Outcome::TimedOut(limit) => (
                Status::TimedOut,
                Default::default(),
                Some(format!(
                    "timed out after {}",
                    crate::duration::Duration(limit)
                )),
                Vec::new(),
            ),
            Outcome::Failed(failure) => (
                if failure.cancelled {
                    Status::Cancelled
                } else {
                    Status::Failed
                },
                failure.outputs,
                Some(failure.message),
                failure.evidence,
            ),
        };
        if step.clock_stop && status == Status::Succeeded {
            // Before the clock stop is recorded: a repeat still sending finishes first, so
            // every message is journalled and none after it.
            shared.stop_repeats().await;
        }
        shared.emitter.emit(Event::StepFinished {
            step: step.id.clone(),
            attempt,
            status,
            outputs: outputs.clone(),
            error,
            evidence,
        })?;
        shared.context.set_step(
            &step.id,
            StepView {
                status,
                outputs,
                skipped_reason: None,
            },
        );
        if let (Status::Succeeded, StepConfig::Notify(notify)) = (status, &step.params)
            && let Some(every) = notify.every
        {
            tokio::spawn(repeat(shared.clone(), index, attempt, every.0));
        }
        let retryable = matches!(status, Status::Failed | Status::TimedOut)
            && !permanent
            && n + 1 < step.retry.attempts
            && !cancel.is_cancelled();
        if !retryable {
            break;
        }
        let delay = retry::delay(&step.retry, n + 1, fastrand::f64());
        shared.emitter.emit(Event::RetryScheduled {
            step: step.id.clone(),
            attempt: attempt + 1,
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        })?;
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => {
                shared.emitter.emit(Event::StepSkipped {
                    step: step.id.clone(),
                    reason: "interrupted while waiting to retry".into(),
                    blocked: true,
                })?;
                return Ok(End::Final(Status::Cancelled));
            }
        }
    }
    Ok(End::Final(status))
}

/// A resumed run is live again: the `every:` notifications it had started repeat again (the
/// first `every` after the resume) unless the clock already stopped.
pub(crate) fn resume_repeats(shared: &Arc<Shared>) {
    let succeeded = |prior: &Option<StepState>| {
        prior
            .as_ref()
            .is_some_and(|p| p.status == Status::Succeeded)
    };
    let clock_stopped = shared
        .playbook
        .steps
        .iter()
        .zip(&shared.prior)
        .any(|(step, prior)| step.clock_stop && succeeded(prior));
    if clock_stopped {
        return;
    }
    for (index, (step, prior)) in shared.playbook.steps.iter().zip(&shared.prior).enumerate() {
        if let (StepConfig::Notify(notify), Some(p)) = (&step.params, prior)
            && let Some(every) = notify.every
            && p.status == Status::Succeeded
        {
            let attempt = p.attempts.last().map_or(1, |a| a.number);
            tokio::spawn(repeat(shared.clone(), index, attempt, every.0));
        }
    }
}

/// Sends a notify step again every `every` while the run is live: until the clock-stop step
/// succeeds or the main steps are over. Each send renders the message again, so it carries
/// the current progress (`run.elapsed`, `run.current_step`…).
async fn repeat(shared: Arc<Shared>, index: usize, attempt: u32, every: Duration) {
    let step = &shared.playbook.steps[index];
    let stop = shared.repeating.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        let _sending = shared.sending.read().await;
        if stop.is_cancelled() {
            return;
        }
        // Not cancelled midway: a message the receiver may already have is journalled.
        let (error, outputs) =
            match run_once(&shared, step, attempt, &CancellationToken::new(), None).await {
                Outcome::Done(done) => (None, done.outputs),
                Outcome::Failed(failure) => (Some(failure.message), failure.outputs),
                Outcome::TimedOut(limit) => (
                    Some(format!(
                        "timed out after {}",
                        crate::duration::Duration(limit)
                    )),
                    Default::default(),
                ),
            };
        // Where it went and what it said, as the step's own outputs record them.
        let text = |key: &str| {
            outputs
                .get(key)
                .and_then(|value| value.as_str())
                .map(str::to_owned)
        };
        let event = Event::NotificationRepeated {
            step: step.id.clone(),
            error,
            to: text("to"),
            message: text("message"),
        };
        if shared.emitter.emit(event).is_err() {
            return;
        }
    }
}

enum Outcome {
    Done(Done),
    Failed(StepFailure),
    TimedOut(Duration),
}

async fn run_once(
    shared: &Arc<Shared>,
    step: &Step,
    attempt: u32,
    cancel: &CancellationToken,
    decided: Option<&(String, Timestamp)>,
) -> Outcome {
    let render = |text: &str| shared.context.render(text, &step.id);
    let progress = |p| shared.emitter.progress(&step.id, p);
    let ctx = StepContext {
        id: &step.id,
        attempt,
        run_dir: &shared.run_dir,
        masker: &shared.masker,
        cancel: cancel.clone(),
        render: &render,
        progress: &progress,
        decided: decided.map(|(by, at)| (by.as_str(), *at)),
        http: &shared.http,
        clock_start: shared.clock_start,
        rpo: shared.playbook.objectives.rpo,
    };
    let work = async {
        match step.params.run(&ctx).await {
            Ok(done) => Outcome::Done(done),
            Err(failure) => Outcome::Failed(failure),
        }
    };
    match step.timeout {
        // Dropping the future on timeout drops the step's children with it (a command's
        // process group is killed on drop). An approval step's timeout bounds its gate instead.
        Some(limit) if step.kind != Kind::Approval => tokio::time::timeout(limit.0, work)
            .await
            .unwrap_or(Outcome::TimedOut(limit.0)),
        _ => work.await,
    }
}

/// The step's parameters with templates rendered, for the journal (masked by the emitter).
fn render_params(shared: &Shared, step: &Step) -> Result<serde_json::Value, String> {
    let mut value = serde_json::to_value(&step.params).map_err(|e| e.to_string())?;
    shared.context.render_value(&mut value, &step.id)?;
    Ok(value)
}
