//! What the console shows of a run, as plain lines: built from the journal's fold and the
//! files beside it, with no terminal in sight, so that it can be tested as text. The console
//! (`watch`, and the incident console) only lays these lines out.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use crate::event::Status;
use crate::format::{format_duration, format_margin};
use crate::measure::{elapsed, objectives};
use crate::state::{RunState, StepState};

/// Lines of a running program's output shown.
pub(crate) const OUTPUT_LINES: usize = 12;
/// Lines of the last finished step's evidence shown.
pub(crate) const FOUND_LINES: usize = 8;

/// One frame of the console.
#[derive(Debug, PartialEq)]
pub(crate) struct View {
    /// The run, its mode and outcome so far.
    pub(crate) title: String,
    /// Elapsed against the RTO, steps done of all.
    pub(crate) clock: String,
    /// One line per step, in plan order: a symbol, the id, the status, how long.
    pub(crate) steps: Vec<(Status, String)>,
    /// What the step in progress does, its parameters as rendered (secrets masked).
    pub(crate) current: Vec<String>,
    /// The tail of its program's output.
    pub(crate) output: Vec<String>,
    /// What the last finished step found.
    pub(crate) found: Vec<String>,
    /// Questions open for people, and who has answered.
    pub(crate) decisions: Vec<String>,
}

/// What the view reads besides the fold: each running step's parameters as the journal
/// recorded them, and its output's last lines.
pub(crate) struct Extras {
    pub(crate) params: BTreeMap<String, serde_json::Value>,
    pub(crate) output: Vec<String>,
}

pub(crate) fn view(state: &RunState, extras: &Extras, now: Timestamp) -> View {
    let planned = state.planned_steps();
    let main: Vec<_> = planned.iter().filter(|(plan, _)| !plan.cleanup).collect();
    let done = main
        .iter()
        .filter(|(_, step)| {
            matches!(
                step.status,
                Status::Succeeded | Status::Skipped | Status::Failed | Status::TimedOut
            ) || matches!(step.status, Status::Rejected | Status::Cancelled)
        })
        .count();
    let end = state.finished.map_or(now, |(at, _)| at);
    let took = elapsed(state.clock_start(), end);
    let measured = objectives(state);
    let mut clock = match state.rto {
        Some(rto) => format!(
            "elapsed {} of RTO {rto} · {} left",
            format_duration(took),
            format_margin(rto.signed() - took)
        ),
        None => format!("elapsed {}", format_duration(took)),
    };
    if let Some(achieved) = measured.rto.achieved {
        clock = format!(
            "RTO clock stopped at {} ({})",
            format_duration(achieved),
            measured.rto.verdict("not reached")
        );
    }
    clock.push_str(&format!(" · {done} of {} steps done", main.len()));

    let outcome = match state.outcome() {
        Some(outcome) => outcome.name().replace('_', " "),
        None => "in progress".into(),
    };
    let title = format!(
        "{} · {} · run {} · {outcome}",
        state.mode.name().to_uppercase(),
        state.playbook,
        state.run_id
    );

    let steps = planned
        .iter()
        .map(|(plan, step)| {
            let how_long = step_time(step, now)
                .map(|t| format!(" {}", format_duration(t)))
                .unwrap_or_default();
            let cleanup = if plan.cleanup { " (cleanup)" } else { "" };
            let why = step
                .skipped_reason
                .as_deref()
                .map(|reason| format!(" — {}", one_line(reason)))
                .unwrap_or_default();
            (
                step.status,
                format!(
                    "{} {}{cleanup}{how_long}{why}",
                    step.id,
                    step.status.name().replace('_', " ")
                ),
            )
        })
        .collect();

    let active = planned.iter().find(|(_, step)| {
        matches!(step.status, Status::Running | Status::WaitingApproval)
            || step.confirming.is_some()
    });
    let current = match active {
        Some((plan, step)) => {
            let mut lines = vec![format!("{} ({}): {}", step.id, plan.kind, plan.summary)];
            if let Some(serde_json::Value::Object(params)) = extras.params.get(&step.id) {
                for (name, value) in params {
                    let value = match value {
                        serde_json::Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    lines.push(format!("  {name}: {}", one_line(&value)));
                }
            }
            lines
        }
        None => vec![match state.finished {
            Some(_) => "the run is over".into(),
            None => "no step running".into(),
        }],
    };

    let last_finished = state
        .steps
        .iter()
        .filter(|step| !step.evidence.is_empty() || step.error.is_some())
        .filter_map(|step| Some((step.attempts.last()?.finished_at?, step)))
        .max_by_key(|(at, _)| *at)
        .map(|(_, step)| step);
    let found = match last_finished {
        Some(step) => {
            let mut lines = vec![format!("{} {}:", step.id, step.status.name())];
            if let Some(error) = &step.error {
                lines.push(format!("  error: {}", one_line(error)));
            }
            lines.extend(
                step.evidence
                    .iter()
                    .take(FOUND_LINES)
                    .map(|line| format!("  {}", one_line(line))),
            );
            lines
        }
        None => Vec::new(),
    };

    let mut decisions = Vec::new();
    for step in &state.steps {
        if let Some((by, since)) = &step.confirming {
            decisions.push(format!(
                "{} waits for {by} at the run's terminal to proceed, skip or abort (asked {} ago)",
                step.id,
                format_duration(elapsed(*since, now))
            ));
        }
        if let Some(question) = &step.question {
            let yes: Vec<&str> = step
                .approvals
                .iter()
                .filter(|decision| decision.approved && decision.at >= question.asked_at)
                .map(|decision| decision.by.as_str())
                .collect();
            decisions.push(format!(
                "{} waits: {} — {} of {} yes{}",
                step.id,
                one_line(&question.prompt),
                yes.len(),
                question.approvers,
                if yes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", yes.join(", "))
                }
            ));
            decisions.push(format!(
                "  from any shell: drillbook approve {} {}",
                state.run_id, step.id
            ));
        }
    }

    View {
        title,
        clock,
        steps,
        current,
        output: extras.output.clone(),
        found,
        decisions,
    }
}

/// How long a step has taken so far: to its last attempt's end, or to now while it runs.
fn step_time(step: &StepState, now: Timestamp) -> Option<SignedDuration> {
    let first = step.attempts.first()?.started_at;
    let last = step.attempts.last()?;
    Some(elapsed(first, last.finished_at.unwrap_or(now)))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::failed_run;

    fn extras() -> Extras {
        Extras {
            params: BTreeMap::new(),
            output: vec!["line 1".into()],
        }
    }

    #[test]
    fn a_finished_run_shows_its_steps_the_clock_and_what_the_last_step_found() {
        let state = failed_run();
        let view = view(&state, &extras(), jiff::Timestamp::now());
        assert!(
            view.title.starts_with("DRILL · database-restore · run "),
            "{}",
            view.title
        );
        assert!(view.title.ends_with("failed"), "{}", view.title);
        assert!(view.clock.contains("of RTO 30m"), "{}", view.clock);
        // The run ended: the clock reads to its end, not to now.
        assert!(view.clock.contains("elapsed 3m24s"), "{}", view.clock);
        assert!(view.clock.ends_with("steps done"), "{}", view.clock);
        let ids: Vec<&str> = view
            .steps
            .iter()
            .map(|(_, line)| line.split(' ').next().unwrap())
            .collect();
        assert_eq!(ids, ["assess", "restore", "smoke", "drop_target"]);
        assert_eq!(view.steps[1].0, Status::Failed);
        assert_eq!(view.current, ["the run is over"]);
        // drop_target (cleanup) ended last but recorded nothing; restore's failure is shown.
        assert!(
            view.found[0].starts_with("restore failed"),
            "{:?}",
            view.found
        );
        assert_eq!(view.output, ["line 1"]);
        assert!(view.decisions.is_empty());
    }
}
