//! Why a command did not do what it was asked: each reason a value, worded in one place and
//! rendered once, at the edge (the CLI decides about colour). Each carries the outcome to exit
//! with.

use jiff::Timestamp;

use crate::format::{format_duration, format_time};
use crate::lock::LockError;
use crate::outcome::Outcome;
use crate::validate::Invalid;

#[derive(Debug)]
pub enum Refusal {
    /// The playbook does not validate.
    Invalid(Invalid),
    /// A stopped run's playbook no longer validates, so it cannot be resumed.
    NoLongerValid { run_id: String, invalid: Invalid },
    /// The command was used wrongly, or the run's state does not allow it (exit 2).
    Usage(String),
    /// Another process holds the playbook's lock, or it cannot be taken. `at_terminal`: the
    /// holder is a run waiting at its terminal for the decision asked here.
    Locked { error: LockError, at_terminal: bool },
    /// The run is over; `again` says what was asked of it ("not running it again").
    Finished {
        run_id: String,
        outcome: Outcome,
        again: Again,
    },
    /// `run --if-due` of a playbook that is not due, or that another runner is running: nothing
    /// to do (exit 0).
    NotDue { playbook: String, why: String },
    /// A drill would write to a live target: each clash names both.
    Live(Vec<String>),
    /// A drill cannot tell what is live: these live targets do not resolve here.
    LiveUnknown(Vec<String>),
    /// `--run-id` of a run of another playbook.
    RunIdTaken {
        run_id: String,
        /// The playbook the run belongs to.
        playbook: String,
        /// The playbook asked to run under its id.
        asked: String,
    },
    /// `--declared-at` later than this machine's clock allows.
    DeclaredInFuture {
        declared_at: Timestamp,
        now: Timestamp,
    },
    /// A dry run whose templates do not all resolve: the plan as far as it rendered, and the
    /// templates that did not.
    Unresolved { plan: String, errors: Vec<String> },
    /// Something needed could not be done (the journal cannot be written): exit 1.
    Failed(String),
}

/// What was asked of a run that is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Again {
    /// `run --run-id` of a run that ran.
    Run,
    /// `resume` of a run that finished.
    Resume,
}

impl Refusal {
    pub(crate) fn usage(message: impl Into<String>) -> Refusal {
        Refusal::Usage(message.into())
    }

    /// The outcome the command exits with.
    pub fn outcome(&self) -> Outcome {
        match self {
            Refusal::Invalid(_)
            | Refusal::NoLongerValid { .. }
            | Refusal::Usage(_)
            | Refusal::RunIdTaken { .. }
            | Refusal::DeclaredInFuture { .. }
            | Refusal::Unresolved { .. }
            | Refusal::Live(_)
            | Refusal::LiveUnknown(_) => Outcome::Invalid,
            Refusal::Locked { error, .. } => match error {
                LockError::Held { .. } | LockError::Leased { .. } => Outcome::Invalid,
                LockError::Io { .. } => Outcome::Failed,
            },
            Refusal::Finished { outcome, .. } => *outcome,
            Refusal::NotDue { .. } => Outcome::Succeeded,
            Refusal::Failed(_) => Outcome::Failed,
        }
    }

    /// The text for standard error, ending with a newline.
    pub fn render(&self, color: bool) -> String {
        match self {
            Refusal::Invalid(invalid) => invalid.render(color),
            Refusal::NoLongerValid { run_id, invalid } => format!(
                "cannot resume run {run_id}: its playbook no longer validates\n{}",
                invalid.render(color)
            ),
            Refusal::Usage(message) | Refusal::Failed(message) => error(message),
            Refusal::NotDue { playbook, why } => format!("{playbook} is not due: {why}\n"),
            Refusal::Locked {
                error: held,
                at_terminal,
            } => error(&if *at_terminal {
                format!("{held}; answer at its terminal")
            } else {
                held.to_string()
            }),
            Refusal::Finished {
                run_id,
                outcome,
                again,
            } => error(&match again {
                Again::Run => format!("run {run_id} already ran ({outcome}); not running it again"),
                Again::Resume => {
                    format!("run {run_id} already finished ({outcome}); there is nothing to resume")
                }
            }),
            Refusal::Live(clashes) => error(&format!(
                "refusing to start a drill against live targets:\n  {}\na drill acts on `targets.drill`; point those at staging or the failover lab",
                clashes.join("\n  ")
            )),
            Refusal::LiveUnknown(unknown) => error(&format!(
                "refusing to start a drill that cannot tell what is live:\n  {}\nset those secrets here, or name each such target without its credentials under `targets.identity` (e.g. postgres://db.internal:5432/app)",
                unknown.join("\n  ")
            )),
            Refusal::RunIdTaken {
                run_id,
                playbook,
                asked,
            } => error(&format!(
                "run {run_id} belongs to playbook `{playbook}`, not `{asked}`; run `{asked}` under another --run-id"
            )),
            Refusal::DeclaredInFuture { declared_at, now } => error(&format!(
                "--declared-at {declared_at} is {} in the future (this machine's clock says {}); give the time the incident was declared, before this run",
                format_duration(declared_at.duration_since(*now)),
                format_time(*now)
            )),
            Refusal::Unresolved { plan, errors } => error(&format!(
                "{plan}\nthese templates do not resolve:\n  {}",
                errors.join("\n  ")
            )),
        }
    }
}

fn error(message: &str) -> String {
    format!("error: {}\n", message.trim_end())
}
