//! The two faces of a run: [`Terminal`] for a person watching (progress bars, prompts) and
//! [`Plain`] for a log that a scheduler keeps (timestamped lines, no escape codes). Both only
//! ever see masked text, because the runner masks records before it hands them out.

pub mod console;
mod lines;
mod plain;
mod progress;
mod prompt;
mod stdin_line;

use std::time::{Duration, Instant};

use crate::event::{Ask, Mode};

pub use plain::Plain;
pub use progress::Terminal;

/// What the header line of the terminal display needs to know about the run.
#[derive(Clone, Debug)]
pub struct Header {
    pub playbook: String,
    pub run_id: String,
    pub mode: Mode,
    pub dry_run: bool,
    pub rto: Option<Duration>,
    /// The name answers are recorded under unless the person types another (`--as`, or the
    /// OS user).
    pub operator: String,
    /// Whether escape codes for colour may be written (the caller weighs `NO_COLOR` and the tty).
    pub color: bool,
    /// When the RTO clock started: may be before this process started (`--declared-at`, or a
    /// resumed run).
    pub started: Instant,
    /// Where the RTO clock is projected to stop, from past runs of the playbook.
    pub projection: Option<std::sync::Arc<crate::projection::Projection>>,
}

/// Who is answering: the `--as` value when given, else the logged-in user. Falls back to
/// "unknown" rather than failing, because a missing `$USER` (a bare container) must not stop a
/// recovery.
pub fn operator_name(flag: Option<String>) -> String {
    let chosen = flag
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty());
    if let Some(name) = chosen {
        return name;
    }
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|variable| std::env::var(variable).ok())
        .map(|name| name.trim().to_string())
        .find(|name| !name.is_empty())
        .or_else(|| crate::account::real().map(|account| account.name))
        .unwrap_or_else(|| "unknown".to_string())
}

/// A duration in the same compact form as the reports ("850ms", "12.3s", "4m05s", "1h02m").
pub(crate) fn compact(duration: Duration) -> String {
    crate::format::format_duration(
        jiff::SignedDuration::try_from(duration).unwrap_or(jiff::SignedDuration::MAX),
    )
}

/// ": <error on one line>", or nothing: how finished lines add what went wrong.
pub(crate) fn detail_suffix(detail: Option<&str>) -> String {
    detail
        .map(one_line)
        .filter(|detail| !detail.is_empty())
        .map(|detail| format!(": {detail}"))
        .unwrap_or_default()
}

/// " (attempt N)" after the first attempt, else nothing.
pub(crate) fn attempt_suffix(attempt: u32) -> String {
    if attempt > 1 {
        format!(" (attempt {attempt})")
    } else {
        String::new()
    }
}

/// An objective as the playbook author wrote it ("30m", "2h"), not "30m00s".
pub(crate) fn objective(rto: Duration) -> String {
    crate::duration::Duration(rto).to_string()
}

/// The RTO clock against its objective, for the header and the prompts alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Budget {
    /// Whole percent of the objective used, rounded down.
    pub percent: u128,
    /// How far past the objective, when it has been missed.
    pub over: Option<Duration>,
}

impl Budget {
    pub(crate) fn new(elapsed: Duration, rto: Duration) -> Budget {
        let percent = if rto.is_zero() {
            100
        } else {
            elapsed.as_millis() * 100 / rto.as_millis().max(1)
        };
        Budget {
            percent,
            over: elapsed.checked_sub(rto).filter(|past| !past.is_zero()),
        }
    }
}

/// The projected clock stop in words, and whether it is past the objective:
/// "projected 27m00s of RTO 30m", "WARNING: projected 34m00s exceeds the RTO 30m".
pub(crate) fn projected_text(projected: Duration, rto: Option<Duration>) -> (String, bool) {
    match rto {
        Some(rto) if projected > rto => (
            format!(
                "WARNING: projected {} exceeds the RTO {}",
                compact(projected),
                objective(rto)
            ),
            true,
        ),
        Some(rto) => (
            format!("projected {} of RTO {}", compact(projected), objective(rto)),
            false,
        ),
        None => (format!("projected {}", compact(projected)), false),
    }
}

/// What a step is waiting for, by the kind of question.
pub(crate) fn waiting_for(ask: Ask) -> &'static str {
    match ask {
        Ask::Gate => "waiting for approval",
        Ask::Attest => "waiting for the operator to do it",
        Ask::Rerun => "waiting for a decision to run it again",
    }
}

/// A recorded decision in words, so the display and the log tell the same story.
pub(crate) fn decision(
    ask: Ask,
    approved: bool,
    by: &str,
    reason: Option<&str>,
    pre_approved: bool,
) -> String {
    let verb = match (ask, approved) {
        (Ask::Gate, true) => "approved by",
        (Ask::Gate, false) => "rejected by",
        (Ask::Attest, true) => "done, attested by",
        (Ask::Attest, false) => "not done, said",
        (Ask::Rerun, true) => "to be run again, decided by",
        (Ask::Rerun, false) => "not to be run again, decided by",
    };
    let mut text = format!("{verb} {by}");
    if pre_approved {
        text.push_str(" (pre-approved)");
    }
    if let Some(reason) = reason.filter(|reason| !reason.trim().is_empty()) {
        text.push_str(": ");
        text.push_str(&one_line(reason));
    }
    text
}

/// Prompts and errors can span lines; a status line must not.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_compact() {
        let cases = [
            (Duration::from_millis(0), "0ms"),
            (Duration::from_millis(850), "850ms"),
            (Duration::from_millis(1_000), "1.0s"),
            (Duration::from_millis(12_345), "12.3s"),
            (Duration::from_millis(59_999), "59.9s"),
            (Duration::from_secs(60), "1m00s"),
            (Duration::from_secs(245), "4m05s"),
            (Duration::from_secs(3_599), "59m59s"),
            (Duration::from_secs(3_720), "1h02m"),
            (Duration::from_secs(26 * 3_600), "26h00m"),
        ];
        for (duration, text) in cases {
            assert_eq!(compact(duration), text, "{duration:?}");
        }
    }

    #[test]
    fn projections_warn_past_the_objective() {
        let rto = Some(Duration::from_secs(1_800));
        assert_eq!(
            projected_text(Duration::from_secs(1_620), rto),
            ("projected 27m00s of RTO 30m".to_string(), false)
        );
        assert_eq!(
            projected_text(Duration::from_secs(2_040), rto),
            (
                "WARNING: projected 34m00s exceeds the RTO 30m".to_string(),
                true
            )
        );
        assert_eq!(
            projected_text(Duration::from_secs(60), None),
            ("projected 1m00s".to_string(), false)
        );
    }

    #[test]
    fn objectives_read_as_written() {
        assert_eq!(objective(Duration::from_secs(1_800)), "30m");
        assert_eq!(objective(Duration::from_secs(9_000)), "2h30m");
    }

    #[test]
    fn budget_rounds_down_and_notices_overruns() {
        let rto = Duration::from_secs(1_800);
        assert_eq!(
            Budget::new(Duration::from_secs(245), rto),
            Budget {
                percent: 13,
                over: None
            }
        );
        assert_eq!(Budget::new(rto, rto).over, None);
        assert_eq!(
            Budget::new(Duration::from_secs(1_930), rto),
            Budget {
                percent: 107,
                over: Some(Duration::from_secs(130))
            }
        );
        assert_eq!(
            Budget::new(Duration::from_secs(1), Duration::ZERO).percent,
            100
        );
    }

    #[test]
    fn the_flag_wins_over_the_environment() {
        assert_eq!(operator_name(Some(" alice ".into())), "alice");
        // Without a flag, some name always comes back.
        assert!(!operator_name(Some("  ".into())).trim().is_empty());
        assert!(!operator_name(None).is_empty());
    }

    #[test]
    fn decisions_read_as_sentences() {
        assert_eq!(
            decision(Ask::Gate, true, "alice", None, true),
            "approved by alice (pre-approved)"
        );
        assert_eq!(
            decision(Ask::Gate, false, "bob", Some("not\nnow"), false),
            "rejected by bob: not now"
        );
        assert_eq!(
            decision(Ask::Attest, true, "carol", Some(" "), false),
            "done, attested by carol"
        );
        assert_eq!(
            decision(Ask::Rerun, false, "dave", None, false),
            "not to be run again, decided by dave"
        );
    }
}
