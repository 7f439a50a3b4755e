//! The systems around drillbook failing under it: PostgreSQL killed mid-restore (a throwaway
//! cluster of the test's own, never the shared server), Redis down at the flush (a private
//! redis-server), the state directory on a full disk (a 1 MiB tmpfs). Each time drillbook
//! fails with a clear message and no panic, the target is as it was, and once the system is
//! back, `resume` finishes the run.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::kill::{descendants, resume_to_completion};
use common::own_redis::OwnRedis;
use common::pg::{TestDb, fixture, psql_url};
use common::swap::backup;
use common::{Drillbook, minutes, only_run, wait_for};
use drillbook::connect::cluster::Cluster;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A throwaway cluster, destroyed however the test ends.
struct OwnCluster(Cluster, #[allow(dead_code)] tempfile::TempDir);

impl OwnCluster {
    fn create() -> OwnCluster {
        let base = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o711))
            .expect("chmod");
        let cluster = runtime()
            .block_on(Cluster::create(base.path(), "faults", None))
            .expect("a throwaway cluster");
        OwnCluster(cluster, base)
    }

    fn postmaster(&self) -> i32 {
        std::fs::read_to_string(self.0.dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse().ok())
            .expect("postmaster.pid")
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = self.0.destroy_blocking();
    }
}

/// Every table's rows, hashed, in database `db` of the cluster.
fn hashes(url: &str) -> Vec<String> {
    let tables = psql_url(
        url,
        "SELECT schemaname || '.' || relname FROM pg_stat_user_tables ORDER BY 1",
    );
    tables
        .lines()
        .map(|table| {
            let hash = psql_url(
                url,
                &format!("SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {table} t"),
            );
            format!("{table} {hash}")
        })
        .collect()
}

#[test]
fn postgres_killed_mid_restore_fails_cleanly_and_resume_restores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = TestDb::create("dbk_pgkill_src");
    fixture(&source, 5_000, None);
    source.psql(
        "CREATE TABLE big (id bigserial PRIMARY KEY, payload text);
         INSERT INTO big (payload) SELECT md5(i::text) || md5((-i)::text)
           FROM generate_series(1, 300000) i",
    );
    let (store, key) = backup(dir.path(), &source);
    let cluster = OwnCluster::create();
    let admin = cluster.0.url("postgres");
    psql_url(&admin, "CREATE DATABASE app");
    let target = cluster.0.url("app");
    psql_url(
        &target,
        "CREATE TABLE keep_me (id int); INSERT INTO keep_me VALUES (7)",
    );
    let untouched = hashes(&target);
    let text = format!(
        "version: 1\nname: pgkill\nsecrets: [RESTORE_URL]\nsteps:\n  - id: restore\n    kind: restore\n    backup: {key}\n    store: {}\n    target: \"{{{{ secrets.RESTORE_URL }}}}\"\n",
        store.display()
    );
    std::fs::write(dir.path().join("r.yaml"), text).expect("playbook");
    let before = common::run_ids(dir.path());
    let child = Drillbook::in_dir(dir.path())
        .args(&["run", "r.yaml", "--mode", "live"])
        .env("RESTORE_URL", &target)
        .deadline(minutes(3))
        .spawn();
    // pg_restore is writing into the scratch database: kill the whole server under it.
    let drillbook = child.pid();
    wait_for(Duration::from_secs(60), "pg_restore to start", || {
        descendants(drillbook)
            .into_iter()
            .any(|pid| common::kill::command_name(pid) == "pg_restore")
    });
    std::thread::sleep(Duration::from_millis(300));
    let killed = Instant::now();
    // SAFETY: the postmaster of this test's own cluster.
    unsafe { libc::kill(cluster.postmaster(), libc::SIGKILL) };
    let output = child.wait();
    eprintln!(
        "PostgreSQL killed: drillbook ended {:.1} s later with {}",
        killed.elapsed().as_secs_f64(),
        output.status
    );
    assert_eq!(output.status, 1, "{}\n{}", output.stdout, output.stderr);
    assert!(
        output.stdout.contains("restore") || output.stderr.contains("restore"),
        "no clear message: {}\n{}",
        output.stdout,
        output.stderr
    );

    // The server back: the target is as it was, and resume restores.
    runtime()
        .block_on(cluster.0.ensure_running())
        .expect("restart the cluster");
    assert_eq!(
        hashes(&target),
        untouched,
        "the failed restore changed the target"
    );
    let run = common::run_ids(dir.path())
        .into_iter()
        .find(|id| !before.contains(id))
        .expect("the run");
    let env = [("RESTORE_URL", target.clone())];
    let resumed = resume_to_completion(dir.path(), &run, env.clone());
    assert_eq!(resumed.status, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    let restored = hashes(&target);
    let expected: Vec<String> = hashes(&source.url());
    assert_eq!(restored, expected);
    let scratch = psql_url(
        &admin,
        "SELECT datname FROM pg_database WHERE datname LIKE 'app_restore_%'",
    );
    assert_eq!(scratch, "", "scratch databases left");
}

#[test]
fn redis_down_at_the_flush_fails_cleanly_and_resume_flushes() {
    let mut redis = OwnRedis::start();
    redis
        .cli(&["-n", "3", "SET", "cached", "old"])
        .expect("SET");
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "version: 1\nname: flushdown\nsteps:\n  - {{ id: before, kind: wait, duration: 1s }}\n  - id: flush\n    kind: flush\n    needs: [before]\n    redis: {}\n    scope: db\n",
        redis.url(3)
    );
    std::fs::write(dir.path().join("f.yaml"), text).expect("playbook");
    let child = Drillbook::in_dir(dir.path())
        .args(&["run", "f.yaml", "--mode", "live"])
        .deadline(minutes(2))
        .spawn();
    wait_for(Duration::from_secs(20), "the first step", || {
        common::step_started(dir.path(), Some("before"))
    });
    redis.kill();
    let started = Instant::now();
    let output = child.wait();
    eprintln!(
        "Redis down: drillbook ended {:.1} s after the kill with {}",
        started.elapsed().as_secs_f64(),
        output.status
    );
    assert_eq!(output.status, 1, "{}\n{}", output.stdout, output.stderr);
    let said = format!("{}\n{}", output.stdout, output.stderr);
    assert!(said.contains("flush"), "{said}");
    assert!(
        said.contains(&redis.port.to_string()) || said.to_lowercase().contains("redis"),
        "the message does not say which Redis: {said}"
    );

    redis.restart();
    redis
        .cli(&["-n", "3", "SET", "cached", "old"])
        .expect("SET");
    let run = only_run(dir.path());
    let resumed = resume_to_completion(dir.path(), &run, Vec::<(String, String)>::new());
    assert_eq!(resumed.status, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    assert_eq!(redis.cli(&["-n", "3", "DBSIZE"]).as_deref(), Some("0"));
}

/// A 1 MiB tmpfs at `path`, unmounted when dropped; `None` when it cannot be mounted.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &Path) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).ok()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(path)
            .status()
            .ok()?;
        status.success().then(|| Tmpfs(path.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_state_disk_fails_clearly_and_resume_finishes_after_space_is_freed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let Some(_tmpfs) = Tmpfs::mount(&state) else {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs at {} (not root?)",
            state.display()
        );
        return;
    };
    // Steps whose output fills the journal and the log; each leaves a line in `side`.
    let mut text = "version: 1\nname: diskfull\nsteps:\n".to_owned();
    for i in 0..12 {
        text.push_str(&format!(
            "  - {{ id: s{i}, kind: command, run: [sh, -c, \"echo s{i} >> side; head -c 4000 /dev/zero | tr '\\\\0' x\"] }}\n"
        ));
    }
    std::fs::write(dir.path().join("d.yaml"), text).expect("playbook");
    // Leave about 24 KiB free: a few steps fit.
    let filler = state.join("filler");
    let free = || {
        let stat = nix_free(&state);
        stat.saturating_sub(24 << 10)
    };
    std::fs::write(&filler, vec![0u8; free() as usize]).expect("fill the tmpfs");
    let env = [("DRILLBOOK_STATE_DIR", state.display().to_string())];
    let output = Drillbook::in_dir(dir.path())
        .args(&["run", "d.yaml", "--mode", "live"])
        .envs(env.clone())
        .deadline(minutes(1))
        .run();
    let said = format!("{}\n{}", output.stdout, output.stderr);
    eprintln!("full disk: exit {}\n{said}", output.status);
    assert_ne!(output.status, 0, "{said}");
    assert!(
        said.contains("No space left") || said.to_lowercase().contains("space"),
        "no clear message: {said}"
    );
    let side = || std::fs::read_to_string(dir.path().join("side")).unwrap_or_default();
    let ran_before = side().lines().count();
    assert!(
        ran_before < 12,
        "the disk never filled: {ran_before} steps ran"
    );

    std::fs::remove_file(&filler).expect("free the space");
    let runs: Vec<String> = std::fs::read_dir(state.join("runs"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(runs.len(), 1, "runs: {runs:?}\n{said}");
    let resumed = resume_to_completion(dir.path(), &runs[0], env.clone());
    assert_eq!(resumed.status, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    // Every step ran; each one journalled as succeeded before the disk filled ran once.
    let lines: Vec<String> = side().lines().map(str::to_owned).collect();
    for i in 0..12 {
        let n = lines.iter().filter(|l| **l == format!("s{i}")).count();
        assert!((1..=2).contains(&n), "s{i} ran {n} times: {lines:?}");
    }
    assert!(lines.len() <= 13, "more than one step repeated: {lines:?}");
}

/// Bytes free on the filesystem of `path`.
fn nix_free(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: statvfs into a zeroed struct, a NUL-terminated path.
    unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c.as_ptr(), &mut stat), 0, "statvfs");
        stat.f_bavail as u64 * stat.f_frsize as u64
    }
}
