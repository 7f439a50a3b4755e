//! An incident-mode run driven through a real pseudo-terminal, the way an operator would: the
//! "Next: … Proceed?" before each step, the approval gate, the manual step's attestation and
//! a rejection with its reason, all typed as answers to the prompts on the screen.
//!
//! The driver answers whichever question the screen shows, recognised by its heading and
//! prompt, and records the order in which they came.

mod common;

use std::io::{ErrorKind, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Drillbook, events, journal, only_run};
use expectrl::process::unix::WaitStatus;
use expectrl::session::OsSession;

const INCIDENT: &str = r#"version: 1
name: incident
steps:
  - { id: check, kind: command, run: [touch, checked] }
  - { id: call_dba, kind: manual, instructions: "Call the DBA on-call and confirm the standby is healthy." }
  - { id: risky, kind: command, run: [touch, risky], approval: { prompt: "Fail over now?" } }
  - { id: optional, kind: command, run: [touch, optional] }
"#;

/// The whole conversation, prompts and exit, must fit in this; then the child is killed.
const DEADLINE: Duration = Duration::from_secs(20);

/// Which question the screen is asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Incident mode's "Proceed? [yes/skip/abort]" before each step.
    Proceed,
    /// An `approval:` gate: "Approve <step>? [yes/no]".
    Approve,
    /// A manual step: "Type done when finished, or no if it cannot be done".
    Attest,
}

impl Kind {
    /// The heading that opens the block, followed by the step id.
    fn heading(self) -> &'static str {
        match self {
            Kind::Proceed => "Next: ",
            Kind::Approve => "Approval needed: ",
            Kind::Attest => "Manual step: ",
        }
    }

    /// The prompt the answer is typed after (dialoguer shows it followed by ": ").
    fn prompt(self, step: &str) -> String {
        match self {
            Kind::Proceed => "Proceed? [yes/skip/abort]: ".to_string(),
            Kind::Approve => format!("Approve {step}? [yes/no]: "),
            Kind::Attest => "Type done when finished, or no if it cannot be done: ".to_string(),
        }
    }
}

/// What to type.
enum Reply {
    /// One word and Enter.
    Word(&'static str),
    /// "no", then the reason at the "Reason" prompt.
    No(&'static str),
}

/// A drillbook process on the slave side of a pseudo-terminal (stdin, stdout and stderr), and
/// everything it has shown so far.
struct Pty {
    session: OsSession,
    screen: String,
    /// How far the conversation has been answered: prompts are looked for after this.
    cursor: usize,
    started: Instant,
    status: Option<i32>,
}

impl Pty {
    fn spawn(dir: &Path, args: &[&str]) -> Pty {
        let mut command = Command::new(common::binary());
        command
            .args(args)
            .current_dir(dir)
            .env_remove("DRILLBOOK_STATE_DIR")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .env("TERM", "xterm")
            .env("COLUMNS", "120")
            .env("LINES", "40");
        let mut session = OsSession::spawn(command).expect("spawn drillbook on a pty");
        session
            .get_process_mut()
            .set_window_size(120, 40)
            .expect("window size");
        Pty {
            session,
            screen: String::new(),
            cursor: 0,
            started: Instant::now(),
            status: None,
        }
    }

    /// Reads whatever the child has written; false once the terminal is closed (the child
    /// and everything it started have exited).
    fn pump(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match self.session.try_read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => self.screen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // Linux answers EIO on the master once the slave side is closed.
                Err(_) => return false,
            }
        }
    }

    /// Kills the child and fails the test, showing the screen.
    fn fail(&mut self, why: &str) -> ! {
        let process = self.session.get_process_mut();
        let _ = process.kill(expectrl::process::unix::Signal::SIGKILL);
        let _ = process.wait();
        panic!(
            "{why} after {:?}\n--- screen (from the last answer on) ---\n{}\n--- whole screen ---\n{}",
            self.started.elapsed(),
            &self.screen[self.cursor.min(self.screen.len())..],
            self.screen
        );
    }

    fn check_deadline(&mut self, waiting_for: &str) {
        if self.started.elapsed() > DEADLINE {
            self.fail(&format!("timed out waiting for {waiting_for}"));
        }
    }

    /// The next unanswered question on the screen: its kind, its step, and where its prompt
    /// ends. `None` until a heading and its prompt have both been shown.
    fn question(&self) -> Option<(Kind, String, usize)> {
        let rest = &self.screen[self.cursor..];
        let (start, kind) = [Kind::Proceed, Kind::Approve, Kind::Attest]
            .into_iter()
            .filter_map(|kind| rest.find(kind.heading()).map(|at| (at, kind)))
            .min_by_key(|(at, _)| *at)?;
        let after = &rest[start + kind.heading().len()..];
        let step: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        let prompt = kind.prompt(&step);
        let at = after.find(&prompt)?;
        let end = self.cursor + start + kind.heading().len() + at + prompt.len();
        Some((kind, step, end))
    }

    /// Waits until `text` is on the screen after the cursor; moves the cursor past it.
    fn expect(&mut self, text: &str) {
        loop {
            let open = self.pump();
            if let Some(at) = self.screen[self.cursor..].find(text) {
                self.cursor += at + text.len();
                return;
            }
            if !open {
                self.fail(&format!(
                    "drillbook closed the terminal before showing {text:?}"
                ));
            }
            self.check_deadline(&format!("{text:?}"));
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn type_line(&mut self, answer: &str) {
        // Enter is a carriage return on a real keyboard.
        let line = format!("{answer}\r");
        if let Err(error) = self
            .session
            .write_all(line.as_bytes())
            .and_then(|()| self.session.flush())
        {
            self.fail(&format!("cannot type {answer:?}: {error}"));
        }
    }

    /// Answers every question as `answer` says until drillbook exits; returns the questions
    /// in the order they were asked.
    fn converse(&mut self, answer: impl Fn(Kind, &str) -> Reply) -> Vec<(Kind, String)> {
        let mut asked = Vec::new();
        loop {
            let open = self.pump();
            if let Some((kind, step, end)) = self.question() {
                self.cursor = end;
                asked.push((kind, step.clone()));
                match answer(kind, &step) {
                    Reply::Word(word) => self.type_line(word),
                    Reply::No(reason) => {
                        self.type_line("no");
                        self.expect("Reason: ");
                        self.type_line(reason);
                    }
                }
                continue;
            }
            if !open {
                break;
            }
            self.check_deadline("the next prompt or the end of the run");
            std::thread::sleep(Duration::from_millis(10));
        }
        self.wait();
        asked
    }

    /// The exit status, once the child has exited (killing it after the deadline).
    fn wait(&mut self) -> i32 {
        if let Some(status) = self.status {
            return status;
        }
        loop {
            match self.session.get_process().status() {
                Ok(WaitStatus::Exited(_, code)) => {
                    self.status = Some(code);
                    return code;
                }
                Ok(WaitStatus::Signaled(_, signal, _)) => {
                    self.fail(&format!("drillbook was killed by {signal:?}"))
                }
                Ok(_) => {}
                Err(error) => self.fail(&format!("cannot wait for drillbook: {error}")),
            }
            self.check_deadline("drillbook to exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn drive(dir: &Path, answer: impl Fn(Kind, &str) -> Reply) -> (Pty, Vec<(Kind, String)>) {
    let mut pty = Pty::spawn(
        dir,
        &[
            "run",
            "incident.yaml",
            "--mode",
            "incident",
            "--as",
            "alice",
        ],
    );
    let asked = pty.converse(answer);
    assert!(!pty.screen.contains("panicked"), "panic:\n{}", pty.screen);
    (pty, asked)
}

#[test]
fn an_operator_proceeds_attests_approves_and_skips() {
    let test = Drillbook::new().playbook("incident.yaml", INCIDENT);
    let dir = test.dir();
    let (mut pty, asked) = drive(dir, |kind, step| match (kind, step) {
        (Kind::Proceed, "optional") => Reply::Word("skip"),
        (Kind::Proceed, _) | (Kind::Approve, _) => Reply::Word("yes"),
        (Kind::Attest, _) => Reply::Word("done"),
    });
    let status = pty.wait();
    assert_eq!(status, 0, "exit status; screen:\n{}", pty.screen);

    // Steps run in file order: each is put to the operator first, then its gate or its
    // attestation.
    assert_eq!(
        asked,
        [
            (Kind::Proceed, "check"),
            (Kind::Proceed, "call_dba"),
            (Kind::Attest, "call_dba"),
            (Kind::Proceed, "risky"),
            (Kind::Approve, "risky"),
            (Kind::Proceed, "optional"),
        ]
        .map(|(kind, step)| (kind, step.to_string())),
        "screen:\n{}",
        pty.screen
    );
    for shown in [
        "Call the DBA on-call and confirm the standby is healthy.",
        "Fail over now?",
    ] {
        assert!(
            pty.screen.contains(shown),
            "{shown:?} not shown:\n{}",
            pty.screen
        );
    }

    assert!(dir.join("checked").exists());
    assert!(dir.join("risky").exists());
    assert!(!dir.join("optional").exists());

    let records = journal(dir, &only_run(dir));
    let finished = |step: &str| {
        let finished = events(&records, "step_finished", Some(step));
        assert_eq!(finished.len(), 1, "{step}: {finished:?}");
        finished[0].clone()
    };
    let decided = |step: &str| -> Vec<serde_json::Value> {
        events(&records, "approval_decided", Some(step))
            .into_iter()
            .cloned()
            .collect()
    };

    assert_eq!(finished("check")["status"], "succeeded");

    let dba = finished("call_dba");
    assert_eq!(dba["status"], "succeeded", "{dba}");
    assert_eq!(dba["outputs"]["done_by"], "alice", "{dba}");
    let attested = decided("call_dba");
    assert_eq!(attested.len(), 1, "{attested:?}");
    assert_eq!(attested[0]["ask"], "attest");
    assert_eq!(attested[0]["approved"], true);
    assert_eq!(attested[0]["by"], "alice");

    assert_eq!(finished("risky")["status"], "succeeded");
    let gate = decided("risky");
    assert_eq!(gate.len(), 1, "{gate:?}");
    assert_eq!(gate[0]["ask"], "gate");
    assert_eq!(gate[0]["approved"], true);
    assert_eq!(gate[0]["by"], "alice");
    assert_ne!(gate[0]["pre_approved"], true, "{}", gate[0]);

    assert!(events(&records, "step_started", Some("optional")).is_empty());
    let skipped = events(&records, "step_skipped", Some("optional"));
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0]["reason"], "skipped by alice");
}

#[test]
fn a_refused_approval_carries_its_reason_and_the_step_does_not_run() {
    let test = Drillbook::new().playbook("incident.yaml", INCIDENT);
    let dir = test.dir();
    let (mut pty, asked) = drive(dir, |kind, _| match kind {
        Kind::Proceed => Reply::Word("yes"),
        Kind::Approve => Reply::No("not today"),
        Kind::Attest => Reply::Word("done"),
    });
    let status = pty.wait();
    assert_eq!(status, 1, "exit status; screen:\n{}", pty.screen);
    // After the refusal nothing more is asked: `optional` follows `risky`, which did not run.
    assert_eq!(
        asked,
        [
            (Kind::Proceed, "check"),
            (Kind::Proceed, "call_dba"),
            (Kind::Attest, "call_dba"),
            (Kind::Proceed, "risky"),
            (Kind::Approve, "risky"),
        ]
        .map(|(kind, step)| (kind, step.to_string())),
        "screen:\n{}",
        pty.screen
    );

    assert!(dir.join("checked").exists());
    assert!(!dir.join("risky").exists());
    assert!(!dir.join("optional").exists());
    let records = journal(dir, &only_run(dir));
    assert!(
        events(&records, "step_started", Some("risky")).is_empty(),
        "{records:?}"
    );
    let gate = events(&records, "approval_decided", Some("risky"));
    assert_eq!(gate.len(), 1, "{gate:?}");
    assert_eq!(gate[0]["ask"], "gate");
    assert_eq!(gate[0]["approved"], false);
    assert_eq!(gate[0]["by"], "alice");
    assert_eq!(gate[0]["reason"], "not today");
    let finished = events(&records, "step_finished", Some("risky"));
    assert!(
        finished.iter().all(|f| f["status"] != "succeeded"),
        "{finished:?}"
    );
}
