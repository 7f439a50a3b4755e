//! One self-contained HTML file: summary, step table, failures and an SVG Gantt chart of the
//! steps against the RTO line. It must open years later from an audit archive, offline, so it
//! has no JavaScript, no external stylesheet, font or image, and every piece of text from the
//! journal goes through the template's HTML auto-escaping.
//!
//! The chart's coordinates are computed here, in Rust, where they can be unit tested; the
//! template only places them.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::event::Status;
use crate::state::RunState;

use super::{decision_phrase, is_failure, report_steps};
use crate::format::{format_clock, format_duration, format_margin, format_time, short_hash};
use crate::measure::{Measure, objectives, recovery_time, run_end, step_duration, total_duration};
use crate::outcome::Outcome;

/// The name ends in `.html.j2` so minijinja turns HTML auto-escaping on.
const TEMPLATE_NAME: &str = "report.html.j2";
const TEMPLATE: &str = include_str!("report.html.j2");

pub(crate) fn render(state: &RunState) -> String {
    render_with_history(state, &[])
}

/// The report with the "RTO against previous runs" section, from the history rows of the
/// run's playbook (the section is left out when no earlier run finished).
pub(crate) fn render_with_history(state: &RunState, history: &[crate::measure::Row]) -> String {
    let rto_history = serde_json::to_value(super::rto_history::chart(state, history))
        .map(|json| json_value(&json))
        .unwrap_or_else(|_| minijinja::Value::from(()));
    let mut env = minijinja::Environment::new();
    // A typo in the template fails loudly in the tests instead of printing nothing.
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let rendered = env
        .add_template(TEMPLATE_NAME, TEMPLATE)
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
                                decision.by,
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

fn json_value(json: &serde_json::Value) -> minijinja::Value {
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

// The chart's geometry, in SVG user units (pixels at 100%).
const LEFT: f64 = 180.0;
const PLOT: f64 = 760.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 28.0;
const ROW: f64 = 26.0;
const BAR: f64 = 16.0;
const AXIS: f64 = 30.0;
/// At most this many intervals on the time axis.
const MAX_TICKS: i64 = 8;
/// Tick spacings a person reads easily, in milliseconds.
const NICE_STEPS: &[i64] = &[
    1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000,
    1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000,
];

/// The Gantt chart, laid out: one row per step that ran or waited for a human, x measured
/// from the RTO clock's start.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Gantt {
    pub(crate) width: f64,
    pub(crate) height: f64,
    /// Where the plot area starts and ends horizontally; labels sit left of `left`.
    pub(crate) left: f64,
    pub(crate) right: f64,
    /// Vertical extent of the plot area (the axis line is at `bottom`).
    pub(crate) top: f64,
    pub(crate) bottom: f64,
    pub(crate) rows: Vec<GanttRow>,
    pub(crate) ticks: Vec<Tick>,
    /// The dashed RTO objective line, when the playbook has one.
    pub(crate) rto: Option<Marker>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct GanttRow {
    pub(crate) id: String,
    pub(crate) status: &'static str,
    /// Hover text: the step, its status and duration.
    pub(crate) title: String,
    pub(crate) y: f64,
    pub(crate) height: f64,
    /// Baseline for the label, vertically centred on the bar.
    pub(crate) label_y: f64,
    /// Each attempt, coloured by its own status: retries show as separate pieces.
    pub(crate) attempts: Vec<Segment>,
    /// Time spent waiting for a human, drawn hatched.
    pub(crate) wait: Option<Segment>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Segment {
    pub(crate) x: f64,
    pub(crate) width: f64,
    pub(crate) status: &'static str,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Tick {
    pub(crate) x: f64,
    pub(crate) label: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Marker {
    pub(crate) x: f64,
    pub(crate) label: String,
}

/// Lays out the chart of `state`. The time domain runs from the clock start to the last
/// thing drawn (a bar's end or the RTO line), with a little room so the RTO label is not cut.
pub(crate) fn gantt(state: &RunState) -> Gantt {
    let clock = state.clock_start();
    let end_of_run = run_end(state);
    let offset = |at: Timestamp| at.duration_since(clock).as_millis() as f64;

    struct Timed {
        id: String,
        status: Status,
        attempts: Vec<(f64, f64, Status)>,
        wait: Option<(f64, f64)>,
    }
    let mut timed = Vec::new();
    for (_, step) in report_steps(state) {
        let attempts: Vec<(f64, f64, Status)> = step
            .attempts
            .iter()
            .map(|attempt| {
                let end = attempt.finished_at.unwrap_or(end_of_run);
                (offset(attempt.started_at), offset(end), attempt.status)
            })
            .collect();
        // The state keeps the total wait and when it ended (the settling decision), not when
        // it began; the wait is drawn as one piece ending at the last decision.
        let wait = step
            .approvals
            .iter()
            .map(|decision| decision.at)
            .max()
            .filter(|_| step.human_wait > SignedDuration::ZERO)
            .map(|decided| (offset(decided - step.human_wait), offset(decided)));
        if attempts.is_empty() && wait.is_none() {
            continue;
        }
        timed.push(Timed {
            id: step.id.clone(),
            status: step.status,
            attempts,
            wait,
        });
    }

    let objective = state
        .rto
        .map(|rto| rto.signed().as_millis() as f64)
        .filter(|ms| *ms > 0.0);
    let latest = timed
        .iter()
        .flat_map(|row| {
            row.attempts
                .iter()
                .map(|(_, end, _)| *end)
                .chain(row.wait.map(|(_, end)| end))
        })
        .chain(objective)
        .fold(1_000.0_f64, f64::max);
    let domain = latest * 1.04;
    let x = |ms: f64| round(LEFT + ms.clamp(0.0, domain) / domain * PLOT);
    let width = |from: f64, to: f64| round((x(to) - x(from)).max(1.0));

    let rows: Vec<GanttRow> = timed
        .iter()
        .enumerate()
        .map(|(index, row)| {
            let y = TOP + index as f64 * ROW + (ROW - BAR) / 2.0;
            let first = row.attempts.first().map(|(start, _, _)| *start);
            let last = row.attempts.last().map(|(_, end, _)| *end);
            let duration = match (first, last) {
                (Some(first), Some(last)) => format!(
                    ", {}",
                    format_duration(SignedDuration::from_millis((last - first) as i64))
                ),
                _ => String::new(),
            };
            let waited = row
                .wait
                .map(|(from, to)| {
                    format!(
                        ", waited {} for a human",
                        format_duration(SignedDuration::from_millis((to - from) as i64))
                    )
                })
                .unwrap_or_default();
            GanttRow {
                id: row.id.clone(),
                status: row.status.name(),
                title: format!("{}: {}{duration}{waited}", row.id, row.status.name()),
                y: round(y),
                height: BAR,
                label_y: round(y + BAR / 2.0 + 4.0),
                attempts: row
                    .attempts
                    .iter()
                    .map(|(from, to, status)| Segment {
                        x: x(*from),
                        width: width(*from, *to),
                        status: status.name(),
                    })
                    .collect(),
                wait: row.wait.map(|(from, to)| Segment {
                    x: x(from),
                    width: width(from, to),
                    status: "waiting",
                }),
            }
        })
        .collect();

    let bottom = TOP + rows.len().max(1) as f64 * ROW;
    let step = NICE_STEPS
        .iter()
        .copied()
        .find(|step| (domain / *step as f64) <= MAX_TICKS as f64)
        .unwrap_or_else(|| {
            let day = 86_400_000;
            ((domain as i64 / MAX_TICKS) / day + 1) * day
        });
    let ticks = (0..)
        .map(|n| n * step)
        .take_while(|ms| (*ms as f64) <= domain)
        .map(|ms| Tick {
            x: x(ms as f64),
            label: tick_label(ms),
        })
        .collect();

    Gantt {
        width: LEFT + PLOT + RIGHT,
        height: bottom + AXIS,
        left: LEFT,
        right: LEFT + PLOT,
        top: TOP,
        bottom,
        rows,
        ticks,
        rto: state.rto.filter(|_| objective.is_some()).map(|rto| Marker {
            x: x(rto.signed().as_millis() as f64),
            label: format!("RTO {rto}"),
        }),
    }
}

/// Axis labels in the playbook's own duration style: `0s`, `30s`, `5m`, `1h30m`.
fn tick_label(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    crate::duration::Duration(std::time::Duration::from_millis(ms)).to_string()
}

/// A tenth of a pixel is finer than any screen shows, and keeps the file readable.
fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{Journal, failed_run, planned};

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

    #[test]
    fn gantt_rows_ticks_and_the_rto_line_are_placed_on_one_scale() {
        let gantt = gantt(&failed_run());
        // smoke never ran and never waited: no row.
        let ids: Vec<&str> = gantt.rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["assess", "restore", "drop_target"]);
        // The RTO objective (30m) is the latest thing drawn: the domain is 1800 s * 1.04.
        let px = |seconds: f64| round(LEFT + seconds * 1000.0 / (1_800_000.0 * 1.04) * PLOT);
        let rto = gantt.rto.as_ref().expect("rto line");
        assert_eq!(rto.label, "RTO 30m");
        assert_eq!(rto.x, px(1800.0));
        assert!(rto.x < gantt.right);

        let restore = &gantt.rows[1];
        assert_eq!(restore.status, "failed");
        assert_eq!(restore.attempts.len(), 2);
        assert_eq!(restore.attempts[0].x, px(131.0));
        assert_eq!(restore.attempts[1].x, px(150.0));
        assert_eq!(restore.attempts[1].status, "failed");
        let wait = restore.wait.as_ref().expect("alice's wait");
        assert_eq!(wait.x, px(10.0));
        assert_eq!(wait.width, round(px(130.0) - px(10.0)));
        assert!(gantt.rows[0].wait.is_none());
        assert!(gantt.rows[1].y > gantt.rows[0].y);
        assert!(gantt.rows[2].y + gantt.rows[2].height <= gantt.bottom);

        // 1872 s of domain: ticks every 5 minutes from 0.
        let labels: Vec<&str> = gantt.ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["0s", "5m", "10m", "15m", "20m", "25m", "30m"]);
        assert_eq!(gantt.ticks[0].x, LEFT);
        assert_eq!(gantt.ticks[6].x, px(1800.0));
    }

    #[test]
    fn without_an_objective_the_chart_fits_the_steps() {
        let mut journal = Journal::start(
            vec![planned("a", "command"), planned("b", "command")],
            None,
            None,
            None,
        );
        journal.ok("a", 0, 10).ok("b", 10, 50).finish(50, 0);
        let gantt = gantt(&journal.state());
        assert!(gantt.rto.is_none());
        let b = &gantt.rows[1];
        let end = b.attempts[0].x + b.attempts[0].width;
        // 50 s is the latest point: it lands 1/1.04 of the way across.
        assert!((end - (LEFT + PLOT / 1.04)).abs() < 0.2, "{end}");
        let labels: Vec<&str> = gantt.ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["0s", "10s", "20s", "30s", "40s", "50s"]);
        let tiny = &gantt.rows[0];
        assert!(tiny.attempts[0].width >= 1.0);
    }

    #[test]
    fn a_step_still_running_is_drawn_to_the_last_record() {
        let mut journal = Journal::start(vec![planned("a", "command")], None, None, None);
        journal.push(
            0,
            crate::event::Event::StepStarted {
                step: "a".into(),
                attempt: 1,
                params: serde_json::Value::Null,
            },
        );
        journal.push(
            100,
            crate::event::Event::Interrupted {
                reason: "SIGKILL".into(),
            },
        );
        let state = journal.state();
        let gantt = gantt(&state);
        assert_eq!(gantt.rows[0].status, "running");
        let segment = &gantt.rows[0].attempts[0];
        assert!((segment.x + segment.width - (LEFT + PLOT / 1.04)).abs() < 0.2);
        let html = render(&state);
        assert!(html.contains("SIGKILL"), "{html}");
    }
}
