//! The restore swap's tests (tests/restore_swap.rs, tests/restore_interrupted.rs): backups
//! made with drillbook's own `backup` step, restores run through a playbook of one step, and
//! what a database is, read independently of drillbook (psql, pg_dump, /proc).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::drill::{json_report, step};
use super::pg::{TestDb, fixture, psql};
use super::{Drillbook, Output, minutes, run_ids, wait_for};

/// A role of the test's own, dropped (after the databases it owns) when the guard goes.
pub struct Role(pub String);

impl Role {
    pub fn create(prefix: &str, attributes: &str) -> Role {
        let name = format!("{prefix}_{}", std::process::id());
        psql(
            "postgres",
            &format!("DROP ROLE IF EXISTS {name}; CREATE ROLE {name} {attributes}"),
        );
        Role(name)
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args(["-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d"])
            .args(["postgres", "-c"])
            .arg(format!("DROP ROLE IF EXISTS {}", self.0))
            .output();
    }
}

/// Backs `source` up into a local store with drillbook's own `backup` step: (store, key).
pub fn backup(dir: &Path, source: &TestDb) -> (PathBuf, String) {
    let store = dir.join("store");
    let file = dir.join("backup.yaml");
    std::fs::write(
        &file,
        format!(
            "version: 1\nname: take\nsecrets: [DATABASE_URL]\nsteps:\n  - id: backup\n    kind: backup\n    database: \"{{{{ secrets.DATABASE_URL }}}}\"\n    store: \"{}\"\n",
            store.display()
        ),
    )
    .expect("playbook");
    let before = run_ids(dir);
    let output = Drillbook::in_dir(dir)
        .args(&["run", file.to_str().expect("path")])
        .env("DATABASE_URL", source.url())
        .deadline(minutes(3))
        .run();
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let report = json_report(dir, &new_run(dir, &before));
    let key = step(&report, "backup")["outputs"]["key"]
        .as_str()
        .expect("key")
        .to_string();
    (store, key)
}

/// A backup of the fixture (`rows` rows): its source, the store and the key.
pub fn backed_up(dir: &Path, rows: u64) -> (TestDb, PathBuf, String) {
    let source = TestDb::create("dbk_src");
    fixture(&source, rows, None);
    let (store, key) = backup(dir, &source);
    (source, store, key)
}

/// A target holding a row of its own: `keep_me` (7).
pub fn target() -> TestDb {
    let target = TestDb::create("dbk_target");
    target.psql("CREATE TABLE keep_me (id int); INSERT INTO keep_me VALUES (7)");
    target
}

/// A session on `url`, held as an application holds one, and the runtime that drives it.
pub fn session(url: &str) -> (tokio::runtime::Runtime, tokio_postgres::Client) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        client
    });
    (runtime, client)
}

/// The run started since `before` was listed.
pub fn new_run(dir: &Path, before: &[String]) -> String {
    let mut new: Vec<String> = run_ids(dir)
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    assert_eq!(new.len(), 1, "new runs: {new:?}");
    new.pop().expect("a run")
}

/// The playbook restoring `key` into `target`, with `extra` keys of the step.
pub fn playbook(dir: &Path, store: &Path, key: &str, target: &str, extra: &[&str]) -> PathBuf {
    let mut text = format!(
        "version: 1\nname: swap\nsteps:\n  - id: restore\n    kind: restore\n    backup: \"{key}\"\n    store: \"{}\"\n    target: \"{target}\"\n",
        store.display()
    );
    for line in extra {
        text.push_str(&format!("    {line}\n"));
    }
    let file = dir.join("swap.yaml");
    std::fs::write(&file, text).expect("playbook");
    file
}

/// Runs the restore; returns drillbook's output and the restore step of the run's report.
pub fn restore(
    dir: &Path,
    store: &Path,
    key: &str,
    target: &str,
    extra: &[&str],
) -> (Output, serde_json::Value) {
    let file = playbook(dir, store, key, target, extra);
    let before = run_ids(dir);
    let output = Drillbook::in_dir(dir)
        .args(&["run", file.to_str().expect("path")])
        .deadline(minutes(3))
        .run();
    let report = json_report(dir, &new_run(dir, &before));
    (output, step(&report, "restore").clone())
}

/// Everything a database is, independently of drillbook: its oid, privileges, comment and
/// settings, its schema as pg_dump prints it, and every table's content hash.
pub fn fingerprint(db: &TestDb) -> String {
    let mut text = psql(
        "postgres",
        &format!(
            "SELECT d.oid, d.datacl, shobj_description(d.oid, 'pg_database'),
                    (SELECT array_agg(setconfig ORDER BY setrole) FROM pg_db_role_setting
                      WHERE setdatabase = d.oid)
               FROM pg_database d WHERE datname = '{}'",
            db.name
        ),
    );
    let schema = std::process::Command::new("pg_dump")
        .args(["--schema-only", "-h", "127.0.0.1", "-U", "postgres", "-d"])
        .arg(&db.name)
        .output()
        .expect("pg_dump");
    assert!(schema.status.success(), "pg_dump failed");
    // pg_dump's `\restrict` lines carry a new random key every time.
    for line in String::from_utf8_lossy(&schema.stdout)
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
    {
        text.push('\n');
        text.push_str(line);
    }
    let tables = db.psql(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
          WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    );
    for table in tables.lines().filter(|l| !l.is_empty()) {
        let hash = db.psql(&format!(
            "SELECT md5(coalesce(string_agg(t::text, '' ORDER BY t::text), '')) FROM {table} t"
        ));
        text.push_str(&format!("\n{table} {hash}"));
    }
    text
}

/// The databases whose names start with `<db>_<infix>`.
pub fn beside(db: &TestDb, infix: &str) -> Vec<String> {
    psql(
        "postgres",
        &format!(
            "SELECT datname FROM pg_database WHERE starts_with(datname, '{}_{infix}') ORDER BY 1",
            db.name
        ),
    )
    .lines()
    .map(String::from)
    .collect()
}

pub fn evidence(step: &serde_json::Value) -> Vec<String> {
    step["evidence"]
        .as_array()
        .expect("evidence")
        .iter()
        .map(|line| line.as_str().unwrap_or_default().to_string())
        .collect()
}

/// The pid of the pg_restore restoring into `database`, if one runs.
pub fn pg_restore_into(database: &str) -> Option<i32> {
    let wanted = format!("--dbname={database}");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            (args.first()?.ends_with("pg_restore") && args.contains(&wanted)).then_some(pid)
        })
}

/// A backup whose restore takes at least 5 s, whatever the machine: each row's check
/// sleeps 5 ms in a scratch database (only there: the source is made at once). And a target.
pub fn slow_restore(dir: &Path) -> (TestDb, TestDb, PathBuf, String) {
    let source = TestDb::create("dbk_src");
    source.psql(
        "CREATE FUNCTION slow_ok(int) RETURNS boolean LANGUAGE plpgsql AS $$
         BEGIN
           IF position('_restore_' in current_database()) > 0 THEN PERFORM pg_sleep(0.005); END IF;
           RETURN true;
         END $$;
         CREATE TABLE slow (id int CHECK (slow_ok(id)));
         INSERT INTO slow SELECT generate_series(1, 1000)",
    );
    let (store, key) = backup(dir, &source);
    let target = target();
    (source, target, store, key)
}

/// Starts the restore in the background.
pub fn start(dir: &Path, store: &Path, key: &str, target: &TestDb) -> super::Running {
    let file = playbook(dir, store, key, &target.url(), &[]);
    Drillbook::in_dir(dir)
        .args(&["run", file.to_str().expect("path")])
        .deadline(minutes(3))
        .spawn()
}

/// Waits for pg_restore to be restoring into a scratch database of `target`: its name and
/// pg_restore's pid.
pub fn restoring(target: &TestDb) -> (String, i32) {
    let mut scratch = String::new();
    let mut pg_restore = None;
    wait_for(
        Duration::from_secs(120),
        "pg_restore into a scratch database",
        || {
            if let Some(name) = beside(target, "restore_").pop() {
                pg_restore = pg_restore_into(&name);
                scratch = name;
            }
            pg_restore.is_some()
        },
    );
    (scratch, pg_restore.expect("pg_restore"))
}

/// Resumes `run`, which must succeed: its restore step, from the report.
pub fn resume(dir: &Path, run: &str) -> serde_json::Value {
    let resumed = Drillbook::in_dir(dir)
        .args(&["resume", run])
        .deadline(minutes(3))
        .run();
    assert_eq!(resumed.status, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    step(&json_report(dir, run), "restore").clone()
}

/// A step's output, as text.
pub fn output_of(step: &serde_json::Value, name: &str) -> String {
    step["outputs"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no output {name} in {step}"))
        .to_string()
}
