//! `drillbook approve`: a human decision recorded for a run that waits for one.

use super::Refusal;
use crate::event::Event;
use crate::journal::Journal;
use crate::lock::RunLock;
use crate::runs::StateDir;

/// Records a human decision for a run that waits for one (`drillbook approve`).
pub fn approve(
    state_dir: &StateDir,
    run_id: &str,
    step: &str,
    approved: bool,
    by: &str,
    reason: Option<String>,
) -> Result<String, Refusal> {
    let state = state_dir.load(run_id).map_err(Refusal::usage)?;
    let Some(step_state) = state.step(step) else {
        let ids: Vec<&str> = state.plan.iter().map(|s| s.id.as_str()).collect();
        return Err(Refusal::usage(format!(
            "run {run_id} has no step `{step}`{}",
            crate::diagnostic::did_you_mean(step, ids.iter().copied())
                .map(|hint| format!("; {hint}"))
                .unwrap_or_default()
        )));
    };
    let Some(question) = step_state.question.clone() else {
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
    let since = step_state.decision_window();
    let earlier = step_state.approvals_for(question.ask, since);
    if approved
        && step_state
            .approvals
            .iter()
            .any(|d| d.approved && d.by == by && d.ask == question.ask && d.at >= since)
    {
        return Err(Refusal::usage(format!(
            "{by} already approved `{step}`; it needs {} different people",
            question.approvers
        )));
    }
    let _lock =
        RunLock::acquire(&state_dir.lock_path(&state.playbook), run_id).map_err(|error| {
            Refusal::Locked {
                error,
                at_terminal: true,
            }
        })?;
    let (mut journal, _) = Journal::reopen(&state_dir.run_dir(run_id))
        .map_err(|e| Refusal::Failed(format!("cannot open the journal of run {run_id}: {e}")))?;
    journal
        .append(Event::ApprovalDecided {
            step: step.to_string(),
            ask: question.ask,
            approved,
            by: by.to_string(),
            reason,
            pre_approved: false,
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
