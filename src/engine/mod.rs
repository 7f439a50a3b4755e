//! The runner: takes a validated playbook (or a journal to resume), holds the run's lock,
//! and drives the plan through [`run::Runner`]. Every state change goes through the journal
//! first; the terminal and the log only observe.
//!
//! The CLI calls [`prepare`] or [`prepare_resume`] (no side effects beyond the state
//! directory), sets up the display for the run it got, then [`execute`]s it. [`approve`] and
//! [`dry_run`] serve the commands of the same names. What they share — the lock, the plan as
//! journalled, the projection, the targets check — is here.

mod approve;
mod context;
mod dry_run;
mod emit;
mod execute;
mod gate;
mod interlock;
mod prepare;
mod reach;
mod refusal;
mod repeat;
mod resume;
mod retry;
mod run;
mod step;
mod survivors;
mod targets;
mod vars;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;

use crate::event::{Event, Mode, PlannedStep};
use crate::journal::Journal;
use crate::model::Playbook;
use crate::projection::Projection;
use crate::runs::{Hold, StateDir};
use crate::secrets::{Masker, Secrets};
use crate::state::RunState;

use context::Context;

pub use approve::{Decision, approve};
pub use dry_run::dry_run;
pub use execute::execute;
pub use prepare::{RunOptions, prepare};
pub use reach::reach;
pub use refusal::{Again, Refusal};
pub use resume::{ResumeOptions, prepare_resume};

/// A run ready to go: lock held, journal open, secrets resolved.
pub struct Prepared {
    pub run_id: String,
    pub run_dir: PathBuf,
    pub playbook: Playbook,
    pub mode: Mode,
    pub operator: String,
    /// When the RTO clock started (declared incident time or the first start).
    pub clock_start: Timestamp,
    pub masker: Masker,
    /// Where the RTO clock is projected to stop, for the display; the engine keeps it current.
    pub projection: Arc<Projection>,
    /// What the operator should know before it starts (a secret too short to mask).
    pub warnings: Vec<String>,
    /// In a drill, the live targets to stay away from.
    live: Option<Arc<interlock::Live>>,
    journal: Journal,
    _lock: Hold,
    first_event: Event,
    context: Context,
    prior: Vec<Option<crate::state::StepState>>,
    approve: Vec<String>,
    approve_all: bool,
    /// Who gave `approve` and `approve_all`: the operator of `run`, also when resumed.
    pre_approver: String,
    /// Their OS account: the runner's, or the one journalled with the pre-approvals.
    pre_approver_account: Option<crate::event::OsAccount>,
    /// A new run journals its pre-approvals; a resumed one has them in its journal.
    journal_pre_approvals: bool,
    /// The programs the journal says were started: a resume stops any still running first.
    children: Vec<crate::state::JournalledChild>,
    max_parallel: usize,
}

impl Prepared {
    /// Where the run's files (its log) go before it starts: the run's directory appears with
    /// its first record (see `Journal::create`).
    pub fn files_dir(&self) -> &Path {
        self.journal.dir()
    }
}

/// The journal, written to the shared state first when the state is shared.
fn mirrored(dir: &StateDir, run_id: &str, journal: Journal) -> Journal {
    match dir.journal_mirror(run_id) {
        Some(mirror) => journal.mirrored(mirror),
        None => journal,
    }
}

fn fold(path: &Path) -> Result<RunState, String> {
    let replay = crate::journal::read(path).map_err(|e| e.to_string())?;
    RunState::fold(&replay.records)
}

/// The projection of a run of `playbook` in `mode`, from the past runs of the same playbook in
/// the same mode (a drill is not an incident: no prompts, no human waits), other than `this`
/// run, when resuming one.
fn projection(
    playbook: &Playbook,
    runs: &[RunState],
    this: Option<&str>,
    mode: crate::event::Mode,
    clock_start: Timestamp,
) -> Arc<Projection> {
    let past: Vec<&RunState> = crate::history::runs_of(runs, &playbook.name)
        .into_iter()
        .filter(|run| Some(run.run_id.as_str()) != this && run.mode == mode)
        .collect();
    Arc::new(Projection::new(
        playbook
            .steps
            .iter()
            .map(crate::predict::PlanStep::from_model)
            .collect(),
        &crate::predict::History::from_runs(&past),
        playbook.objectives.rto,
        clock_start,
    ))
}

fn planned(playbook: &Playbook) -> Vec<PlannedStep> {
    playbook
        .steps
        .iter()
        .map(|step| PlannedStep {
            id: step.id.clone(),
            kind: step.kind.name().to_string(),
            description: step.description.clone(),
            needs: step.needs.clone(),
            summary: step.params.summary(),
            cleanup: step.cleanup,
            clock_stop: step.clock_stop,
            live_only: step.live_only,
        })
        .collect()
}

/// What a run knows before it starts: the operator's warnings, and in a drill the live
/// targets that the interlock keeps it away from.
type Contextualized = (Vec<String>, Option<Arc<interlock::Live>>);

/// The context's variables (`templates`) and this mode's targets, rendered. A drill whose
/// targets, or whatever its steps write through as far as it renders now, are live is
/// refused; so is one that cannot tell what is live.
fn contextualize(
    playbook: &Playbook,
    mode: Mode,
    templates: &BTreeMap<String, String>,
    secrets: &Secrets,
    context: &mut Context,
) -> Result<Contextualized, Refusal> {
    context.set_vars(templates).map_err(Refusal::Usage)?;
    let resolved = context
        .set_targets(playbook.targets.of(mode))
        .map_err(Refusal::Usage)?;
    let warnings: Vec<String> = secrets
        .too_short()
        .into_iter()
        .map(|name| {
            format!(
                "secret `{name}` is shorter than {} characters: it is shown as {} where a template puts it, but not masked in program output or messages, where a value that short would hide ordinary words and numbers",
                crate::secrets::SHORTEST_MASKED,
                crate::secrets::MASK
            )
        })
        .collect();
    if mode == Mode::Drill {
        let live = interlock::Live::resolve(playbook, context)?;
        let mut clashes = live.drill_targets(&resolved);
        clashes.extend(live.plan(playbook, context));
        if !clashes.is_empty() {
            return Err(Refusal::Live(clashes));
        }
        return Ok((warnings, Some(Arc::new(live))));
    }
    Ok((warnings, None))
}

/// The playbook's hold (see [`StateDir::hold`]): on this machine the flock is the rule, and the
/// journals of unfinished runs back it up (a deleted `locks/` directory would otherwise let a
/// second run start beside a live one); in a shared state, the lease.
fn lock(dir: &StateDir, playbook: &str, run_id: &str) -> Result<Hold, Refusal> {
    dir.hold(playbook, run_id).map_err(|error| Refusal::Locked {
        error,
        at_terminal: false,
    })
}
