//! The incident console: the run's console (the same view `drillbook watch` shows) owned by
//! the run itself, with the step's one question at the top and keys to answer it — proceed,
//! skip, abort (which asks for a reason, and Esc takes it back), approve or reject a gate,
//! attest a manual step. A question answered from another shell (`drillbook approve`) leaves
//! the screen by itself. When the steps are over the screen is given back, and the
//! post-mortem notes are asked as plain lines.
//!
//! The screen has a thread of its own, which redraws from the run's files every tick and reads
//! the keys; the runner's questions reach it through [`Inner::pending`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ratatui::crossterm::event::{self, Event as Key, KeyCode, KeyEventKind, KeyModifiers};

use super::{Screen, TICK, draw, read};
use crate::event::Ask;
use crate::human::{Confirmation, Go, Notes, Observer, Operator, Question, Reply, Withdrawn};
use crate::projection::Projection;
use crate::runs::StateDir;

/// The console of an incident run at a terminal: its operator and its display at once.
pub struct Incident {
    inner: Arc<Inner>,
    screen: Mutex<Option<std::thread::JoinHandle<()>>>,
    color: bool,
}

struct Inner {
    dir: StateDir,
    run_id: String,
    operator: String,
    projection: Option<Arc<Projection>>,
    pending: Mutex<Option<Pending>>,
    asked: std::sync::atomic::AtomicU64,
    stop: AtomicBool,
}

/// The question on the screen and where its answer goes.
struct Pending {
    /// Which call of [`Incident::put`] it belongs to: a question answered elsewhere may
    /// still be leaving while the next is put up, and must not take that one down.
    number: u64,
    asked: Asked,
    withdrawn: Withdrawn,
    answer: mpsc::Sender<Answer>,
}

enum Asked {
    Confirm(Confirmation),
    Question(Question),
}

enum Answer {
    Go(Go),
    Reply(Reply),
}

/// Text being typed on the screen, and what it is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Typing {
    AbortReason,
    RejectReason,
}

impl Incident {
    /// Takes over the terminal (raw mode, alternate screen) until the run is over.
    pub fn open(
        dir: StateDir,
        run_id: &str,
        operator: &str,
        projection: Option<Arc<Projection>>,
        color: bool,
    ) -> Result<Incident, String> {
        let inner = Arc::new(Inner {
            dir,
            run_id: run_id.to_string(),
            operator: operator.to_string(),
            projection,
            pending: Mutex::new(None),
            asked: std::sync::atomic::AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let screen = Screen::open().map_err(|e| format!("cannot use the terminal: {e}"))?;
        let drawing = inner.clone();
        let thread = std::thread::Builder::new()
            .name("console".into())
            .spawn(move || drawing.show(screen))
            .map_err(|e| format!("cannot start the console: {e}"))?;
        Ok(Incident {
            inner,
            screen: Mutex::new(Some(thread)),
            color,
        })
    }

    /// Gives the terminal back (once).
    fn close(&self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        let thread = self
            .screen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// Puts a question on the screen and waits for its answer; `None` when the screen is gone
    /// or the question was answered elsewhere.
    fn put(&self, asked: Asked, withdrawn: Withdrawn) -> Option<Answer> {
        let (answer, answered) = mpsc::channel();
        let number = self.inner.asked.fetch_add(1, Ordering::SeqCst);
        *self.inner.lock_pending() = Some(Pending {
            number,
            asked,
            withdrawn: withdrawn.clone(),
            answer,
        });
        let got = loop {
            match answered.recv_timeout(Duration::from_millis(100)) {
                Ok(answer) => break Some(answer),
                Err(RecvTimeoutError::Disconnected) => break None,
                Err(RecvTimeoutError::Timeout) => {
                    if withdrawn.is_raised() || self.inner.stop.load(Ordering::SeqCst) {
                        break None;
                    }
                }
            }
        };
        let mut pending = self.inner.lock_pending();
        if pending.as_ref().is_some_and(|p| p.number == number) {
            *pending = None;
        }
        got
    }
}

impl Operator for Incident {
    fn interactive(&self) -> bool {
        !self.inner.stop.load(Ordering::SeqCst)
    }

    fn ask(&self, question: &Question) -> Reply {
        match self.put(
            Asked::Question(question.clone()),
            question.withdrawn.clone(),
        ) {
            Some(Answer::Reply(reply)) => reply,
            _ => Reply::Unavailable,
        }
    }

    fn confirm(&self, confirmation: &Confirmation) -> Go {
        match self.put(Asked::Confirm(confirmation.clone()), Withdrawn::default()) {
            Some(Answer::Go(go)) => go,
            // Nobody left to ask is not consent.
            _ => Go::Abort {
                by: self.inner.operator.clone(),
                reason: Some("the console closed".into()),
            },
        }
    }

    fn post_mortem(&self, outcome: &str) -> Option<Notes> {
        self.close();
        let mut console = crate::ui::prompt::Console::stderr(self.color);
        crate::ui::prompt::post_mortem(&mut console, outcome, &self.inner.operator)
    }
}

impl Observer for Incident {
    fn record(&self, _record: &crate::event::Record) {}

    fn finish(&self) {
        self.close();
    }
}

impl Drop for Incident {
    fn drop(&mut self) {
        self.close();
    }
}

impl Inner {
    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Option<Pending>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The screen's thread: draw, read a key, until told to stop.
    fn show(&self, mut screen: Screen) {
        let mut typing: Option<(Typing, String)> = None;
        let mut last = None;
        while !self.stop.load(Ordering::SeqCst) {
            if let Ok(mut frame) = read(&self.dir, &self.run_id) {
                if let Some(projection) = &self.projection {
                    frame.clock.push_str(&projected(projection));
                }
                last = Some(frame);
            }
            let (lines, keys) = {
                let mut pending = self.lock_pending();
                if pending.as_ref().is_some_and(|p| p.withdrawn.is_raised()) {
                    *pending = None;
                }
                if pending.is_none() {
                    typing = None;
                }
                match pending.as_ref() {
                    Some(p) => question_lines(&p.asked, &self.operator, typing.as_ref()),
                    None => (Vec::new(), "Ctrl-C interrupts the run".to_string()),
                }
            };
            if let Some(frame) = &last
                && screen.0.draw(|f| draw(f, frame, &lines, &keys)).is_err()
            {
                break;
            }
            let Ok(true) = event::poll(TICK) else {
                continue;
            };
            let Ok(Key::Key(key)) = event::read() else {
                continue;
            };
            if key.kind != KeyEventKind::Press {
                continue;
            }
            // Raw mode swallows Ctrl-C: pass it on as the signal the runner handles.
            if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
                // SAFETY: signals this process, as the terminal would have.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGINT);
                }
                continue;
            }
            let mut pending = self.lock_pending();
            let Some(p) = pending.as_ref() else {
                continue;
            };
            if let Some(answer) = self.key(&p.asked, key.code, &mut typing) {
                let _ = p.answer.send(answer);
                *pending = None;
                typing = None;
            }
        }
    }

    /// What a key means for the question on the screen; `Some` once it is answered.
    fn key(
        &self,
        asked: &Asked,
        code: KeyCode,
        typing: &mut Option<(Typing, String)>,
    ) -> Option<Answer> {
        let by = self.operator.clone();
        if let Some((purpose, text)) = typing {
            match code {
                KeyCode::Esc => *typing = None,
                KeyCode::Backspace => {
                    text.pop();
                }
                KeyCode::Char(c) => text.push(c),
                KeyCode::Enter => {
                    let text = text.trim().to_string();
                    let purpose = *purpose;
                    // An abort needs its reason.
                    if text.is_empty() && purpose == Typing::AbortReason {
                        return None;
                    }
                    *typing = None;
                    let reason = (!text.is_empty()).then_some(text.clone());
                    return Some(match (purpose, asked) {
                        (Typing::AbortReason, Asked::Confirm(_)) => {
                            Answer::Go(Go::Abort { by, reason })
                        }
                        (Typing::AbortReason, Asked::Question(_)) => {
                            Answer::Reply(Reply::Abort { by, reason })
                        }
                        (Typing::RejectReason, _) => Answer::Reply(Reply::No { by, reason }),
                    });
                }
                _ => {}
            }
            return None;
        }
        let start = |purpose| Some((purpose, String::new()));
        match (asked, code) {
            (Asked::Confirm(_), KeyCode::Char('p' | 'y')) => Some(Answer::Go(Go::Proceed)),
            (Asked::Confirm(_), KeyCode::Char('s')) => Some(Answer::Go(Go::Skip { by })),
            (Asked::Question(q), KeyCode::Char('s')) if q.incident && q.ask != Ask::Rerun => {
                Some(Answer::Reply(Reply::Skip { by }))
            }
            (Asked::Confirm(_), KeyCode::Char('a')) => {
                *typing = start(Typing::AbortReason);
                None
            }
            (Asked::Question(q), KeyCode::Char('a')) if q.incident => {
                *typing = start(Typing::AbortReason);
                None
            }
            // An answer that cannot be given here waits for one from a shell (the box says
            // why).
            (Asked::Question(q), KeyCode::Char(c @ ('y' | 'n')))
                if q.not_here(&by, c == 'y' && q.ask != Ask::Attest).is_some() =>
            {
                None
            }
            (Asked::Question(q), KeyCode::Char('y')) if q.ask != Ask::Attest => {
                Some(Answer::Reply(Reply::Yes { by, reason: None }))
            }
            (Asked::Question(q), KeyCode::Char('d')) if q.ask == Ask::Attest => {
                Some(Answer::Reply(Reply::Yes { by, reason: None }))
            }
            (Asked::Question(_), KeyCode::Char('n')) => {
                *typing = start(Typing::RejectReason);
                None
            }
            _ => None,
        }
    }
}

/// " · projected 4m10s, 25m50s to spare" while the clock runs and past runs predict it.
fn projected(projection: &Projection) -> String {
    let now = crate::clock::now();
    let Some(projected) = projection.running_projection(now) else {
        return String::new();
    };
    let projected = jiff::SignedDuration::try_from(projected).unwrap_or_default();
    let mut line = format!(" · projected {}", crate::format::format_duration(projected));
    if let Some(rto) = projection.rto() {
        line.push_str(&format!(
            " ({})",
            crate::format::format_margin(rto.signed() - projected)
        ));
    }
    line
}

/// The question's box: what is asked, what the step will do and to what, and the keys.
fn question_lines(
    asked: &Asked,
    operator: &str,
    typing: Option<&(Typing, String)>,
) -> (Vec<String>, String) {
    let mut lines = Vec::new();
    let keys = match asked {
        Asked::Confirm(c) => {
            lines.push(format!("Next: {} — {}", c.step, c.summary));
            lines.extend(c.targets.iter().map(|t| format!("  writes {t}")));
            "p proceed · s skip · a abort".to_string()
        }
        Asked::Question(q) => {
            let (heading, answers) = match q.ask {
                Ask::Gate => (format!("Approve {}?", q.step), "y approve · n reject"),
                Ask::Attest => (
                    format!("Manual step: {}", q.step),
                    "d done · n cannot be done",
                ),
                Ask::Rerun => (
                    format!("{} was running when the run stopped: run it again?", q.step),
                    "y run again · n do not",
                ),
            };
            lines.push(heading);
            lines.extend(q.text.lines().map(|line| format!("  {line}")));
            if !q.summary.trim().is_empty() {
                lines.push(format!("  will: {}", q.summary));
            }
            lines.extend(q.targets.iter().map(|t| format!("  writes {t}")));
            if !q.allowed.is_empty() {
                lines.push(format!(
                    "  only these people may decide: {}",
                    q.allowed.join(", ")
                ));
            }
            if let Some(why) = q.not_here(operator, true) {
                lines.push(format!("  {why}"));
            }
            if q.approvers > 1 {
                lines.push(format!(
                    "  needs {} different people; so far: {}",
                    q.approvers,
                    if q.approved_by.is_empty() {
                        "nobody".to_string()
                    } else {
                        q.approved_by.join(", ")
                    }
                ));
            }
            if q.incident && q.ask != Ask::Rerun {
                format!("{answers} · s skip · a abort")
            } else {
                answers.to_string()
            }
        }
    };
    let keys = match typing {
        Some((purpose, text)) => {
            let label = match purpose {
                Typing::AbortReason => "Abort the run — why?",
                Typing::RejectReason => "Reason for the rejection (may be empty)",
            };
            lines.push(format!("{label} {text}▏"));
            "Enter confirms · Esc goes back".to_string()
        }
        None => keys,
    };
    (lines, keys)
}
