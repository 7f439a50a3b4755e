//! One step, from "ready" to a final status: its condition, mode restriction, human gates, then
//! its attempts with timeout and retry. Everything it learns goes through the emitter first.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use super::context::StepView;
use super::gate::{Gate, Settled, ask_human, gates, settle};
use super::repeat::repeat;
use super::retry;
use super::run::Shared;
use crate::event::{Ask, ErrorClass, Event, Mode, Status};
use crate::human::{Confirmation, Go};
use crate::model::Step;
use crate::state::StepState;
use crate::steps::{Done, Kind, StepConfig, StepContext, StepFailure};

/// How a step's turn ended.
pub(crate) enum End {
    Final(Status),
    /// A human must answer first; the run pauses (exit 4) once nothing else can move.
    Waiting,
    /// The incident operator said stop: who, and why.
    Abort(String, Option<String>),
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
    if step.live_only && !shared.mode.is_live() {
        return skip("live-only: a drill does not run it (use --mode incident or live)".into());
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
            allowed: Vec::new(),
            signed: false,
        };
        match settle(&shared, step, prior, question, &cancel).await? {
            Settled::Yes(_) => {}
            Settled::No => return Ok(End::Final(Status::Rejected)),
            Settled::Waiting => return Ok(End::Waiting),
            Settled::Cancelled => return Ok(End::Final(Status::Cancelled)),
            Settled::Skip(by) => return skip(format!("skipped by {by}")),
            Settled::Abort(by, reason) => return Ok(End::Abort(by, reason)),
        }
    }

    let mut gates = gates(step);
    // An incident's operator confirms each step once: a step with a gate of its own is
    // confirmed by answering it.
    let incident = shared.mode == Mode::Incident && shared.operator.interactive();
    if incident && gates.is_empty() {
        let operator = shared.operator.clone();
        let confirmation = Confirmation {
            step: step.id.clone(),
            summary: shown_summary(&shared, step),
            targets: Vec::new(),
            elapsed: shared.elapsed(),
            rto: shared.rto,
        };
        shared.emitter.emit(Event::Confirming {
            step: step.id.clone(),
            by: shared.operator_name.clone(),
        })?;
        let asked = std::time::Instant::now();
        let naming = shared.clone();
        let go = ask_human(&shared, &cancel, move || {
            let targets = writes_to(&naming, &naming.playbook.steps[index]);
            operator.confirm(&Confirmation {
                targets,
                ..confirmation
            })
        })
        .await;
        let answer = match &go {
            Some(Go::Proceed) => "proceed",
            Some(Go::Skip { .. }) => "skip",
            Some(Go::Abort { .. }) => "abort",
            None => "none (the run stopped)",
        };
        // The time at the prompt is a human's, whatever the answer.
        shared.emitter.emit(Event::Confirmed {
            step: step.id.clone(),
            answer: answer.into(),
            waited_ms: asked.elapsed().as_millis() as u64,
        })?;
        match go {
            Some(Go::Proceed) => {}
            Some(Go::Skip { by }) => return skip(format!("skipped by {by}")),
            Some(Go::Abort { by, reason }) => return Ok(End::Abort(by, reason)),
            None => return Ok(End::Final(Status::Cancelled)),
        }
    }

    // Unless someone at a terminal confirms each step of an incident, a live-only step (one
    // that touches production) needs a yes of its own — at the terminal, `--approve STEP`,
    // `--approve-all`, or `drillbook approve` while the run waits.
    let confirmed = shared.mode == Mode::Incident && shared.operator.interactive();
    if shared.mode.is_live() && !confirmed && step.live_only && step.approval.is_none() {
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
                allowed: Vec::new(),
                signed: false,
            },
        );
    }
    let mut decided = None;
    for mut gate in gates {
        // What people are asked, and the journal keeps: secrets as `***`.
        gate.text = match shared.context.render_shown(&gate.text, &step.id) {
            Ok(text) => text,
            Err(error) => return fail_before_start(&shared, step, prior, error),
        };
        match settle(&shared, step, prior, gate, &cancel).await? {
            Settled::Yes(who) => decided = Some(who),
            Settled::No => return Ok(End::Final(Status::Rejected)),
            Settled::Waiting => return Ok(End::Waiting),
            Settled::Cancelled => return Ok(End::Final(Status::Cancelled)),
            Settled::Skip(by) => return skip(format!("skipped by {by}")),
            Settled::Abort(by, reason) => return Ok(End::Abort(by, reason)),
        }
    }

    attempts(&shared, index, &cancel, decided).await
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
        // A condition or prompt that does not render will not render next time either.
        error_class: Some(ErrorClass::Permanent),
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
            Err(error) => Attempted::Failed(StepFailure::new(error)),
            Ok(_) => match live_clashes(shared, index).await {
                Some(refused) => Attempted::Failed(refused),
                None => run_once(shared, step, attempt, cancel, decided.as_ref()).await,
            },
        };
        let (outputs, error, evidence);
        let permanent = matches!(&outcome, Attempted::Failed(failure) if failure.permanent);
        let error_class = match &outcome {
            Attempted::Done(_) => None,
            Attempted::Failed(failure) if failure.cancelled => None,
            Attempted::Failed(_) if permanent => Some(ErrorClass::Permanent),
            Attempted::Failed(_) | Attempted::TimedOut(_) => Some(ErrorClass::Transient),
        };
        (status, outputs, error, evidence) = match outcome {
            Attempted::Done(done) => (Status::Succeeded, done.outputs, None, done.evidence),
            Attempted::TimedOut(limit) => (
                Status::TimedOut,
                Default::default(),
                Some(format!(
                    "timed out after {}",
                    crate::duration::Duration(limit)
                )),
                Vec::new(),
            ),
            Attempted::Failed(failure) => (
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
            error_class,
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

pub(super) enum Attempted {
    Done(Done),
    Failed(StepFailure),
    TimedOut(Duration),
}

pub(super) async fn run_once(
    shared: &Arc<Shared>,
    step: &Step,
    attempt: u32,
    cancel: &CancellationToken,
    decided: Option<&(String, Timestamp)>,
) -> Attempted {
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
    // Every program the step starts is journalled before it can do anything worth finding
    // again: `resume` stops what survived a dead drillbook from this record.
    let journal = shared.clone();
    let id = step.id.clone();
    let watcher: crate::connect::child::Watcher = Arc::new(move |child| {
        journal
            .emitter
            .emit(Event::ChildStarted {
                step: id.clone(),
                attempt,
                pid: child.pid,
                pgid: child.pgid,
                start_time: child.start_time,
                boot_id: child.boot_id.clone(),
                program: child.program.clone(),
            })
            .map(drop)
    });
    // Boxed: a step's future is large, and the watcher's scope would hold another copy of it
    // on the worker's stack.
    let work = crate::connect::child::watched(
        watcher,
        Box::pin(async {
            match step.params.run(&ctx).await {
                Ok(done) => Attempted::Done(done),
                Err(failure) => Attempted::Failed(failure),
            }
        }),
    );
    match step.timeout {
        // Dropping the future on timeout drops the step's children with it (a command's
        // process group is killed on drop). An approval step's timeout bounds its gate instead.
        Some(limit) if step.kind != Kind::Approval => tokio::time::timeout(limit.0, work)
            .await
            .unwrap_or(Attempted::TimedOut(limit.0)),
        _ => work.await,
    }
}

/// In a drill, what the step writes through, rendered now, compared with the live targets:
/// the refusal (permanent: trying again writes to the same place) when one is live.
async fn live_clashes(shared: &Arc<Shared>, index: usize) -> Option<StepFailure> {
    let live = shared.live.clone()?;
    let checking = shared.clone();
    let clashes = tokio::task::spawn_blocking(move || {
        live.step(&checking.playbook.steps[index], &checking.context)
    })
    .await
    .unwrap_or_else(|e| vec![format!("the live-target check failed: {e}")]);
    if clashes.is_empty() {
        return None;
    }
    Some(StepFailure {
        permanent: true,
        ..StepFailure::new(format!(
            "refused: a drill never writes to a live system\n  {}",
            clashes.join("\n  ")
        ))
    })
}

/// What the step will do, in one line, its templates rendered as people may see them (secrets
/// masked); what cannot be rendered yet stays a named placeholder.
pub(super) fn shown_summary(shared: &Shared, step: &Step) -> String {
    let summary = step.params.summary();
    shared
        .context
        .render_shown(&summary, &step.id)
        .unwrap_or_else(|_| crate::template::placeholders(&summary, |_| None))
}

/// What the step writes to, each by the identity the interlock compares ("`redis`: redis
/// 127.0.0.1:6379 db 9"), for the person asked to let it run; a value that does not render
/// yet or names nothing recognisable is left out. Resolves names: call it off the async
/// threads.
pub(super) fn writes_to(shared: &Shared, step: &Step) -> Vec<String> {
    let env = crate::target::Env::current();
    step.params
        .writes()
        .into_iter()
        .filter_map(|write| {
            let value = shared.context.render(write.value, &step.id).ok()?;
            let identity = crate::target::Identity::of(&value, write.expect, &env).ok()?;
            let identity = if write.server {
                identity.server()
            } else {
                identity
            };
            Some(
                shared
                    .masker
                    .mask(&format!("`{}`: {identity}", write.param)),
            )
        })
        .collect()
}

/// The step's parameters with templates rendered as the journal shows them: secrets as `***`
/// wherever a template put them, whatever filter they went through.
fn render_params(shared: &Shared, step: &Step) -> Result<serde_json::Value, String> {
    let mut value = serde_json::to_value(&step.params).map_err(|e| e.to_string())?;
    shared.context.render_value_shown(&mut value, &step.id)?;
    Ok(value)
}
