//! The console: a full-screen view of a run (ratatui over crossterm) — the steps with their
//! status and "n of N", the clock against the RTO ticking live, what the step in progress does
//! with its parameters rendered (secrets masked, as the journal keeps them), the tail of its
//! program's output, what the last finished step found, and the decisions waiting.
//!
//! `drillbook watch RUN` shows it read-only from any terminal, reading the run's journal and
//! output files as they grow: the run itself never knows it is watched.

mod operate;
mod view;

pub use operate::Incident;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event as Key, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use crate::event::{Event, Status};
use crate::runs::StateDir;
use crate::state::RunState;
use view::{Extras, OUTPUT_LINES, View, view};

/// How often the view is read again.
const TICK: Duration = Duration::from_millis(250);
/// The most of an output file read for its tail.
const TAIL_BYTES: u64 = 16 << 10;

/// How often `watch` reads a shared state again.
const REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// `drillbook watch`: the run's console, read-only, until `q` (or Ctrl-C). Without a terminal,
/// or with `once`, the view is printed once as plain lines.
pub fn watch(dir: &StateDir, run_id: &str, once: bool) -> Result<(), String> {
    if once || !std::io::stdout().is_terminal() {
        let frame = read(dir, run_id)?;
        print!("{}", plain(&frame));
        return Ok(());
    }
    let mut terminal = Screen::open().map_err(|e| format!("cannot use the terminal: {e}"))?;
    let mut refreshed = std::time::Instant::now();
    loop {
        // A copy of a shared state is brought up to date now and then, not at every frame.
        if refreshed.elapsed() >= REFRESH {
            dir.refresh(run_id)?;
            refreshed = std::time::Instant::now();
        }
        let frame = read(dir, run_id)?;
        terminal
            .0
            .draw(|f| draw(f, &frame, &[], "read-only · q quits"))
            .map_err(|e| e.to_string())?;
        if event::poll(TICK).map_err(|e| e.to_string())?
            && let Key::Key(key) = event::read().map_err(|e| e.to_string())?
            && key.kind == KeyEventKind::Press
        {
            let quit = matches!(key.code, KeyCode::Char('q') | KeyCode::Esc)
                || (key.code == KeyCode::Char('c')
                    && key.modifiers.contains(KeyModifiers::CONTROL));
            if quit {
                return Ok(());
            }
        }
    }
}

/// The run as the console shows it now, as plain lines: `status` of a run in progress.
pub fn snapshot(dir: &StateDir, run_id: &str) -> Result<String, String> {
    read(dir, run_id).map(|view| plain(&view))
}

/// The terminal in raw mode on its alternate screen, given back as it was when dropped
/// (whatever ends the loop, an error included).
struct Screen(Terminal<CrosstermBackend<std::io::Stdout>>);

impl Screen {
    fn open() -> std::io::Result<Screen> {
        enable_raw_mode()?;
        let mut stdout = std::io::stdout();
        if let Err(error) = execute!(stdout, EnterAlternateScreen) {
            let _ = disable_raw_mode();
            return Err(error);
        }
        match Terminal::new(CrosstermBackend::new(stdout)) {
            Ok(terminal) => Ok(Screen(terminal)),
            Err(error) => {
                let _ = disable_raw_mode();
                let _ = execute!(std::io::stdout(), LeaveAlternateScreen);
                Err(error)
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = disable_raw_mode();
        let _ = execute!(self.0.backend_mut(), LeaveAlternateScreen);
        let _ = self.0.show_cursor();
    }
}

/// The run as it stands: its journal folded, the parameters its running steps started with,
/// and the newest output of the step in progress.
fn read(dir: &StateDir, run_id: &str) -> Result<View, String> {
    let path = dir.journal(run_id);
    let replay = crate::journal::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("no run `{run_id}` in {}", dir.root().display()),
        _ => format!("{}: {e}", path.display()),
    })?;
    let state = RunState::fold(&replay.records).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut params = BTreeMap::new();
    for record in &replay.records {
        if let Event::StepStarted {
            step, params: p, ..
        } = &record.event
        {
            params.insert(step.clone(), p.clone());
        }
    }
    let output = output_tail(&dir.run_dir(run_id), &state);
    Ok(view(
        &state,
        &Extras { params, output },
        crate::clock::now(),
    ))
}

/// The last lines the step in progress wrote (or else the last step that wrote anything),
/// stdout and stderr of its current attempt, after its id.
fn output_tail(run_dir: &Path, state: &RunState) -> Vec<String> {
    let mut started: Vec<_> = state
        .steps
        .iter()
        .filter_map(|step| Some((step.attempts.last()?, step)))
        .collect();
    started.sort_by_key(|(attempt, step)| {
        std::cmp::Reverse((step.status == Status::Running, attempt.started_at))
    });
    for (attempt, step) in started {
        let mut lines = Vec::new();
        for stream in ["stdout", "stderr"] {
            let file = run_dir
                .join("output")
                .join(format!("{}.{}.{stream}", step.id, attempt.number));
            lines.extend(tail(&file));
        }
        if lines.is_empty() && step.status != Status::Running {
            continue;
        }
        let skip = lines.len().saturating_sub(OUTPUT_LINES - 1);
        let mut shown = vec![format!("{}:", step.id)];
        shown.extend(lines.split_off(skip));
        return shown;
    }
    Vec::new()
}

fn tail(path: &Path) -> Vec<String> {
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = size.saturating_sub(TAIL_BYTES);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if start > 0 && !lines.is_empty() {
        // The first line read may be cut.
        lines.remove(0);
    }
    lines
}

fn colour(status: Status) -> Color {
    match status {
        Status::Succeeded => Color::Green,
        Status::Failed | Status::TimedOut | Status::Rejected | Status::Cancelled => Color::Red,
        Status::Running => Color::Cyan,
        Status::WaitingApproval => Color::Yellow,
        Status::Skipped | Status::Pending => Color::Gray,
    }
}

/// Lays a view out; `asked` is the question waiting for the person at this screen (empty when
/// none, or read-only).
fn draw(frame: &mut ratatui::Frame, view: &View, asked: &[String], keys: &str) {
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(6),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let title = Paragraph::new(vec![
        Line::from(Span::styled(
            view.title.clone(),
            Style::default().add_modifier(Modifier::BOLD),
        )),
        Line::from(view.clock.clone()),
    ]);
    frame.render_widget(title, header);

    let [left, right] =
        Layout::horizontal([Constraint::Percentage(35), Constraint::Percentage(65)]).areas(body);
    let steps: Vec<Line> = view
        .steps
        .iter()
        .map(|(status, text)| {
            Line::from(vec![
                Span::styled(
                    format!("{} ", status.symbol()),
                    Style::default().fg(colour(*status)),
                ),
                Span::raw(text.clone()),
            ])
        })
        .collect();
    frame.render_widget(
        Paragraph::new(steps)
            .block(Block::default().borders(Borders::ALL).title(" steps "))
            .wrap(Wrap { trim: false }),
        left,
    );

    let mut sections: Vec<(&str, &[String])> = Vec::new();
    if !asked.is_empty() {
        sections.push((" your decision ", asked));
    }
    sections.push((" now ", &view.current));
    if !view.decisions.is_empty() {
        sections.push((" decisions ", &view.decisions));
    }
    sections.push((" output ", &view.output));
    sections.push((" last found ", &view.found));
    // Each box as tall as its lines once wrapped to the box's width. When they do not all
    // fit, the output gives way first, then what the last step found, then the rest: the
    // question asked is never cut.
    let width = usize::from(right.width.saturating_sub(2)).max(1);
    let mut heights: Vec<u16> = sections
        .iter()
        .map(|(_, lines)| {
            let rows: usize = lines
                .iter()
                .map(|line| line.chars().count().div_ceil(width).max(1))
                .sum();
            rows.max(1) as u16 + 2
        })
        .collect();
    let mut over = heights.iter().sum::<u16>().saturating_sub(right.height);
    for title in [" output ", " last found ", " decisions ", " now "] {
        if let Some(i) = sections.iter().position(|(t, _)| *t == title) {
            let give = over.min(heights[i].saturating_sub(3));
            heights[i] -= give;
            over -= give;
        }
    }
    // The output takes what is left over.
    let heights: Vec<Constraint> = sections
        .iter()
        .zip(&heights)
        .map(|((title, _), height)| {
            if *title == " output " {
                Constraint::Min(*height)
            } else {
                Constraint::Length(*height)
            }
        })
        .collect();
    let areas = Layout::vertical(heights).split(right);
    for ((title, lines), area) in sections.iter().zip(areas.iter()) {
        let text: Vec<Line> = lines.iter().map(|line| Line::from(line.clone())).collect();
        let mut block = Block::default().borders(Borders::ALL).title(*title);
        if *title == " your decision " {
            block = block.border_style(
                Style::default()
                    .fg(Color::Yellow)
                    .add_modifier(Modifier::BOLD),
            );
        }
        frame.render_widget(
            Paragraph::new(text).block(block).wrap(Wrap { trim: false }),
            *area,
        );
    }
    frame.render_widget(
        Paragraph::new(Line::from(Span::styled(
            keys.to_owned(),
            Style::default().add_modifier(Modifier::DIM),
        ))),
        footer,
    );
}

/// The view as plain lines, for a pipe or `--once`.
fn plain(view: &View) -> String {
    let mut out = format!("{}\n{}\n\nsteps\n", view.title, view.clock);
    for (status, line) in &view.steps {
        out.push_str(&format!("  {} {line}\n", status.symbol()));
    }
    for (title, lines) in [
        ("now", &view.current),
        ("decisions", &view.decisions),
        ("output", &view.output),
        ("last found", &view.found),
    ] {
        if lines.is_empty() {
            continue;
        }
        out.push_str(&format!("\n{title}\n"));
        for line in lines {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}
