//! `drillbook watch`: the console of a run, from another terminal, read-only. Driven through
//! a real pseudo-terminal; what it draws is read back through a terminal emulator (vt100), as
//! a person would see the screen.

mod common;

use std::io::{ErrorKind, Write};
use std::time::{Duration, Instant};

use common::{Drillbook, wait_for};

const PLAYBOOK: &str = r#"version: 1
name: watched
objectives: { rto: 30m }
vars: { target_db: "postgres://app@db-restore.internal:5432/app" }
steps:
  - id: ticking
    kind: command
    description: Count, slowly.
    run: [sh, -c, 'for i in $(seq 1 100); do echo "tick $i of {{ vars.target_db }}"; sleep 0.05; done']
  - { id: after, kind: command, run: ["true"] }
"#;

/// The screen as the emulator shows it after whatever the child wrote in `within`.
fn screen(session: &mut common::Terminal, parser: &mut vt100::Parser, within: Duration) -> String {
    let until = Instant::now() + within;
    let mut buf = [0u8; 8192];
    while Instant::now() < until {
        match session.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => parser.process(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    parser.screen().contents()
}

#[test]
fn watch_shows_a_running_run_live_and_read_only() {
    let test = Drillbook::new().playbook("p.yaml", PLAYBOOK);
    let dir = test.dir().to_path_buf();
    let run = Drillbook::in_dir(&dir)
        .args(&["run", "p.yaml", "--run-id", "watched-1"])
        .spawn();
    wait_for(Duration::from_secs(10), "the command to start", || {
        common::step_started(&dir, Some("ticking"))
    });

    let mut session = Drillbook::in_dir(&dir).args(&["watch", "latest"]).pty();
    let size = |n: u16| std::num::NonZeroU16::new(n).expect("not zero");
    let mut parser = vt100::Parser::new(size(40), size(120), 0);
    let first = screen(&mut session, &mut parser, Duration::from_millis(1_500));
    for needle in [
        "DRILL · watched · run watched-1 · in progress",
        "of RTO 30m",
        "0 of 2 steps done",
        "ticking running",
        "after pending",
        // The step in progress, its command rendered as the journal keeps it.
        "ticking (command)",
        "db-restore.internal",
        // The tail of its output.
        "tick ",
        "read-only · q quits",
    ] {
        assert!(
            first.contains(needle),
            "`{needle}` not on the screen:\n{first}"
        );
    }
    let clock = |screen: &str| {
        screen
            .lines()
            .find(|line| line.contains("of RTO 30m"))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let second = screen(&mut session, &mut parser, Duration::from_millis(1_200));
    assert_ne!(clock(&first), clock(&second), "the clock moves:\n{second}");

    // It ends with the run, and shows how.
    assert_eq!(run.wait_within(Duration::from_secs(30)).status, 0);
    let last = screen(&mut session, &mut parser, Duration::from_millis(1_000));
    assert!(last.contains("· succeeded"), "{last}");
    assert!(last.contains("2 of 2 steps done"), "{last}");
    assert!(last.contains("tick 100 of"), "{last}");

    // Read-only: keys other than q change nothing; q quits and gives the terminal back.
    session.write_all(b"y").expect("type");
    session.write_all(b"q").expect("type");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        screen(&mut session, &mut parser, Duration::from_millis(100));
        if let Ok(status) = session.get_process().status()
            && status != expectrl::process::unix::WaitStatus::StillAlive
        {
            break;
        }
        assert!(Instant::now() < deadline, "watch did not quit on q");
    }

    // Without a terminal, once, as plain lines.
    let once = Drillbook::in_dir(&dir)
        .args(&["watch", "watched", "--once"])
        .run();
    assert_eq!(once.status, 0, "{}", once.stderr);
    assert!(
        once.stdout.contains("✓ ticking succeeded"),
        "{}",
        once.stdout
    );
    assert!(once.stdout.contains("\nlast found\n"), "{}", once.stdout);
}
