//! The live display at a terminal: a header with the RTO clock, a line per running step, and a
//! permanent line above them for each step that ends, so the scrollback is the run's story.
//! What those lines say is decided in [`super::lines`]; this file draws them.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use jiff::Timestamp;

use super::lines::{Line, Tone, finished_line, header_line, waiting_line};
use super::{Header, compact, decision, one_line};
use crate::event::{Event, Record, Status};
use crate::human::Observer;
use crate::progress::{Progress, Unit};

/// Fast enough that the clock and spinners look alive, slow enough to cost nothing.
const TICK: Duration = Duration::from_millis(200);

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
                ..
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
            Event::Aborted {
                step, by, reason, ..
            } => {
                let why = reason
                    .as_deref()
                    .map(|r| format!(": {}", one_line(r)))
                    .unwrap_or_default();
                let text = format!("aborted by {by} before {step}{why}");
                self.say(display, Line::new("⚠", Tone::Alarm, text));
            }
            // Answered at this terminal: nothing to repeat.
            Event::RunProcess { .. }
            | Event::ChildStarted { .. }
            | Event::Confirmed { .. }
            | Event::Confirming { .. } => {}
            Event::PreApproved { by, all, steps, .. } => {
                let text = super::plain::pre_approved_text(by, *all, steps);
                self.say(display, Line::new("✓", Tone::Plain, text));
            }
            Event::ChildStopped { .. } => {
                if let Some(text) = super::plain::survivor_text(&record.event) {
                    self.say(display, Line::new("⚠", Tone::Caution, text));
                }
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

#[cfg(test)]
mod tests {

    use super::*;

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
