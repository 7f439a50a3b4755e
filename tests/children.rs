//! No orphans: every program drillbook starts dies with it (parent-death signal), and what
//! it starts in its group too (the guard process), is journalled (`child_started`), and what
//! survives anyway (the guard killed as well) is stopped by `resume` before anything runs
//! again. Pre-approvals outlive a crash; lock files never collide and a deleted `locks/` does
//! not let a second run start; racing `approve`s record one decision.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Drillbook, alive, events, journal, only_run, wait_for};

/// The processes in process group `pgid`.
fn group_members(pgid: i64) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| {
                    let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
                    let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
                    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
                    let group: i64 = fields.get(2)?.parse().ok()?;
                    (group == pgid && !fields[0].starts_with('Z')).then_some(pid)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the only run in `dir` journalled a child of `step`: the record.
fn child_of(dir: &Path, step: &str) -> serde_json::Value {
    let mut found = None;
    wait_for(Duration::from_secs(30), "a child_started record", || {
        found = common::run_ids(dir).first().and_then(|run| {
            std::fs::read_to_string(dir.join(".drillbook/runs").join(run).join("journal.jsonl"))
                .ok()?
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .find(|r| r["event"] == "child_started" && r["step"] == step)
        });
        found.is_some()
    });
    found.expect("child_started")
}

fn pid_of(record: &serde_json::Value) -> i32 {
    i32::try_from(record["pid"].as_i64().expect("pid")).expect("pid")
}

/// `starttime` of a process, if it exists and is not a zombie.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    if fields.first()?.starts_with('Z') {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// The guard process of the drillbook `pid` (`drillbook __guard`, its child), once there is
/// one.
fn guard_of(pid: i32) -> i32 {
    let mut found = None;
    wait_for(Duration::from_secs(20), "the guard process", || {
        found = common::kill::descendants(pid).into_iter().find(|child| {
            std::fs::read(format!("/proc/{child}/cmdline"))
                .is_ok_and(|line| line.split(|b| *b == 0).nth(1) == Some(b"__guard".as_slice()))
        });
        found.is_some()
    });
    found.expect("guard")
}

/// SIGKILLs the guard and waits until it is gone.
fn kill_guard(guard: i32) {
    // SAFETY: signalling the guard process found just now below our drillbook.
    unsafe { libc::kill(guard, libc::SIGKILL) };
    wait_for(Duration::from_secs(5), "the guard to die", || !alive(guard));
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_command_s_program_dies_with_a_sigkilled_drillbook_and_is_journalled() {
    let test = Drillbook::new().playbook(
        "p.yaml",
        "version: 1\nname: orphan\nsteps:\n  - { id: nap, kind: command, run: [sleep, \"300\"] }\n",
    );
    let dir = test.dir().to_path_buf();
    let mut running = Drillbook::in_dir(&dir).args(&["run", "p.yaml"]).spawn();
    let record = child_of(&dir, "nap");
    let pid = pid_of(&record);
    assert!(alive(pid), "sleep should be running");
    assert_eq!(
        record["program"], "sleep",
        "the program's name, never its arguments"
    );
    assert_eq!(record["pgid"], record["pid"]);
    assert_eq!(record["attempt"], 1);
    assert_eq!(
        record["boot_id"].as_str().expect("boot"),
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .expect("boot id")
            .trim()
    );
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let start_time: u64 = stat
        .rsplit(')')
        .next()
        .expect("fields")
        .split_whitespace()
        .nth(19)
        .expect("starttime")
        .parse()
        .expect("number");
    assert_eq!(record["start_time"], start_time);

    // Only drillbook's own pid: its program is not signalled by anyone but the kernel.
    running.kill();
    wait_for(
        Duration::from_secs(5),
        "sleep to die with drillbook",
        || !alive(pid),
    );
}

/// What a program forks stays in its group but has no parent-death signal: the guard
/// process kills the group when drillbook is gone.
#[test]
fn a_grandchild_in_the_group_dies_soon_after_a_sigkilled_drillbook() {
    let test = Drillbook::new().playbook(
        "p.yaml",
        "version: 1\nname: grandchild\nsteps:\n  - { id: nap, kind: command, run: [sh, -c, \"sleep 300 & wait\"] }\n",
    );
    let dir = test.dir().to_path_buf();
    let mut running = Drillbook::in_dir(&dir).args(&["run", "p.yaml"]).spawn();
    let record = child_of(&dir, "nap");
    let pgid = record["pgid"].as_i64().expect("pgid");
    wait_for(Duration::from_secs(5), "the sleep to start", || {
        group_members(pgid).len() >= 2
    });
    let guard = guard_of(running.pid());
    assert_eq!(
        group_members(i64::from(guard)),
        [guard],
        "the guard leads its own group"
    );
    running.kill();
    wait_for(
        Duration::from_secs(5),
        "the shell and its sleep to die with drillbook",
        || group_members(pgid).is_empty(),
    );
    wait_for(Duration::from_secs(5), "the guard to exit", || {
        !alive(guard)
    });
}

/// A clean run leaves no guard behind; while it runs, the guard holds nothing of drillbook's
/// (no lock, no output pipe) but its own pipe.
#[test]
fn a_normal_run_leaves_no_guard_process_behind() {
    let test = Drillbook::new().playbook(
        "p.yaml",
        "version: 1\nname: guarded\nsteps:\n  - { id: nap, kind: command, run: [sleep, \"2\"] }\n  - { id: after, kind: command, run: [\"true\"], needs: [nap] }\n",
    );
    let dir = test.dir().to_path_buf();
    let running = Drillbook::in_dir(&dir).args(&["run", "p.yaml"]).spawn();
    let guard = guard_of(running.pid());
    let started = start_time(guard).expect("the guard runs");
    let fds = || {
        let mut fds: Vec<(String, String)> = std::fs::read_dir(format!("/proc/{guard}/fd"))
            .expect("fds")
            .flatten()
            .map(|fd| {
                let target = std::fs::read_link(fd.path()).unwrap_or_default();
                (
                    fd.file_name().to_string_lossy().into_owned(),
                    target.to_string_lossy().into_owned(),
                )
            })
            .collect();
        fds.sort();
        fds
    };
    // Seen just after its exec it may still hold what it inherited (a test harness's
    // jobserver pipe, say): it closes all of it first thing.
    let settled = (0..100).any(|_| {
        let held = fds().len();
        if held != 3 {
            std::thread::sleep(Duration::from_millis(20));
        }
        held == 3
    });
    let fds = fds();
    let names: Vec<&str> = fds.iter().map(|(fd, _)| fd.as_str()).collect();
    assert!(settled, "{fds:?}");
    assert_eq!(names, ["0", "1", "2"], "{fds:?}");
    assert!(fds[0].1.starts_with("pipe:"), "{fds:?}");
    assert_eq!(fds[1].1, "/dev/null");
    assert_eq!(fds[2].1, "/dev/null");
    let output = running.wait();
    assert_eq!(output.status, 0, "{}", output.stderr);
    assert!(
        !output.stderr.contains("guard process"),
        "{}",
        output.stderr
    );
    wait_for(Duration::from_secs(5), "the guard to exit", || {
        start_time(guard) != Some(started)
    });
}

#[test]
fn pg_restore_dies_with_a_sigkilled_drillbook() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_source, target, store, key) = common::swap::slow_restore(dir.path());
    let mut running = common::swap::start(dir.path(), &store, &key, &target);
    let (scratch, pg_restore) = common::swap::restoring(&target);
    running.kill();
    wait_for(
        Duration::from_secs(5),
        "pg_restore to die with drillbook",
        || !alive(pg_restore) && common::swap::pg_restore_into(&scratch).is_none(),
    );
    // The resume starts clean (and stops nothing: nothing survived).
    let run = common::drill::run_of(dir.path(), "swap");
    let restore = common::swap::resume(dir.path(), &run);
    assert_eq!(restore["status"], "succeeded");
    let records = common::drill::runs_of(dir.path(), "swap");
    assert_eq!(records.len(), 1);
    let records = journal(dir.path(), &run);
    assert!(events(&records, "child_stopped", None).is_empty());
    assert!(
        events(&records, "child_started", Some("restore"))
            .iter()
            .any(|r| r["program"] == "pg_restore")
    );
}

/// The first attempt leaves a grandchild in its process group that outlives drillbook (a
/// fork does not inherit the parent-death signal, and the guard is killed first, as the OOM
/// killer or a `kill -9` of it could) and, ignoring SIGTERM, would write a line after 6 s.
/// The re-run writes its own line.
const SURVIVOR: &str = r#"version: 1
name: survivor
steps:
  - id: work
    kind: command
    run:
      - sh
      - -c
      - "echo run >> side; [ -e first ] && exit 0; touch first; (trap '' TERM; sleep 6; echo survivor >> side) & wait"
"#;

#[test]
fn resume_stops_a_survivor_before_running_the_step_again() {
    let test = Drillbook::new().playbook("p.yaml", SURVIVOR);
    let dir = test.dir().to_path_buf();
    let side = dir.join("side");
    // Naming the step pre-approves it, but never answers whether to re-run it after a crash.
    let mut running = Drillbook::in_dir(&dir)
        .args(&["run", "p.yaml", "--approve", "work"])
        .spawn();
    let record = child_of(&dir, "work");
    let pgid = record["pgid"].as_i64().expect("pgid");
    wait_for(Duration::from_secs(5), "the subshell to start", || {
        group_members(pgid).len() >= 2
    });
    kill_guard(guard_of(running.pid()));
    running.kill();
    let run = only_run(&dir);
    // The shell died with drillbook; what it forked did not.
    wait_for(Duration::from_secs(5), "the shell to die", || {
        !alive(pid_of(&record))
    });
    assert!(!group_members(pgid).is_empty(), "the survivor is running");

    // The command is asked about (no terminal: exit 4), but the survivor is stopped first.
    let output = Drillbook::in_dir(&dir).args(&["resume", &run]).run();
    assert_eq!(output.status, 4, "{}", output.stderr);
    assert!(
        group_members(pgid).is_empty(),
        "resume left the survivor running"
    );
    assert!(
        output.stderr.contains("`sh` (pid")
            && output.stderr.contains("was still running")
            && output.stderr.contains("SIGTERM, then SIGKILL"),
        "{}",
        output.stderr
    );
    let records = journal(&dir, &run);
    let stopped = events(&records, "child_stopped", Some("work"));
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    assert_eq!(stopped[0]["killed"], true, "it ignored SIGTERM");
    assert!(stopped[0]["processes"].as_u64().expect("count") >= 1);
    let asked = events(&records, "approval_requested", Some("work"));
    assert!(stopped[0]["seq"].as_u64() < asked[0]["seq"].as_u64());

    let output = Drillbook::in_dir(&dir)
        .args(&["approve", &run, "work", "--as", "carol"])
        .run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    let output = Drillbook::in_dir(&dir).args(&["resume", &run]).run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    // Past the survivor's 6 s: its line never comes; the step ran exactly once more.
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(lines(&side), ["run", "run"]);
    let records = journal(&dir, &run);
    assert_eq!(events(&records, "child_stopped", None).len(), 1);
    assert_eq!(events(&records, "step_started", Some("work")).len(), 2);
}

#[test]
fn pre_approvals_given_to_run_are_honoured_by_resume() {
    let test = Drillbook::new().playbook(
        "p.yaml",
        r#"version: 1
name: preapproved
steps:
  - { id: pause, kind: wait, duration: 3s }
  - { id: go, kind: approval, prompt: "Go on?", needs: [pause] }
  - { id: act, kind: command, run: [touch, acted], needs: [go] }
"#,
    );
    let dir = test.dir().to_path_buf();
    let mut running = Drillbook::in_dir(&dir)
        .args(&["run", "p.yaml", "--approve-all", "--as", "alice"])
        .spawn();
    wait_for(Duration::from_secs(20), "the pause", || {
        common::step_started(&dir, Some("pause"))
    });
    running.kill();
    let run = only_run(&dir);
    let records = journal(&dir, &run);
    let given = events(&records, "pre_approved", None);
    assert_eq!(given.len(), 1, "{records:?}");
    assert_eq!(given[0]["by"], "alice");
    assert_eq!(given[0]["all"], true);

    // No terminal, no flag: the journalled --approve-all passes the gate.
    let output = Drillbook::in_dir(&dir)
        .args(&["resume", &run, "--as", "bob"])
        .run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    assert!(dir.join("acted").exists());
    let records = journal(&dir, &run);
    let decided = events(&records, "approval_decided", Some("go"));
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0]["pre_approved"], true);
    assert_eq!(decided[0]["by"], "alice", "the pre-approval is alice's");
}

const LONG: &str = "steps:\n  - { id: pause, kind: wait, duration: 60s }\n";
const SHORT: &str = "steps:\n  - { id: pause, kind: wait, duration: 0s }\n";

#[test]
fn playbooks_whose_names_differ_in_punctuation_do_not_share_a_lock() {
    let test = Drillbook::new()
        .playbook("dot.yaml", &format!("version: 1\nname: db.restore\n{LONG}"))
        .playbook(
            "under.yaml",
            &format!("version: 1\nname: db_restore\n{SHORT}"),
        );
    let dir = test.dir().to_path_buf();
    let _first = Drillbook::in_dir(&dir).args(&["run", "dot.yaml"]).spawn();
    wait_for(Duration::from_secs(20), "the first run", || {
        common::step_started(&dir, None)
    });
    let second = Drillbook::in_dir(&dir).args(&["run", "under.yaml"]).run();
    assert_eq!(second.status, 0, "{}", second.stderr);
    let mut locks: Vec<String> = std::fs::read_dir(dir.join(".drillbook/locks"))
        .expect("locks")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    locks.sort();
    assert_eq!(locks, ["db_2erestore.lock", "db_5frestore.lock"]);
}

#[test]
fn deleting_the_locks_directory_does_not_let_a_second_run_start() {
    let test = Drillbook::new().playbook("p.yaml", &format!("version: 1\nname: p\n{LONG}"));
    let dir = test.dir().to_path_buf();
    let mut first = Drillbook::in_dir(&dir).args(&["run", "p.yaml"]).spawn();
    wait_for(Duration::from_secs(20), "the first run", || {
        common::step_started(&dir, None)
    });
    let run = only_run(&dir);
    std::fs::remove_dir_all(dir.join(".drillbook/locks")).expect("rm -rf locks");
    let second = Drillbook::in_dir(&dir).args(&["run", "p.yaml"]).run();
    assert_eq!(second.status, 2, "{}", second.stderr);
    assert_eq!(
        second.stderr,
        format!("error: run {run} is in progress (pid {})\n", first.id())
    );
    assert_eq!(only_run(&dir), run, "the refused run left a directory");
    let resumed = Drillbook::in_dir(&dir).args(&["resume", &run]).run();
    assert_eq!(resumed.status, 2, "{}", resumed.stderr);

    // Once it is dead, its journal no longer counts as a holder.
    first.kill();
    std::fs::write(dir.join("p.yaml"), format!("version: 1\nname: p\n{SHORT}")).expect("write");
    let third = Drillbook::in_dir(&dir).args(&["run", "p.yaml"]).run();
    assert_eq!(third.status, 0, "{}", third.stderr);
}

/// Eight `approve --as alice` at once on a gate that needs `approvers` people.
fn race(approvers: u32) -> (Vec<common::Output>, usize) {
    let test = Drillbook::new().playbook(
        "p.yaml",
        &format!(
            "version: 1\nname: race\nsteps:\n  - {{ id: go, kind: approval, prompt: \"Go on?\", approvers: {approvers} }}\n"
        ),
    );
    let dir = test.dir().to_path_buf();
    let output = Drillbook::in_dir(&dir).args(&["run", "p.yaml"]).run();
    assert_eq!(output.status, 4, "{}", output.stderr);
    let run = only_run(&dir);
    let racers: Vec<_> = (0..8)
        .map(|_| {
            Drillbook::in_dir(&dir)
                .args(&["approve", &run, "go", "--as", "alice"])
                .spawn()
        })
        .collect();
    let outputs: Vec<_> = racers.into_iter().map(|racer| racer.wait()).collect();
    let records = journal(&dir, &run);
    let decided = events(&records, "approval_decided", Some("go")).len();
    (outputs, decided)
}

#[test]
fn racing_approvals_of_one_person_record_one_decision() {
    for (approvers, why) in [
        (2, "it needs 2 different people"),
        (1, "one decision per person"),
    ] {
        let (outputs, decided) = race(approvers);
        assert_eq!(decided, 1, "approvers: {approvers}");
        let said: Vec<&str> = outputs.iter().map(|o| o.stderr.as_str()).collect();
        assert_eq!(
            outputs.iter().filter(|o| o.status == 0).count(),
            1,
            "{said:#?}"
        );
        for lost in outputs.iter().filter(|o| o.status != 0) {
            assert_eq!(lost.status, 2, "{}", lost.stderr);
            assert!(
                lost.stderr
                    .starts_with("error: alice already approved `go`")
                    && lost.stderr.contains(why),
                "{}",
                lost.stderr
            );
        }
    }
}
