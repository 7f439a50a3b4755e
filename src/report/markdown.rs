//! A post-mortem skeleton in Markdown: the facts the journal knows (summary, timeline, what
//! each step found, approvals, the messages sent, what failed), then what only people can write (root cause,
//! remediation): the incident operator's notes when they were given at the end of the run,
//! otherwise placeholders to fill in. Pasted into a wiki or an issue, it renders as tables.

use std::fmt::Write;

use jiff::Timestamp;

use crate::event::Status;
use crate::state::RunState;

use super::communication;
use super::{decision_phrase, is_failure, report_steps};
use crate::format::{format_clock, format_duration, format_margin, format_time, short_hash};
use crate::measure::{Measure, elapsed, objectives, recovery_time};

const TO_BE_WRITTEN: &str = "_To be written._";

pub(crate) fn render(state: &RunState) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Post-mortem: {} ({})\n",
        inline(&state.playbook),
        state.mode.name()
    );
    if state.mode == crate::event::Mode::Drill {
        out.push_str(
            "> **DRILL** — this run rehearsed the procedure; it was not a live recovery.\n\n",
        );
    }
    if state.dry_run {
        out.push_str("> **DRY RUN** — nothing was touched.\n\n");
    }
    summary(&mut out, state);
    timeline(&mut out, state);
    evidence(&mut out, state);
    approvals(&mut out, state);
    communication(&mut out, state);
    failures(&mut out, state);
    notes(&mut out, state);
    out
}

/// What each step that did not fail found and checked — which backup, its checksum, the rows
/// compared, where a mirror stands — as the step recorded it. (A failed step's evidence is
/// under "What failed", beside its error.)
fn evidence(out: &mut String, state: &RunState) {
    let found: Vec<_> = report_steps(state)
        .into_iter()
        .filter(|(_, step)| !is_failure(step.status) && !step.evidence.is_empty())
        .collect();
    out.push_str("## Evidence\n\n");
    if found.is_empty() {
        out.push_str("_No step recorded evidence._\n\n");
        return;
    }
    for (plan, step) in found {
        let kind = plan.map(|plan| plan.kind.as_str()).unwrap_or("?");
        let _ = writeln!(
            out,
            "### `{}` ({}) — {}\n",
            cell(&step.id),
            inline(kind),
            step.status.name()
        );
        for line in &step.evidence {
            let _ = writeln!(out, "- {}", inline(line));
        }
        out.push('\n');
    }
}

/// Root cause and remediation as the operator wrote them at the end of the incident; what
/// was left empty (or never asked: an unattended run, a drill) stays to be written.
fn notes(out: &mut String, state: &RunState) {
    let notes = state.notes.as_ref();
    out.push_str("## Root cause\n\n");
    let cause = notes.map(|n| n.root_cause.trim()).unwrap_or_default();
    if cause.is_empty() {
        let _ = writeln!(out, "{TO_BE_WRITTEN}\n");
    } else {
        // Each line the operator typed stays a line of its own.
        for line in cause.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let _ = writeln!(out, "{}\n", inline(line));
        }
    }
    if let Some(notes) = notes {
        let _ = writeln!(
            out,
            "_Written by {} at {}, when the run ended._\n",
            inline(&notes.by),
            format_time(notes.at)
        );
    }
    out.push_str("## Remediation\n\n");
    let items = notes.map(|n| n.remediation.as_slice()).unwrap_or_default();
    if items.is_empty() {
        let _ = writeln!(out, "{TO_BE_WRITTEN}");
    } else {
        for item in items {
            let _ = writeln!(out, "- [ ] {}", inline(item));
        }
    }
}

/// Every message sent, in time order, with where it went and whether it arrived, then how many
/// each step sent: the record of who was told what, and when.
fn communication(out: &mut String, state: &RunState) {
    out.push_str("## Communication\n\n");
    if state.notifications.is_empty() {
        out.push_str("_No messages were sent._\n\n");
        return;
    }
    let mut sent: Vec<_> = state.notifications.iter().collect();
    sent.sort_by_key(|notification| notification.at);
    out.push_str("| Time (UTC) | Step | To | Message | Result |\n");
    out.push_str("| --- | --- | --- | --- | --- |\n");
    for notification in sent {
        let _ = writeln!(
            out,
            "| {} | `{}`{} | {} | {} | {} |",
            format_clock(notification.at, state.started_at),
            cell(&notification.step),
            if notification.repeat { " (repeat)" } else { "" },
            cell(communication::to(notification)),
            cell(&communication::headline(notification)),
            cell(&communication::result(notification))
        );
    }
    out.push('\n');
    for count in communication::counts(state) {
        let _ = writeln!(
            out,
            "- `{}` {}",
            cell(count.step),
            communication::tally(&count)
        );
    }
    out.push('\n');
}

fn summary(out: &mut String, state: &RunState) {
    let measured = objectives(state);
    let mut rows: Vec<(&str, String)> = vec![
        (
            "Playbook",
            format!("{} (`{}`)", cell(&state.playbook), cell(&state.file)),
        ),
        (
            "Hash",
            format!("`{}`", cell(short_hash(&state.playbook_hash))),
        ),
        ("Run", format!("`{}`", cell(&state.run_id))),
        (
            "Mode",
            format!(
                "{}{}",
                state.mode.name(),
                if state.dry_run { " (dry run)" } else { "" }
            ),
        ),
        ("Operator", cell(&state.operator)),
    ];
    if let Some(declared) = state.declared_at {
        rows.push(("Incident declared", format_time(declared)));
    }
    rows.push(("Started", format_time(state.started_at)));
    rows.push((
        "Finished",
        match state.finished {
            Some((at, _)) => format_time(at),
            None => format!(
                "not finished (last activity {})",
                format_time(state.last_at)
            ),
        },
    ));
    let exit = state
        .finished
        .map(|(_, code)| format!(" (exit {code})"))
        .unwrap_or_default();
    rows.push(("Outcome", format!("**{}**{exit}", state.outcome_name())));
    rows.push(("RTO", measure(&measured.rto, "not reached")));
    rows.push(("RPO", measure(&measured.rpo, "not measured")));
    rows.push(("Human wait", format_duration(state.human_wait())));
    if let Some(chain) = &state.journal {
        rows.push(("Journal", cell(&chain.summary())));
    }
    rows.push((
        "Recovery excluding human wait",
        format_duration(recovery_time(state, &measured)),
    ));
    for (at, by) in &state.resumes {
        rows.push(("Resumed", format!("{} by {}", format_time(*at), cell(by))));
    }
    for (at, reason) in &state.interruptions {
        rows.push((
            "Interrupted",
            format!("{}: {}", format_time(*at), cell(reason)),
        ));
    }
    out.push_str("## Summary\n\n| | |\n| --- | --- |\n");
    for (name, value) in rows {
        let _ = writeln!(out, "| {name} | {value} |");
    }
    out.push('\n');
}

fn measure(measure: &Measure, missing: &'static str) -> String {
    let show = |value: Option<String>| value.unwrap_or_else(|| "—".into());
    format!(
        "objective {} · achieved {} · margin {} · **{}**",
        show(measure.objective.map(|o| o.to_string())),
        show(measure.achieved.map(format_duration)),
        show(measure.margin().map(format_margin)),
        measure.verdict(missing)
    )
}

/// One row of the timeline. Rows with a time are sorted by it; steps that never started
/// (skipped, pending) have none and follow, in plan order.
struct Row {
    at: Option<Timestamp>,
    step: String,
    event: String,
    duration: String,
    attempts: String,
    who: String,
}

fn timeline(out: &mut String, state: &RunState) {
    let mut rows = vec![Row {
        at: Some(state.started_at),
        step: String::new(),
        event: "run started".into(),
        duration: String::new(),
        attempts: String::new(),
        who: state.operator.clone(),
    }];
    if let Some(declared) = state.declared_at {
        rows.push(Row {
            at: Some(declared),
            step: String::new(),
            event: "incident declared (RTO clock starts)".into(),
            duration: String::new(),
            attempts: String::new(),
            who: String::new(),
        });
    }
    for (at, by) in &state.resumes {
        rows.push(Row {
            at: Some(*at),
            step: String::new(),
            event: "run resumed".into(),
            duration: String::new(),
            attempts: String::new(),
            who: by.clone(),
        });
    }
    for (at, reason) in &state.interruptions {
        rows.push(Row {
            at: Some(*at),
            step: String::new(),
            event: format!("interrupted: {reason}"),
            duration: String::new(),
            attempts: String::new(),
            who: String::new(),
        });
    }
    let mut untimed = Vec::new();
    for (_, step) in report_steps(state) {
        // A step's wait and decisions come before its attempts: at the same second, the
        // approval is what let the attempt start. The state keeps how long the step waited
        // and when the wait ended (the settling decision, the answer at a prompt), so the
        // wait is one row ending there: it explains the gap in the timeline before it.
        if let Some(settled) = step
            .human_wait_ended
            .filter(|_| step.human_wait.is_positive())
        {
            rows.push(Row {
                at: Some(settled - step.human_wait),
                step: step.id.clone(),
                event: "waiting for a human decision".into(),
                duration: format_duration(step.human_wait),
                attempts: String::new(),
                who: String::new(),
            });
        }
        for decision in &step.approvals {
            let reason = decision
                .reason
                .as_deref()
                .map(|reason| format!(": {reason}"))
                .unwrap_or_default();
            rows.push(Row {
                at: Some(decision.at),
                step: step.id.clone(),
                event: format!("{}{reason}", decision_phrase(decision)),
                duration: String::new(),
                attempts: String::new(),
                who: decision.by.clone(),
            });
        }
        let total = step.attempts.len();
        for attempt in &step.attempts {
            let mut event = attempt.status.name().to_owned();
            if let Some(error) = &attempt.error {
                let _ = write!(event, ": {}", first_line(error));
            }
            rows.push(Row {
                at: Some(attempt.started_at),
                step: step.id.clone(),
                event,
                duration: attempt
                    .finished_at
                    .map(|end| format_duration(elapsed(attempt.started_at, end)))
                    .unwrap_or_default(),
                attempts: format!("{} of {total}", attempt.number),
                who: operator_at(state, attempt.started_at).to_owned(),
            });
        }
        if let Some(question) = &step.question {
            rows.push(Row {
                at: Some(question.asked_at),
                step: step.id.clone(),
                event: format!("waiting for a decision: {}", question.prompt),
                duration: String::new(),
                attempts: String::new(),
                who: String::new(),
            });
        }
        if step.attempts.is_empty() && step.question.is_none() {
            let event = match (&step.skipped_reason, step.status) {
                (Some(reason), status) => format!("{}: {reason}", status.name()),
                (None, status) => status.name().to_owned(),
            };
            untimed.push(Row {
                at: None,
                step: step.id.clone(),
                event,
                duration: String::new(),
                attempts: String::new(),
                who: String::new(),
            });
        }
    }
    for notification in &state.notifications {
        let what = match (notification.repeat, notification.ok()) {
            (false, true) => "message sent",
            (true, true) => "message sent again",
            (false, false) => "message not delivered",
            (true, false) => "repeated message not delivered",
        };
        let detail = match &notification.error {
            None => communication::headline(notification),
            Some(error) => first_line(error).to_owned(),
        };
        rows.push(Row {
            at: Some(notification.at),
            step: notification.step.clone(),
            event: format!("{what} ({}): {detail}", communication::to(notification)),
            duration: String::new(),
            attempts: String::new(),
            who: String::new(),
        });
    }
    if let Some((at, code)) = state.finished {
        rows.push(Row {
            at: Some(at),
            step: String::new(),
            event: format!("run finished: {} (exit {code})", state.outcome_name()),
            duration: String::new(),
            attempts: String::new(),
            who: String::new(),
        });
    }
    // Stable: events recorded at the same second keep the order they were added in.
    rows.sort_by_key(|row| row.at);
    rows.extend(untimed);

    out.push_str("## Timeline\n\n");
    out.push_str("| Time (UTC) | Step | Event | Duration | Attempt | Who |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- |\n");
    for row in rows {
        let time = row
            .at
            .map(|at| format_clock(at, state.started_at))
            .unwrap_or_else(|| "—".into());
        let step = if row.step.is_empty() {
            String::new()
        } else {
            format!("`{}`", cell(&row.step))
        };
        let _ = writeln!(
            out,
            "| {time} | {step} | {} | {} | {} | {} |",
            cell(&row.event),
            row.duration,
            row.attempts,
            cell(&row.who)
        );
    }
    out.push('\n');
}

/// Who was running the run at `at`: the last person to resume it before then, or whoever
/// started it.
fn operator_at(state: &RunState, at: Timestamp) -> &str {
    state
        .resumes
        .iter()
        .rev()
        .find(|(resumed, _)| *resumed <= at)
        .map_or(state.operator.as_str(), |(_, by)| by.as_str())
}

fn approvals(out: &mut String, state: &RunState) {
    out.push_str("## Approvals\n\n");
    let decisions: Vec<_> = state
        .steps
        .iter()
        .flat_map(|step| step.approvals.iter().map(move |decision| (step, decision)))
        .collect();
    if decisions.is_empty() {
        out.push_str("_No approvals were asked for._\n\n");
        return;
    }
    out.push_str("| Step | Question | Decision | By | At (UTC) | Step's total wait | Reason |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- | --- |\n");
    for (step, decision) in decisions {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} |",
            cell(&step.id),
            decision.ask.name(),
            decision_phrase(decision),
            cell(&decision.who_signed(&state.run_id, step)),
            format_clock(decision.at, state.started_at),
            format_duration(step.human_wait),
            cell(decision.reason.as_deref().unwrap_or(""))
        );
    }
    out.push('\n');
}

fn failures(out: &mut String, state: &RunState) {
    out.push_str("## What failed\n\n");
    let failed: Vec<_> = report_steps(state)
        .into_iter()
        .filter(|(_, step)| is_failure(step.status))
        .collect();
    if let Some(why) = crate::measure::why_stopped(state) {
        let _ = writeln!(out, "{why}\n");
    }
    if failed.is_empty() {
        if crate::measure::why_stopped(state).is_none() {
            out.push_str("_Nothing failed._\n\n");
        }
        return;
    }
    for (plan, step) in failed {
        let kind = plan
            .map(|plan| plan.kind.as_str())
            .unwrap_or("unknown kind");
        let attempts = match step.attempts.len() {
            0 => "before it started".to_owned(),
            1 => "after 1 attempt".to_owned(),
            n => format!("after {n} attempts"),
        };
        let _ = writeln!(
            out,
            "### `{}` ({}) — {} {attempts}\n",
            cell(&step.id),
            inline(kind),
            step.status.name()
        );
        let earlier: Vec<_> = step
            .attempts
            .iter()
            .filter(|attempt| attempt.status != Status::Succeeded)
            .filter_map(|attempt| Some((attempt.number, attempt.error.as_deref()?)))
            .filter(|(_, error)| Some(*error) != step.error.as_deref())
            .collect();
        for (number, error) in earlier {
            let _ = writeln!(out, "- attempt {number}: {}", inline(first_line(error)));
        }
        if let Some(reason) = step.skipped_reason.as_deref() {
            let _ = writeln!(out, "- {}", inline(reason));
        }
        for decision in step.approvals.iter().filter(|d| !d.approved) {
            let _ = writeln!(
                out,
                "- {} by {}{}",
                decision_phrase(decision),
                inline(&decision.by),
                decision
                    .reason
                    .as_deref()
                    .map(|reason| format!(": {}", inline(reason)))
                    .unwrap_or_default()
            );
        }
        out.push('\n');
        if let Some(error) = &step.error {
            out.push_str("Error:\n\n");
            code_block(out, error);
        }
        if !step.evidence.is_empty() {
            out.push_str("Evidence:\n\n");
            code_block(out, &step.evidence.join("\n"));
        }
    }
}

/// A fenced block that the content cannot close early: the fence is longer than any run of
/// backticks inside.
fn code_block(out: &mut String, content: &str) {
    let mut longest = 0;
    let mut run = 0;
    for c in content.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat((longest + 1).max(3));
    let _ = writeln!(
        out,
        "{fence}\n{}\n{fence}\n",
        content.trim_end_matches('\n')
    );
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// Text for a table cell: one line, `|` escaped so it does not end the cell, `<` escaped so
/// a renderer does not take it for HTML.
fn cell(text: &str) -> String {
    inline(text).replace('|', "\\|")
}

/// Text for running Markdown outside a table: one line, no HTML.
fn inline(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{RESTORE_ERROR, failed_run};

    fn section<'a>(text: &'a str, heading: &str) -> &'a str {
        let start = text
            .find(&format!("\n## {heading}\n"))
            .unwrap_or_else(|| panic!("no section {heading} in\n{text}"));
        let rest = &text[start + 1..];
        let end = rest[3..].find("\n## ").map_or(rest.len(), |end| end + 3);
        &rest[..end]
    }

    #[test]
    fn a_post_mortem_has_every_section_in_order() {
        let text = render(&failed_run());
        assert!(text.starts_with("# Post-mortem: database-restore (drill)\n"));
        let headings: Vec<&str> = text.lines().filter(|l| l.starts_with("## ")).collect();
        assert_eq!(
            headings,
            [
                "## Summary",
                "## Timeline",
                "## Evidence",
                "## Approvals",
                "## Communication",
                "## What failed",
                "## Root cause",
                "## Remediation"
            ]
        );
        // What the succeeded assess found; the failed restore's evidence stays with its error.
        let evidence = section(&text, "Evidence");
        assert!(
            evidence.contains("### `assess` (assess) — succeeded"),
            "{evidence}"
        );
        assert!(evidence.contains("newest complete backup"), "{evidence}");
        assert!(!evidence.contains("stderr line"), "{evidence}");
        assert!(section(&text, "What failed").contains("stderr line 12"));
        assert!(section(&text, "Root cause").contains("_To be written._"));
        assert!(section(&text, "Remediation").contains("_To be written._"));
        assert!(text.contains("**DRILL**"));
    }

    #[test]
    fn the_summary_has_the_facts_and_objectives() {
        let text = render(&failed_run());
        let summary = section(&text, "Summary");
        assert!(summary.contains("| Hash | `9f86d081884c` |"), "{summary}");
        assert!(summary.contains("| Operator | ops |"), "{summary}");
        assert!(
            summary.contains("| Outcome | **failed** (exit 1) |"),
            "{summary}"
        );
        assert!(
            summary.contains("| RTO | objective 30m · achieved — · margin — · **not reached** |"),
            "{summary}"
        );
        assert!(
            summary.contains("| RPO | objective 1h · achieved 25m00s · margin +35m00s · **met** |"),
            "{summary}"
        );
        assert!(summary.contains("| Human wait | 2m00s |"), "{summary}");
        assert!(
            summary.contains("| Started | 2027-01-15 08:00:00 UTC |"),
            "{summary}"
        );
    }

    #[test]
    fn the_timeline_is_in_time_order_with_who_did_what() {
        let text = render(&failed_run());
        let timeline = section(&text, "Timeline");
        let rows: Vec<&str> = timeline
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| ---") && !l.starts_with("| Time"))
            .collect();
        assert!(rows[0].contains("run started"), "{timeline}");
        assert_eq!(
            rows[2], "| 08:00:10 | `restore` | waiting for a human decision | 2m00s |  |  |",
            "{timeline}"
        );
        assert!(
            rows[3].starts_with("| 08:02:10 | `restore` | approved: backup looks right |"),
            "{timeline}"
        );
        assert!(rows[3].ends_with("| alice |"), "{timeline}");
        assert!(
            rows[4].contains("| failed: connection refused | 9.0s | 1 of 2 |"),
            "{timeline}"
        );
        // The skipped step never started: it comes last, without a time.
        let last = rows.last().expect("rows");
        assert!(
            last.starts_with("| — | `smoke` | skipped: needs `restore`, which failed |"),
            "{timeline}"
        );
        // Every row keeps its six columns: the `|` inside the error is escaped.
        for row in &rows {
            assert_eq!(
                row.matches('|').count() - row.matches("\\|").count(),
                7,
                "{row}"
            );
        }
        assert!(
            timeline.contains("relation &lt;b>orders&lt;/b> \\| already exists"),
            "{timeline}"
        );
    }

    #[test]
    fn what_failed_shows_the_error_and_evidence_verbatim() {
        let text = render(&failed_run());
        let failed = section(&text, "What failed");
        assert!(
            failed.contains("### `restore` (restore) — failed after 2 attempts"),
            "{failed}"
        );
        assert!(
            failed.contains("- attempt 1: connection refused"),
            "{failed}"
        );
        assert!(
            failed.contains(&format!("```\n{RESTORE_ERROR}\n```")),
            "{failed}"
        );
        assert!(failed.contains("stderr line 1\n"), "{failed}");
        assert!(failed.contains("stderr line 12\n```"), "{failed}");
        assert!(
            !failed.contains("smoke"),
            "a skipped step is not a failure: {failed}"
        );
    }

    #[test]
    fn approvals_name_the_approver() {
        let text = render(&failed_run());
        let approvals = section(&text, "Approvals");
        assert!(
            approvals.contains(
                "| `restore` | gate | approved | alice | 08:02:10 | 2m00s | backup looks right |"
            ),
            "{approvals}"
        );
    }

    #[test]
    fn an_approval_comes_before_the_attempt_it_allowed_and_resumes_change_who() {
        use crate::event::{Ask, Event};
        use crate::fixtures::{Journal, planned};
        let mut journal = Journal::start(
            vec![planned("restore", "restore"), planned("flush", "flush")],
            None,
            None,
            None,
        );
        journal
            .push(
                5,
                Event::ApprovalDecided {
                    step: "restore".into(),
                    ask: Ask::Gate,
                    approved: true,
                    by: "ci".into(),
                    reason: None,
                    pre_approved: true,
                    account: None,
                    signature: None,
                },
            )
            .ok("restore", 5, 60)
            .push(
                61,
                Event::RunResumed {
                    operator: "bob".into(),
                    pid: 2,
                    playbook_hash: "h".into(),
                    steps: None,
                },
            )
            .ok("flush", 61, 62)
            .finish(62, 0);
        let text = render(&journal.state());
        let timeline = section(&text, "Timeline");
        let pre = timeline
            .find("| `restore` | pre-approved |")
            .expect("pre-approval row");
        let ran = timeline
            .find("| `restore` | succeeded |")
            .expect("attempt row");
        assert!(pre < ran, "{timeline}");
        assert!(
            timeline.contains("| 08:00:05 | `restore` | succeeded | 55.0s | 1 of 1 | ops |"),
            "{timeline}"
        );
        assert!(
            timeline.contains("| 08:01:01 | `flush` | succeeded | 1.0s | 1 of 1 | bob |"),
            "{timeline}"
        );
        assert!(section(&text, "What failed").contains("_Nothing failed._"));
    }

    #[test]
    fn communication_lists_every_message_and_counts_per_step() {
        use crate::fixtures::communication_run;
        let state = communication_run();
        let text = render(&state);
        let communication = section(&text, "Communication");
        let rows: Vec<&str> = communication
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| ---") && !l.starts_with("| Time"))
            .collect();
        assert_eq!(rows.len(), state.notifications.len(), "{communication}");
        assert_eq!(
            rows,
            [
                "| 08:00:02 | `declare` | webhook hooks.slack.com | Incident declared: database down | failed: the receiver answered HTTP 500 Internal Server Error: ok |",
                "| 08:00:04 | `declare` | webhook hooks.slack.com | Incident declared: database down | delivered |",
                "| 08:00:06 | `updates` | POST status.example.com/api/v1/incidents | {\"status\":\"investigating\"} | delivered |",
                "| 08:01:06 | `updates` (repeat) | POST status.example.com/api/v1/incidents | {\"status\":\"investigating\"} | delivered |",
                "| 08:02:06 | `updates` (repeat) | POST status.example.com/api/v1/incidents | {\"status\":\"investigating\"} | failed: could not send the notification: connection failed |",
                "| 08:03:06 | `updates` (repeat) | POST status.example.com/api/v1/incidents | {\"status\":\"investigating\"} | delivered |",
                "| 08:03:22 | `restored` | webhook hooks.slack.com | Recovered \\| all &lt;b>good&lt;/b> | delivered |",
            ],
            "{communication}"
        );
        assert!(
            communication.contains(
                "- `declare` sent 1 time, 1 failed\n- `updates` sent 3 times, 1 failed\n- `restored` sent 1 time\n"
            ),
            "{communication}"
        );
        let timeline = section(&text, "Timeline");
        assert!(
            timeline.contains(
                "| 08:01:06 | `updates` | message sent again (POST status.example.com/api/v1/incidents): {\"status\":\"investigating\"} |"
            ),
            "{timeline}"
        );
        assert!(
            timeline.contains(
                "| 08:02:06 | `updates` | repeated message not delivered (POST status.example.com/api/v1/incidents): could not send the notification: connection failed |"
            ),
            "{timeline}"
        );
        assert_eq!(timeline.matches("message").count(), 7, "{timeline}");
        // A run that sent nothing says so.
        assert!(
            section(&render(&failed_run()), "Communication").contains("_No messages were sent._")
        );
    }

    #[test]
    fn the_operators_notes_replace_the_placeholders() {
        use crate::event::Event;
        use crate::fixtures::{Journal, planned};
        let mut journal = Journal::start(vec![planned("a", "command")], None, None, None);
        journal.ok("a", 0, 5).push(
            6,
            Event::PostMortemNotes {
                root_cause: "WAL archiving stalled\nand the <disk> filled up".into(),
                remediation: vec!["alert on archive lag".into(), "cap WAL | size".into()],
                by: "erin".into(),
            },
        );
        journal.finish(7, 0);
        let text = render(&journal.state());
        let cause = section(&text, "Root cause");
        assert!(!cause.contains(TO_BE_WRITTEN), "{cause}");
        assert!(
            cause.contains("WAL archiving stalled\n\nand the &lt;disk> filled up\n"),
            "{cause}"
        );
        assert!(
            cause.contains("_Written by erin at 2027-01-15 08:00:06 UTC, when the run ended._"),
            "{cause}"
        );
        let remediation = section(&text, "Remediation");
        assert_eq!(
            remediation,
            "## Remediation\n\n- [ ] alert on archive lag\n- [ ] cap WAL | size\n"
        );

        // Only a remediation was written: the root cause is still to be written.
        let mut journal = Journal::start(vec![planned("a", "command")], None, None, None);
        journal.push(
            6,
            Event::PostMortemNotes {
                root_cause: String::new(),
                remediation: vec!["x".into()],
                by: "erin".into(),
            },
        );
        let text = render(&journal.state());
        assert!(section(&text, "Root cause").contains(TO_BE_WRITTEN));
        assert!(!section(&text, "Remediation").contains(TO_BE_WRITTEN));
    }

    #[test]
    fn code_blocks_outlast_backticks_in_their_content() {
        let mut out = String::new();
        code_block(&mut out, "a ```` b");
        assert!(out.starts_with("`````\n"), "{out}");
    }
}
