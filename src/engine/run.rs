//! The scheduler: starts ready steps up to the parallelism limit, stops starting main steps
//! after a failure, runs cleanup steps at the end whatever happened, and turns Ctrl-C into
//! cancellation (once) and abandoned cleanup (twice).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::context::{Context, StepView};
use super::emit::Emitter;
use super::step::{self, End, Fatal};
use crate::event::{Ask, Event, Mode, Status};
use crate::human::Operator;
use crate::model::Playbook;
use crate::outcome::Outcome;
use crate::secrets::Masker;
use crate::state::{RunState, StepState};

/// What every step task shares.
pub(crate) struct Shared {
    pub playbook: Playbook,
    pub emitter: Emitter,
    pub operator: Arc<dyn Operator>,
    pub context: Context,
    pub run_dir: PathBuf,
    pub masker: Masker,
    pub http: reqwest::Client,
    pub mode: Mode,
    pub approve_all: bool,
    pub approve: Vec<String>,
    /// Who gave `approve` and `approve_all` (to `run`; a resume keeps them).
    pub pre_approver: String,
    /// Their OS account, for the pre-approvals.
    pub pre_approver_account: Option<crate::event::OsAccount>,
    pub run_id: String,
    /// Who runs it now (`--as`, or the OS user), and as which OS account.
    pub operator_name: String,
    pub account: crate::event::OsAccount,
    pub clock_start: Timestamp,
    pub rto: Option<Duration>,
    /// In a drill, the live targets no step may write to.
    pub live: Option<Arc<super::interlock::Live>>,
    /// Each step's state in the journal before this invocation (resume), by step index.
    pub prior: Vec<Option<StepState>>,
    /// One conversation with the operator at a time.
    pub asking: tokio::sync::Mutex<()>,
    /// Stops `every:` notifications: cancelled when the clock stops or the main steps end.
    pub repeating: CancellationToken,
    /// Held (shared) by a repeat while it sends; taken whole by `stop_repeats`, so a message
    /// already on its way is delivered and journalled before the stop is.
    pub sending: tokio::sync::RwLock<()>,
}

impl Shared {
    /// No `every:` notification starts after this returns, and none is still being sent.
    pub(crate) async fn stop_repeats(&self) {
        self.repeating.cancel();
        let _idle = self.sending.write().await;
    }

    pub(crate) fn elapsed(&self) -> Duration {
        crate::measure::elapsed(self.clock_start, crate::clock::now()).unsigned_abs()
    }

    /// `--approve-all` passes approval gates; `--approve STEP` also attests a manual step,
    /// because it names the step. Neither answers whether to re-run a step a crash
    /// interrupted: whoever gave them could not know it might have partly happened.
    pub(crate) fn pre_approved(&self, step: &str, ask: Ask) -> bool {
        let named = self.approve.iter().any(|s| s == step);
        match ask {
            Ask::Gate => self.approve_all || named,
            Ask::Attest => named,
            Ask::Rerun => false,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Slot {
    Pending,
    Running,
    Waiting,
    Done(Status),
}

pub(crate) struct Runner {
    shared: Arc<Shared>,
    needs: Vec<Vec<usize>>,
    slots: Vec<Slot>,
    /// Not run because of something upstream; dependents are not run either.
    blocked: Vec<bool>,
    max_parallel: usize,
}

/// Why main steps stopped being started.
enum Stop {
    Failed(String),
    Interrupted,
    Aborted(String),
}

impl Runner {
    pub(crate) fn new(shared: Shared, max_parallel: usize) -> Runner {
        let steps = &shared.playbook.steps;
        let needs = steps
            .iter()
            .map(|step| {
                step.needs
                    .iter()
                    .filter_map(|need| shared.playbook.index_of(need))
                    .collect()
            })
            .collect();
        // What the journal already settled stays settled; everything else runs (again).
        let mut slots: Vec<Slot> = shared
            .prior
            .iter()
            .map(|prior| match prior {
                Some(p) if p.status == Status::Succeeded => Slot::Done(Status::Succeeded),
                Some(p) if p.status == Status::Rejected => Slot::Done(Status::Rejected),
                Some(p) if p.status == Status::Skipped && !p.blocked => Slot::Done(Status::Skipped),
                _ => Slot::Pending,
            })
            .collect();
        // Cleanup runs at the end of the run: if any main step still has to run, so does it.
        let main_unfinished = steps
            .iter()
            .zip(&slots)
            .any(|(step, slot)| !step.cleanup && *slot == Slot::Pending);
        if main_unfinished {
            for (step, slot) in steps.iter().zip(slots.iter_mut()) {
                if step.cleanup {
                    *slot = Slot::Pending;
                }
            }
        }
        for (step, prior) in steps.iter().zip(&shared.prior) {
            if let Some(p) = prior.as_ref().filter(|p| p.status.is_final()) {
                shared.context.set_step(
                    &step.id,
                    StepView {
                        status: p.status,
                        outputs: p.outputs.clone(),
                        skipped_reason: p.skipped_reason.clone(),
                    },
                );
            }
        }
        let blocked = vec![false; slots.len()];
        Runner {
            shared: Arc::new(shared),
            needs,
            slots,
            blocked,
            max_parallel: max_parallel.max(1),
        }
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Runs to the end (or a pause for a human) and says how it ended.
    pub(crate) async fn run(mut self) -> Result<Outcome, Fatal> {
        let main_cancel = CancellationToken::new();
        let cleanup_cancel = CancellationToken::new();
        let mut interrupts = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
        let mut terminations = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
        let mut signals = 0;
        let mut stop: Option<Stop> = None;
        let mut tasks: JoinSet<(usize, Result<End, Fatal>)> = JoinSet::new();
        let mut cleanup_phase = false;
        let mut paused = false;
        super::repeat::resume_repeats(&self.shared);

        loop {
            self.start_ready(
                &mut tasks,
                cleanup_phase,
                &stop,
                &main_cancel,
                &cleanup_cancel,
            )?;
            if tasks.is_empty() {
                if cleanup_phase {
                    // A cleanup step that waits for a human (a re-run question after a
                    // crash) pauses the run as a main step would: it has not ended.
                    paused |= self
                        .slots
                        .iter()
                        .any(|slot| matches!(slot, Slot::Pending | Slot::Waiting));
                    break;
                }
                // Main steps can go no further: they are done, or wait for a human.
                let stuck: Vec<usize> = self
                    .main_indices()
                    .filter(|i| matches!(self.slots[*i], Slot::Pending | Slot::Waiting))
                    .collect();
                if !stuck.is_empty() {
                    match &stop {
                        None => {
                            paused = true;
                            break;
                        }
                        Some(stop) => {
                            let reason = stop.reason();
                            for i in stuck {
                                self.block(i, &reason)?;
                            }
                        }
                    }
                }
                cleanup_phase = true;
                self.shared.stop_repeats().await;
                continue;
            }
            let (index, end) = tokio::select! {
                joined = tasks.join_next() => match joined {
                    Some(Ok(result)) => result,
                    Some(Err(error)) => return Err(format!("a step task failed: {error}")),
                    None => continue,
                },
                _ = interrupts.recv() => { self.interrupt(&mut signals, &mut stop, &main_cancel, &cleanup_cancel)?; continue; }
                _ = terminations.recv() => { self.interrupt(&mut signals, &mut stop, &main_cancel, &cleanup_cancel)?; continue; }
            };
            let step = &self.shared.playbook.steps[index];
            self.slots[index] = match end? {
                End::Waiting => Slot::Waiting,
                End::Abort(by, reason) => {
                    self.shared.emitter.emit(Event::Aborted {
                        step: step.id.clone(),
                        by: by.clone(),
                        reason,
                        account: Some(self.shared.account.clone()),
                    })?;
                    stop.get_or_insert(Stop::Aborted(by));
                    main_cancel.cancel();
                    Slot::Done(Status::Cancelled)
                }
                End::Final(status) => {
                    let failed = !matches!(status, Status::Succeeded | Status::Skipped)
                        && !step.continue_on_failure;
                    if failed && !step.cleanup {
                        stop.get_or_insert(Stop::Failed(format!("`{}` {status}", step.id)));
                    }
                    Slot::Done(status)
                }
            };
        }

        let exit = if matches!(stop, Some(Stop::Interrupted)) {
            Outcome::Interrupted
        } else if paused {
            Outcome::WaitingApproval
        } else if stop.is_some() || self.any_failed() {
            Outcome::Failed
        } else {
            Outcome::Succeeded
        };
        self.shared.stop_repeats().await;
        Ok(exit)
    }

    fn main_indices(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.slots.len()).filter(|i| !self.shared.playbook.steps[*i].cleanup)
    }

    fn any_failed(&self) -> bool {
        self.slots
            .iter()
            .zip(&self.shared.playbook.steps)
            .any(|(slot, step)| {
                matches!(slot, Slot::Done(s) if !matches!(s, Status::Succeeded | Status::Skipped))
                    && !step.continue_on_failure
            })
    }

    fn start_ready(
        &mut self,
        tasks: &mut JoinSet<(usize, Result<End, Fatal>)>,
        cleanup_phase: bool,
        stop: &Option<Stop>,
        main_cancel: &CancellationToken,
        cleanup_cancel: &CancellationToken,
    ) -> Result<(), Fatal> {
        for index in 0..self.slots.len() {
            let step = &self.shared.playbook.steps[index];
            if self.slots[index] != Slot::Pending || step.cleanup != cleanup_phase {
                continue;
            }
            let mut ready = true;
            let mut broken = None;
            for &need in &self.needs[index] {
                match self.slots[need] {
                    Slot::Done(status) => {
                        let need_step = &self.shared.playbook.steps[need];
                        let ok = matches!(status, Status::Succeeded | Status::Skipped)
                            || need_step.continue_on_failure;
                        if self.blocked[need] || !ok {
                            broken = Some((need_step.id.clone(), status));
                        }
                    }
                    Slot::Pending | Slot::Running | Slot::Waiting => ready = false,
                }
            }
            if let Some((need, status)) = broken {
                self.block(index, &format!("needs `{need}`, which {}", said(status)))?;
                continue;
            }
            if !step.cleanup {
                // Without fail_fast, a failure stops only what needs it (`broken` above).
                let goes_on =
                    matches!(stop, Some(Stop::Failed(_))) && !self.shared.playbook.fail_fast;
                if let Some(stop) = stop.as_ref().filter(|_| !goes_on) {
                    self.block(index, &stop.reason())?;
                    continue;
                }
            } else if cleanup_cancel.is_cancelled() {
                self.block(index, "cleanup was aborted (second Ctrl-C)")?;
                continue;
            }
            if !ready {
                continue;
            }
            if tasks.len() >= self.max_parallel {
                break;
            }
            self.slots[index] = Slot::Running;
            let cancel = if step.cleanup {
                cleanup_cancel.child_token()
            } else {
                main_cancel.child_token()
            };
            let shared = self.shared.clone();
            tasks.spawn(async move { (index, step::drive(shared, index, cancel).await) });
        }
        Ok(())
    }

    /// Records that a step will not run because of something upstream.
    fn block(&mut self, index: usize, reason: &str) -> Result<(), Fatal> {
        let step = &self.shared.playbook.steps[index];
        self.shared.emitter.emit(Event::StepSkipped {
            step: step.id.clone(),
            reason: reason.to_string(),
            blocked: true,
        })?;
        self.shared.context.set_step(
            &step.id,
            StepView {
                status: Status::Skipped,
                outputs: Default::default(),
                skipped_reason: Some(reason.to_string()),
            },
        );
        self.slots[index] = Slot::Done(Status::Skipped);
        self.blocked[index] = true;
        Ok(())
    }

    fn interrupt(
        &mut self,
        signals: &mut u32,
        stop: &mut Option<Stop>,
        main_cancel: &CancellationToken,
        cleanup_cancel: &CancellationToken,
    ) -> Result<(), Fatal> {
        *signals += 1;
        if *signals == 1 {
            self.shared.emitter.emit(Event::Interrupted {
                reason: "interrupted (Ctrl-C): cancelling running steps, then cleanup; press Ctrl-C again to abort cleanup".into(),
            })?;
            *stop = Some(Stop::Interrupted);
            main_cancel.cancel();
        } else if *signals == 2 {
            self.shared.emitter.emit(Event::Interrupted {
                reason: "interrupted again: cleanup aborted".into(),
            })?;
            cleanup_cancel.cancel();
        }
        Ok(())
    }
}

impl Stop {
    fn reason(&self) -> String {
        match self {
            Stop::Failed(what) => format!("not started: {what}"),
            Stop::Interrupted => "not started: the run was interrupted".into(),
            Stop::Aborted(by) => format!("not started: the run was aborted by {by}"),
        }
    }
}

/// "which failed", "which timed out", "which was rejected"…
fn said(status: Status) -> &'static str {
    match status {
        Status::Failed => "failed",
        Status::TimedOut => "timed out",
        Status::Rejected => "was rejected",
        Status::Cancelled => "was cancelled",
        Status::Skipped => "was not run",
        Status::Succeeded => "succeeded",
        Status::Pending | Status::Running | Status::WaitingApproval => "has not finished",
    }
}

/// Objectives decide between success and a missed objective once every step did its part.
pub(crate) fn final_outcome(outcome: Outcome, state: &RunState) -> Outcome {
    if outcome != Outcome::Succeeded {
        return outcome;
    }
    let objectives = crate::measure::objectives(state);
    let missed = [objectives.rto.met, objectives.rpo.met].contains(&Some(false));
    if missed {
        Outcome::ObjectiveMissed
    } else {
        Outcome::Succeeded
    }
}
