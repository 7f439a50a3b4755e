//! `drillbook approve`: a human decision recorded for a run that waits for one.

use std::time::Duration;

use super::Refusal;
use crate::event::Event;
use crate::format::format_time;
use crate::inbox::{self, Letter};
use crate::journal::Journal;
use crate::lock::{LockError, RunLock};
use crate::runs::StateDir;
use crate::state::RunState;

/// A decision as `drillbook approve` is given it.
#[derive(Clone, Debug)]
pub struct Decision {
    pub step: String,
    pub approved: bool,
    /// The declared name (`--as`, or the OS user).
    pub by: String,
    pub reason: Option<String>,
    /// An OpenSSH private key to sign the decision with (`--sign-with`).
    pub sign_with: Option<std::path::PathBuf>,
    /// Who decides, when not this process's OS account: a person signed in to `drillbook
    /// serve`.
    pub account: Option<crate::event::OsAccount>,
}

impl Decision {
    /// The account the decision is recorded with.
    fn account(&self) -> crate::event::OsAccount {
        self.account
            .clone()
            .unwrap_or_else(crate::account::os_account)
    }
}

impl Decision {
    /// The signature over this decision of `question`, when a key is given, checked as the
    /// run will check it: against the decider's key on record, and present where one is.
    fn signature(
        &self,
        state: &RunState,
        question: &crate::state::Question,
    ) -> Result<Option<String>, Refusal> {
        let asked_at = question.asked_at.to_string();
        let decision = crate::signing::Decision {
            run_id: &state.run_id,
            step: &self.step,
            ask: question.ask.name(),
            asked_at: &asked_at,
            approved: self.approved,
            by: &self.by,
            reason: self.reason.as_deref(),
        };
        let signature = match &self.sign_with {
            Some(key) => Some(crate::signing::sign(key, &decision).map_err(Refusal::usage)?),
            None => None,
        };
        let keys = state
            .step(&self.step)
            .map(|step| step.keys.clone())
            .unwrap_or_default();
        crate::steps::approval::admit(&keys, question.signed, &decision, signature.as_deref())
            .map_err(Refusal::usage)?;
        Ok(signature)
    }
}

/// Records a human decision for a run that waits for one (`drillbook approve`). Atomic: the
/// decision is checked and written under the playbook's lock (in a shared state, its lease),
/// against the journal as it is then, so racing `approve`s of one person record one decision
/// and the others are told why. `view` is the runs as read (the same directory, or a copy of
/// the shared state).
pub fn approve(
    state_dir: &StateDir,
    view: &StateDir,
    run_id: &str,
    decision: &Decision,
) -> Result<String, Refusal> {
    let playbook = view.load(run_id).map_err(Refusal::usage)?.playbook;
    if let Some(shared) = state_dir.shared_state() {
        return approve_shared(shared, view, run_id, &playbook, decision);
    }
    // Brief: another `approve` holding it is waited for; a live run holding it is not.
    let lock = match RunLock::acquire_brief(&state_dir.lock_path(&playbook), run_id) {
        Ok(lock) => lock,
        // The run itself is going: a terminal waits on its questions. The decision goes to
        // its inbox and the run journals it.
        Err(LockError::Held { run_id: held, pid }) if held == run_id => {
            let run_dir = state_dir.run_dir(run_id);
            return by_letter(view, run_id, decision, &format!("pid {pid}"), |letter| {
                inbox::post(&run_dir, letter).map_err(|e| {
                    format!(
                        "cannot leave the decision for run {run_id} in {}: {e}",
                        run_dir.display()
                    )
                })?;
                Ok(inbox::await_answer(&run_dir, &letter.id, PATIENCE))
            });
        }
        Err(error) => {
            return Err(Refusal::Locked {
                error,
                at_terminal: true,
            });
        }
    };
    let reopened = Journal::reopen(&state_dir.run_dir(run_id));
    let said = record(reopened, run_id, decision);
    drop(lock);
    said
}

/// The same through a shared state: under the playbook's lease taken for a moment, or, while
/// the run's own runner holds it, by a letter it relays.
fn approve_shared(
    shared: &crate::shared::Shared,
    view: &StateDir,
    run_id: &str,
    playbook: &str,
    decision: &Decision,
) -> Result<String, Refusal> {
    let held = match shared.hold_briefly(&crate::runs::lock_name(playbook)) {
        Ok(held) => held,
        Err(crate::shared::Refused::Held(holder)) if holder.run_id == run_id => {
            return by_letter(view, run_id, decision, &holder.holder, |letter| {
                match crate::shared::post_letter(shared, run_id, letter, PATIENCE)? {
                    crate::shared::Posted::Answered(answer) => Ok(Some(answer)),
                    crate::shared::Posted::Untaken => Ok(None),
                }
            });
        }
        Err(crate::shared::Refused::Held(holder)) => {
            return Err(Refusal::Locked {
                error: LockError::Leased {
                    run_id: holder.run_id,
                    holder: holder.holder,
                    until: holder.expires_at + crate::lease::SKEW,
                },
                at_terminal: false,
            });
        }
        Err(crate::shared::Refused::Failed(error)) => return Err(Refusal::Failed(error)),
    };
    // Read again under the lease: the journal as it is now, written to the store first.
    view.refresh(run_id).map_err(Refusal::Failed)?;
    let reopened = Journal::reopen(&view.run_dir(run_id))
        .map(|(journal, replay)| (super::mirrored(view, run_id, journal), replay));
    let said = record(reopened, run_id, decision);
    drop(held);
    said
}

/// Checks the decision against the journal as it is and appends it.
fn record(
    reopened: std::io::Result<(Journal, crate::journal::Replay)>,
    run_id: &str,
    decision: &Decision,
) -> Result<String, Refusal> {
    let Decision {
        step,
        approved,
        by,
        reason,
        ..
    } = decision;
    let (step, approved, by) = (step.as_str(), *approved, by.as_str());
    let (mut journal, replay) = reopened
        .map_err(|e| Refusal::Failed(format!("cannot open the journal of run {run_id}: {e}")))?;
    let state = RunState::fold(&replay.records).map_err(Refusal::usage)?;
    let question = check(&state, run_id, step, by, &decision.account())?;
    let signature = decision.signature(&state, &question)?;
    let earlier = state
        .step(step)
        .map_or(0, |s| s.approvals_for(question.ask, s.decision_window()));
    journal
        .append(Event::ApprovalDecided {
            step: step.to_string(),
            ask: question.ask,
            approved,
            by: by.to_string(),
            reason: reason.clone(),
            pre_approved: false,
            account: Some(decision.account()),
            signature,
        })
        .map_err(|e| Refusal::Failed(format!("cannot write the journal of run {run_id}: {e}")))?;
    let verb = match (question.ask, approved) {
        (crate::event::Ask::Attest, true) => "attested",
        (_, true) => "approved",
        (_, false) => "rejected",
    };
    let count = earlier + 1;
    Ok(if approved && count < question.approvers as usize {
        format!(
            "{by} {verb} `{step}` ({count} of {} approvals); someone else must approve too",
            question.approvers
        )
    } else {
        format!("{by} {verb} `{step}`; continue with: drillbook resume {run_id}")
    })
}

/// How long `approve` waits for a running drillbook to take its decision.
const PATIENCE: Duration = Duration::from_secs(10);

/// A decision for a run in progress (held by `holder`): checked against its journal as it
/// stands, posted to its inbox by `post`, and recorded by the run itself, whose answer is
/// given back (`post` gives `None` when the run did not take it).
fn by_letter(
    view: &StateDir,
    run_id: &str,
    decision: &Decision,
    holder: &str,
    post: impl FnOnce(&Letter) -> Result<Option<inbox::Answer>, String>,
) -> Result<String, Refusal> {
    let step = decision.step.as_str();
    let state = view.load(run_id).map_err(Refusal::usage)?;
    let question = check(&state, run_id, step, &decision.by, &decision.account())?;
    let letter = Letter {
        id: format!(
            "{}-{}",
            std::process::id(),
            crate::clock::now().as_nanosecond()
        ),
        step: step.to_string(),
        approved: decision.approved,
        by: decision.by.clone(),
        reason: decision.reason.clone(),
        host: crate::account::host(),
        signature: decision.signature(&state, &question)?,
        claimed: Some(decision.account()),
        uid: None,
        relayed: false,
        vouched: false,
    };
    match post(&letter).map_err(Refusal::Failed)? {
        Some(Ok(said)) => Ok(said),
        Some(Err(why)) => Err(Refusal::usage(why)),
        None => Err(Refusal::Failed(format!(
            "run {run_id} is in progress ({holder}) but did not take the decision within {}s: it is not waiting at a terminal for `{step}`; once it pauses, approve again and resume it",
            PATIENCE.as_secs()
        ))),
    }
}

/// The open question on `step` that `by` may still answer.
fn check(
    state: &RunState,
    run_id: &str,
    step: &str,
    by: &str,
    me: &crate::event::OsAccount,
) -> Result<crate::state::Question, Refusal> {
    let Some(step_state) = state.step(step) else {
        let ids: Vec<&str> = state.plan.iter().map(|s| s.id.as_str()).collect();
        return Err(Refusal::usage(format!(
            "run {run_id} has no step `{step}`{}",
            crate::diagnostic::did_you_mean(step, ids.iter().copied())
                .map(|hint| format!("; {hint}"))
                .unwrap_or_default()
        )));
    };
    let since = step_state.decision_window();
    let Some(question) = step_state.question.clone() else {
        // The usual loser of a race: the winner's decision settled the question.
        if let Some(earlier) = step_state
            .approvals
            .iter()
            .rfind(|d| d.by == by && d.at >= since)
        {
            return Err(Refusal::usage(format!(
                "{by} already {} `{step}` at {}; one decision per person",
                if earlier.approved {
                    "approved"
                } else {
                    "rejected"
                },
                format_time(earlier.at)
            )));
        }
        return Err(Refusal::usage(format!(
            "step `{step}` of run {run_id} is not waiting for a decision (it is {})",
            step_state.status
        )));
    };
    if let Some(expired) = question.expires_at.filter(|at| *at <= crate::clock::now()) {
        return Err(Refusal::usage(format!(
            "the question on `{step}` expired at {expired}; an expired approval counts as rejected (`drillbook resume {run_id}` records it)"
        )));
    }
    if !crate::steps::approval::may_decide(&question.allowed, by) {
        return Err(Refusal::usage(super::gate::not_allowed(
            by,
            step,
            &question.allowed,
        )));
    }
    // One decision per account, whatever name it gives: four eyes are two people.
    if let Some(earlier) = step_state.approvals.iter().find(|d| {
        d.ask == question.ask
            && d.at >= since
            && d.by != by
            && d.account.as_ref().is_some_and(|a| a.same_person(me))
    }) {
        return Err(Refusal::usage(format!(
            "OS account {} already approved `{step}` as {}; four eyes need another person's account (each approver runs `drillbook approve` as themselves)",
            me.user, earlier.by
        )));
    }
    // One decision per person per question. A rejection settles the question, so an earlier
    // decision of an open question is an approval that others must join.
    if step_state
        .approvals
        .iter()
        .any(|d| d.by == by && d.ask == question.ask && d.at >= since)
    {
        return Err(Refusal::usage(format!(
            "{by} already approved `{step}`; it needs {} different people",
            question.approvers
        )));
    }
    Ok(question)
}
