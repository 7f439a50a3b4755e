//! `drillbook runbook`: the shipped runbooks are what it writes, bad input is refused as
//! `plan` refuses it, and — the proof — the database-restore runbook's shell blocks, run in
//! order by bash with `set -euo pipefail` and no drillbook, restore a backup drillbook made
//! into a fresh database on this machine's PostgreSQL, with the same row counts.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::drill::shipped;
use common::pg::{TestDb, fixture, psql};
use common::{Drillbook, minutes};

/// The Redis database this file's tests own on the shared server (tests/flush.rs has 11–13,
/// others 14).
const REDIS_DB: u8 = 9;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn runbook_of(file: &str) -> String {
    let output = Drillbook::new().args(&["runbook", &shipped(file)]).run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    output.stdout
}

#[test]
fn the_shipped_runbooks_are_what_drillbook_runbook_writes() {
    let index = std::fs::read_to_string(repo().join("docs/runbooks/README.md"))
        .expect("docs/runbooks/README.md");
    let mut playbooks: Vec<PathBuf> = std::fs::read_dir(repo().join("playbooks"))
        .expect("playbooks/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    playbooks.sort();
    let mut stale = Vec::new();
    for playbook in &playbooks {
        let name = playbook
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let written = runbook_of(&format!("{name}.yaml"));
        let shipped = std::fs::read_to_string(repo().join(format!("docs/runbooks/{name}.md")))
            .unwrap_or_default();
        if written != shipped {
            stale.push(name.clone());
        }
        assert!(
            index.contains(&format!("({name}.md)")),
            "docs/runbooks/README.md does not list {name}.md"
        );
    }
    assert!(
        stale.is_empty(),
        "docs/runbooks/ differs from what `drillbook runbook` writes for {}: regenerate them with\n  cargo run -- runbook playbooks/*.yaml -o docs/runbooks",
        stale.join(", ")
    );
}

#[test]
fn bad_input_is_refused_as_plan_refuses_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let invalid = dir.path().join("invalid.yaml");
    std::fs::write(
        &invalid,
        "version: 1\nname: x\nsteps:\n  - id: a\n    kind: nope\n",
    )
    .expect("write");
    let missing = dir.path().join("missing.yaml");
    for file in [&invalid, &missing] {
        let file = file.display().to_string();
        let runbook = Drillbook::in_dir(dir.path())
            .args(&["runbook", &file])
            .run();
        let plan = Drillbook::in_dir(dir.path()).args(&["plan", &file]).run();
        assert_eq!(runbook.status, 2, "{}", runbook.stderr);
        assert_eq!(runbook.stderr, plan.stderr);
        assert!(runbook.stdout.is_empty(), "{}", runbook.stdout);
    }
    let both = Drillbook::in_dir(dir.path())
        .args(&[
            "runbook",
            &shipped("quickstart.yaml"),
            &shipped("nightly-backup.yaml"),
        ])
        .run();
    assert_eq!(both.status, 2);
    assert!(both.stderr.contains("give -o DIR"), "{}", both.stderr);
    // With -o, one NAME.md per playbook.
    let out = dir.path().join("out");
    let written = Drillbook::in_dir(dir.path())
        .args(&[
            "runbook",
            &shipped("quickstart.yaml"),
            &shipped("nightly-backup.yaml"),
            "-o",
        ])
        .args(&[&out.display().to_string()])
        .run();
    assert_eq!(written.status, 0, "{}", written.stderr);
    assert!(out.join("quickstart.md").is_file() && out.join("nightly-backup.md").is_file());
}

/// The ```sh blocks of a Markdown text, in order.
fn shell_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap_or_default()),
            (Some(block), line) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// What the runbook's script is run with: the quickstart's kind of setup (a local directory
/// store a drillbook backup went into), a fresh database to restore into, the application's env
/// file, a Redis database of this test's own.
struct Setup {
    dir: tempfile::TempDir,
    source: TestDb,
    target: TestDb,
    store: PathBuf,
    env_file: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = TestDb::create("drillbook_rbsrc");
    fixture(&source, 3_000, None);
    let store = dir.path().join("store");
    let backup = Drillbook::in_dir(dir.path())
        .args(&[
            "run",
            &shipped("nightly-backup.yaml"),
            "--mode",
            "live",
            "--var",
            &format!("store={}", store.display()),
        ])
        .env("DATABASE_URL", source.url())
        .deadline(minutes(5))
        .run();
    assert_eq!(backup.status, 0, "{}\n{}", backup.stdout, backup.stderr);
    // A database already there, as in an incident: the restore replaces it.
    let target = TestDb::create("drillbook_rbdst");
    target.psql("CREATE TABLE before_the_restore (x int)");
    let env_file = dir.path().join("app.env");
    std::fs::write(
        &env_file,
        "RAILS_ENV=production\nDATABASE_URL='postgres://old@a/b'\n",
    )
    .expect("env file");
    Setup {
        dir,
        source,
        target,
        store,
        env_file,
    }
}

fn redis(args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-n", &REDIS_DB.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Runs the database-restore runbook's shell blocks in order, as one bash script.
fn run_runbook(setup: &Setup) -> std::process::Output {
    let blocks = shell_blocks(&runbook_of("database-restore.yaml"));
    assert!(blocks.len() > 5, "{blocks:?}");
    let script = setup.dir.path().join("runbook.sh");
    std::fs::write(
        &script,
        format!(
            "#!/usr/bin/env bash\nset -euo pipefail\n{}",
            blocks.join("\n")
        ),
    )
    .expect("script");
    let work = setup.dir.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    Command::new("bash")
        .arg(&script)
        .current_dir(setup.dir.path())
        .env("store", &setup.store)
        .env("wal_store", "")
        .env("env_file", &setup.env_file)
        .env("redis_host", "127.0.0.1")
        .env("RESTORE_URL", setup.target.url())
        .env("REDIS_URL", format!("redis://127.0.0.1:6379/{REDIS_DB}"))
        .env("RUNBOOK_DIR", &work)
        .output()
        .expect("bash")
}

fn databases_like(prefix: &str) -> Vec<String> {
    psql(
        "postgres",
        &format!(
            "SELECT datname FROM pg_database WHERE starts_with(datname, '{prefix}') ORDER BY 1"
        ),
    )
    .lines()
    .map(String::from)
    .collect()
}

#[test]
fn the_database_restore_runbook_restores_the_database_by_hand() {
    let setup = setup();
    redis(&["SET", "runbook:cached", "stale"]);
    let output = run_runbook(&setup);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "the runbook's script failed:\n{stdout}\n{stderr}"
    );

    // The restored database has every table of the source with the same rows.
    let source = setup.source.row_counts();
    assert!(
        source.len() >= 3 && source.iter().any(|(_, rows)| *rows > 1_000),
        "{source:?}"
    );
    assert_eq!(setup.target.row_counts(), source);
    assert_eq!(
        setup
            .target
            .psql("SELECT count(*) FROM pg_largeobject_metadata"),
        setup
            .source
            .psql("SELECT count(*) FROM pg_largeobject_metadata")
    );
    assert_eq!(
        setup
            .target
            .psql("SELECT count(*) FROM pg_tables WHERE tablename = 'before_the_restore'"),
        "0",
        "the target was replaced"
    );
    // The database it replaced is kept; no scratch database is left.
    let made = databases_like(&format!("{}_", setup.target.name));
    assert!(made.iter().any(|n| n.contains("_before_")), "{made:?}");
    assert!(!made.iter().any(|n| n.contains("_restore_")), "{made:?}");
    // The application points at it, the old file kept; the cache is empty.
    let env = std::fs::read_to_string(&setup.env_file).expect("env file");
    assert_eq!(
        env,
        format!(
            "RAILS_ENV=production\nDATABASE_URL='{}'\n",
            setup.target.url()
        )
    );
    let previous = std::fs::read_to_string(format!("{}.previous", setup.env_file.display()))
        .expect("previous env file");
    assert!(previous.contains("postgres://old@a/b"), "{previous}");
    assert_eq!(redis(&["DBSIZE"]), "0");
    // The steps said what they checked.
    assert!(stdout.contains("each as in the backup"), "{stdout}");
    assert!(stdout.contains("swapped:"), "{stdout}");
    assert!(
        !stdout.contains("STOP") && !stderr.contains("STOP"),
        "{stderr}"
    );
}

#[test]
fn a_corrupt_backup_stops_the_runbook_before_the_target_is_touched() {
    let setup = setup();
    let dump = std::fs::read_dir(&setup.store)
        .expect("store")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "dump"))
        .expect("a dump");
    let mut bytes = std::fs::read(&dump).expect("dump");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&dump, bytes).expect("flip a byte");
    let output = run_runbook(&setup);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("STOP:") && stderr.contains("SHA-256 differs from its manifest's"),
        "{stderr}"
    );
    assert_eq!(
        setup
            .target
            .psql("SELECT count(*) FROM pg_tables WHERE tablename = 'before_the_restore'"),
        "1",
        "the target was touched"
    );
    assert!(databases_like(&format!("{}_", setup.target.name)).is_empty());
    let env = std::fs::read_to_string(&setup.env_file).expect("env file");
    assert!(env.contains("postgres://old@a/b"), "{env}");
}
