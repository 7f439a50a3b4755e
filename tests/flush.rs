//! `flush` empties a Redis database, or deletes the keys matching a pattern, on the real Redis
//! at 127.0.0.1:6379. Each test owns one database number (11, 12 or 13) and empties it again
//! when it ends, whatever happened.

mod common;

use std::time::Duration;

use common::{Drillbook, journal, only_run};

/// A database of the local Redis that this test owns: emptied when created and when dropped.
struct Database {
    number: u8,
    connection: redis::Connection,
}

impl Database {
    fn new(number: u8) -> Database {
        let url = format!("redis://127.0.0.1:6379/{number}");
        let mut connection = redis::Client::open(url)
            .and_then(|client| client.get_connection())
            .expect("the local Redis on 127.0.0.1:6379");
        let () = redis::cmd("FLUSHDB")
            .query(&mut connection)
            .expect("FLUSHDB");
        Database { number, connection }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:6379/{}", self.number)
    }

    /// Sets `count` keys named `prefix1`, `prefix2`, ...
    fn seed(&mut self, prefix: &str, count: usize) {
        let mut pipeline = redis::pipe();
        for n in 1..=count {
            pipeline.set(format!("{prefix}{n}"), "value").ignore();
        }
        let () = pipeline.query(&mut self.connection).expect("seed keys");
    }

    fn size(&mut self) -> u64 {
        redis::cmd("DBSIZE")
            .query(&mut self.connection)
            .expect("DBSIZE")
    }

    fn count(&mut self, pattern: &str) -> usize {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query(&mut self.connection)
            .expect("KEYS");
        keys.len()
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _: Result<(), _> = redis::cmd("FLUSHDB").query(&mut self.connection);
    }
}

/// A playbook with one flush step whose parameters are `params` (YAML lines, indented).
/// `REDIS_URL` is declared as a secret when the parameters read it.
fn playbook(params: &str) -> String {
    let secrets = if params.contains("secrets.REDIS_URL") {
        "secrets: [REDIS_URL]\n"
    } else {
        ""
    };
    format!("version: 1\nname: cache\n{secrets}steps:\n  - id: flush\n    kind: flush\n{params}")
}

/// The flush step of the run's JSON report.
fn reported_step(dir: &std::path::Path) -> serde_json::Value {
    let run = only_run(dir);
    let output = Drillbook::in_dir(dir)
        .args(&["report", &run, "--format", "json"])
        .run();
    assert_eq!(output.status, 0, "{}", output.stderr);
    let report: serde_json::Value = serde_json::from_str(&output.stdout).expect("JSON report");
    report["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["id"] == "flush"))
        .cloned()
        .expect("the flush step in the report")
}

#[test]
fn flushdb_empties_the_database_and_reports_the_counts() {
    let mut db = Database::new(11);
    db.seed("key:", 1200);
    let test = Drillbook::new().playbook(
        "p.yaml",
        &playbook(&format!("    redis: \"{}\"\n    scope: db\n", db.url())),
    );
    let dir = test.dir().to_path_buf();
    Drillbook::in_dir(test.dir())
        .args(&["run", "p.yaml"])
        .expect_status(0)
        .run();
    assert_eq!(db.size(), 0);
    let step = reported_step(&dir);
    assert_eq!(step["status"], "succeeded");
    assert_eq!(step["outputs"]["keys_before"], 1200);
    assert_eq!(step["outputs"]["keys_after"], 0);
    assert_eq!(step["outputs"]["deleted"], 1200);
    assert_eq!(
        step["evidence"],
        serde_json::json!([
            "FLUSHDB on 127.0.0.1:6379/11",
            "DBSIZE 1200 before, 0 after"
        ])
    );
}

#[test]
fn a_pattern_deletes_only_the_matching_keys_in_batches() {
    let mut db = Database::new(12);
    db.seed("cache:", 700);
    db.seed("session:", 500);
    let test = Drillbook::new().playbook(
        "p.yaml",
        &playbook(&format!(
            "    redis: \"{}\"\n    pattern: \"cache:*\"\n    batch: 100\n",
            db.url()
        )),
    );
    let dir = test.dir().to_path_buf();
    Drillbook::in_dir(test.dir())
        .args(&["run", "p.yaml"])
        .expect_status(0)
        .run();
    assert_eq!(db.count("cache:*"), 0);
    assert_eq!(db.count("session:*"), 500);
    let step = reported_step(&dir);
    assert_eq!(step["outputs"]["keys_before"], 1200);
    assert_eq!(step["outputs"]["keys_after"], 500);
    assert_eq!(step["outputs"]["deleted"], 700);
    let evidence = step["evidence"].to_string();
    assert!(
        evidence.contains(
            "deleted 700 keys matching `cache:*` in 127.0.0.1:6379/12 with SCAN + UNLINK"
        ),
        "{evidence}"
    );
    assert!(
        evidence.contains("DBSIZE 1200 before, 500 after"),
        "{evidence}"
    );
}

#[test]
fn a_host_other_than_the_expected_one_is_refused_untouched() {
    let mut db = Database::new(13);
    db.seed("key:", 25);
    let test = Drillbook::new().playbook(
        "p.yaml",
        &playbook(&format!(
            "    redis: \"{}\"\n    expect_host: cache.internal\n",
            db.url()
        )),
    );
    let output = Drillbook::in_dir(test.dir())
        .args(&["run", "p.yaml"])
        .expect_status(1)
        .run();
    assert_eq!(db.size(), 25, "nothing may be deleted");
    let message =
        "refusing to flush Redis at 127.0.0.1:6379: this step expects host cache.internal";
    assert!(output.stdout.contains(message), "{}", output.stdout);
    assert!(output.stderr.contains(message), "{}", output.stderr);
}

#[test]
fn an_unreachable_redis_fails_fast_naming_it_without_the_password() {
    let test = Drillbook::new().playbook(
        "p.yaml",
        &playbook("    redis: \"redis://:literal-pw-4412@127.0.0.1:1/13\"\n    timeout: 10s\n"),
    );
    let dir = test.dir().to_path_buf();
    let output = Drillbook::in_dir(test.dir())
        .args(&["run", "p.yaml"])
        .expect_status(1)
        .run();
    assert!(
        output.elapsed < Duration::from_secs(10),
        "took {:?}",
        output.elapsed
    );
    let message = "cannot connect to Redis at 127.0.0.1:1: connection refused";
    assert!(output.stdout.contains(message), "{}", output.stdout);
    let step = reported_step(&dir);
    assert_eq!(step["status"], "failed");
    assert_eq!(step["error"], message);
    // Not the journal: it records the step's parameters as written, and only declared
    // secrets are masked there (the next test).
    let run = only_run(&dir);
    for text in [
        output.stdout,
        output.stderr,
        Drillbook::in_dir(&dir)
            .args(&["report", &run, "--format", "json"])
            .run()
            .stdout,
        Drillbook::in_dir(&dir)
            .args(&["report", &run, "--format", "md"])
            .run()
            .stdout,
    ] {
        assert!(!text.contains("literal-pw-4412"), "{text}");
    }
}

#[test]
fn a_password_from_a_secret_reaches_no_output_and_no_journal() {
    let test = Drillbook::new().playbook(
        "p.yaml",
        &playbook("    redis: \"{{ secrets.REDIS_URL }}\"\n"),
    );
    let dir = test.dir().to_path_buf();
    let output = Drillbook::in_dir(test.dir())
        .args(&["run", "p.yaml"])
        .env("REDIS_URL", "redis://:secret-pw-9931@127.0.0.1:1/13")
        .expect_status(1)
        .run();
    assert!(
        output
            .stdout
            .contains("cannot connect to Redis at 127.0.0.1:1: connection refused"),
        "{}",
        output.stdout
    );
    let run = only_run(&dir);
    let journal = serde_json::to_string(&journal(&dir, &run)).expect("journal");
    for text in [output.stdout, output.stderr, journal] {
        assert!(!text.contains("secret-pw-9931"), "{text}");
    }
}
