//! An incident-mode run driven through a real pseudo-terminal, the way an operator would: the
//! "Next: … Proceed?" before each step, the approval gate, the manual step's attestation and
//! a rejection with its reason, all typed as answers to the prompts on the screen.
//!
//! The driver answers whichever question the screen shows, recognised by its heading and
//! prompt, and records the order in which they came. When the steps are over, the operator
//! is asked for the post-mortem's root cause and remediation, which end up in the report.

mod common;

use std::io::{ErrorKind, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Drillbook, Terminal, events, journal, only_run};
use expectrl::process::unix::WaitStatus;

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
    /// The end of the run: "Post-mortem notes: the run <outcome>", then "Root cause".
    /// The "step" read after the heading is the outcome.
    Notes,
}

impl Kind {
    /// The heading that opens the block, followed by the step id.
    fn heading(self) -> &'static str {
        match self {
            Kind::Proceed => "Next: ",
            Kind::Approve => "Approval needed: ",
            Kind::Attest => "Manual step: ",
            Kind::Notes => "Post-mortem notes: the run ",
        }
    }

    /// The prompt the answer is typed after (dialoguer shows it followed by ": ").
    fn prompt(self, step: &str) -> String {
        match self {
            Kind::Proceed => "Proceed? [yes/skip/abort]: ".to_string(),
            Kind::Approve => format!("Approve {step}? [yes/no/skip/abort]: "),
            Kind::Attest => {
                "Type done when finished, no if it cannot be done, or skip or abort: ".to_string()
            }
            Kind::Notes => "Root cause: ".to_string(),
        }
    }
}

/// What to type.
enum Reply {
    /// One word and Enter.
    Word(&'static str),
    /// "no", then the reason at the "Reason" prompt.
    No(&'static str),
    /// The root cause's lines, then the remediation items; an empty line ends each.
    Notes(&'static [&'static str], &'static [&'static str]),
}

/// Post-mortem notes left empty.
const NO_NOTES: Reply = Reply::Notes(&[], &[]);

/// A drillbook process on the slave side of a pseudo-terminal (stdin, stdout and stderr), and
/// everything it has shown so far.
struct Pty {
    session: Terminal,
    screen: String,
    /// How far the conversation has been answered: prompts are looked for after this.
    cursor: usize,
    started: Instant,
    status: Option<i32>,
}

impl Pty {
    fn spawn(dir: &Path, args: &[&str]) -> Pty {
        let session = Drillbook::in_dir(dir).args(args).env("NO_COLOR", "1").pty();
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
        let (start, kind) = [Kind::Proceed, Kind::Approve, Kind::Attest, Kind::Notes]
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
                    Reply::Notes(cause, remediation) => {
                        // Each line has a prompt of its own ("Root cause, line 2").
                        for (index, line) in cause.iter().enumerate() {
                            if index > 0 {
                                self.expect(&format!("Root cause, line {}: ", index + 1));
                            }
                            self.type_line(line);
                        }
                        if !cause.is_empty() {
                            self.expect(&format!("Root cause, line {}: ", cause.len() + 1));
                        }
                        self.type_line("");
                        for (index, item) in remediation.iter().enumerate() {
                            self.expect(&format!("Remediation item {}: ", index + 1));
                            self.type_line(item);
                        }
                        self.expect(&format!("Remediation item {}: ", remediation.len() + 1));
                        self.type_line("");
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
    drive_in(dir, "incident", answer)
}

fn drive_in(
    dir: &Path,
    mode: &str,
    answer: impl Fn(Kind, &str) -> Reply,
) -> (Pty, Vec<(Kind, String)>) {
    let mut pty = Pty::spawn(
        dir,
        &[
            "run",
            "incident.yaml",
            "--mode",
            mode,
            "--as",
            "alice",
            "--no-console",
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
        (Kind::Notes, _) => NO_NOTES,
    });
    let status = pty.wait();
    assert_eq!(status, 0, "exit status; screen:\n{}", pty.screen);

    // Steps run in file order, each put to the operator once: a step with a gate or an
    // attestation of its own is confirmed by answering it.
    assert_eq!(
        asked,
        [
            (Kind::Proceed, "check"),
            (Kind::Attest, "call_dba"),
            (Kind::Approve, "risky"),
            (Kind::Proceed, "optional"),
            (Kind::Notes, "succeeded"),
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
        Kind::Notes => NO_NOTES,
    });
    let status = pty.wait();
    assert_eq!(status, 1, "exit status; screen:\n{}", pty.screen);
    // After the refusal no step is put to the operator: `optional` follows `risky`, which did
    // not run. The post-mortem notes are asked for whatever the outcome.
    assert_eq!(
        asked,
        [
            (Kind::Proceed, "check"),
            (Kind::Attest, "call_dba"),
            (Kind::Approve, "risky"),
            (Kind::Notes, "failed"),
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

const SHORT: &str = r#"version: 1
name: incident
steps:
  - { id: check, kind: command, run: [touch, checked] }
"#;

/// The post-mortem's Markdown report: its root cause and remediation sections.
fn root_cause_and_remediation(dir: &Path, run: &str) -> String {
    let md = Drillbook::in_dir(dir)
        .args(&["report", run, "--format", "md"])
        .run();
    assert_eq!(md.status, 0, "{}", md.stderr);
    let start = md
        .stdout
        .find("## Root cause")
        .unwrap_or_else(|| panic!("no root cause section:\n{}", md.stdout));
    md.stdout[start..].to_string()
}

#[test]
fn the_operators_root_cause_and_remediation_go_into_the_post_mortem() {
    let test = Drillbook::new().playbook("incident.yaml", SHORT);
    let dir = test.dir();
    let (mut pty, asked) = drive(dir, |kind, _| match kind {
        Kind::Notes => Reply::Notes(
            &[
                "The standby lagged behind",
                "because a long vacuum held back WAL replay.",
            ],
            &["Alert on replication lag", "- Move vacuum off-peak"],
        ),
        _ => Reply::Word("yes"),
    });
    assert_eq!(pty.wait(), 0, "exit status; screen:\n{}", pty.screen);
    assert_eq!(
        asked,
        [(Kind::Proceed, "check"), (Kind::Notes, "succeeded")]
            .map(|(kind, step)| (kind, step.to_string())),
        "screen:\n{}",
        pty.screen
    );

    // A fact in the journal, recorded before the run's end.
    let run = only_run(dir);
    let records = journal(dir, &run);
    let notes = events(&records, "post_mortem_notes", None);
    assert_eq!(notes.len(), 1, "{records:?}");
    assert_eq!(
        notes[0]["root_cause"],
        "The standby lagged behind\nbecause a long vacuum held back WAL replay."
    );
    assert_eq!(
        notes[0]["remediation"],
        serde_json::json!(["Alert on replication lag", "Move vacuum off-peak"])
    );
    assert_eq!(notes[0]["by"], "alice");
    let last = records.last().expect("records");
    assert_eq!(last["event"], "run_finished", "{last}");
    assert!(notes[0]["seq"].as_u64() < last["seq"].as_u64());

    let sections = root_cause_and_remediation(dir, &run);
    assert!(!sections.contains("_To be written._"), "{sections}");
    assert!(
        sections
            .contains("The standby lagged behind\n\nbecause a long vacuum held back WAL replay.\n"),
        "{sections}"
    );
    assert!(sections.contains("_Written by alice at "), "{sections}");
    assert!(
        sections.contains(
            "## Remediation\n\n- [ ] Alert on replication lag\n- [ ] Move vacuum off-peak\n"
        ),
        "{sections}"
    );
}

#[test]
fn drills_and_unattended_runs_keep_the_placeholders() {
    let placeholders = "## Root cause\n\n_To be written._\n\n## Remediation\n\n_To be written._\n";

    // A drill at a terminal is not asked: nothing is recovered, there is no root cause.
    let test = Drillbook::new().playbook("incident.yaml", SHORT);
    let dir = test.dir();
    let (mut pty, asked) = drive_in(dir, "drill", |_, _| Reply::Word("yes"));
    assert_eq!(pty.wait(), 0, "exit status; screen:\n{}", pty.screen);
    assert!(asked.is_empty(), "{asked:?}");
    assert!(!pty.screen.contains("Post-mortem"), "{}", pty.screen);
    let run = only_run(dir);
    assert!(events(&journal(dir, &run), "post_mortem_notes", None).is_empty());
    assert_eq!(root_cause_and_remediation(dir, &run), placeholders);

    // An incident with nobody at a terminal: nobody to ask.
    let test = Drillbook::new().playbook("incident.yaml", SHORT);
    let dir = test.dir();
    let output = Drillbook::in_dir(dir)
        .args(&["run", "incident.yaml", "--mode", "incident"])
        .run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    let run = only_run(dir);
    assert!(events(&journal(dir, &run), "post_mortem_notes", None).is_empty());
    assert_eq!(root_cause_and_remediation(dir, &run), placeholders);
}

/// Time at "Proceed?" is a human's: it counts as human wait, not as recovery.
#[test]
fn time_at_the_proceed_prompt_is_human_wait() {
    let test = Drillbook::new().playbook(
        "incident.yaml",
        "version: 1\nname: incident\nobjectives: { rto: 30m }\nsteps:\n  - { id: check, kind: command, run: [touch, checked] }\n",
    );
    let dir = test.dir();
    let (mut pty, _) = drive(dir, |kind, _| match kind {
        Kind::Proceed => {
            std::thread::sleep(Duration::from_millis(1_500));
            Reply::Word("yes")
        }
        Kind::Notes => NO_NOTES,
        _ => Reply::Word("yes"),
    });
    assert_eq!(pty.wait(), 0, "screen:\n{}", pty.screen);
    let run = only_run(dir);
    let records = journal(dir, &run);
    let confirmed = events(&records, "confirmed", Some("check"));
    assert_eq!(confirmed.len(), 1, "{confirmed:?}");
    assert_eq!(confirmed[0]["answer"], "proceed");
    assert!(
        confirmed[0]["waited_ms"].as_u64().unwrap() >= 1_400,
        "{}",
        confirmed[0]
    );

    let report = Drillbook::in_dir(dir)
        .args(&["report", &run, "--format", "json"])
        .run();
    let report: serde_json::Value = serde_json::from_str(&report.stdout).expect("JSON");
    let waited = report["human_wait_seconds"].as_f64().unwrap();
    let recovery = report["recovery_seconds"].as_f64().unwrap();
    let rto = report["objectives"]["rto"]["achieved_seconds"]
        .as_f64()
        .unwrap();
    assert!(waited >= 1.4, "human wait {waited} s");
    assert!(
        recovery <= rto - 1.4,
        "recovery {recovery} s of an RTO of {rto} s"
    );
}
