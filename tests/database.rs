//! The database recovery path against this machine's PostgreSQL and Redis, with backups in a
//! local directory store (the S3 store has its own tests in database_s3.rs). The shipped
//! playbooks run unchanged; what they did is checked independently (psql, the files).

mod common;

use std::path::{Path, PathBuf};

use common::Output;
use common::argv::{Sampler, unique};
use common::drill::{json_report, run_of, runs_of, shipped, step};
use common::pg::{TestDb, fixture, psql};
use common::{Drillbook, minutes};

fn playbook(name: &str) -> String {
    shipped(name)
}

fn dumps(store: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(store)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p| p.extension().is_some_and(|e| e == "dump"));
    found.sort();
    found
}

fn manifest_of(dump: &Path) -> serde_json::Value {
    let path = PathBuf::from(format!("{}.manifest.json", dump.display()));
    serde_json::from_slice(&std::fs::read(path).expect("manifest")).expect("manifest JSON")
}

/// Runs the shipped nightly backup of `source` into `store`, as the scheduled job does
/// (`--mode live`: `store` is its live target); it must succeed.
fn nightly(dir: &Path, store: &Path, source: &TestDb) -> Output {
    nightly_of(dir, store, &source.url())
}

/// The same, of the database at `url`.
fn nightly_of(dir: &Path, store: &Path, url: &str) -> Output {
    let output = Drillbook::in_dir(dir)
        .args(&[
            "run",
            &playbook("nightly-backup.yaml"),
            "--mode",
            "live",
            "--var",
            &format!("store={}", store.display()),
        ])
        .env("DATABASE_URL", url)
        .deadline(minutes(5))
        .run();
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    output
}

/// A store of backups of a small fixture, and the database they came from.
fn backed_up(dir: &Path, rows: u64) -> (TestDb, PathBuf) {
    let source = TestDb::create("drillbook_src");
    fixture(&source, rows, None);
    let store = dir.join("store");
    nightly(dir, &store, &source);
    (source, store)
}

#[test]
fn nightly_backup_writes_a_dump_and_a_manifest_that_match_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (source, store) = backed_up(dir.path(), 100_000);
    let dumps = dumps(&store);
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    let manifest = manifest_of(&dumps[0]);
    let bytes = std::fs::read(&dumps[0]).expect("dump");
    assert_eq!(manifest["size"], bytes.len() as u64);
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(manifest["sha256"], sha);
    assert_eq!(manifest["format"], "custom");
    // zstd by default: pg_dump wrote it uncompressed, drillbook compressed it.
    assert_eq!(manifest["compression"], 0);
    assert_eq!(manifest["compressed_with"], "zstd");
    let archive = zstd::stream::decode_all(&bytes[..]).expect("one zstd stream");
    assert!(
        archive.starts_with(b"PGDMP"),
        "pg_dump's custom format inside"
    );
    assert_eq!(manifest["database"], source.name.as_str());
    assert_eq!(manifest["large_objects"], 2);
    // The counts, checked independently with psql.
    let recorded: Vec<(String, u64)> = manifest["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| {
            (
                format!(
                    "{}.{}",
                    t["schema"].as_str().unwrap(),
                    t["table"].as_str().unwrap()
                ),
                t["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(recorded, source.row_counts());
    assert_eq!(recorded.iter().map(|(_, n)| n).sum::<u64>(), 100_000);
    assert!(
        bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
        "stored as one zstd stream"
    );
    // The verify step read it back.
    let report = json_report(dir.path(), &run_of(dir.path(), "nightly-backup"));
    assert_eq!(step(&report, "verify")["status"], "succeeded");
    let key = dumps[0].file_name().unwrap().to_string_lossy().to_string();
    assert_eq!(step(&report, "backup")["outputs"]["key"], key.as_str());
}

#[test]
fn monthly_restore_smoke_restores_into_a_throwaway_cluster_and_removes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_source, store) = backed_up(dir.path(), 20_000);
    let output = Drillbook::in_dir(dir.path())
        .args(&[
            "run",
            &playbook("monthly-restore-smoke.yaml"),
            "--var",
            &format!("store={}", store.display()),
        ])
        .deadline(minutes(5))
        .run();
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let report = json_report(dir.path(), &run_of(dir.path(), "monthly-restore-smoke"));
    let smoke = step(&report, "smoke");
    assert_eq!(smoke["outputs"]["passed"], 4, "{smoke}");
    let evidence = smoke["evidence"].to_string();
    assert!(
        evidence.contains("20000 rows, each as in the backup"),
        "{evidence}"
    );
    assert!(
        evidence.contains("2 large objects, 2 in the backup"),
        "{evidence}"
    );
    assert!(
        evidence.contains("3 sequence(s), none behind"),
        "{evidence}"
    );
    assert_eq!(report["objectives"]["rpo"]["met"], true);
    assert_eq!(report["objectives"]["rto"]["met"], true);
    // The throwaway cluster is gone: its directory removed, nothing listening.
    let target = step(&report, "restore")["outputs"]["target"]
        .as_str()
        .expect("target")
        .to_string();
    let run_dir = dir
        .path()
        .join(".drillbook/runs")
        .join(run_of(dir.path(), "monthly-restore-smoke"));
    let clusters = run_dir.join("clusters");
    let left: Vec<_> = std::fs::read_dir(&clusters)
        .map(|e| e.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
    let port = target
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .expect("port");
    assert!(
        std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err(),
        "the throwaway cluster still listens on {port}"
    );
}

/// A drill's targets: `staging` and Redis database 14 (production's are left unset: the
/// drill compares with the playbook's `targets.identity`).
fn restore_playbook_env(staging: &str) -> Vec<(&str, &str)> {
    vec![
        ("DRILL_RESTORE_URL", staging),
        ("DRILL_REDIS_URL", "redis://127.0.0.1:6379/14"),
    ]
}

fn restore_args(store: &Path, env_file: &Path) -> Vec<String> {
    vec![
        "run".into(),
        playbook("database-restore.yaml"),
        "--approve-all".into(),
        "--var".into(),
        format!("store={}", store.display()),
        "--var".into(),
        format!("drill_env_file={}", env_file.display()),
        "--var".into(),
        "drill_redis_host=127.0.0.1".into(),
    ]
}

fn redis(args: &[&str]) -> String {
    let output = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-n", "14"])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn database_restore_drill_restores_smoke_tests_skips_promote_and_flushes_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (source, store) = backed_up(dir.path(), 10_000);
    let staging = TestDb::create("drillbook_staging");
    for i in 0..300 {
        redis(&["SET", &format!("cache:{i}"), "stale"]);
    }
    assert_eq!(redis(&["DBSIZE"]), "300");
    let env_file = dir.path().join("app.env");
    std::fs::write(&env_file, "DATABASE_URL=postgres://old@db/app\n").expect("env file");
    let args = restore_args(&store, &env_file);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let staging_url = staging.url();
    let output = Drillbook::in_dir(dir.path())
        .args(&args)
        .envs(restore_playbook_env(&staging_url))
        .deadline(minutes(5))
        .run();
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    assert_eq!(staging.row_counts(), source.row_counts());
    assert_eq!(redis(&["DBSIZE"]), "0");
    // Promote is live-only: a drill leaves the application's env file alone.
    assert_eq!(
        std::fs::read_to_string(&env_file).expect("env file"),
        "DATABASE_URL=postgres://old@db/app\n"
    );
    let report = json_report(dir.path(), &run_of(dir.path(), "database-restore"));
    // No WAL archive named for the drill (`drill_wal_store` empty): nothing to assess there.
    assert_eq!(step(&report, "assess_archive")["status"], "skipped");
    let promote = step(&report, "promote");
    assert_eq!(promote["status"], "skipped");
    assert!(
        promote["skipped_reason"]
            .as_str()
            .unwrap_or("")
            .contains("live"),
        "{promote}"
    );
    assert_eq!(step(&report, "flush")["outputs"]["keys_before"], 300);
    for objective in ["rto", "rpo"] {
        assert_eq!(report["objectives"][objective]["met"], true, "{objective}");
        assert!(report["objectives"][objective]["achieved_seconds"].is_number());
    }
    assert!(output.stdout.contains("RTO"), "{}", output.stdout);
    assert!(output.stdout.contains("RPO"), "{}", output.stdout);
}

#[test]
fn a_dump_with_one_flipped_byte_fails_before_pg_restore_and_leaves_the_target_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_source, store) = backed_up(dir.path(), 5_000);
    let dump = dumps(&store).pop().expect("dump");
    let mut bytes = std::fs::read(&dump).expect("dump");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&dump, &bytes).expect("flip");
    let staging = TestDb::create("drillbook_staging");
    staging.psql("CREATE TABLE keep_me (id int); INSERT INTO keep_me VALUES (7)");
    let env_file = dir.path().join("app.env");
    std::fs::write(&env_file, "DATABASE_URL=x\n").expect("env file");
    let args = restore_args(&store, &env_file);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let staging_url = staging.url();
    let output = Drillbook::in_dir(dir.path())
        .args(&args)
        .envs(restore_playbook_env(&staging_url))
        .deadline(minutes(5))
        .run();
    assert_eq!(output.status, 1, "{}\n{}", output.stdout, output.stderr);
    assert!(
        output.stdout.contains("does not match its manifest"),
        "{}",
        output.stdout
    );
    assert!(
        output.stdout.contains("the target was not touched"),
        "{}",
        output.stdout
    );
    assert_eq!(
        staging.psql("SELECT string_agg(tablename, ',') FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"),
        "keep_me"
    );
    assert_eq!(staging.psql("SELECT id FROM keep_me"), "7");
    let run = run_of(dir.path(), "database-restore");
    assert!(
        !dir.path()
            .join(".drillbook/runs")
            .join(&run)
            .join("output/restore.1.pg_restore.stderr")
            .exists(),
        "pg_restore must not have run"
    );
}

#[test]
fn assess_skips_a_truncated_upload_and_picks_the_backup_before_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (source, store) = backed_up(dir.path(), 2_000);
    // A second backup, then its dump cut short as an interrupted copy would leave it.
    nightly(dir.path(), &store, &source);
    let all = dumps(&store);
    assert_eq!(all.len(), 2);
    let bytes = std::fs::read(&all[1]).expect("dump");
    std::fs::write(&all[1], &bytes[..bytes.len() / 3]).expect("truncate");
    let output = Drillbook::in_dir(dir.path())
        .args(&[
            "run",
            &playbook("monthly-restore-smoke.yaml"),
            "--var",
            &format!("store={}", store.display()),
        ])
        .deadline(minutes(5))
        .run();
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let report = json_report(dir.path(), &run_of(dir.path(), "monthly-restore-smoke"));
    let assess = step(&report, "assess");
    let older = all[0].file_name().unwrap().to_string_lossy().to_string();
    let newer = all[1].file_name().unwrap().to_string_lossy().to_string();
    assert_eq!(assess["outputs"]["backup"], older.as_str());
    let evidence = assess["evidence"].to_string();
    assert!(
        evidence.contains(&format!("skipped {newer}: size mismatch")),
        "{evidence}"
    );
}

#[test]
fn a_backup_older_than_the_rpo_ends_in_exit_3_with_both_figures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_source, store) = backed_up(dir.path(), 1_000);
    // The incident was declared three hours after the backup: the RPO of 1h is missed. Three
    // hours from now is in the future, which drillbook refuses: its clock runs three hours
    // ahead here.
    let dump = dumps(&store).pop().expect("dump");
    let taken = manifest_of(&dump)["snapshot_at"]
        .as_str()
        .expect("snapshot_at")
        .parse::<jiff::Timestamp>()
        .expect("time");
    let declared = taken + jiff::SignedDuration::from_hours(3);
    let output = Drillbook::in_dir(dir.path())
        .args(&[
            "run",
            &playbook("monthly-restore-smoke.yaml"),
            "--declared-at",
            &declared.to_string(),
            "--var",
            &format!("store={}", store.display()),
        ])
        .env("DRILLBOOK_CLOCK_OFFSET", "3h")
        .deadline(minutes(5))
        .run();
    assert_eq!(output.status, 3, "{}\n{}", output.stdout, output.stderr);
    let report = json_report(dir.path(), &run_of(dir.path(), "monthly-restore-smoke"));
    let rpo = &report["objectives"]["rpo"];
    assert_eq!(rpo["objective_seconds"].as_f64(), Some(3600.0));
    assert_eq!(
        rpo["achieved_seconds"].as_f64().map(|s| s.round()),
        Some(10800.0)
    );
    assert_eq!(rpo["met"], false);
    assert!(output.stdout.contains("MISSED"), "{}", output.stdout);
}

#[test]
fn an_unreachable_database_is_named_without_its_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let file = dir.path().join("unreachable.yaml");
    std::fs::write(
        &file,
        format!(
            "version: 1\nname: unreachable\nsecrets: [DATABASE_URL]\nsteps:\n  - id: backup\n    kind: backup\n    database: \"{{{{ secrets.DATABASE_URL }}}}\"\n    store: {}\n    timeout: 30s\n",
            store.display()
        ),
    )
    .expect("playbook");
    let output = Drillbook::in_dir(dir.path())
        .args(&["run", file.to_str().unwrap()])
        .env(
            "DATABASE_URL",
            "postgres://app:hunter2-secret@127.0.0.1:1/app",
        )
        .deadline(minutes(1))
        .run();
    assert_eq!(output.status, 1, "{}", output.stderr);
    assert!(
        output
            .stdout
            .contains("cannot connect to PostgreSQL at app@127.0.0.1:1/app"),
        "{}",
        output.stdout
    );
    let everything = format!("{}{}", output.stdout, output.stderr);
    assert!(!everything.contains("hunter2"), "{everything}");
    assert!(dumps(&store).is_empty());
}

/// A restore of the backup in `@STORE@` into `RESTORE_URL`, smoke-tested, then queried with psql:
/// the secrets go to the programs through their environment.
const RESTORE_THROUGH_THE_ENVIRONMENT: &str = r#"version: 1
name: restore-argv
secrets: [RESTORE_URL, TOKEN]
steps:
  - id: assess
    kind: assess
    store: "@STORE@"
  - id: restore
    kind: restore
    backup: "{{ steps.assess.outputs.backup }}"
    store: "@STORE@"
    target: "{{ secrets.RESTORE_URL }}"
  - id: smoke
    kind: smoke-test
    database: "{{ secrets.RESTORE_URL }}"
    checks:
      - sql: "SELECT count(*) FROM shop.orders"
        expect: ">= 1"
      - name: the token reaches a check's program in its environment
        command: [sh, -c, 'case "$TOKEN" in argv-token-*) sleep 0.3 ;; *) exit 1 ;; esac']
        env: { TOKEN: "{{ secrets.TOKEN }}" }
  - id: query
    kind: command
    database: "{{ secrets.RESTORE_URL }}"
    env: { TOKEN: "{{ secrets.TOKEN }}" }
    run: [psql, --no-psqlrc, --tuples-only, --no-align, "--command=SELECT count(*) FROM shop.orders, pg_sleep(0.3)"]
"#;

/// No secret on any process's command line while drillbook backs up and restores: a sampler
/// reads every process's arguments every 10 ms. It can fail: first it sees a canary that a step
/// does put on a command line. The database password is long, unique and ignored (trust auth),
/// so where it would show, it could only come from drillbook.
#[test]
fn no_secret_is_on_any_command_line_during_a_backup_and_a_restore() {
    let dir = tempfile::tempdir().expect("tempdir");
    let canary = unique("argv-canary");
    let sampler = Sampler::start(&[&canary], &[]);
    Drillbook::in_dir(dir.path())
        .playbook(
            "canary.yaml",
            &format!(
                "version: 1\nname: canary\nsteps:\n  - {{ id: show, kind: command, run: [sh, -c, \"sleep 0.3\", \"{canary}\"] }}\n"
            ),
        )
        .args(&["run", "canary.yaml"])
        .expect_status(0)
        .run();
    let seen = sampler.stop();
    assert!(
        seen.leaks
            .get(&canary)
            .is_some_and(|lines| lines.contains(&format!("sh -c sleep 0.3 {canary} "))),
        "the sampler missed the canary: {seen:?}"
    );

    let password = unique("argv-password");
    let token = unique("argv-token");
    let with_password = |db: &TestDb| {
        db.url()
            .replacen("postgres@", &format!("postgres:{password}@"), 1)
    };
    let source = TestDb::create("drillbook_src");
    fixture(&source, 50_000, None);
    let staging = TestDb::create("drillbook_staging");
    let store = dir.path().join("store");
    let watched = [
        "bin/pg_dump ",
        "bin/pg_restore ",
        "psql --no-psqlrc",
        "sh -c case",
    ];
    let sampler = Sampler::start(&[&password, &token], &watched);
    nightly_of(dir.path(), &store, &with_password(&source));
    let restore = Drillbook::in_dir(dir.path())
        .playbook(
            "restore.yaml",
            &RESTORE_THROUGH_THE_ENVIRONMENT.replace("@STORE@", &store.display().to_string()),
        )
        .args(&["run", "restore.yaml"])
        .env("RESTORE_URL", with_password(&staging))
        .env("TOKEN", &token)
        .deadline(minutes(5))
        .run();
    let seen = sampler.stop();
    assert_eq!(restore.status, 0, "{}\n{}", restore.stdout, restore.stderr);
    seen.assert_no_secret_while_all_ran();
    assert_eq!(staging.row_counts(), source.row_counts());
    // psql found the restored database through PGHOST, PGDATABASE… alone.
    let report = json_report(dir.path(), &run_of(dir.path(), "restore-argv"));
    let orders = staging.psql("SELECT count(*) FROM shop.orders");
    assert_eq!(
        step(&report, "query")["outputs"]["stdout"],
        format!("{orders}\n")
    );
}

#[test]
fn missing_roles_fail_the_restore_with_the_errors_listed_unless_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let role = format!("drillbook_role_{}", std::process::id());
    psql(
        "postgres",
        &format!("DROP ROLE IF EXISTS {role}; CREATE ROLE {role}"),
    );
    let source = TestDb::create("drillbook_src");
    fixture(&source, 1_000, Some(&role));
    let store = dir.path().join("store");
    nightly(dir.path(), &store, &source);
    // The role exists no more where the backup is restored.
    source.psql(&format!("REVOKE ALL ON shop.orders FROM {role}"));
    psql("postgres", &format!("DROP ROLE {role}"));

    let restore = |allow: &str| -> Output {
        let staging = TestDb::create("drillbook_staging");
        let text = format!(
            "version: 1\nname: roles\nsteps:\n  - id: restore\n    kind: restore\n    backup: \"{}\"\n    store: \"{}\"\n    target: \"{}\"\n{allow}",
            dumps(&store)[0].file_name().unwrap().to_string_lossy(),
            store.display(),
            staging.url()
        );
        let file = dir.path().join("roles.yaml");
        std::fs::write(&file, text).expect("playbook");
        Drillbook::in_dir(dir.path())
            .args(&["run", file.to_str().unwrap()])
            .deadline(minutes(5))
            .run()
    };
    let backup = restore("");
    assert_eq!(backup.status, 1, "{}", backup.stdout);
    assert!(
        backup
            .stdout
            .contains("pg_restore reported 1 error(s) not allowed by allow_errors"),
        "{}",
        backup.stdout
    );
    assert!(
        backup
            .stdout
            .contains(&format!("role \"{role}\" does not exist")),
        "{}",
        backup.stdout
    );
    let allowed = restore("    allow_errors: ['role \".*\" does not exist']\n");
    assert_eq!(allowed.status, 0, "{}", allowed.stdout);
    let last = runs_of(dir.path(), "roles")
        .into_iter()
        .find(|id| json_report(dir.path(), id)["exit_code"] == 0)
        .expect("the run with allow_errors");
    let report = json_report(dir.path(), &last);
    assert_eq!(step(&report, "restore")["outputs"]["errors_ignored"], 1);
}

#[test]
fn a_directory_format_backup_is_dumped_in_parallel_and_restores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = TestDb::create("drillbook_src");
    fixture(&source, 30_000, None);
    let store = dir.path().join("store");
    let file = dir.path().join("directory.yaml");
    std::fs::write(
        &file,
        format!(
            r#"version: 1
name: directory
secrets: [DATABASE_URL]
steps:
  - id: backup
    kind: backup
    database: "{{{{ secrets.DATABASE_URL }}}}"
    store: {store}
    format: directory
    jobs: 2
  - id: restore
    kind: restore
    backup: "{{{{ steps.backup.outputs.key }}}}"
    store: {store}
    target: ephemeral
    jobs: 2
  - id: smoke
    kind: smoke-test
    database: "{{{{ steps.restore.outputs.target }}}}"
    store: {store}
    backup: "{{{{ steps.backup.outputs.key }}}}"
    checks:
      - row_counts: true
      - large_objects: true
      - sequences: true
"#,
            store = store.display()
        ),
    )
    .expect("playbook");
    let output = Drillbook::in_dir(dir.path())
        .args(&["run", file.to_str().unwrap()])
        .env("DATABASE_URL", source.url())
        .deadline(minutes(5))
        .run();
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let dump = dumps(&store).pop().expect("dump");
    assert_eq!(manifest_of(&dump)["format"], "directory");
    let listing = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&dump)
        .output()
        .expect("tar");
    assert!(
        String::from_utf8_lossy(&listing.stdout).contains("toc.dat"),
        "a tar of pg_dump's directory"
    );
    let report = json_report(dir.path(), &run_of(dir.path(), "directory"));
    assert_eq!(step(&report, "smoke")["outputs"]["passed"], 3);
    // Scratch copies are gone.
    let run_dir = dir
        .path()
        .join(".drillbook/runs")
        .join(run_of(dir.path(), "directory"));
    let tmp: Vec<_> = std::fs::read_dir(run_dir.join("tmp"))
        .map(|e| e.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "{tmp:?}");
}

#[test]
fn a_wrong_password_is_named_with_host_and_port_but_not_the_password() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let base = tempfile::tempdir().expect("tempdir");
    let cluster = runtime
        .block_on(drillbook::connect::cluster::Cluster::create(
            base.path(),
            "auth",
            None,
        ))
        .expect("a cluster of our own");
    struct Teardown(drillbook::connect::cluster::Cluster);
    impl Drop for Teardown {
        fn drop(&mut self) {
            let _ = self.0.destroy_blocking();
        }
    }
    let cluster = Teardown(cluster);
    // Passwords required on 127.0.0.1, as on a real server.
    let port = cluster.0.port;
    let admin = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        client
            .batch_execute("ALTER USER postgres PASSWORD 'right-one'")
            .await
            .expect("password");
        std::fs::write(
            cluster.0.dir.join("data/pg_hba.conf"),
            "host all all 127.0.0.1/32 scram-sha-256\n",
        )
        .expect("pg_hba.conf");
        client
            .batch_execute("SELECT pg_reload_conf()")
            .await
            .expect("reload");
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("auth.yaml");
    std::fs::write(
        &file,
        "version: 1\nname: auth\nsecrets: [DATABASE_URL]\nsteps:\n  - id: backup\n    kind: backup\n    database: \"{{ secrets.DATABASE_URL }}\"\n    store: store\n",
    )
    .expect("playbook");
    let url = format!("postgres://postgres:not-the-right-one@127.0.0.1:{port}/postgres");
    let output = Drillbook::in_dir(dir.path())
        .args(&["run", file.to_str().unwrap()])
        .env("DATABASE_URL", &url)
        .deadline(minutes(1))
        .run();
    assert_eq!(output.status, 1, "{}", output.stderr);
    assert!(
        output.stdout.contains(&format!(
            "cannot connect to PostgreSQL at postgres@127.0.0.1:{port}/postgres: password authentication failed for user \"postgres\""
        )),
        "{}",
        output.stdout
    );
    let everything = format!("{}{}", output.stdout, output.stderr);
    assert!(!everything.contains("not-the-right-one"), "{everything}");
}

#[test]
fn backups_older_than_prune_older_than_are_removed_and_the_new_one_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).expect("store");
    // Two old backups (40 and 35 days) and a recent one (2 days), as earlier nights left them.
    let now = jiff::Timestamp::now();
    let mut keys = Vec::new();
    for days in [40, 35, 2] {
        let at = now - jiff::SignedDuration::from_hours(24 * days);
        let key = format!("{}.dump", at.strftime("%Y%m%dT%H%M%S%.3fZ"));
        std::fs::write(store.join(&key), b"old").expect("dump");
        std::fs::write(store.join(format!("{key}.manifest.json")), b"{}").expect("manifest");
        keys.push(key);
    }
    let source = TestDb::create("drillbook_src");
    fixture(&source, 1_000, None);
    nightly(dir.path(), &store, &source);
    let left: Vec<String> = dumps(&store)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(left[0], keys[2], "the 2-day-old backup stays");
    assert!(!store.join(format!("{}.manifest.json", keys[0])).exists());
    let report = json_report(dir.path(), &run_of(dir.path(), "nightly-backup"));
    assert!(
        step(&report, "backup")["evidence"]
            .to_string()
            .contains("pruned 2 backup(s) older than 30d"),
        "{report}"
    );
}
