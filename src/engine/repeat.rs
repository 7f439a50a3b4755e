//! `every:`: a notify step sent again while the run is live, until the clock stops.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::run::Shared;
use super::step::{Attempted, run_once};
use crate::event::{Event, Status};
use crate::state::StepState;
use crate::steps::StepConfig;
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
pub(super) async fn repeat(shared: Arc<Shared>, index: usize, attempt: u32, every: Duration) {
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
                Attempted::Done(done) => (None, done.outputs),
                Attempted::Failed(failure) => (Some(failure.message), failure.outputs),
                Attempted::TimedOut(limit) => (
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
