//! Reports: what a run did, against its objectives, in five formats. Every report is built
//! from a [`RunState`] alone (itself folded from the journal), so a crashed, resumed, waiting
//! or finished run reports the same way, and nothing that is not in the journal (where secrets
//! are already masked) can leak into a report.
//!
//! The judgement calls — the RTO/RPO arithmetic, the outcome word, the human-wait split and the
//! compact duration form — live in this file so that every format, the runner's exit code and
//! the terminal UI agree on them.

use crate::event::{Ask, PlannedStep, Status};
use crate::state::{Decision, RunState, StepState};

mod communication;
mod gantt;
mod html;
mod json;
mod junit;
mod markdown;
mod rto_history;
mod text;

/// The report formats `drillbook report --format` offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// The terminal summary printed at the end of every run.
    Text,
    /// A post-mortem skeleton.
    Markdown,
    /// Stable, documented field names (docs/reports.md), for tools and trend tracking.
    Json,
    /// One testcase per step, so CI shows drills like tests.
    Junit,
    /// One self-contained file with an SVG timeline; no JavaScript, no network.
    Html,
}

/// serde_json's values as minijinja's, for templates over plain JSON (the web view's too).
pub(crate) use html::{RTO_HISTORY, RTO_HISTORY_NAME, json_value, rto_chart};

/// Renders a report of `state` in `format`.
pub fn render(state: &RunState, format: Format) -> String {
    match format {
        Format::Text => text::render(state),
        Format::Markdown => markdown::render(state),
        Format::Json => json::render(state),
        Format::Junit => junit::render(state),
        Format::Html => html::render(state),
    }
}

/// The HTML report with the RTO of earlier runs of the same playbook beside this one's
/// (`history`: the playbook's rows from [`crate::history`]). The other formats are about the run
/// alone.
pub(crate) fn render_html(state: &RunState, history: &[crate::measure::Row]) -> String {
    html::render_with_history(state, history)
}

/// A report of `state` in `format`, the HTML one with the RTO of the earlier runs of its
/// playbook among `runs`.
pub(crate) fn render_among(state: &RunState, runs: &[RunState], format: Format) -> String {
    match format {
        Format::Html => {
            let rows: Vec<crate::measure::Row> = crate::history::runs_of(runs, &state.playbook)
                .into_iter()
                .map(crate::measure::Row::of)
                .collect();
            render_html(state, &rows)
        }
        other => render(state, other),
    }
}

/// Every step a report shows: the planned ones in plan order, then any the journal names that
/// the current plan does not (the plan changed on resume), so no recorded work disappears.
pub(crate) fn report_steps(state: &RunState) -> Vec<(Option<&PlannedStep>, &StepState)> {
    let mut steps: Vec<(Option<&PlannedStep>, &StepState)> = state
        .planned_steps()
        .into_iter()
        .map(|(plan, step)| (Some(plan), step))
        .collect();
    for step in &state.steps {
        if !state.plan.iter().any(|plan| plan.id == step.id) {
            steps.push((None, step));
        }
    }
    steps
}

/// What a decision says, in words that fit its question: a gate is approved, a manual step is
/// attested, a re-run is allowed.
pub(crate) fn decision_phrase(decision: &Decision) -> &'static str {
    match (decision.ask, decision.approved, decision.pre_approved) {
        (Ask::Gate, true, true) => "pre-approved",
        (Ask::Gate, true, false) => "approved",
        (Ask::Gate, false, _) => "rejected",
        (Ask::Attest, true, _) => "attested done",
        (Ask::Attest, false, _) => "declined to attest",
        (Ask::Rerun, true, true) => "re-run pre-approved",
        (Ask::Rerun, true, false) => "re-run approved",
        (Ask::Rerun, false, _) => "re-run refused",
    }
}

/// Whether the step ended badly in a way a reader must look at.
pub(crate) fn is_failure(status: Status) -> bool {
    match status {
        Status::Failed | Status::TimedOut | Status::Rejected | Status::Cancelled => true,
        Status::Pending
        | Status::WaitingApproval
        | Status::Running
        | Status::Succeeded
        | Status::Skipped => false,
    }
}
