//! What the runner needs from the people around it, and what it tells them. The runner never
//! prints or reads a terminal itself: an [`Operator`] answers questions (a terminal prompt, or
//! nobody in an unattended run) and [`Observer`]s see every event (the progress display, the
//! log). Both see only masked text.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::event::{Ask, Record};
use crate::progress::Progress;

/// A question for a human about one step.
#[derive(Clone, Debug)]
pub struct Question {
    pub step: String,
    pub ask: Ask,
    /// The rendered prompt, or a manual step's instructions.
    pub text: String,
    /// What the step will do, in one line.
    pub summary: String,
    /// What it writes to, by identity ("`redis`: redis 127.0.0.1:6379 db 9"): never a password.
    pub targets: Vec<String>,
    /// People who already said yes, with their accounts (a four-eyes gate needs someone else).
    pub approved_by: Vec<String>,
    /// Whether this terminal's OS account is among them: then only another person's account,
    /// through `drillbook approve`, can give the next yes.
    pub approved_here: bool,
    /// Distinct people whose "yes" is needed in all.
    pub approvers: u32,
    /// Who may decide (declared names); empty: anyone.
    pub allowed: Vec<String>,
    /// Whether the operator here is among them.
    pub allowed_here: bool,
    /// Whether the operator here must sign their decision, which only `drillbook approve
    /// --sign-with` can do.
    pub signed_elsewhere: bool,
    /// Time on the RTO clock so far, and the objective.
    pub elapsed: Duration,
    pub rto: Option<Duration>,
    /// Incident mode: the question is the step's one confirmation, so skip and abort are
    /// answers too.
    pub incident: bool,
    /// Set when the question is settled elsewhere (`drillbook approve` from another shell):
    /// the operator stops asking and answers [`Reply::Unavailable`].
    pub withdrawn: Withdrawn,
}

impl Question {
    /// Why the person at this terminal cannot give this answer (`approving`: a yes) here, when
    /// they cannot: then only someone's `drillbook approve` in a shell can, and the question
    /// gives way when it arrives.
    pub fn not_here(&self, operator: &str, approving: bool) -> Option<String> {
        let why = if self.signed_elsewhere {
            "decisions here are signed: `drillbook approve RUN STEP --as NAME --sign-with KEY` in a shell".to_string()
        } else if !self.allowed_here {
            format!(
                "{operator} may not decide this; only {} can, with `drillbook approve` in a shell",
                self.allowed.join(", ")
            )
        } else if approving && self.approved_here {
            "you have approved; the next yes must come from another person's account: `drillbook approve RUN STEP --as NAME` in their own shell".to_string()
        } else {
            return None;
        };
        Some(why)
    }
}

/// Incident mode's question before a step with no gate of its own.
#[derive(Clone, Debug)]
pub struct Confirmation {
    pub step: String,
    /// What the step will do, rendered (secrets masked).
    pub summary: String,
    /// What it writes to, by identity.
    pub targets: Vec<String>,
    pub elapsed: Duration,
    pub rto: Option<Duration>,
}

/// A flag the runner raises when a question it asked was answered another way.
#[derive(Clone, Debug, Default)]
pub struct Withdrawn(Arc<AtomicBool>);

impl Withdrawn {
    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Yes {
        by: String,
        reason: Option<String>,
    },
    No {
        by: String,
        reason: Option<String>,
    },
    /// Incident mode: the step is not run, the run goes on.
    Skip {
        by: String,
    },
    /// Incident mode: the run stops here.
    Abort {
        by: String,
        reason: Option<String>,
    },
    /// Nobody can answer here (no terminal): the run stops until `drillbook approve`.
    Unavailable,
}

/// An incident-mode operator's answer before a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Go {
    Proceed,
    Skip { by: String },
    Abort { by: String, reason: Option<String> },
}

/// What the incident operator writes for the post-mortem when the run is over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notes {
    /// Free text; lines kept.
    pub root_cause: String,
    /// One item per entry.
    pub remediation: Vec<String>,
    pub by: String,
}

impl Notes {
    /// Nothing was written: the report keeps its placeholders.
    pub fn is_empty(&self) -> bool {
        self.root_cause.trim().is_empty() && self.remediation.iter().all(|i| i.trim().is_empty())
    }
}

/// Answers questions. Calls may block (a terminal prompt); the runner calls them off the async
/// threads, one at a time.
pub trait Operator: Send + Sync {
    /// Whether anyone is there to answer.
    fn interactive(&self) -> bool;
    fn ask(&self, question: &Question) -> Reply;
    /// Incident mode: shown before each step.
    fn confirm(&self, confirmation: &Confirmation) -> Go;
    /// Incident mode, once the steps are over (`outcome` says how: "succeeded", "failed"…):
    /// the root cause and remediation for the post-mortem, while the people who know them are
    /// still at the keyboard. `None` where nobody can answer; the report then keeps its
    /// "to be written" placeholders.
    fn post_mortem(&self, _outcome: &str) -> Option<Notes> {
        None
    }
}

/// Sees every journal record (already masked) and progress reports.
pub trait Observer: Send + Sync {
    fn record(&self, record: &Record);
    fn progress(&self, _step: &str, _progress: Progress) {}
    /// The run is over (or paused): clear any live display.
    fn finish(&self) {}
}

/// The operator of an unattended run: nobody.
pub struct Nobody;

impl Operator for Nobody {
    fn interactive(&self) -> bool {
        false
    }

    fn ask(&self, _question: &Question) -> Reply {
        Reply::Unavailable
    }

    fn confirm(&self, _: &Confirmation) -> Go {
        Go::Proceed
    }
}
