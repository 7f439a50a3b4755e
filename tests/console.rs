//! The incident console: `run --mode incident` at a terminal takes the screen (ratatui), and an
//! operator drives the whole incident with keys. Driven through a real pseudo-terminal and
//! read back through a terminal emulator (vt100), as a person would see it: the step list,
//! the clock ticking, the real target a step writes to, a command's output, proceed, skip, a
//! four-eyes gate whose second approval comes from another shell, `watch` beside it, and an
//! abort that asks for its reason.

mod common;

use std::path::Path;
use std::time::Duration;

use common::screen::Screen;
use common::{Drillbook, events, journal, only_run, wait_for};

/// Redis database 13 is named but never flushed: the operator skips the step.
const PLAYBOOK: &str = r#"version: 1
name: console
objectives: { rto: 30m }
vars: { cache: "redis://127.0.0.1:6379/13" }
steps:
  - id: ticking
    kind: command
    run: [sh, -c, 'for i in $(seq 1 40); do echo "tick $i"; sleep 0.05; done']
  - { id: flush_cache, kind: flush, redis: "{{ vars.cache }}", needs: [ticking] }
  - id: promote
    kind: command
    run: [touch, promoted]
    needs: [flush_cache]
    approval: { prompt: "Point the application at the standby?", approvers: 2 }
  - { id: last, kind: command, run: [touch, last], needs: [promote] }
"#;

fn clock(screen: &str) -> String {
    screen
        .lines()
        .find(|line| line.contains("of RTO 30m"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn waiting_on(dir: &Path, step: &str) -> bool {
    common::run_ids(dir).first().is_some_and(|run| {
        let records = journal(dir, run);
        events(&records, "approval_requested", Some(step)).len()
            > events(&records, "confirmed", Some(step)).len()
    })
}

#[test]
fn an_incident_is_driven_from_the_console() {
    let test = Drillbook::new().playbook("p.yaml", PLAYBOOK);
    let dir = test.dir().to_path_buf();
    let session = Drillbook::in_dir(&dir)
        .args(&[
            "run", "p.yaml", "--mode", "incident", "--as", "alice", "--run-id", "inc-1",
        ])
        .pty();
    let mut screen = Screen::new(session);

    // Before the first step: the list, the clock, the question and its keys.
    let first = screen.until("p proceed");
    for needle in [
        "INCIDENT · console · run inc-1 · in progress",
        "0 of 4 steps done",
        "ticking pending",
        "promote pending",
        "your decision",
        "Next: ticking",
    ] {
        assert!(first.contains(needle), "`{needle}` not shown:\n{first}");
    }
    let later = screen.read(Duration::from_millis(1_300));
    assert_ne!(clock(&first), clock(&later), "the clock ticks:\n{later}");

    // Proceed: the command's output shows while it runs.
    screen.keys("p");
    screen.until("tick ");

    // The flush names the Redis it would empty; skip it.
    let flush = screen.until("Next: flush_cache");
    assert!(
        flush.contains("writes `redis`") && flush.contains("127.0.0.1:6379"),
        "{flush}"
    );
    assert!(flush.contains("1 of 4 steps done"), "{flush}");
    screen.keys("s");

    // The four-eyes gate is the step's one question: alice approves here...
    let gate = screen.until("Approve promote?");
    assert!(
        gate.contains("y approve · n reject · s skip · a abort"),
        "{gate}"
    );
    screen.keys("y");
    wait_for(Duration::from_secs(10), "alice's approval", || {
        events(&journal(&dir, "inc-1"), "approval_decided", Some("promote")).len() == 1
    });
    screen.until("so far: alice");
    assert!(waiting_on(&dir, "promote"));

    // ...`watch` shows the same run read-only from another terminal...
    let mut watch = Screen::new(Drillbook::in_dir(&dir).args(&["watch", "inc"]).pty());
    let watched = watch.until("promote waits");
    assert!(watched.contains("read-only · q quits"), "{watched}");
    assert!(watched.contains("1 of 2 yes (alice)"), "{watched}");
    assert!(!watched.contains("your decision"), "{watched}");
    watch.keys("q");

    // ...alice cannot be the second pair of eyes from another shell under another name...
    let renamed = Drillbook::in_dir(&dir)
        .args(&["approve", "latest", "promote", "--as", "bob"])
        .run();
    assert_eq!(renamed.status, 2, "{}", renamed.stderr);
    assert!(
        renamed
            .stderr
            .contains("four eyes need another person's account"),
        "{}",
        renamed.stderr
    );
    // ...nor at the console: a second `y` from her account is no approval.
    screen.keys("y");
    screen.until("the next yes must come from another person's account");

    // ...and bob approves from his own account in another shell while the console waits.
    common::share_state(&dir.join(".drillbook"));
    let approved = Drillbook::in_dir(&dir)
        .args(&["approve", "latest", "promote", "--as", "bob"])
        .by_uid(4242)
        .run();
    assert_eq!(approved.status, 0, "{}{}", approved.stdout, approved.stderr);
    assert!(
        approved
            .stderr
            .contains("bob approved `promote`; the running drillbook goes on"),
        "{}",
        approved.stderr
    );
    let moved_on = screen.until("Next: last");
    assert!(moved_on.contains("promote succeeded"), "{moved_on}");
    assert!(dir.join("promoted").exists());

    // Abort asks why; Esc takes it back; Enter with a reason aborts.
    screen.keys("a");
    screen.until("Abort the run — why?");
    screen.keys("\x1b");
    screen.read(Duration::from_millis(400));
    screen.keys("a");
    screen.until("Abort the run — why?");
    screen.keys("wrong region\r");

    // The screen is given back for the post-mortem, asked as plain lines.
    screen.until("Root cause");
    screen.keys("\r");
    screen.until("Remediation item 1");
    screen.keys("\r");
    assert_eq!(screen.exit_status(), 1);
    assert!(!dir.join("last").exists(), "the aborted step never ran");

    let run = only_run(&dir);
    let records = journal(&dir, &run);
    let decided: Vec<&str> = events(&records, "approval_decided", Some("promote"))
        .iter()
        .map(|r| r["by"].as_str().unwrap())
        .collect();
    assert_eq!(decided, ["alice", "bob"]);
    let skipped = events(&records, "step_skipped", Some("flush_cache"));
    assert_eq!(skipped[0]["reason"], "skipped by alice");
    let aborted = events(&records, "aborted", Some("last"));
    assert_eq!(aborted.len(), 1, "{records:?}");
    assert_eq!(aborted[0]["by"], "alice");
    assert_eq!(aborted[0]["reason"], "wrong region");

    // The report says the run was aborted, by whom and why — not "failed" beside "nothing
    // failed" — and lists the step as cancelled, not skipped.
    let report = Drillbook::in_dir(&dir)
        .args(&["report", "latest", "--format", "md"])
        .run();
    assert!(
        report.stdout.contains("**aborted**"),
        "{}{}",
        report.stdout,
        report.stderr
    );
    assert!(
        report
            .stdout
            .contains("Aborted by alice before `last`: wrong region."),
        "{}",
        report.stdout
    );
    assert!(
        !report.stdout.contains("_Nothing failed._"),
        "{}",
        report.stdout
    );
    assert!(
        report
            .stdout
            .contains("cancelled: aborted by alice: wrong region"),
        "{}",
        report.stdout
    );
    let text = Drillbook::in_dir(&dir).args(&["report", "latest"]).run();
    assert!(text.stdout.contains("ABORTED (exit 1)"), "{}", text.stdout);
}

#[test]
fn a_decision_for_a_step_not_yet_asked_is_refused_while_the_run_goes_on() {
    // An unattended run holds its lock while a long step runs; its gate has not been asked
    // yet, so `approve` refuses at once (no letter is left for a question nobody asked).
    let test = Drillbook::new().playbook(
        "p.yaml",
        r#"version: 1
name: unattended
steps:
  - { id: slow, kind: command, run: [sleep, "30"] }
  - { id: gate, kind: approval, prompt: "Go?" }
"#,
    );
    let dir = test.dir().to_path_buf();
    let mut run = Drillbook::in_dir(&dir)
        .args(&["run", "p.yaml", "--run-id", "un-1"])
        .spawn();
    wait_for(Duration::from_secs(10), "the slow step", || {
        common::step_started(&dir, Some("slow"))
    });
    let approved = Drillbook::in_dir(&dir)
        .args(&["approve", "un-1", "gate", "--as", "bob"])
        .run();
    assert_ne!(approved.status, 0);
    assert!(
        approved.stderr.contains("is not waiting for a decision"),
        "{}",
        approved.stderr
    );
    run.kill();
}

#[test]
fn a_line_prompt_gives_way_to_a_decision_from_another_shell() {
    // A drill at a terminal asks with plain line prompts; the approvers are elsewhere.
    let test = Drillbook::new().playbook(
        "p.yaml",
        r#"version: 1
name: gated
steps:
  - id: promote
    kind: command
    run: [touch, promoted]
    approval: { prompt: "Promote?", approvers: 2 }
"#,
    );
    let dir = test.dir().to_path_buf();
    let session = Drillbook::in_dir(&dir)
        .args(&["run", "p.yaml", "--as", "alice", "--run-id", "gated-1"])
        .env("NO_COLOR", "1")
        .pty();
    let mut screen = Screen::new(session);
    screen.until("Approve promote? [yes/no]:");
    // `status` is live while the terminal waits, and names the command that answers.
    let status = Drillbook::in_dir(&dir).args(&["status", "gated"]).run();
    assert!(
        status
            .stdout
            .contains("from any shell: drillbook approve gated-1 promote"),
        "{}",
        status.stdout
    );
    common::share_state(&dir.join(".drillbook"));
    // Carol signs hers with her SSH key (readable by her account only).
    let (key, _) = common::keypair(&dir, "carol", Some(4243));
    let key = key.to_str().unwrap().to_string();
    for (by, uid, sign) in [("bob", 4242, None), ("carol", 4243, Some(key.as_str()))] {
        let mut args = vec!["approve", "gated-1", "promote", "--as", by];
        args.extend(sign.map(|key| ["--sign-with", key]).into_iter().flatten());
        let approved = Drillbook::in_dir(&dir).args(&args).by_uid(uid).run();
        assert_eq!(approved.status, 0, "{by}: {}", approved.stderr);
    }
    // The prompt gave way: the run went on to its end while the terminal still asked. (Its
    // "answered from another shell" may come after the run's summary, or not at all when the
    // process ends first: drillbook does not wait for a prompt's thread.)
    screen.until("SUCCEEDED");
    assert_eq!(screen.exit_status(), 0);
    assert!(dir.join("promoted").exists());
    let records = journal(&dir, "gated-1");
    let decided: Vec<&str> = events(&records, "approval_decided", Some("promote"))
        .iter()
        .map(|r| r["by"].as_str().unwrap())
        .collect();
    assert_eq!(decided, ["bob", "carol"]);
    // The run checked Carol's signature when it took her letter; the report checks it again.
    let md = Drillbook::in_dir(&dir)
        .args(&["report", "gated-1", "--format", "md"])
        .run()
        .stdout;
    assert!(md.contains("signed with SHA256:"), "{md}");
    assert!(md.contains("(verified)"), "{md}");
}
