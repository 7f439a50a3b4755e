//! The live display at a terminal: a header with the RTO clock, a line per running step, and a
//! permanent line above them for each step that ends, so the scrollback is the run's story.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use dialoguer::console::Style;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use jiff::Timestamp;

use super::{Budget, Header, compact, decision, objective, one_line, projected_text, waiting_for};
use crate::event::{Ask, Event, Mode, Record, Status};
use crate::human::Observer;
use crate::progress::{Progress, Unit};

/// Fast enough that the clock and spinners look alive, slow enough to cost nothing.
const TICK: Duration = Duration::from_millis(200);

/// The share of the RTO after which the header starts to warn.
const CAUTION_PERCENT: u128 = 80;

/// A run at a terminal: draws progress and asks the person in front of it.
pub struct Terminal {
    pub(super) header: Header,
    multi: MultiProgress,
    display: Mutex<Display>,
    /// One conversation at a time: parallel steps may all want an answer at once.
    pub(super) conversation: Mutex<()>,
}

struct Display {
    /// The header bar; gone once the run is over.
    top: Option<ProgressBar>,
    running: HashMap<String, Running>,
    started: HashMap<String, Timestamp>,
    /// A prompt owns the screen: permanent lines wait in `held` until it is done.
    paused: bool,
    held: Vec<String>,
    finished: bool,
}

struct Running {
    bar: ProgressBar,
    shape: Shape,
    /// The bar's message before progress is added to it ("  attempt 2").
    note: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Spinner,
    Bar { unit: Unit, known_total: bool },
}

impl Terminal {
    pub fn new(header: Header) -> Terminal {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let top = multi.add(ProgressBar::new_spinner().with_style(header_style(&header)));
        top.enable_steady_tick(TICK);
        Terminal {
            header,
            multi,
            display: Mutex::new(Display {
                top: Some(top),
                running: HashMap::new(),
                started: HashMap::new(),
                paused: false,
                held: Vec::new(),
                finished: false,
            }),
            conversation: Mutex::new(()),
        }
    }

    /// A poisoned lock only means another thread panicked mid-update; the display is still
    /// worth drawing, and a recovery must not die over it.
    fn display(&self) -> MutexGuard<'_, Display> {
        self.display.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the bars off the screen while a person is being asked something.
    ///
    /// `MultiProgress::suspend` would hold indicatif's lock for the whole conversation and so
    /// block every step that reports progress until the person answers; hiding the draw
    /// target instead lets steps carry on (their updates are drawn nowhere) and the bars come
    /// back when the returned guard is dropped.
    pub(super) fn pause(&self) -> Paused<'_> {
        let mut display = self.display();
        if !display.paused && !display.finished {
            display.paused = true;
            for bar in display.bars() {
                bar.disable_steady_tick();
            }
            let _ = self.multi.clear();
            self.multi.set_draw_target(ProgressDrawTarget::hidden());
        }
        Paused { terminal: self }
    }

    fn resume(&self) {
        let mut display = self.display();
        if !display.paused {
            return;
        }
        display.paused = false;
        let held = std::mem::take(&mut display.held);
        if display.finished {
            for line in held {
                write_directly(&line);
            }
            return;
        }
        self.multi.set_draw_target(ProgressDrawTarget::stderr());
        for line in held {
            self.print(&line);
        }
        for bar in display.bars() {
            bar.enable_steady_tick(TICK);
        }
    }

    fn say(&self, display: &mut Display, line: Line) {
        let text = line.render(self.header.color);
        if display.paused {
            display.held.push(text);
        } else if display.finished {
            write_directly(&text);
        } else {
            self.print(&text);
        }
    }

    /// A line above the bars; straight to stderr when there are no bars to draw around
    /// (stderr turned out not to be a terminal), so nothing is lost.
    fn print(&self, text: &str) {
        if self.multi.is_hidden() || self.multi.println(text).is_err() {
            write_directly(text);
        }
    }

    fn start(&self, display: &mut Display, step: &str, attempt: u32) {
        let message = if attempt > 1 {
            format!("  attempt {attempt}")
        } else {
            String::new()
        };
        if let Some(running) = display.running.get_mut(step) {
            running.bar.set_style(spinner_style(self.header.color));
            running.bar.unset_length();
            running.bar.reset();
            running.bar.set_message(message.clone());
            running.shape = Shape::Spinner;
            running.note = message;
            return;
        }
        let bar = self.multi.add(
            ProgressBar::new_spinner()
                .with_style(spinner_style(self.header.color))
                .with_prefix(step.to_string())
                .with_message(message.clone()),
        );
        if !display.paused {
            bar.enable_steady_tick(TICK);
        }
        display.running.insert(
            step.to_string(),
            Running {
                bar,
                shape: Shape::Spinner,
                note: message,
            },
        );
    }

    fn stop(&self, display: &mut Display, step: &str) {
        if let Some(running) = display.running.remove(step) {
            running.bar.disable_steady_tick();
            self.multi.remove(&running.bar);
        }
    }
}

impl Terminal {
    /// What past runs predict for this one, said once at the start.
    fn prediction_line(&self) -> Option<Line> {
        let prediction = self.header.projection.as_ref()?.prediction()?;
        let tone = if prediction.may_miss() {
            Tone::Caution
        } else {
            Tone::Plain
        };
        Some(Line::new("◷", tone, prediction.to_string()))
    }
}

impl Display {
    fn bars(&self) -> impl Iterator<Item = &ProgressBar> {
        self.top
            .iter()
            .chain(self.running.values().map(|running| &running.bar))
    }
}

/// Brings the bars back when a conversation ends, however it ends.
pub(super) struct Paused<'a> {
    terminal: &'a Terminal,
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.terminal.resume();
    }
}

impl Observer for Terminal {
    fn record(&self, record: &Record) {
        let mut display = self.display();
        let display = &mut *display;
        match &record.event {
            // The notes were typed at this terminal: nothing to repeat.
            Event::RunFinished { .. } | Event::PostMortemNotes { .. } => {}
            Event::RunStarted { .. } => {
                if let Some(line) = self.prediction_line() {
                    self.say(display, line);
                }
            }
            Event::RunResumed { operator, .. } => {
                self.say(
                    display,
                    Line::new("↺", Tone::Plain, format!("resumed by {operator}")),
                );
                if let Some(line) = self.prediction_line() {
                    self.say(display, line);
                }
            }
            Event::StepStarted { step, attempt, .. } => {
                display.started.insert(step.clone(), record.at);
                if !display.finished {
                    self.start(display, step, *attempt);
                }
            }
            Event::StepFinished {
                step,
                attempt,
                status,
                error,
                ..
            } => {
                let took = display
                    .started
                    .get(step)
                    .and_then(|started| between(*started, record.at));
                self.stop(display, step);
                let line = finished_line(step, *status, *attempt, took, error.as_deref());
                self.say(display, line);
            }
            Event::StepSkipped { step, reason, .. } => {
                self.stop(display, step);
                let line = finished_line(step, Status::Skipped, 1, None, Some(reason));
                self.say(display, line);
            }
            Event::RetryScheduled {
                step,
                attempt,
                delay_ms,
            } => {
                let delay = compact(Duration::from_millis(*delay_ms));
                let text = format!("{step}  retrying in {delay} (attempt {attempt})");
                self.say(display, Line::new("↻", Tone::Caution, text));
            }
            Event::ApprovalRequested { step, ask, .. } => {
                self.say(display, waiting_line(step, *ask));
            }
            Event::ApprovalDecided {
                step,
                ask,
                approved,
                by,
                reason,
                pre_approved,
            } => {
                let text = format!(
                    "{step}  {}",
                    decision(*ask, *approved, by, reason.as_deref(), *pre_approved)
                );
                let line = if *approved {
                    Line::new("✓", Tone::Good, text)
                } else {
                    Line::new("✗", Tone::Alarm, text)
                };
                self.say(display, line);
            }
            Event::Interrupted { reason } => {
                let text = format!("interrupted: {}", one_line(reason));
                self.say(display, Line::new("⚠", Tone::Alarm, text));
            }
            Event::NotificationRepeated { step, error, .. } => {
                let line = match error {
                    None => Line::new("✉", Tone::Plain, format!("{step}  sent again")),
                    Some(error) => Line::new(
                        "⚠",
                        Tone::Alarm,
                        format!("{step}  could not be sent again: {}", one_line(error)),
                    ),
                };
                self.say(display, line);
            }
        }
    }

    fn progress(&self, step: &str, progress: Progress) {
        let mut display = self.display();
        if display.finished {
            return;
        }
        if !display.running.contains_key(step) {
            self.start(&mut display, step, 1);
        }
        let color = self.header.color;
        let Some(running) = display.running.get_mut(step) else {
            return;
        };
        let shape = Shape::Bar {
            unit: progress.unit,
            known_total: progress.total.is_some(),
        };
        if running.shape != shape {
            running
                .bar
                .set_style(bar_style(progress.unit, progress.total.is_some(), color));
            running.shape = shape;
        }
        match progress.total {
            Some(total) => running.bar.set_length(total),
            None => running.bar.unset_length(),
        }
        running.bar.set_position(progress.done);
        if let Some(objects) = progress.objects {
            let text = super::plain::objects_text(Some(objects));
            let text = text.trim_start_matches(", ");
            running.bar.set_message(format!("{}  {text}", running.note));
        }
    }

    fn finish(&self) {
        let mut display = self.display();
        if display.finished {
            return;
        }
        display.finished = true;
        for bar in display.bars() {
            bar.disable_steady_tick();
        }
        let steps: Vec<String> = display.running.keys().cloned().collect();
        for step in steps {
            self.stop(&mut display, &step);
        }
        if let Some(top) = display.top.take() {
            self.multi.remove(&top);
        }
        let _ = self.multi.clear();
        self.multi.set_draw_target(ProgressDrawTarget::hidden());
        if !display.paused {
            for line in std::mem::take(&mut display.held) {
                write_directly(&line);
            }
        }
    }
}

impl Drop for Terminal {
    /// A caller that returns early (an error, `?`) must not leave bars on the screen.
    fn drop(&mut self) {
        self.finish();
    }
}

fn write_directly(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// The wall-clock time between two journal records, when it runs forwards.
fn between(start: Timestamp, end: Timestamp) -> Option<Duration> {
    Duration::try_from(end.duration_since(start)).ok()
}

/// The templates are constants, so a parse failure is a bug caught by the tests below; falling
/// back to indicatif's default keeps a run going even then.
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn spinner_template(color: bool) -> &'static str {
    if color {
        "{spinner:.cyan} {prefix:.bold}{msg}  {elapsed:.dim}"
    } else {
        "{spinner} {prefix}{msg}  {elapsed}"
    }
}

fn spinner_style(color: bool) -> ProgressStyle {
    style(spinner_template(color))
}

fn bar_template(unit: Unit, known_total: bool, color: bool) -> String {
    let amount = match (unit, known_total) {
        (Unit::Bytes, true) => {
            "{binary_bytes}/{binary_total_bytes}  {binary_bytes_per_sec}  ETA {eta}"
        }
        (Unit::Bytes, false) => "{binary_bytes}  {binary_bytes_per_sec}",
        (Unit::Rows, true) => "{human_pos}/{human_len} rows  {per_sec:0}  ETA {eta}",
        (Unit::Rows, false) => "{human_pos} rows  {per_sec:0}",
        (Unit::Objects, true) => "{human_pos}/{human_len} objects  {per_sec:0}  ETA {eta}",
        (Unit::Objects, false) => "{human_pos} objects  {per_sec:0}",
    };
    let bar = match (known_total, color) {
        (false, _) => "",
        (true, true) => "[{bar:30.cyan/blue}] ",
        (true, false) => "[{bar:30}] ",
    };
    let lead = if color {
        "{spinner:.cyan} {prefix:.bold}{msg}"
    } else {
        "{spinner} {prefix}{msg}"
    };
    format!("{lead}  {bar}{amount}")
}

fn bar_style(unit: Unit, known_total: bool, color: bool) -> ProgressStyle {
    style(&bar_template(unit, known_total, color)).progress_chars("=> ")
}

fn header_style(header: &Header) -> ProgressStyle {
    let header = header.clone();
    style("{header}").with_key(
        "header",
        move |_: &ProgressState, out: &mut dyn fmt::Write| {
            let projected = header
                .projection
                .as_ref()
                .and_then(|projection| projection.running_projection(crate::clock::now()));
            let line = header_line(&header, header.started.elapsed(), projected);
            let _ = out.write_str(&line.render(header.color));
        },
    )
}

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
    fn render(&self, color: bool) -> String {
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
    fn new(symbol: &'static str, tone: Tone, text: String) -> Line {
        Line { symbol, tone, text }
    }

    fn render(&self, color: bool) -> String {
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

fn waiting_line(step: &str, ask: Ask) -> Line {
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

    #[test]
    fn every_template_parses() {
        for color in [false, true] {
            assert!(ProgressStyle::with_template(spinner_template(color)).is_ok());
            for unit in [Unit::Bytes, Unit::Rows, Unit::Objects] {
                for known_total in [false, true] {
                    let template = bar_template(unit, known_total, color);
                    assert!(
                        ProgressStyle::with_template(&template).is_ok(),
                        "{template}"
                    );
                }
            }
        }
    }
}
