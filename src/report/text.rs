//! The terminal summary printed at the end of every run. Written for the on-call engineer at
//! 3am: the verdict first, then one line per step, details only where something needs a look.
//! Plain text with no colour codes, so it reads the same in a terminal, a CI log or an email.

use std::fmt::Write;

use crate::event::PlannedStep;
use crate::state::{RunState, StepState};

use super::communication;
use super::{decision_phrase, is_failure, report_steps};
use crate::format::{format_clock, format_duration, format_margin, format_time};
use crate::measure::{Measure, objectives, recovery_time, step_duration, total_duration};

/// A step shows at most this many evidence lines: a failed step its last ones, where a
/// program's output usually says what went wrong, any other its first ones, where steps say
/// what they found. The full evidence is in the other formats.
const EVIDENCE_LINES: usize = 10;

pub(crate) fn render(state: &RunState) -> String {
    let mut out = String::new();
    header(&mut out, state);
    out.push('\n');
    steps(&mut out, state);
    messages(&mut out, state);
    footer(&mut out, state);
    out
}

fn header(out: &mut String, state: &RunState) {
    let mode = match state.mode {
        crate::event::Mode::Drill => "DRILL (not a live recovery)",
        crate::event::Mode::Incident => "INCIDENT (live)",
        crate::event::Mode::Live => "LIVE (routine, on live systems)",
    };
    let dry = if state.dry_run { " · DRY RUN" } else { "" };
    // `writeln!` into a String cannot fail.
    let _ = writeln!(
        out,
        "{mode}{dry} · {} · run {}",
        state.playbook, state.run_id
    );
    let exit = state
        .finished
        .map(|(_, code)| format!(" (exit {code})"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{:<12}{}{exit}",
        "outcome",
        state.outcome_name().replace('_', " ").to_uppercase()
    );
    if let Some(why) = crate::measure::why_stopped(state) {
        let _ = writeln!(out, "{:<12}{why}", "why");
    }
    let ended = match state.finished {
        Some((at, _)) => format!("finished {}", format_clock(at, state.started_at)),
        None => format!(
            "last activity {}",
            format_clock(state.last_at, state.started_at)
        ),
    };
    let _ = writeln!(
        out,
        "{:<12}{} by {} · {ended} · took {}",
        "started",
        format_time(state.started_at),
        state.operator,
        format_duration(total_duration(state))
    );
    if let Some(declared) = state.declared_at {
        let _ = writeln!(
            out,
            "{:<12}{} (the RTO clock starts here)",
            "declared",
            format_time(declared)
        );
    }
    for (at, by) in &state.resumes {
        let _ = writeln!(
            out,
            "{:<12}{} by {by}",
            "resumed",
            format_clock(*at, state.started_at)
        );
    }
    for (at, reason) in &state.interruptions {
        let _ = writeln!(
            out,
            "{:<12}{}: {reason}",
            "interrupted",
            format_clock(*at, state.started_at)
        );
    }
    if let Some(chain) = &state.journal {
        let _ = writeln!(out, "{:<12}{}", "journal", chain.summary());
    }
    let measured = objectives(state);
    let _ = writeln!(
        out,
        "{:<12}{}",
        "RTO",
        measure(&measured.rto, "not reached")
    );
    let _ = writeln!(
        out,
        "{:<12}{}",
        "RPO",
        measure(&measured.rpo, "not measured")
    );
    let _ = writeln!(
        out,
        "{:<12}{} · recovery excluding human wait {}",
        "human wait",
        format_duration(state.human_wait()),
        format_duration(recovery_time(state, &measured))
    );
}

/// "objective 30m · achieved 12m04s · margin +17m56s · met", leaving out what is unknown.
fn measure(measure: &Measure, missing: &'static str) -> String {
    let mut parts = Vec::new();
    if let Some(objective) = measure.objective {
        parts.push(format!("objective {objective}"));
    }
    if let Some(achieved) = measure.achieved {
        parts.push(format!("achieved {}", format_duration(achieved)));
    }
    if let Some(margin) = measure.margin() {
        parts.push(format!("margin {}", format_margin(margin)));
    }
    parts.push(measure.verdict(missing).to_owned());
    parts.join(" · ")
}

fn steps(out: &mut String, state: &RunState) {
    let steps = report_steps(state);
    let status_width = steps
        .iter()
        .map(|(_, step)| step.status.name().len())
        .max()
        .unwrap_or(0);
    let id_width = steps
        .iter()
        .map(|(_, step)| step.id.chars().count())
        .max()
        .unwrap_or(0);
    let durations: Vec<String> = steps
        .iter()
        .map(|(_, step)| step_duration(step).map(format_duration).unwrap_or_default())
        .collect();
    let duration_width = durations.iter().map(String::len).max().unwrap_or(0);
    // Details line up under the step id.
    let indent = " ".repeat(2 + 2 + status_width + 2);
    for ((plan, step), duration) in steps.iter().zip(&durations) {
        let notes = notes(*plan, step);
        let line = format!(
            "  {} {:<status_width$}  {:<id_width$}  {:>duration_width$}  {}",
            step.status.symbol(),
            step.status.name(),
            step.id,
            duration,
            notes.join(" · ")
        );
        let _ = writeln!(out, "{}", line.trim_end());
        details(out, state, step, &indent);
    }
}

fn notes(plan: Option<&PlannedStep>, step: &StepState) -> Vec<String> {
    let mut notes = Vec::new();
    if step.attempts.len() > 1 {
        notes.push(format!("{} attempts", step.attempts.len()));
    }
    if let Some(reason) = &step.skipped_reason {
        notes.push(reason.clone());
    }
    match plan {
        Some(plan) => {
            if plan.clock_stop {
                notes.push("clock stop".into());
            }
            if plan.cleanup {
                notes.push("cleanup".into());
            }
        }
        None => notes.push("not in the current plan".into()),
    }
    notes
}

fn details(out: &mut String, state: &RunState, step: &StepState, indent: &str) {
    for decision in &step.approvals {
        let reason = decision
            .reason
            .as_deref()
            .map(|reason| format!(": {reason}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{indent}{} by {} at {}{reason}",
            decision_phrase(decision),
            decision.by,
            format_clock(decision.at, state.started_at)
        );
    }
    if !step.human_wait.is_zero() {
        let _ = writeln!(
            out,
            "{indent}waited {} for a human",
            format_duration(step.human_wait)
        );
    }
    if let Some(question) = &step.question {
        let _ = writeln!(
            out,
            "{indent}waiting since {}: {}",
            format_clock(question.asked_at, state.started_at),
            question.prompt
        );
    }
    let evidence = |lines: &[String]| {
        let mut text = String::new();
        for line in lines {
            let _ = writeln!(text, "{}", format!("{indent}| {line}").trim_end());
        }
        text
    };
    if !is_failure(step.status) {
        // What the step found — which backup, what it checked — is what an auditor reads:
        // the first lines, where steps put it.
        let shown = step.evidence.len().min(EVIDENCE_LINES);
        out.push_str(&evidence(&step.evidence[..shown]));
        let more = step.evidence.len() - shown;
        if more > 0 {
            let _ = writeln!(
                out,
                "{indent}| … {more} more lines (all of them: drillbook report {} --format md)",
                state.run_id
            );
        }
        return;
    }
    if let Some(error) = &step.error {
        let mut lines = error.lines();
        let _ = writeln!(out, "{indent}error: {}", lines.next().unwrap_or_default());
        for line in lines {
            let _ = writeln!(out, "{indent}       {line}");
        }
    }
    // A failure's last lines are where a program's output usually says what went wrong.
    let skip = step.evidence.len().saturating_sub(EVIDENCE_LINES);
    if skip > 0 {
        let _ = writeln!(out, "{indent}| … {skip} earlier lines");
    }
    out.push_str(&evidence(&step.evidence[skip..]));
}

/// "messages sent: 6 (declare 1, updates 4, restored 1)", then each message that did not
/// arrive: whoever was meant to be told may not know.
fn messages(out: &mut String, state: &RunState) {
    if state.notifications.is_empty() {
        return;
    }
    let counts = communication::counts(state);
    let per_step: Vec<String> = counts
        .iter()
        .filter(|count| count.sent > 0)
        .map(|count| format!("{} {}", count.step, count.sent))
        .collect();
    let failed: usize = counts.iter().map(|count| count.failed).sum();
    out.push('\n');
    let mut line = format!("messages sent: {}", communication::delivered(state));
    if !per_step.is_empty() {
        let _ = write!(line, " ({})", per_step.join(", "));
    }
    if failed > 0 {
        let _ = write!(line, " · {failed} failed");
    }
    let _ = writeln!(out, "{line}");
    for notification in state.notifications.iter().filter(|n| !n.ok()) {
        let _ = writeln!(
            out,
            "  ✗ {} at {}{} to {}: {}",
            notification.step,
            format_clock(notification.at, state.started_at),
            if notification.repeat { " (repeat)" } else { "" },
            communication::to(notification),
            communication::result(notification)
        );
    }
}

fn footer(out: &mut String, state: &RunState) {
    let waiting: Vec<&str> = state
        .steps
        .iter()
        .filter(|step| step.question.is_some())
        .map(|step| step.id.as_str())
        .collect();
    if state.finished.is_some_and(|(_, code)| code == 4) || !waiting.is_empty() {
        out.push('\n');
        for id in waiting {
            let _ = writeln!(
                out,
                "to decide: drillbook approve {} {id} [--reject], then drillbook resume {}",
                state.run_id, state.run_id
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{Journal, RESTORE_ERROR, failed_run, planned};

    #[test]
    fn a_failed_run_shows_the_verdict_the_error_and_who_approved() {
        let text = render(&failed_run());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("DRILL"), "{text}");
        assert!(lines[0].contains("database-restore"), "{text}");
        assert!(text.contains("outcome     FAILED (exit 1)"), "{text}");
        assert!(
            text.contains("RTO         objective 30m · not reached"),
            "{text}"
        );
        assert!(
            text.contains("RPO         objective 1h · achieved 25m00s · margin +35m00s · met"),
            "{text}"
        );
        assert!(
            text.contains("human wait  2m00s · recovery excluding human wait 1m24s"),
            "{text}"
        );
        assert!(text.contains(RESTORE_ERROR), "{text}");
        assert!(text.contains("approved by alice at 08:02:10"), "{text}");
        assert!(!text.contains('\x1b'), "no colour codes");

        let restore = lines
            .iter()
            .find(|line| line.contains(" restore "))
            .expect("restore line");
        assert!(restore.contains("✗ failed"), "{restore}");
        assert!(restore.contains("2 attempts"), "{restore}");
        let smoke = lines
            .iter()
            .find(|line| line.contains(" smoke "))
            .expect("smoke line");
        assert!(smoke.contains("needs `restore`, which failed"), "{smoke}");
        assert!(smoke.contains("clock stop"), "{smoke}");
    }

    #[test]
    fn steps_are_aligned_in_plan_order() {
        let text = render(&failed_run());
        let rows: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
            .collect();
        let ids: Vec<&str> = rows
            .iter()
            .filter_map(|row| row.split_whitespace().nth(2))
            .collect();
        assert_eq!(ids, ["assess", "restore", "smoke", "drop_target"]);
        let column = |row: &str, id: &str| row.find(id).expect("id");
        assert_eq!(column(rows[0], "assess"), column(rows[3], "drop_target"));
    }

    #[test]
    fn only_the_last_ten_evidence_lines_are_shown() {
        let text = render(&failed_run());
        assert!(text.contains("| … 2 earlier lines"), "{text}");
        assert!(text.contains("| stderr line 12"), "{text}");
        assert!(text.contains("| stderr line 3\n"), "{text}");
        assert!(!text.contains("| stderr line 2\n"), "{text}");
        // The succeeded step says what it found, under its own line.
        let assess = text
            .split("\n  ✓ succeeded")
            .nth(1)
            .expect("the assess line");
        assert!(assess.contains("newest complete backup"), "{text}");
    }

    #[test]
    fn messages_are_counted_per_step_and_failures_listed() {
        let text = render(&crate::fixtures::communication_run());
        assert!(
            text.contains(
                "\nmessages sent: 5 (declare 1, updates 3, restored 1) · 2 failed\n  ✗ declare at 08:00:02 to webhook hooks.slack.com: failed: the receiver answered HTTP 500 Internal Server Error: ok\n  ✗ updates at 08:02:06 (repeat) to POST status.example.com/api/v1/incidents: failed: could not send the notification: connection failed\n"
            ),
            "{text}"
        );
        assert!(!render(&failed_run()).contains("messages sent"));
    }

    #[test]
    fn a_run_waiting_for_approval_says_how_to_continue() {
        let mut journal = Journal::start(vec![planned("promote", "promote")], None, None, None);
        journal.push(
            5,
            crate::event::Event::ApprovalRequested {
                step: "promote".into(),
                ask: crate::event::Ask::Gate,
                prompt: "Point the app at the restored database?".into(),
                approvers: 1,
                expires_at: None,
                allowed: Vec::new(),
                keys: Default::default(),
                signed: false,
            },
        );
        journal.finish(6, 4);
        let text = render(&journal.state());
        assert!(text.contains("WAITING APPROVAL (exit 4)"), "{text}");
        assert!(
            text.contains("waiting since 08:00:05: Point the app at the restored database?"),
            "{text}"
        );
        assert!(text.contains("drillbook approve 0193-r1 promote"), "{text}");
    }
}
