//! The log of a run nobody watches (CI, cron): one timestamped line per event on stderr, never
//! an escape code, so the scheduler's log reads like a timeline and greps cleanly.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{BinaryBytes, HumanCount};
use jiff::Timestamp;

use super::{compact, decision, one_line, waiting_for};
use crate::event::{Ask, Event, Record, Status};
use crate::human::Observer;
use crate::progress::{Progress, Unit};
use crate::projection::Projection;

/// Often enough to show a long transfer is alive, rarely enough not to drown the log.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Writes the run's events as plain lines, for runs without a terminal.
pub struct Plain {
    run_id: String,
    log: Mutex<Log>,
    projection: Option<Arc<Projection>>,
}

#[derive(Default)]
struct Log {
    started: HashMap<String, Timestamp>,
    last_progress: HashMap<String, Instant>,
    /// The projection went past the RTO and the log said so (once is enough).
    warned: bool,
}

impl Plain {
    /// The run id goes into the advice printed at a gate: which run to approve and resume.
    pub fn new(run_id: impl Into<String>) -> Plain {
        Plain {
            run_id: run_id.into(),
            log: Mutex::new(Log::default()),
            projection: None,
        }
    }

    /// Says what past runs predict at the start, and warns once if, as steps end, the RTO
    /// clock is projected to stop past the objective.
    pub fn with_projection(mut self, projection: Arc<Projection>) -> Plain {
        self.projection = Some(projection);
        self
    }

    /// The projection's line after `event`, if it calls for one.
    fn projection_text(&self, event: &Event, at: Timestamp) -> Option<String> {
        let projection = self.projection.as_ref()?;
        match event {
            Event::RunStarted { .. } | Event::RunResumed { .. } => {
                projection.prediction().map(|p| p.to_string())
            }
            Event::StepFinished { .. } | Event::StepSkipped { .. } => {
                let projected = projection.running_projection(at)?;
                let (text, over) = super::projected_text(projected, projection.rto().map(|d| d.0));
                let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
                if !over || log.warned {
                    return None;
                }
                log.warned = true;
                Some(text)
            }
            _ => None,
        }
    }
}

impl Observer for Plain {
    fn record(&self, record: &Record) {
        let took = {
            let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
            match &record.event {
                Event::StepStarted { step, .. } => {
                    log.started.insert(step.clone(), record.at);
                    // The first progress line comes after a while of work, not at once.
                    log.last_progress.insert(step.clone(), Instant::now());
                    None
                }
                Event::StepFinished { step, .. } => {
                    log.last_progress.remove(step);
                    log.started.get(step).and_then(|started| {
                        Duration::try_from(record.at.duration_since(*started)).ok()
                    })
                }
                _ => None,
            }
        };
        if let Some(text) = event_text(&record.event, &self.run_id, took) {
            write_line(&format!("{} {text}", timestamp(record.at)));
        }
        if let Some(text) = self.projection_text(&record.event, record.at) {
            write_line(&format!("{} {text}", timestamp(record.at)));
        }
    }

    fn progress(&self, step: &str, progress: Progress) {
        let due = {
            let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
            log.due(step, Instant::now())
        };
        if due {
            let text = progress_text(step, progress);
            write_line(&format!("{} {text}", timestamp(crate::clock::now())));
        }
    }
}

impl Log {
    /// Whether a progress line for `step` may be printed now; remembers it if so.
    fn due(&mut self, step: &str, now: Instant) -> bool {
        if let Some(last) = self.last_progress.get(step)
            && now.saturating_duration_since(*last) < PROGRESS_EVERY
        {
            return false;
        }
        self.last_progress.insert(step.to_string(), now);
        true
    }
}

fn write_line(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// RFC 3339 to the second: finer than that is noise in a log, and the durations are printed
/// separately.
fn timestamp(at: Timestamp) -> String {
    format!("{at:.0}")
}

/// What one event says in the log, without the timestamp; `None` for events that need no line.
pub(crate) fn event_text(event: &Event, run_id: &str, took: Option<Duration>) -> Option<String> {
    let text = match event {
        Event::RunStarted {
            playbook,
            mode,
            dry_run,
            operator,
            ..
        } => {
            let mode = mode.name();
            let dry_run = if *dry_run { ", dry run" } else { "" };
            format!("run {run_id} started: playbook {playbook} ({mode}{dry_run}) by {operator}")
        }
        Event::RunResumed { operator, .. } => format!("run {run_id} resumed by {operator}"),
        Event::StepStarted { step, attempt, .. } => format!("{step} started (attempt {attempt})"),
        Event::StepFinished {
            step,
            attempt,
            status,
            error,
            ..
        } => finished_text(step, *status, *attempt, took, error.as_deref()),
        Event::StepSkipped { step, reason, .. } => {
            format!("{step} skipped: {}", one_line(reason))
        }
        Event::RetryScheduled {
            step,
            attempt,
            delay_ms,
        } => format!(
            "retrying {step} in {} (attempt {attempt})",
            compact(Duration::from_millis(*delay_ms))
        ),
        Event::ApprovalRequested {
            step, ask, prompt, ..
        } => {
            let advice =
                format!("run `drillbook approve {run_id} {step}` then `drillbook resume {run_id}`");
            let prompt = one_line(prompt);
            let what = match ask {
                Ask::Gate | Ask::Attest => waiting_for(*ask),
                Ask::Rerun => "was running when the run stopped and may have partly happened",
            };
            if prompt.is_empty() {
                format!("{step} {what} — {advice}")
            } else {
                format!("{step} {what}: {prompt} — {advice}")
            }
        }
        Event::ApprovalDecided {
            step,
            ask,
            approved,
            by,
            reason,
            pre_approved,
            ..
        } => format!(
            "{step} {}",
            decision(*ask, *approved, by, reason.as_deref(), *pre_approved)
        ),
        Event::Confirmed {
            step,
            answer,
            waited_ms,
        } => format!(
            "{step}: {answer}, answered after {}",
            compact(Duration::from_millis(*waited_ms))
        ),
        Event::Interrupted { reason } => format!("run {run_id} interrupted: {}", one_line(reason)),
        Event::Confirming { step, by } => format!("{step}: {by} is asked to proceed"),
        Event::Aborted {
            step, by, reason, ..
        } => format!(
            "run {run_id} aborted by {by} before {step}{}",
            reason
                .as_deref()
                .map(|r| format!(": {}", one_line(r)))
                .unwrap_or_default()
        ),
        Event::NotificationRepeated { step, error, .. } => match error {
            None => format!("{step} sent again"),
            Some(error) => format!("{step} could not be sent again: {}", one_line(error)),
        },
        Event::PostMortemNotes { by, .. } => {
            format!("run {run_id}: post-mortem notes recorded by {by}")
        }
        Event::RunFinished { exit_code } => {
            format!("run {run_id} finished (exit code {exit_code})")
        }
        Event::RunProcess { .. } | Event::ChildStarted { .. } => return None,
        Event::PreApproved { by, all, steps, .. } => pre_approved_text(by, *all, steps),
        Event::ChildStopped { .. } => survivor_text(event)?,
    };
    Some(text)
}

/// What `pre_approved` says: which gates were approved ahead of time, and by whom.
pub(crate) fn pre_approved_text(by: &str, all: bool, steps: &[String]) -> String {
    let what = match (all, steps.is_empty()) {
        (true, true) => "every approval gate".to_string(),
        (true, false) => format!("every approval gate, and {}", steps.join(", ")),
        (false, _) => steps.join(", "),
    };
    format!("pre-approved by {by}: {what} (kept for resume)")
}

/// What `child_stopped` says: a program of the previous drillbook found running, and stopped.
pub(crate) fn survivor_text(event: &Event) -> Option<String> {
    let Event::ChildStopped {
        step,
        attempt,
        pid,
        program,
        processes,
        killed,
        remaining,
    } = event
    else {
        return None;
    };
    let how = if *killed {
        "SIGTERM, then SIGKILL"
    } else {
        "SIGTERM"
    };
    let others = match processes.saturating_sub(1) {
        0 => String::new(),
        1 => " and 1 process it left in its group".to_string(),
        n => format!(" and {n} processes it left in its group"),
    };
    let end = match remaining {
        0 => "gone".to_string(),
        n => format!("{n} still running: stop them before going on"),
    };
    Some(format!(
        "{step}: `{program}` (pid {pid}{others}) of attempt {attempt} was still running from the drillbook that stopped; stopped before anything runs again ({how}): {end}"
    ))
}

fn finished_text(
    step: &str,
    status: Status,
    attempt: u32,
    took: Option<Duration>,
    error: Option<&str>,
) -> String {
    let error = super::detail_suffix(error);
    let took = took.map(compact);
    let after = took
        .as_deref()
        .map(|took| format!(" after {took}"))
        .unwrap_or_default();
    let attempt = super::attempt_suffix(attempt);
    match status {
        Status::Succeeded => match took {
            Some(took) => format!("{step} succeeded in {took}{attempt}"),
            None => format!("{step} succeeded{attempt}"),
        },
        Status::Failed => format!("{step} failed{attempt}{error}"),
        Status::TimedOut => format!("{step} timed out{after}{attempt}{error}"),
        other => format!("{step} {other}{error}"),
    }
}

/// "restore: 12,000 of 50,000 rows (24%)", "backup: 1.20 GiB so far".
pub(crate) fn progress_text(step: &str, progress: Progress) -> String {
    let amount = |value: u64| match progress.unit {
        Unit::Bytes => BinaryBytes(value).to_string(),
        Unit::Rows => format!("{} rows", HumanCount(value)),
        Unit::Objects => format!("{} objects", HumanCount(value)),
    };
    match progress.total {
        Some(total) if total > 0 => {
            let percent = u128::from(progress.done.min(total)) * 100 / u128::from(total);
            let done = match progress.unit {
                Unit::Bytes => BinaryBytes(progress.done).to_string(),
                Unit::Rows | Unit::Objects => HumanCount(progress.done).to_string(),
            };
            format!(
                "{step}: {done} of {} ({percent}%){}",
                amount(total),
                objects_text(progress.objects)
            )
        }
        _ => format!(
            "{step}: {} so far{}",
            amount(progress.done),
            objects_text(progress.objects)
        ),
    }
}

/// ", 1,204 of 2,002 objects" when a step counts objects beside bytes.
pub(crate) fn objects_text(objects: Option<(u64, u64)>) -> String {
    objects.map_or(String::new(), |(done, total)| {
        format!(", {} of {} objects", HumanCount(done), HumanCount(total))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn text(event: Event) -> String {
        event_text(&event, "r1", Some(Duration::from_millis(1_234))).unwrap_or_default()
    }

    #[test]
    fn timestamps_are_rfc3339_to_the_second() {
        let at: Timestamp = "2026-11-24T14:50:00.123456Z".parse().expect("timestamp");
        assert_eq!(timestamp(at), "2026-11-24T14:50:00Z");
    }

    #[test]
    fn step_events_read_as_sentences() {
        assert_eq!(
            text(Event::StepStarted {
                step: "backup".into(),
                attempt: 1,
                params: serde_json::Value::Null,
            }),
            "backup started (attempt 1)"
        );
        let finished = |status, error: Option<&str>| Event::StepFinished {
            step: "backup".into(),
            attempt: 1,
            status,
            outputs: BTreeMap::new(),
            error: error.map(str::to_string),
            evidence: Vec::new(),
            error_class: None,
        };
        assert_eq!(
            text(finished(Status::Succeeded, None)),
            "backup succeeded in 1.2s"
        );
        assert_eq!(
            text(finished(Status::Failed, Some("pg_dump: exit code 1"))),
            "backup failed: pg_dump: exit code 1"
        );
        assert_eq!(
            text(finished(Status::TimedOut, None)),
            "backup timed out after 1.2s"
        );
        assert_eq!(text(finished(Status::Cancelled, None)), "backup cancelled");
        assert_eq!(
            text(Event::StepSkipped {
                step: "promote".into(),
                reason: "live only".into(),
                blocked: false,
            }),
            "promote skipped: live only"
        );
        assert_eq!(
            text(Event::RetryScheduled {
                step: "backup".into(),
                attempt: 2,
                delay_ms: 2_000,
            }),
            "retrying backup in 2.0s (attempt 2)"
        );
    }

    #[test]
    fn a_gate_says_how_to_get_past_it() {
        assert_eq!(
            text(Event::ApprovalRequested {
                step: "approve".into(),
                ask: Ask::Gate,
                prompt: "Promote\nthe standby?".into(),
                approvers: 1,
                expires_at: None,
                allowed: Vec::new(),
                keys: Default::default(),
                signed: false,
            }),
            "approve waiting for approval: Promote the standby? — run `drillbook approve r1 \
             approve` then `drillbook resume r1`"
        );
        assert_eq!(
            text(Event::ApprovalDecided {
                step: "approve".into(),
                ask: Ask::Gate,
                approved: true,
                by: "alice".into(),
                reason: None,
                pre_approved: true,
                account: None,
                signature: None,
            }),
            "approve approved by alice (pre-approved)"
        );
    }

    #[test]
    fn no_line_carries_an_escape_code() {
        let events = [
            Event::Interrupted {
                reason: "SIGINT".into(),
            },
            Event::RunFinished { exit_code: 4 },
            Event::RunResumed {
                operator: "bob".into(),
                pid: 1,
                playbook_hash: "x".into(),
                steps: None,
            },
        ];
        for event in events {
            assert!(!text(event).contains('\u{1b}'));
        }
    }

    #[test]
    fn progress_names_amounts_and_share() {
        let bytes = Progress {
            done: 3 * 1024 * 1024 * 1024,
            total: Some(4 * 1024 * 1024 * 1024),
            unit: Unit::Bytes,
            objects: None,
        };
        assert_eq!(
            progress_text("backup", bytes),
            "backup: 3.00 GiB of 4.00 GiB (75%)"
        );
        let rows = Progress {
            done: 12_000,
            total: Some(50_000),
            unit: Unit::Rows,
            objects: None,
        };
        assert_eq!(
            progress_text("restore", rows),
            "restore: 12,000 of 50,000 rows (24%)"
        );
        let objects = Progress {
            done: 7,
            total: None,
            unit: Unit::Objects,
            objects: None,
        };
        assert_eq!(progress_text("sync", objects), "sync: 7 objects so far");
    }

    #[test]
    fn progress_is_printed_at_most_every_five_seconds_per_step() {
        let mut log = Log::default();
        let start = Instant::now();
        assert!(log.due("sync", start));
        assert!(!log.due("sync", start + Duration::from_secs(4)));
        assert!(log.due("backup", start + Duration::from_secs(4)));
        assert!(log.due("sync", start + Duration::from_secs(5)));
        assert!(!log.due("sync", start + Duration::from_secs(9)));
    }
}
