//! Kill and resume: drillbook is SIGKILLed (alone, and with its whole process tree) at
//! seeded random points of a backup into S3, a restore from S3 and a storage mirror, then
//! `drillbook resume RUN` brings the run to completion. Afterwards each step that succeeded
//! did so once, the store holds only complete artifacts that match their manifests or
//! checksum reports (no unfinished multipart upload, no upload marker), and the restore
//! target was at every moment either untouched or fully restored.
//!
//! `cargo test` kills at 2 points per kind; `DRILLBOOK_KILL_POINTS=N` at N (bench/faults.sh).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::artifacts::{
    backup_problems, backups, dumps_without_manifest, leftovers, mirror_differences,
    missing_from_mirror, random_objects, report_problems,
};
use common::faults::FaultProxy;
use common::kill::{
    Kill, kill, kill_points, repeated_successes, resume_to_completion, survivors, the_run,
};
use common::pg::{TestDb, fixture, psql};
use common::s3::S3Server;
use common::{Drillbook, minutes, walk};

const BOUNDED: usize = 2;

/// What the kills of one scenario came to, printed as a `KILLS` line for bench/faults.sh.
#[derive(Default)]
struct Kills {
    points: usize,
    /// The kill came before drillbook had made its run: it was simply run again.
    before_start: usize,
    /// The run had finished before the kill.
    after_end: usize,
    resumed: usize,
    /// Processes still alive after the kill: (kind of kill, pid, name).
    survivors: Vec<(Kill, i32, String)>,
    wrong: Vec<String>,
}

impl Kills {
    fn finish(self, name: &str) {
        eprintln!(
            "KILLS {name}: points={} resumed={} before_start={} after_end={} survivors={} wrong={} {:?}",
            self.points,
            self.resumed,
            self.before_start,
            self.after_end,
            self.survivors.len(),
            self.wrong.len(),
            self.survivors
        );
        assert!(
            self.wrong.is_empty(),
            "{name}: {} problems:\n{}",
            self.wrong.len(),
            self.wrong.join("\n")
        );
    }

    fn check(&mut self, label: &str, problems: Vec<String>) {
        self.wrong
            .extend(problems.into_iter().map(|p| format!("{label}: {p}")));
    }
}

/// Runs `playbook` in `dir`, kills it after `after` the way `how` says, and brings the run to
/// completion; true when it then succeeded.
fn kill_and_resume(
    kills: &mut Kills,
    label: &str,
    dir: &Path,
    playbook: &str,
    env: &[(String, String)],
    (how, after): (Kill, Duration),
) -> bool {
    kills.points += 1;
    let mut child = Drillbook::in_dir(dir)
        .args(&["run", playbook, "--mode", "live"])
        .envs(env)
        .own_process_group()
        .deadline(minutes(4))
        .spawn();
    let started = Instant::now();
    while started.elapsed() < after && child.try_wait().is_none() {
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Some(status) = child.try_wait() {
        kills.after_end += 1;
        if !status.success() {
            kills.check(label, vec![format!("the run itself failed: {status}")]);
        }
        return status.success();
    }
    let below = kill(&mut child, how);
    for (pid, name) in survivors(&below) {
        kills.survivors.push((how, pid, name));
    }
    let Some(run) = the_run(dir) else {
        kills.before_start += 1;
        let output = Drillbook::in_dir(dir)
            .args(&["run", playbook, "--mode", "live"])
            .envs(env)
            .deadline(minutes(4))
            .run();
        return output.status == 0;
    };
    kills.resumed += 1;
    let output = resume_to_completion(dir, &run, env);
    if output.status != 0 {
        kills.check(
            label,
            vec![format!(
                "resume ended with {}\n{}\n{}",
                output.status, output.stdout, output.stderr
            )],
        );
        return false;
    }
    kills.check(label, repeated_successes(dir, &run));
    true
}

/// What interrupted uploads may leave on the server: s3s-fs's multipart files and
/// drillbook's markers.
fn upload_leftovers(server: &S3Server, bucket: &str) -> Vec<String> {
    let mut found = server.upload_files();
    let markers = server.root.join(bucket).join(".drillbook-incomplete");
    found.extend(walk(&markers).iter().map(|p| p.display().to_string()));
    found
}

fn big_source() -> TestDb {
    let source = TestDb::create("dbk_kill_src");
    fixture(&source, 5_000, None);
    source.psql(
        "CREATE TABLE big (id bigserial PRIMARY KEY, payload text);
         INSERT INTO big (payload)
             SELECT md5(random()::text) || md5(random()::text)
               FROM generate_series(1, 250000)",
    );
    source
}

fn backup_playbook(store: &str) -> String {
    format!(
        "version: 1\nname: kill-backup\nsecrets: [DATABASE_URL]\nsteps:\n  - id: backup\n    kind: backup\n    database: \"{{{{ secrets.DATABASE_URL }}}}\"\n    store: {store}\n  - id: verify\n    kind: verify\n    source: {store}\n    backup: \"{{{{ steps.backup.outputs.key }}}}\"\n"
    )
}

/// How long a run of `playbook` takes undisturbed (the window kills fall in).
fn timed(dir: &Path, playbook: &str, env: &[(String, String)]) -> Duration {
    let started = Instant::now();
    let output = Drillbook::in_dir(dir)
        .args(&["run", playbook, "--mode", "live"])
        .envs(env)
        .deadline(minutes(4))
        .run();
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    started.elapsed()
}

#[test]
fn a_backup_killed_anywhere_resumes_to_one_complete_backup() {
    let mut kills = Kills::default();
    let server = S3Server::start();
    server.create_bucket("backups");
    let source = big_source();
    let mut env = server.env();
    env.push(("DATABASE_URL".into(), source.url()));
    let base = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        base.path().join("p.yaml"),
        backup_playbook("s3://backups/base"),
    )
    .unwrap();
    let window = timed(base.path(), "p.yaml", &env);
    for (i, point) in kill_points(BOUNDED, window, 11).into_iter().enumerate() {
        let label = format!("backup kill {i} ({:?} at {:?})", point.0, point.1);
        let dir = tempfile::tempdir().expect("tempdir");
        let prefix = format!("p{i}");
        let store = format!("s3://backups/{prefix}");
        std::fs::write(dir.path().join("p.yaml"), backup_playbook(&store)).unwrap();
        let done = kill_and_resume(&mut kills, &label, dir.path(), "p.yaml", &env, point);
        let on_disk = server.root.join("backups").join(&prefix);
        kills.check(&label, backup_problems(&on_disk));
        kills.check(&label, dumps_without_manifest(&on_disk));
        kills.check(&label, leftovers(&on_disk));
        kills.check(&label, upload_leftovers(&server, "backups"));
        if done && backups(&on_disk).is_empty() {
            kills.check(&label, vec!["succeeded with no backup stored".into()]);
        }
    }
    kills.finish("backup");
}

fn restore_playbook(store: &str) -> String {
    format!(
        "version: 1\nname: kill-restore\nsecrets: [RESTORE_URL]\nsteps:\n  - id: assess\n    kind: assess\n    store: {store}\n  - id: restore\n    kind: restore\n    backup: \"{{{{ steps.assess.outputs.backup }}}}\"\n    store: {store}\n    target: \"{{{{ secrets.RESTORE_URL }}}}\"\n    jobs: 2\n"
    )
}

/// Databases a restore into `target` made beside it and left: scratch databases.
fn scratch_databases(target: &TestDb) -> Vec<String> {
    psql(
        "postgres",
        &format!(
            "SELECT datname FROM pg_database WHERE starts_with(datname, '{}_restore_')",
            target.name
        ),
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

#[test]
fn a_restore_killed_anywhere_leaves_the_target_whole_and_resumes() {
    let mut kills = Kills::default();
    let server = S3Server::start();
    server.create_bucket("backups");
    let source = big_source();
    let setup = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        setup.path().join("b.yaml"),
        backup_playbook("s3://backups/prod"),
    )
    .unwrap();
    let mut env = server.env();
    env.push(("DATABASE_URL".into(), source.url()));
    timed(setup.path(), "b.yaml", &env);
    let expected = source.content_hashes();
    std::fs::write(
        setup.path().join("r.yaml"),
        restore_playbook("s3://backups/prod"),
    )
    .unwrap();
    let target = TestDb::create("dbk_kill_base");
    let mut env = server.env();
    env.push(("RESTORE_URL".into(), target.url()));
    let window = timed(setup.path(), "r.yaml", &env);
    for (i, point) in kill_points(BOUNDED, window, 12).into_iter().enumerate() {
        let label = format!("restore kill {i} ({:?} at {:?})", point.0, point.1);
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("r.yaml"),
            restore_playbook("s3://backups/prod"),
        )
        .unwrap();
        let target = TestDb::create("dbk_kill_tgt");
        target.psql("CREATE TABLE keep_me (id int); INSERT INTO keep_me VALUES (7)");
        let untouched = target.content_hashes();
        let mut env = server.env();
        env.push(("RESTORE_URL".into(), target.url()));
        kills.points += 1;
        let mut child = Drillbook::in_dir(dir.path())
            .args(&["run", "r.yaml", "--mode", "live"])
            .envs(&env)
            .own_process_group()
            .deadline(minutes(4))
            .spawn();
        let started = Instant::now();
        while started.elapsed() < point.1 && child.try_wait().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let finished = child.try_wait().is_some();
        let below = if finished {
            kills.after_end += 1;
            Vec::new()
        } else {
            kill(&mut child, point.0)
        };
        let left = survivors(&below);
        // Killed: the target is as it was, or wholly restored (the swap happened).
        let now = target.content_hashes();
        if now != untouched && now != expected {
            kills.check(
                &label,
                vec![format!("after the kill the target holds {now:?}")],
            );
        }
        for (pid, name) in left {
            kills.survivors.push((point.0, pid, name));
        }
        if !finished {
            match the_run(dir.path()) {
                None => {
                    kills.before_start += 1;
                    let output = Drillbook::in_dir(dir.path())
                        .args(&["run", "r.yaml", "--mode", "live"])
                        .envs(&env)
                        .deadline(minutes(4))
                        .run();
                    assert_eq!(output.status, 0, "{label}: {}", output.stderr);
                }
                Some(run) => {
                    kills.resumed += 1;
                    let output = resume_to_completion(dir.path(), &run, &env);
                    if output.status != 0 {
                        kills.check(
                            &label,
                            vec![format!(
                                "resume ended with {}\n{}\n{}",
                                output.status, output.stdout, output.stderr
                            )],
                        );
                    }
                    kills.check(&label, repeated_successes(dir.path(), &run));
                }
            }
        }
        let now = target.content_hashes();
        if now != expected {
            kills.check(
                &label,
                vec![format!("after resume the target holds {now:?}")],
            );
        }
        kills.check(&label, scratch_databases(&target));
    }
    kills.finish("restore");
}

fn mirror_playbook(local: &Path, up: &str, copy: &str) -> String {
    format!(
        "version: 1\nname: kill-mirror\nsteps:\n  - id: up\n    kind: sync\n    source: {}\n    destination: {up}\n  - id: copy\n    kind: sync\n    needs: [up]\n    source: {up}\n    destination: {copy}\n  - id: parity\n    kind: verify\n    needs: [copy]\n    source: {up}\n    destination: {copy}\n    deep: true\n",
        local.display()
    )
}

#[test]
fn a_mirror_killed_anywhere_resumes_to_a_byte_identical_copy() {
    let mut kills = Kills::default();
    let server = S3Server::start();
    server.create_bucket("storage");
    let base = tempfile::tempdir().expect("tempdir");
    let local = base.path().join("objects");
    // Small objects and two above a part.
    random_objects(&local, 3, 30, 300_000, 4, "o");
    std::fs::write(
        base.path().join("m.yaml"),
        mirror_playbook(&local, "s3://storage/base-up", "s3://storage/base-copy"),
    )
    .unwrap();
    let env = server.env();
    let window = timed(base.path(), "m.yaml", &env);
    for (i, point) in kill_points(BOUNDED, window, 13).into_iter().enumerate() {
        let label = format!("mirror kill {i} ({:?} at {:?})", point.0, point.1);
        let dir = tempfile::tempdir().expect("tempdir");
        let (up, copy) = (format!("up{i}"), format!("copy{i}"));
        std::fs::write(
            dir.path().join("m.yaml"),
            mirror_playbook(
                &local,
                &format!("s3://storage/{up}"),
                &format!("s3://storage/{copy}"),
            ),
        )
        .unwrap();
        let done = kill_and_resume(&mut kills, &label, dir.path(), "m.yaml", &env, point);
        for name in [&up, &copy] {
            let mirror = server.root.join("storage").join(name);
            kills.check(&label, mirror_differences(&local, &mirror));
            kills.check(&label, report_problems(&mirror));
            kills.check(&label, leftovers(&mirror));
            if done {
                kills.check(&label, missing_from_mirror(&local, &mirror));
            }
        }
        kills.check(&label, upload_leftovers(&server, "storage"));
    }
    kills.finish("mirror");
}

/// A drillbook killed alone leaves no program of its running: its children die with it
/// (their parent-death signal), before their side effect.
#[test]
fn a_drillbook_killed_alone_leaves_no_program_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("c.yaml"),
        "version: 1\nname: orphans\nsteps:\n  - { id: long, kind: command, run: [sh, -c, \"sleep 30; echo done >> side\"] }\n",
    )
    .unwrap();
    let mut child = Drillbook::in_dir(dir.path())
        .args(&["run", "c.yaml"])
        .spawn();
    common::wait_for(Duration::from_secs(20), "the command to start", || {
        !common::kill::descendants(child.pid()).is_empty()
    });
    let below = kill(&mut child, Kill::Drillbook);
    let left = survivors(&below);
    assert!(
        left.is_empty(),
        "still running after drillbook's SIGKILL: {left:?}"
    );
    assert!(!dir.path().join("side").exists());
}

/// Killed after its dump is stored and before its manifest is (the proxy holds the manifest's
/// PUT): the store holds a dump no manifest vouches for, which the resumed run removes before
/// it writes the backup again — the store ends with one complete backup and nothing else.
#[test]
fn a_backup_killed_between_its_dump_and_its_manifest_leaves_only_complete_backups() {
    let server = S3Server::start();
    server.create_bucket("backups");
    let proxy = FaultProxy::start(&server.endpoint, 0.0, 1);
    proxy.hold_puts(".manifest.json");
    let source = TestDb::create("dbk_kill_manifest");
    fixture(&source, 1_000, None);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("p.yaml"),
        backup_playbook("s3://backups/held"),
    )
    .unwrap();
    let mut held_env = proxy.env(&server);
    held_env.push(("DATABASE_URL".into(), source.url()));
    let mut child = Drillbook::in_dir(dir.path())
        .args(&["run", "p.yaml", "--mode", "live"])
        .envs(&held_env)
        .own_process_group()
        .deadline(minutes(2))
        .spawn();
    let started = Instant::now();
    while proxy.held() == 0 {
        assert!(
            child.try_wait().is_none(),
            "the run ended before its manifest"
        );
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "no manifest PUT"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(&mut child, Kill::Drillbook);
    let on_disk = server.root.join("backups").join("held");
    let orphans = dumps_without_manifest(&on_disk);
    assert_eq!(orphans.len(), 1, "the kill's moment: {orphans:?}");

    let run = the_run(dir.path()).expect("a run");
    let mut env = server.env();
    env.push(("DATABASE_URL".into(), source.url()));
    let output = resume_to_completion(dir.path(), &run, &env);
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    assert_eq!(dumps_without_manifest(&on_disk), Vec::<String>::new());
    assert_eq!(backup_problems(&on_disk), Vec::<String>::new());
    let stored = backups(&on_disk);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_ne!(stored[0].0, orphans[0], "the backup is the re-run's");
    let said = common::journal(dir.path(), &run)
        .iter()
        .any(|r| r.to_string().contains("stored without its manifest"));
    assert!(said, "the removal is in the step's evidence");
}
