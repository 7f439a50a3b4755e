//! The words of the terminal display: the header with the RTO clock, and the permanent line
//! each event leaves, with a tone that becomes colour only where colour is allowed.

use std::fmt;
use std::time::Duration;

use dialoguer::console::Style;

use super::{Budget, Header, compact, objective, projected_text, waiting_for};
use crate::event::{Ask, Mode, Status};

/// The share of the RTO after which the header starts to warn.
const CAUTION_PERCENT: u128 = 80;

/// How alarming a line is; only turned into colour when colour is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tone {
    Plain,
    Good,
    Quiet,
    Caution,
    Alarm,
}

impl Tone {
    fn style(self) -> Style {
        let style = Style::new().force_styling(true);
        match self {
            Tone::Plain => style,
            Tone::Good => style.green(),
            Tone::Quiet => style.dim(),
            Tone::Caution => style.yellow(),
            Tone::Alarm => style.red().bold(),
        }
    }
}

/// The header: which run, which mode, and the RTO clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HeaderLine {
    pub text: String,
    pub tone: Tone,
}

impl HeaderLine {
    pub(super) fn render(&self, color: bool) -> String {
        if color && self.tone != Tone::Plain {
            self.tone.style().apply_to(&self.text).to_string()
        } else {
            self.text.clone()
        }
    }
}

/// "quickstart · 20261124-1450 · DRILL · elapsed 4m05s / RTO 30m (13%)", then where past runs
/// project the clock to stop, when they do. Past the objective (or projected past it) it says
/// so in words too, because colour is not always there to say it.
pub(crate) fn header_line(
    header: &Header,
    elapsed: Duration,
    projected: Option<Duration>,
) -> HeaderLine {
    let mode = match header.mode {
        Mode::Drill => "DRILL",
        Mode::Incident => "INCIDENT",
        Mode::Live => "LIVE",
    };
    let dry_run = if header.dry_run { " (dry run)" } else { "" };
    let mut text = format!(
        "{} · {} · {mode}{dry_run} · elapsed {}",
        header.playbook,
        header.run_id,
        compact(elapsed)
    );
    let mut tone = Tone::Plain;
    if let Some(rto) = header.rto {
        let budget = Budget::new(elapsed, rto);
        text.push_str(&format!(" / RTO {} ({}%)", objective(rto), budget.percent));
        if let Some(over) = budget.over {
            text = format!("⚠ {text} · over RTO by {}", compact(over));
            tone = Tone::Alarm;
        } else if budget.percent >= CAUTION_PERCENT {
            tone = Tone::Caution;
        }
    }
    if let Some(projected) = projected {
        let (words, over) = projected_text(projected, header.rto);
        text = format!("{text} · {words}");
        if over && tone == Tone::Plain {
            tone = Tone::Caution;
        }
    }
    HeaderLine { text, tone }
}

/// A permanent line: a symbol that can be scanned down the scrollback, then words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Line {
    pub symbol: &'static str,
    pub tone: Tone,
    pub text: String,
}

impl Line {
    pub(super) fn new(symbol: &'static str, tone: Tone, text: String) -> Line {
        Line { symbol, tone, text }
    }

    pub(super) fn render(&self, color: bool) -> String {
        if color && self.tone != Tone::Plain {
            format!("{} {}", self.tone.style().apply_to(self.symbol), self.text)
        } else {
            self.to_string()
        }
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} {}", self.symbol, self.text)
    }
}

/// The line left behind when a step ends: "✓ backup  12.3s", "✗ restore  failed: …".
pub(crate) fn finished_line(
    step: &str,
    status: Status,
    attempt: u32,
    took: Option<Duration>,
    detail: Option<&str>,
) -> Line {
    let detail = super::detail_suffix(detail);
    let attempt = super::attempt_suffix(attempt);
    let took = took.map(compact);
    let (symbol, tone, text) = match status {
        Status::Succeeded => (
            "✓",
            Tone::Good,
            format!("{step}  {}", took.as_deref().unwrap_or("done")),
        ),
        Status::Failed => ("✗", Tone::Alarm, format!("{step}  failed{attempt}{detail}")),
        Status::TimedOut => {
            let after = took
                .map(|took| format!(" after {took}"))
                .unwrap_or_default();
            (
                "⏱",
                Tone::Alarm,
                format!("{step}  timed out{after}{attempt}{detail}"),
            )
        }
        Status::Rejected => ("✗", Tone::Alarm, format!("{step}  rejected{detail}")),
        Status::Cancelled => ("✗", Tone::Caution, format!("{step}  cancelled{detail}")),
        Status::Skipped => ("⏭", Tone::Quiet, format!("{step}  skipped{detail}")),
        Status::WaitingApproval => return waiting_line(step, Ask::Gate),
        Status::Pending | Status::Running => ("•", Tone::Plain, format!("{step}  {status}")),
    };
    Line::new(symbol, tone, text)
}

pub(super) fn waiting_line(step: &str, ask: Ask) -> Line {
    Line::new("⏸", Tone::Caution, format!("{step}  {}", waiting_for(ask)))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn header(rto: Option<Duration>) -> Header {
        Header {
            playbook: "quickstart".into(),
            run_id: "20261124-145000-ab12".into(),
            mode: Mode::Drill,
            dry_run: false,
            rto,
            operator: "alice".into(),
            color: false,
            started: Instant::now(),
            projection: None,
        }
    }

    const HALF_HOUR: Duration = Duration::from_secs(1_800);

    #[test]
    fn the_header_shows_the_clock_against_the_objective() {
        let line = header_line(&header(Some(HALF_HOUR)), Duration::from_secs(245), None);
        assert_eq!(
            line.text,
            "quickstart · 20261124-145000-ab12 · DRILL · elapsed 4m05s / RTO 30m (13%)"
        );
        assert_eq!(line.tone, Tone::Plain);
    }

    #[test]
    fn the_header_without_an_objective_shows_only_elapsed_time() {
        let mut header = header(None);
        header.mode = Mode::Incident;
        header.dry_run = true;
        let line = header_line(&header, Duration::from_millis(12_345), None);
        assert_eq!(
            line.text,
            "quickstart · 20261124-145000-ab12 · INCIDENT (dry run) · elapsed 12.3s"
        );
        assert_eq!(line.tone, Tone::Plain);
    }

    #[test]
    fn the_header_warns_near_and_past_the_objective() {
        let near = header_line(&header(Some(HALF_HOUR)), Duration::from_secs(1_500), None);
        assert_eq!(near.tone, Tone::Caution);
        assert!(near.text.ends_with("(83%)"), "{}", near.text);

        let over = header_line(&header(Some(HALF_HOUR)), Duration::from_secs(1_930), None);
        assert_eq!(over.tone, Tone::Alarm);
        assert_eq!(
            over.text,
            "⚠ quickstart · 20261124-145000-ab12 · DRILL · elapsed 32m10s / RTO 30m (107%) \
             · over RTO by 2m10s"
        );
    }

    #[test]
    fn the_header_shows_the_projection_and_warns_when_it_is_over() {
        let within = header_line(
            &header(Some(HALF_HOUR)),
            Duration::from_secs(245),
            Some(Duration::from_secs(1_620)),
        );
        assert_eq!(
            within.text,
            "quickstart · 20261124-145000-ab12 · DRILL · elapsed 4m05s / RTO 30m (13%) \
             · projected 27m00s of RTO 30m"
        );
        assert_eq!(within.tone, Tone::Plain);

        let over = header_line(
            &header(Some(HALF_HOUR)),
            Duration::from_secs(245),
            Some(Duration::from_secs(2_040)),
        );
        assert!(
            over.text
                .ends_with(" · WARNING: projected 34m00s exceeds the RTO 30m"),
            "{}",
            over.text
        );
        assert_eq!(over.tone, Tone::Caution);
    }

    #[test]
    fn the_header_is_coloured_only_when_allowed() {
        let over = header_line(&header(Some(HALF_HOUR)), Duration::from_secs(1_930), None);
        assert!(!over.render(false).contains('\u{1b}'));
        assert!(over.render(true).contains('\u{1b}'));
    }

    #[test]
    fn finished_steps_leave_one_line_each() {
        let second = Some(Duration::from_millis(12_345));
        let cases = [
            (
                finished_line("backup", Status::Succeeded, 1, second, None),
                "✓ backup  12.3s",
            ),
            (
                finished_line("restore", Status::Failed, 1, second, Some("exit code 1")),
                "✗ restore  failed: exit code 1",
            ),
            (
                finished_line("restore", Status::Failed, 3, None, Some("line\n two")),
                "✗ restore  failed (attempt 3): line two",
            ),
            (
                finished_line("promote", Status::Skipped, 1, None, Some("live only")),
                "⏭ promote  skipped: live only",
            ),
            (
                finished_line("approve", Status::WaitingApproval, 1, None, None),
                "⏸ approve  waiting for approval",
            ),
            (
                finished_line("restore", Status::TimedOut, 1, second, None),
                "⏱ restore  timed out after 12.3s",
            ),
            (
                finished_line("deploy", Status::Rejected, 1, None, Some("not now")),
                "✗ deploy  rejected: not now",
            ),
            (
                finished_line("flush", Status::Cancelled, 1, None, None),
                "✗ flush  cancelled",
            ),
        ];
        for (line, text) in cases {
            assert_eq!(line.to_string(), text);
            assert_eq!(line.render(false), text);
        }
    }

    #[test]
    fn only_the_symbol_is_coloured() {
        let line = finished_line("backup", Status::Succeeded, 1, None, None);
        let coloured = line.render(true);
        assert!(coloured.contains('\u{1b}'));
        assert!(coloured.ends_with(" backup  done"), "{coloured}");
    }
}
