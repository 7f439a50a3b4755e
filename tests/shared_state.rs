//! Run state in object storage (`--state s3://…`), against a real S3 server (s3s-fs on
//! loopback): several drillbook processes stand in for several machines, each in a working
//! directory of its own and under a host name of its own (a UTS namespace). What the store
//! holds is read straight from the server's directory, not through drillbook.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::s3::S3Server;
use common::swap::{fingerprint, restoring, slow_restore};
use common::{Drillbook, minutes, wait_for};

const STATE: &str = "s3://state/fleet";

/// The S3 server with the state's bucket, and the environment every runner gets: the store
/// and a short lease (3 s), so that a takeover comes within seconds.
fn server() -> (S3Server, Vec<(String, String)>) {
    let server = S3Server::start();
    server.create_bucket("state");
    let mut env = server.env();
    env.push(("DRILLBOOK_STATE".into(), STATE.into()));
    env.push(("DRILLBOOK_LEASE".into(), "3s".into()));
    (server, env)
}

/// A runner: its own working directory below `root` (open to every account), its own host
/// name.
fn runner(root: &Path, host: &str, env: &[(String, String)]) -> Drillbook {
    let dir = root.join(host);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    Drillbook::in_dir(&dir)
        .on_host(host)
        .envs(env)
        .deadline(minutes(3))
}

/// Writes playbook `name` (`<name>.yaml` in `root`) with these steps; `{marks}` in them is the
/// file each step's program appends to (returned second).
fn write_playbook(root: &Path, name: &str, steps: &str) -> (PathBuf, PathBuf) {
    let (file, marks) = (root.join(format!("{name}.yaml")), root.join("marks"));
    let steps = steps.replace("{marks}", &marks.display().to_string());
    std::fs::write(&file, format!("version: 1\nname: {name}\nsteps:\n{steps}")).unwrap();
    (file, marks)
}

/// The records of `run` as the store holds them, in order.
fn stored_journal(server: &S3Server, run: &str) -> Vec<serde_json::Value> {
    let dir = server.root.join(format!("state/fleet/runs/{run}/journal"));
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.file_name().unwrap().to_str().unwrap().len() == 16)
        .collect();
    names.sort();
    names
        .iter()
        .map(|path| serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap())
        .collect()
}

/// The runs the store holds.
fn stored_runs(server: &S3Server) -> Vec<String> {
    let mut runs: Vec<String> = std::fs::read_dir(server.root.join("state/fleet/runs"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    runs.sort();
    runs
}

fn of_kind<'a>(records: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    records.iter().filter(|r| r["event"] == kind).collect()
}

/// How many times each step succeeded.
fn successes(records: &[serde_json::Value]) -> Vec<(String, usize)> {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for record in of_kind(records, "step_finished") {
        if record["status"] == "succeeded" {
            *counts
                .entry(record["step"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    counts.into_iter().collect()
}

/// `resume` from `runner` until the lease of the run's first runner has expired and it takes
/// over; each refusal before that must say who holds the run.
fn take_over(runner: impl Fn() -> Drillbook, run: &str) -> common::Output {
    let started = std::time::Instant::now();
    loop {
        let output = runner().args(&["resume", run]).run();
        if output.status != 2 || !output.stderr.contains("is in progress") {
            return output;
        }
        assert!(
            output
                .stderr
                .contains("another runner may take it over after"),
            "{}",
            output.stderr
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the lease never expired: {}",
            output.stderr
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_run_killed_mid_restore_is_taken_over_and_finished_by_another_runner() {
    let (server, env) = server();
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let (_source, target, store, key) = slow_restore(root);
    let before = fingerprint(&target);
    let (playbook, marks) = write_playbook(
        root,
        "swap",
        &format!(
            r#"  - {{ id: before, kind: command, run: [sh, -c, "echo before >> {{marks}}"] }}
  - id: restore
    kind: restore
    needs: [before]
    backup: "{key}"
    store: "{store}"
    target: "{target}"
  - {{ id: after, kind: command, needs: [restore], run: [sh, -c, "echo after >> {{marks}}"] }}
"#,
            store = store.display(),
            target = target.url(),
        ),
    );

    let mut a = runner(root, "runner-a", &env)
        .args(&["run", playbook.to_str().unwrap(), "--run-id", "swap-1"])
        .spawn();
    let (scratch, _) = restoring(&target);
    a.kill();
    wait_for(Duration::from_secs(10), "pg_restore to die with A", || {
        common::swap::pg_restore_into(&scratch).is_none()
    });
    assert_eq!(
        fingerprint(&target),
        before,
        "a killed restore changed the target"
    );

    // B, on another machine, sees the run in the shared state.
    let b = || runner(root, "runner-b", &env);
    let listed = b().args(&["runs"]).run();
    assert_eq!(listed.status, 0, "{}", listed.stderr);
    assert!(listed.stdout.contains("swap-1"), "{}", listed.stdout);
    // Resumed at once, it is refused while A's lease lasts; then it takes over and finishes.
    let resumed = take_over(b, "swap-1");
    assert_eq!(resumed.status, 0, "{}\n{}", resumed.stdout, resumed.stderr);

    let records = stored_journal(&server, "swap-1");
    assert_eq!(
        successes(&records),
        [
            ("after".to_string(), 1),
            ("before".to_string(), 1),
            ("restore".to_string(), 1)
        ]
    );
    assert_eq!(std::fs::read_to_string(&marks).unwrap(), "before\nafter\n");
    assert_eq!(target.psql("SELECT count(*) FROM slow"), "1000");
    // The takeover is B's: its record names B's host (the process that resumed).
    let resumed = of_kind(&records, "run_resumed");
    assert_eq!(resumed.len(), 1);
    let process = of_kind(&records, "run_process");
    assert!(process.len() >= 2, "{process:?}");
    // Any machine can look at it.
    let c = || runner(root, "runner-c", &env);
    let status = c().args(&["status", "swap-1"]).run();
    assert_eq!(status.status, 0, "{}", status.stderr);
    assert!(status.stdout.contains("restore"), "{}", status.stdout);
    let watched = c().args(&["watch", "swap-1", "--once"]).run();
    assert_eq!(watched.status, 0, "{}", watched.stderr);
    assert!(watched.stdout.contains("swap-1"), "{}", watched.stdout);
    // Each record is its own object, written once, in a hash chain `verify` checks from any
    // machine; a record removed from the store is named.
    let c = || runner(root, "runner-c", &env);
    let verified = c().args(&["verify", "swap-1"]).run();
    assert_eq!(
        verified.status, 0,
        "{}\n{}",
        verified.stdout, verified.stderr
    );
    let third = server
        .root
        .join("state/fleet/runs/swap-1/journal/0000000000000003");
    std::fs::remove_file(&third).unwrap();
    let broken = c().args(&["verify", "swap-1"]).run();
    assert_ne!(broken.status, 0, "{}", broken.stdout);
    let said = format!("{}{}", broken.stdout, broken.stderr);
    assert!(said.contains("seq 3 was removed"), "{said}");
}

#[test]
fn a_runner_paused_past_its_lease_is_fenced_out_and_says_it_lost_the_run() {
    let (server, env) = server();
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let (playbook, marks) = write_playbook(
        root,
        "slow",
        r#"  - { id: first, kind: command, run: [sh, -c, "echo first >> {marks}"] }
  - { id: wait, kind: command, needs: [first], run: [sleep, "2"] }
  - { id: last, kind: command, needs: [wait], run: [sh, -c, "echo last >> {marks}"] }
"#,
    );
    let a = runner(root, "runner-a", &env)
        .args(&["run", playbook.to_str().unwrap(), "--run-id", "slow-1"])
        .spawn();
    wait_for(Duration::from_secs(30), "A to start `wait`", || {
        server.root.join("state/fleet/runs/slow-1/journal").exists()
            && of_kind(&stored_journal(&server, "slow-1"), "step_started")
                .iter()
                .any(|r| r["step"] == "wait")
    });
    // SAFETY: kill has no memory preconditions; the pid is our child's.
    assert_eq!(unsafe { libc::kill(a.pid(), libc::SIGSTOP) }, 0);
    let before_takeover = stored_journal(&server, "slow-1").len();
    // Elsewhere, the run shows as running: its runner's lease has not expired yet.
    let listed = runner(root, "runner-c", &env)
        .args(&["runs", "--format", "json"])
        .run();
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(listed["runs"][0]["status"], "running", "{listed}");

    // B resumes the run as soon as A's lease lets it.
    let b = {
        let (root, env) = (root.to_path_buf(), env.clone());
        std::thread::spawn(move || take_over(|| runner(&root, "runner-b", &env), "slow-1"))
    };
    // Once B has written its takeover record, A is continued.
    wait_for(Duration::from_secs(60), "B's takeover record", || {
        !of_kind(&stored_journal(&server, "slow-1"), "run_resumed").is_empty()
    });
    // B's takeover record follows everything A wrote before it stopped.
    let records = stored_journal(&server, "slow-1");
    let takeover = of_kind(&records, "run_resumed")[0]["seq"].as_u64().unwrap();
    assert!(
        takeover >= before_takeover as u64,
        "{takeover} < {before_takeover}"
    );
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(a.pid(), libc::SIGCONT) }, 0);
    let a = a.wait();
    assert_eq!(a.status, 1, "{}\n{}", a.stdout, a.stderr);
    assert!(a.stderr.contains("lost the run"), "{}", a.stderr);
    // `wait` was running when A stopped: B's operator confirms it may run again.
    let b = b.join().unwrap();
    assert_eq!(b.status, 4, "{}\n{}", b.stdout, b.stderr);
    let b = || runner(root, "runner-b", &env);
    let confirmed = b()
        .args(&["approve", "slow-1", "wait", "--as", "bob"])
        .run();
    assert_eq!(confirmed.status, 0, "{}", confirmed.stderr);
    let b = b().args(&["resume", "slow-1"]).run();
    assert_eq!(b.status, 0, "{}\n{}", b.stdout, b.stderr);

    // Everything after the takeover is B's: B's own copy of the journal, written after each
    // record reached the store, is the store's journal record for record.
    let records = stored_journal(&server, "slow-1");
    let b_copy = std::fs::read_to_string(
        root.join("runner-b/.drillbook/shared")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .join("runs/slow-1/journal.jsonl"),
    )
    .unwrap();
    let b_records: Vec<serde_json::Value> = b_copy
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records, b_records);
    assert_eq!(
        successes(&records),
        [
            ("first".to_string(), 1),
            ("last".to_string(), 1),
            ("wait".to_string(), 1)
        ]
    );
    assert_eq!(std::fs::read_to_string(&marks).unwrap(), "first\nlast\n");
}

#[test]
fn twenty_runners_of_a_scheduled_drill_run_it_once_and_history_reads_the_fleet() {
    let (server, env) = server();
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let (playbook, marks) = write_playbook(
        root,
        "nightly",
        r#"  - { id: drill, kind: command, run: [sh, -c, "echo $$ >> {marks}; sleep 1"] }
"#,
    );
    let file = playbook.to_str().unwrap();
    let runners: Vec<_> = (0..20)
        .map(|n| {
            runner(root, &format!("cron-{n}"), &env)
                .args(&["run", file, "--if-due", "1d"])
                .spawn()
        })
        .collect();
    let outputs: Vec<_> = runners.into_iter().map(|r| r.wait()).collect();
    for output in &outputs {
        assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    }
    let ran: Vec<_> = outputs
        .iter()
        .filter(|o| !o.stderr.contains("nightly is not due"))
        .collect();
    assert_eq!(
        ran.len(),
        1,
        "{:#?}",
        outputs.iter().map(|o| &o.stderr).collect::<Vec<_>>()
    );
    assert_eq!(std::fs::read_to_string(&marks).unwrap().lines().count(), 1);
    let runs = stored_runs(&server);
    assert_eq!(runs.len(), 1, "{runs:?}");

    // Another playbook, run from yet another machine; `history` and `due` anywhere read both.
    let (weekly, _) = write_playbook(
        root,
        "weekly",
        "  - { id: drill, kind: command, run: [\"true\"] }\n",
    );
    let other = runner(root, "runner-x", &env)
        .args(&["run", weekly.to_str().unwrap()])
        .run();
    assert_eq!(other.status, 0, "{}", other.stderr);
    let reader = || runner(root, "laptop", &env);
    let history = reader().args(&["history"]).run();
    assert_eq!(history.status, 0, "{}", history.stderr);
    assert!(
        history.stdout.contains("nightly") && history.stdout.contains("weekly"),
        "{}",
        history.stdout
    );
    let due = reader().args(&["due", "--every", "1d"]).run();
    assert_eq!(
        due.status, 0,
        "nothing is due: {}\n{}",
        due.stdout, due.stderr
    );
    assert_eq!(due.stdout, "nothing due\n");
    std::thread::sleep(Duration::from_millis(1100));
    let due = reader().args(&["due", "--every", "1s"]).run();
    assert_eq!(
        due.status, 1,
        "both are due again: {}\n{}",
        due.stdout, due.stderr
    );
    assert!(
        due.stdout.contains("nightly: last passed") && due.stdout.contains("weekly: last passed"),
        "{}",
        due.stdout
    );
    // A runner started later finds the drill done.
    let late = runner(root, "cron-late", &env)
        .args(&["run", file, "--if-due", "1d"])
        .run();
    assert_eq!(late.status, 0, "{}", late.stderr);
    assert!(
        late.stderr.contains("nightly is not due"),
        "{}",
        late.stderr
    );
    assert_eq!(stored_runs(&server).len(), 2);
}

#[test]
fn a_four_eyes_gate_is_approved_from_another_machine_through_the_shared_state() {
    let (_server, env) = server();
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (carol_key, carol_public) = common::keypair(root, "carol", Some(4243));
    let (eve_key, _) = common::keypair(root, "eve", Some(4243));
    let (carol_key, eve_key) = (
        carol_key.display().to_string(),
        eve_key.display().to_string(),
    );
    let playbook = root.join("p.yaml");
    std::fs::write(
        &playbook,
        format!(
            r#"version: 1
name: gated
signers: {{ carol: "{carol_public}" }}
steps:
  - id: promote
    kind: command
    run: [touch, {promoted}]
    approval: {{ prompt: "Promote?", approvers: 2, allowed: [alice, carol, dave] }}
"#,
            promoted = root.join("promoted").display()
        ),
    )
    .unwrap();
    let session = runner(root, "runner-a", &env)
        .args(&[
            "run",
            playbook.to_str().unwrap(),
            "--as",
            "alice",
            "--run-id",
            "gated-1",
        ])
        .env("NO_COLOR", "1")
        .pty();
    let mut screen = common::screen::Screen::new(session);
    // Alice, at the runner's terminal, is the first pair of eyes.
    screen.until("Approve promote? [yes/no]:");
    screen.keys("yes\r");
    screen.until("approved so far: alice");

    let approve = |by: &str, uid: Option<u32>, sign: Option<&str>| {
        let mut args = vec!["approve", "gated-1", "promote", "--as", by];
        args.extend(sign.map(|key| ["--sign-with", key]).into_iter().flatten());
        // Each approver at a machine of their own.
        let approver = runner(root, &format!("desk-{by}"), &env).args(&args);
        match uid {
            Some(uid) => approver.by_uid(uid).run(),
            None => approver.run(),
        }
    };
    // Mallory is not among the people allowed.
    let mallory = approve("mallory", Some(4242), None);
    assert_eq!(mallory.status, 2, "{}", mallory.stderr);
    assert!(
        mallory
            .stderr
            .contains("mallory is not among the people allowed"),
        "{}",
        mallory.stderr
    );
    // Alice's OS account on another machine, under another name: the same person.
    let dave = approve("dave", None, None);
    assert_eq!(dave.status, 2, "{}", dave.stderr);
    assert!(
        dave.stderr
            .contains("four eyes need another person's account"),
        "{}",
        dave.stderr
    );
    // Carol's decision signed with another key is refused; with hers, it is the second.
    let forged = approve("carol", Some(4243), Some(&eve_key));
    assert_eq!(forged.status, 2, "{}", forged.stderr);
    assert!(
        forged
            .stderr
            .contains("does not verify against carol's key"),
        "{}",
        forged.stderr
    );
    let carol = approve("carol", Some(4243), Some(&carol_key));
    assert_eq!(carol.status, 0, "{}", carol.stderr);
    screen.until("SUCCEEDED");
    assert_eq!(screen.exit_status(), 0);
    assert!(root.join("promoted").exists());

    // From a third machine: who decided, from which account and host, and Carol's signature
    // verified.
    let json = runner(root, "auditor", &env)
        .args(&["report", "gated-1", "--format", "json"])
        .run();
    assert_eq!(json.status, 0, "{}", json.stderr);
    let md = runner(root, "auditor", &env)
        .args(&["report", "gated-1", "--format", "md"])
        .run()
        .stdout;
    assert!(md.contains("(verified)"), "{md}");
    assert!(md.contains("desk-carol"), "{md}");
}
