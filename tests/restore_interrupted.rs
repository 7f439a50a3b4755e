//! A restore interrupted, or in the way of others: killed mid-pg_restore, killed after its
//! swap, its swap refused by a session, open sessions on the target, and databases that look
//! like drillbook's but are not (or belong to a restore still running).

mod common;

use std::time::Duration;

use common::drill::{json_report, run_of, step};
use common::pg::{TestDb, psql};
use common::swap::{
    backed_up, beside, evidence, fingerprint, output_of, pg_restore_into, restore, restoring,
    resume, session, slow_restore, start, target,
};
use common::wait_for;

#[test]
fn a_restore_killed_mid_pg_restore_leaves_the_target_and_resume_starts_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_source, target, store, key) = slow_restore(dir.path());
    let before = fingerprint(&target);

    let mut child = start(dir.path(), &store, &key, &target);
    let (scratch, pg_restore) = restoring(&target);
    child.kill();
    // pg_restore dies with drillbook (its parent-death signal): nothing here kills it.
    let _ = pg_restore;
    wait_for(
        Duration::from_secs(10),
        "pg_restore to die with drillbook",
        || pg_restore_into(&scratch).is_none(),
    );
    let run = run_of(dir.path(), "swap");
    assert_eq!(
        fingerprint(&target),
        before,
        "a killed restore changed the target"
    );
    assert_eq!(
        beside(&target, "restore_"),
        std::slice::from_ref(&scratch),
        "the leftover"
    );
    assert!(beside(&target, "before_").is_empty());

    let restore_step = &resume(dir.path(), &run);
    assert_eq!(restore_step["status"], "succeeded");
    assert!(
        evidence(restore_step).contains(&format!(
            "dropped the leftover scratch database {scratch} (left by an earlier attempt of this step)"
        )),
        "{:#?}",
        evidence(restore_step)
    );
    assert!(beside(&target, "restore_").is_empty());
    assert_eq!(target.psql("SELECT count(*) FROM slow"), "1000");
    let previous = beside(&target, "before_");
    assert_eq!(previous.len(), 1);
    assert_eq!(psql(&previous[0], "SELECT id FROM keep_me"), "7");
}

#[test]
fn a_restore_cancelled_by_ctrl_c_drops_its_scratch_database_and_leaves_the_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_source, target, store, key) = slow_restore(dir.path());
    let before = fingerprint(&target);
    let child = start(dir.path(), &store, &key, &target);
    let (scratch, _) = restoring(&target);
    child.interrupt();
    let output = child.wait();
    assert_eq!(output.status, 130, "{}\n{}", output.stdout, output.stderr);
    assert!(beside(&target, "restore_").is_empty(), "{scratch} is left");
    assert_eq!(fingerprint(&target), before);
}

#[test]
fn a_restore_that_times_out_drops_its_scratch_database_before_the_run_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_source, target, store, key) = slow_restore(dir.path());
    let before = fingerprint(&target);
    let (output, timed_out) = restore(dir.path(), &store, &key, &target.url(), &["timeout: 2s"]);
    assert_eq!(output.status, 1, "{}\n{}", output.stdout, output.stderr);
    assert_eq!(timed_out["status"], "timed_out", "{timed_out}");
    assert!(beside(&target, "restore_").is_empty());
    assert_eq!(fingerprint(&target), before);
}

/// drillbook died after the swap but before it recorded the step's end (the journal is cut
/// there): `resume` runs the step again, which finds the swap made and restores nothing over
/// what was written since.
#[test]
fn a_resumed_restore_whose_swap_was_made_reports_it_and_restores_nothing_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_source, store, key) = backed_up(dir.path(), 1_000);
    let target = target();
    let (output, first) = restore(dir.path(), &store, &key, &target.url(), &[]);
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let previous = output_of(&first, "previous_database");
    let run = run_of(dir.path(), "swap");
    let journal = dir
        .path()
        .join(".drillbook/runs")
        .join(&run)
        .join("journal.jsonl");
    let text = std::fs::read_to_string(&journal).expect("journal");
    let started = text
        .lines()
        .position(|line| {
            line.contains("\"event\":\"step_started\"") && line.contains("\"restore\"")
        })
        .expect("the restore's start");
    let cut: String = text
        .lines()
        .take(started + 1)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&journal, cut).expect("journal");
    target.psql("CREATE TABLE written_since (id int)");

    let again = &resume(dir.path(), &run);
    assert_eq!(again["outputs"]["previous_database"], previous.as_str());
    assert_eq!(
        again["outputs"]["scratch_database"],
        first["outputs"]["scratch_database"]
    );
    assert!(
        evidence(again).iter().any(|line| line.starts_with(&format!(
            "an earlier attempt of this step swapped {key} into {} at ",
            target.name
        )) && line.ends_with(&format!(
            "(the database it replaced is kept as {previous}): not restored again"
        ))),
        "{:#?}",
        evidence(again)
    );
    assert_eq!(target.psql("SELECT count(*) FROM written_since"), "0");
    assert_eq!(beside(&target, "before_"), std::slice::from_ref(&previous));
    assert!(beside(&target, "restore_").is_empty());
}

/// The swap is one transaction: when its second rename fails (somebody is connected to the
/// scratch database), the first is undone with it.
#[test]
fn a_swap_that_fails_halfway_is_rolled_back_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_source, target, store, key) = slow_restore(dir.path());
    let before = fingerprint(&target);
    let child = start(dir.path(), &store, &key, &target);
    let (scratch, _) = restoring(&target);
    let _session = session(&format!("{}/{scratch}", common::pg::SERVER));

    let output = child.wait();
    assert_eq!(output.status, 1, "{}\n{}", output.stdout, output.stderr);
    assert_eq!(fingerprint(&target), before, "half a swap");
    assert!(beside(&target, "before_").is_empty());
    assert!(beside(&target, "restore_").is_empty());
    let run = run_of(dir.path(), "swap");
    let report = json_report(dir.path(), &run);
    let message = step(&report, "restore")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.starts_with(&format!("{scratch} has 1 open session(s) (pid ")),
        "{message}"
    );
    assert!(
        message.ends_with(&format!(
            "so the swap was rolled back; {} was not touched and the scratch database {scratch} was dropped",
            target.name
        )),
        "{message}"
    );
}

#[test]
fn open_sessions_refuse_the_restore_unless_it_may_terminate_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (source, store, key) = backed_up(dir.path(), 2_000);
    let target = target();
    let before = fingerprint(&target);
    // An application's session on the target.
    let (runtime, session) = session(&target.url());

    let (output, refused) = restore(dir.path(), &store, &key, &target.url(), &[]);
    assert_eq!(output.status, 1, "{}\n{}", output.stdout, output.stderr);
    let message = refused["error"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("{} has 1 open session(s) (pid ", target.name)),
        "{message}"
    );
    assert!(
        message.ends_with("nothing was changed. Close them, or set `terminate_connections: true` to end them right before the swap"),
        "{message}"
    );
    assert_eq!(fingerprint(&target), before);
    assert!(beside(&target, "restore_").is_empty());
    assert!(runtime.block_on(session.simple_query("SELECT 1")).is_ok());

    let (output, swapped) = restore(
        dir.path(),
        &store,
        &key,
        &target.url(),
        &["terminate_connections: true"],
    );
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    assert!(
        evidence(&swapped).contains(&format!(
            "terminated 1 session(s) on {} right before the swap (terminate_connections)",
            target.name
        )),
        "{:#?}",
        evidence(&swapped)
    );
    assert!(runtime.block_on(session.simple_query("SELECT 1")).is_err());
    assert_eq!(target.row_counts(), source.row_counts());
}

/// This machine's name, as drillbook records it in a scratch database's mark.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_string()
}

fn scratch_mark(target: &str, run: &str, pid: u32) -> String {
    format!(
        "drillbook restore scratch {{\"target\":\"{target}\",\"run\":\"{run}\",\"step\":\"restore\",\"attempt\":1,\"host\":\"{}\",\"pid\":{pid}}}",
        host()
    )
}

#[test]
fn only_drillbooks_own_databases_are_dropped_and_a_running_restore_is_not_disturbed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (source, store, key) = backed_up(dir.path(), 1_000);
    let target = TestDb::create("dbk_target");
    let t = target.name.clone();
    // Look-alikes without drillbook's mark, or with another target's.
    let unmarked_scratch = format!("{t}_restore_deadbeef_1");
    let unmarked_previous = format!("{t}_before_20200101_000000");
    let other_target = format!("{t}_before_20200102_000000");
    psql("postgres", &format!("CREATE DATABASE {unmarked_scratch}"));
    psql("postgres", &format!("CREATE DATABASE {unmarked_previous}"));
    psql("postgres", &format!("CREATE DATABASE {other_target}"));
    psql(
        "postgres",
        &format!(
            "COMMENT ON DATABASE {other_target} IS 'drillbook previous database {{\"target\":\"other\",\"run\":\"r\",\"step\":\"restore\",\"replaced_at\":\"2020-01-02T00:00:00Z\",\"comment\":null,\"backup\":\"k\",\"scratch\":\"s\",\"errors_ignored\":0}}'"
        ),
    );
    // A scratch database of a restore that is still running here (this test's own pid).
    let busy = format!("{t}_restore_ffffffff_1");
    psql("postgres", &format!("CREATE DATABASE {busy}"));
    psql(
        "postgres",
        &format!(
            "COMMENT ON DATABASE {busy} IS '{}'",
            scratch_mark(&t, "elsewhere", std::process::id())
        ),
    );

    let (output, refused) = restore(dir.path(), &store, &key, &target.url(), &[]);
    assert_eq!(output.status, 1, "{}\n{}", output.stdout, output.stderr);
    let message = refused["error"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!(
            "another restore into {t} may be running: the scratch database {busy} belongs to run elsewhere, step `restore` (pid {}",
            std::process::id()
        )),
        "{message}"
    );

    // The same, left by a drillbook that is no longer running: dropped.
    let mut gone = std::process::Command::new("true").spawn().expect("true");
    let dead = gone.id();
    gone.wait().expect("reaped");
    psql(
        "postgres",
        &format!(
            "COMMENT ON DATABASE {busy} IS '{}'",
            scratch_mark(&t, "elsewhere", dead)
        ),
    );
    let (output, swapped) = restore(
        dir.path(),
        &store,
        &key,
        &target.url(),
        &["keep_previous: 0"],
    );
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let lines = evidence(&swapped);
    assert!(
        lines.contains(&format!(
            "dropped the leftover scratch database {busy} (left by run elsewhere (pid {dead} on {}, no longer running))",
            host()
        )),
        "{lines:#?}"
    );
    // keep_previous: 0 dropped the database just replaced, and nothing else.
    assert_eq!(swapped["outputs"]["previous_database"], "");
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "dropped 1 previous database(s) of {t} beyond keep_previous: 0: {t}_before_"
        ))),
        "{lines:#?}"
    );
    assert_eq!(beside(&target, "restore_"), [unmarked_scratch]);
    assert_eq!(
        beside(&target, "before_"),
        [unmarked_previous, other_target]
    );
    assert_eq!(target.row_counts(), source.row_counts());
}
