//! `drillbook watch`: the console of a run, from another terminal, read-only. Driven through
//! a real pseudo-terminal; what it draws is read back through a terminal emulator (vt100), as
//! a person would see the screen.

mod common;

use std::time::Duration;

use common::screen::Screen;
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

    let mut screen = Screen::new(Drillbook::in_dir(&dir).args(&["watch", "latest"]).pty());
    let first = screen.read(Duration::from_millis(1_500));
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
    let second = screen.read(Duration::from_millis(1_200));
    assert_ne!(clock(&first), clock(&second), "the clock moves:\n{second}");

    // It ends with the run, and shows how.
    assert_eq!(run.wait_within(Duration::from_secs(30)).status, 0);
    let last = screen.read(Duration::from_millis(1_000));
    assert!(last.contains("· succeeded"), "{last}");
    assert!(last.contains("2 of 2 steps done"), "{last}");
    assert!(last.contains("tick 100 of"), "{last}");

    // Read-only: keys other than q change nothing; q quits and gives the terminal back.
    screen.keys("yq");
    assert_eq!(screen.exit_status(), 0, "watch quits on q");

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
