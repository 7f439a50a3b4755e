//! One self-contained HTML file: summary, step table, failures and an SVG Gantt chart of the
//! steps against the RTO line. It must open years later from an audit archive, offline, so it
//! has no JavaScript, no external stylesheet, font or image, and every piece of text from the
//! journal goes through the template's HTML auto-escaping.
//!
//! The chart's coordinates are computed here, in Rust, where they can be unit tested; the
//! template only places them.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::state::RunState;

use super::gantt::{Gantt, gantt};
use super::{decision_phrase, is_failure, report_steps};
use crate::format::{format_clock, format_duration, format_margin, format_time, short_hash};
use crate::measure::{Measure, objectives, recovery_time, step_duration, total_duration};
use crate::outcome::Outcome;

/// The name ends in `.html.j2` so minijinja turns HTML auto-escaping on.
const TEMPLATE_NAME: &str = "report.html.j2";
const TEMPLATE: &str = include_str!("report.html.j2");
/// "RTO against previous runs", shared with the web view's drill health.
pub(crate) const RTO_HISTORY_NAME: &str = "rto_history.html.j2";
pub(crate) const RTO_HISTORY: &str = include_str!("rto_history.html.j2");

pub(crate) fn render(state: &RunState) -> String {
    render_with_history(state, &[])
}

/// The report with the "RTO against previous runs" section, from the history rows of the
/// run's playbook (the section is left out when no earlier run finished).
pub(crate) fn render_with_history(state: &RunState, history: &[crate::measure::Row]) -> String {
    let rto_history = json_value(&rto_chart(state, history));
    let mut env = minijinja::Environment::new();
    // A typo in the template fails loudly in the tests instead of printing nothing.
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let rendered = env
        .add_template(RTO_HISTORY_NAME, RTO_HISTORY)
        .and_then(|()| env.add_template(TEMPLATE_NAME, TEMPLATE))
        .and_then(|()| env.get_template(TEMPLATE_NAME))
        .and_then(|template| {
            template.render(
                minijinja::context! { rto_history => rto_history, ..to_value(&view(state)) },
            )
        });
    match rendered {
        Ok(mut html) => {
            if !html.ends_with('\n') {
                html.push('\n');
            }
            html
        }
        // Only a bug in the template gets here (the tests render it); the reader still gets a
        // page that says what went wrong.
        Err(error) => fallback(&state.run_id, &error.to_string()),
    }
}

/// The "RTO against previous runs" chart of `state` among its playbook's `history` rows, as
/// the template reads it (null when no earlier run finished).
pub(crate) fn rto_chart(state: &RunState, history: &[crate::measure::Row]) -> serde_json::Value {
    serde_json::to_value(super::rto_history::chart(state, history)).unwrap_or_default()
}

fn fallback(run_id: &str, error: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>drillbook report</title></head>\n<body><h1>drillbook report for run {}</h1><p>The HTML report could not be rendered: {}</p><p>Use <code>drillbook report {} --format md</code> instead.</p></body></html>\n",
        escape(run_id),
        escape(error),
        escape(run_id)
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Everything the template shows, as display-ready text.
#[derive(Serialize)]
struct View {
    playbook: String,
    file: String,
    run_id: String,
    hash: String,
    hash_short: String,
    mode: &'static str,
    drill: bool,
    dry_run: bool,
    operator: String,
    declared: Option<String>,
    started: String,
    finished: String,
    outcome: &'static str,
    /// CSS class for the outcome banner.
    outcome_class: &'static str,
    exit_code: Option<u8>,
    duration: String,
    human_wait: String,
    /// The journal's hash chain: its verdict and head.
    journal: Option<String>,
    recovery: String,
    objectives: Vec<ObjectiveRow>,
    resumes: Vec<String>,
    interruptions: Vec<String>,
    steps: Vec<StepRow>,
    failures: Vec<Failure>,
    gantt: Gantt,
    /// Every message notify steps sent or tried to send, and a count per step.
    messages: Vec<MessageRow>,
    message_counts: Vec<String>,
    /// Whether any step recorded evidence without failing.
    any_evidence: bool,
    /// With no failed step, why a run that did not succeed ended as it did.
    stopped: Option<String>,
    /// Root cause and remediation as the operator wrote them at the end of the run.
    root_cause: Vec<String>,
    remediation: Vec<String>,
    notes_by: Option<String>,
}

#[derive(Serialize)]
struct MessageRow {
    time: String,
    step: String,
    repeat: bool,
    to: String,
    message: String,
    result: String,
    delivered: bool,
}

#[derive(Serialize)]
struct ObjectiveRow {
    name: &'static str,
    objective: String,
    achieved: String,
    margin: String,
    verdict: &'static str,
    class: &'static str,
}

#[derive(Serialize)]
struct StepRow {
    id: String,
    kind: String,
    status: &'static str,
    start: String,
    duration: String,
    attempts: usize,
    notes: Vec<String>,
    approvals: Vec<String>,
    /// What the step found, unless it failed (a failure shows it beside its error).
    evidence: Vec<String>,
}

#[derive(Serialize)]
struct Failure {
    id: String,
    status: &'static str,
    error: Option<String>,
    attempt_errors: Vec<String>,
    evidence: Vec<String>,
}

fn view(state: &RunState) -> View {
    let measured = objectives(state);
    let clock = state.clock_start();
    let steps = report_steps(state);
    View {
        playbook: state.playbook.clone(),
        file: state.file.clone(),
        run_id: state.run_id.clone(),
        hash: state.playbook_hash.clone(),
        hash_short: short_hash(&state.playbook_hash).to_owned(),
        mode: state.mode.name(),
        drill: state.mode == crate::event::Mode::Drill,
        dry_run: state.dry_run,
        operator: state.operator.clone(),
        declared: state.declared_at.map(format_time),
        started: format_time(state.started_at),
        finished: match state.finished {
            Some((at, _)) => format_time(at),
            None => format!(
                "not finished (last activity {})",
                format_time(state.last_at)
            ),
        },
        outcome: state.outcome_name(),
        outcome_class: match state.outcome() {
            Some(Outcome::Succeeded) => "good",
            Some(
                Outcome::Failed
                | Outcome::Invalid
                | Outcome::ObjectiveMissed
                | Outcome::Interrupted,
            ) => "bad",
            Some(Outcome::WaitingApproval) | None => "open",
        },
        exit_code: state.finished.map(|(_, code)| code),
        duration: format_duration(total_duration(state)),
        human_wait: format_duration(state.human_wait()),
        journal: state.journal.as_ref().map(crate::chain::Chain::summary),
        recovery: format_duration(recovery_time(state, &measured)),
        objectives: vec![
            objective_row("RTO", &measured.rto, "not reached"),
            objective_row("RPO", &measured.rpo, "not measured"),
        ],
        resumes: state
            .resumes
            .iter()
            .map(|(at, by)| format!("{} by {by}", format_time(*at)))
            .collect(),
        interruptions: state
            .interruptions
            .iter()
            .map(|(at, reason)| format!("{}: {reason}", format_time(*at)))
            .collect(),
        steps: steps
            .iter()
            .map(|(plan, step)| {
                let mut notes = Vec::new();
                if plan.is_some_and(|plan| plan.clock_stop) {
                    notes.push("clock stop".to_owned());
                }
                if plan.is_some_and(|plan| plan.cleanup) {
                    notes.push("cleanup".to_owned());
                }
                if plan.is_none() {
                    notes.push("not in the current plan".to_owned());
                }
                if let Some(reason) = &step.skipped_reason {
                    notes.push(reason.clone());
                }
                if let Some(question) = &step.question {
                    notes.push(format!("waiting for a decision: {}", question.prompt));
                }
                StepRow {
                    id: step.id.clone(),
                    kind: plan.map(|plan| plan.kind.clone()).unwrap_or_default(),
                    status: step.status.name(),
                    start: step
                        .span()
                        .map(|(start, _)| format!("T+{}", format_duration(start - clock)))
                        .unwrap_or_default(),
                    duration: step_duration(step).map(format_duration).unwrap_or_default(),
                    attempts: step.attempts.len(),
                    notes,
                    evidence: if is_failure(step.status) {
                        Vec::new()
                    } else {
                        step.evidence.clone()
                    },
                    approvals: step
                        .approvals
                        .iter()
                        .map(|decision| {
                            let reason = decision
                                .reason
                                .as_deref()
                                .map(|reason| format!(": {reason}"))
                                .unwrap_or_default();
                            format!(
                                "{} by {} at {}{reason}",
                                decision_phrase(decision),
                                decision.who_signed(&state.run_id, step),
                                format_clock(decision.at, state.started_at)
                            )
                        })
                        .collect(),
                }
            })
            .collect(),
        failures: steps
            .iter()
            .filter(|(_, step)| is_failure(step.status))
            .map(|(_, step)| Failure {
                id: step.id.clone(),
                status: step.status.name(),
                error: step.error.clone(),
                attempt_errors: step
                    .attempts
                    .iter()
                    .filter(|attempt| attempt.error != step.error)
                    .filter_map(|attempt| {
                        Some(format!(
                            "attempt {}: {}",
                            attempt.number,
                            attempt.error.as_ref()?
                        ))
                    })
                    .collect(),
                evidence: step.evidence.clone(),
            })
            .collect(),
        any_evidence: steps
            .iter()
            .any(|(_, step)| !is_failure(step.status) && !step.evidence.is_empty()),
        stopped: crate::measure::why_stopped(state),
        root_cause: state
            .notes
            .iter()
            .flat_map(|notes| notes.root_cause.lines())
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect(),
        remediation: state
            .notes
            .as_ref()
            .map(|notes| notes.remediation.clone())
            .unwrap_or_default(),
        notes_by: state
            .notes
            .as_ref()
            .map(|notes| format!("{} at {}", notes.by, format_time(notes.at))),
        gantt: gantt(state),
        messages: messages(state),
        message_counts: super::communication::counts(state)
            .iter()
            .map(|count| format!("{} {}", count.step, super::communication::tally(count)))
            .collect(),
    }
}

/// The messages in time order, worded as in the Markdown post-mortem.
fn messages(state: &RunState) -> Vec<MessageRow> {
    use super::communication::{headline, result, to};
    let mut sent: Vec<_> = state.notifications.iter().collect();
    sent.sort_by_key(|notification| notification.at);
    sent.into_iter()
        .map(|notification| MessageRow {
            time: format_clock(notification.at, state.started_at),
            step: notification.step.clone(),
            repeat: notification.repeat,
            to: to(notification).to_owned(),
            message: headline(notification),
            result: result(notification),
            delivered: notification.ok(),
        })
        .collect()
}

fn objective_row(name: &'static str, measure: &Measure, missing: &'static str) -> ObjectiveRow {
    let verdict = measure.verdict(missing);
    ObjectiveRow {
        name,
        objective: measure
            .objective
            .map(|objective| objective.to_string())
            .unwrap_or_else(|| "—".into()),
        achieved: measure
            .achieved
            .map(format_duration)
            .unwrap_or_else(|| "—".into()),
        margin: measure
            .margin()
            .map(format_margin)
            .unwrap_or_else(|| "—".into()),
        verdict,
        class: match measure.met {
            Some(true) => "good",
            Some(false) => "bad",
            None => "open",
        },
    }
}

/// serde_json's values into minijinja's: minijinja is built without its serde feature here,
/// and going through JSON keeps the view plain `#[derive(Serialize)]` structs.
fn to_value(view: &View) -> minijinja::Value {
    match serde_json::to_value(view) {
        Ok(json) => json_value(&json),
        Err(_) => minijinja::Value::UNDEFINED,
    }
}

pub(crate) fn json_value(json: &serde_json::Value) -> minijinja::Value {
    use minijinja::Value;
    match json {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(f)) => Value::from(f),
            (None, None) => Value::from(n.to_string()),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => items.iter().map(json_value).collect(),
        serde_json::Value::Object(map) => Value::from(
            map.iter()
                .map(|(key, value)| (key.clone(), json_value(value)))
                .collect::<BTreeMap<String, Value>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::failed_run;

    /// ` onclick=`, ` onload=` and the like: script by another name.
    fn has_event_handler(html: &str) -> bool {
        html.match_indices(" on").any(|(at, _)| {
            let rest = &html[at + 3..];
            let name = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            name > 0 && rest[name..].starts_with('=')
        })
    }

    #[test]
    fn messages_sent_are_a_table_with_counts_per_step() {
        let html = render(&crate::fixtures::communication_run());
        assert!(html.contains("<h2>Messages sent</h2>"), "{html}");
        assert_eq!(html.matches("<tr class=\"message\">").count(), 7, "{html}");
        assert!(
            html.contains("declare sent 1 time, 1 failed · updates sent 3 times, 1 failed · restored sent 1 time"),
            "{html}"
        );
        // The message is journal text: escaped like the rest.
        assert!(
            html.contains("Recovered | all &lt;b&gt;good&lt;&#x2f;b&gt;"),
            "{html}"
        );
        assert!(!render(&failed_run()).contains("Messages sent"));
    }

    #[test]
    fn the_page_is_self_contained_with_an_svg_timeline() {
        let html = render(&failed_run());
        assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
        assert!(html.contains("<svg"), "{html}");
        assert!(html.contains("<style>"), "{html}");
        let lower = html.to_lowercase();
        assert!(!lower.contains("<script"), "no JavaScript");
        assert!(!has_event_handler(&lower), "no event handler attributes");
        assert!(
            !lower.contains("http://") && !lower.contains("https://"),
            "no URLs"
        );
        assert!(
            !lower.contains("<link") && !lower.contains(" src="),
            "nothing loaded"
        );
        assert!(!html.contains("could not be rendered"), "{html}");
    }

    #[test]
    fn text_from_the_journal_is_escaped() {
        let html = render(&failed_run());
        // minijinja escapes `/` too.
        assert!(
            html.contains("relation &lt;b&gt;orders&lt;&#x2f;b&gt; | already exists"),
            "{html}"
        );
        assert!(!html.contains("<b>orders"), "{html}");
    }

    #[test]
    fn the_page_has_the_summary_steps_and_failures() {
        let html = render(&failed_run());
        for expected in [
            "database-restore",
            "9f86d081884c",
            "DRILL",
            "failed",
            "RTO 30m",
            "approved by alice at 08:02:10: backup looks right",
            "needs `restore`, which failed",
            "stderr line 12",
            "attempt 1: connection refused",
            "2m00s",
        ] {
            let escaped = expected.replace('`', "&#x60;");
            assert!(
                html.contains(expected) || html.contains(&escaped),
                "missing {expected:?}"
            );
        }
        let steps = html.matches("<tr class=\"step").count();
        assert_eq!(steps, 4, "one table row per step");
    }
}
