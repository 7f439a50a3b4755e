//! The database recovery path with its backups in S3: the shipped playbooks (and one of our
//! own) run through the real binary against this machine's PostgreSQL and a real S3 server
//! (s3s-fs on loopback, started in-process). What drillbook stored is read back over S3 and
//! checked independently (our own SHA-256, psql's row counts).

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Output;
use common::drill::{json_report, run_of, shipped, step};
use common::pg::{TestDb, fixture};
use common::s3::S3Server;
use common::{Drillbook, Running, minutes};
use drillbook::connect::store::Store;
use sha2::{Digest, Sha256};

fn playbook(name: &str) -> String {
    shipped(name)
}

/// A bucket name no other test (or earlier run of this one) uses.
fn bucket_name(label: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "drillbook-{label}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs `work` against the store at `url`, opened in-process over S3 (HTTP, the server's
/// credentials), in a runtime of its own.
fn with_store<T>(server: &S3Server, url: &str, work: impl AsyncFnOnce(&Store) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = Store::open_with(url, &server.settings())
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
        work(&store).await
    })
}

/// Every key in the store at `url` (sorted), as an S3 listing shows it.
fn keys(server: &S3Server, url: &str) -> Vec<String> {
    with_store(server, url, async |store| {
        store
            .list("")
            .await
            .expect("list")
            .into_iter()
            .map(|object| object.key)
            .collect()
    })
}

fn read_object(server: &S3Server, url: &str, key: &str) -> Vec<u8> {
    with_store(server, url, async |store| {
        store
            .get_bytes(key)
            .await
            .unwrap_or_else(|e| panic!("read {key}: {e}"))
    })
}

/// The only backup in the store: its key, its bytes and its manifest, read back over S3.
/// Nothing else may be there.
fn only_backup(server: &S3Server, url: &str) -> (String, Vec<u8>, serde_json::Value) {
    let keys = keys(server, url);
    let dumps: Vec<&String> = keys.iter().filter(|k| k.ends_with(".dump")).collect();
    assert_eq!(dumps.len(), 1, "{keys:?}");
    let dump = dumps[0].clone();
    let manifest_key = format!("{dump}.manifest.json");
    assert_eq!(keys, vec![dump.clone(), manifest_key.clone()]);
    let bytes = read_object(server, url, &dump);
    let manifest =
        serde_json::from_slice(&read_object(server, url, &manifest_key)).expect("manifest JSON");
    (dump, bytes, manifest)
}

/// The manifest describes exactly these bytes.
fn assert_manifest_matches(manifest: &serde_json::Value, dump: &str, bytes: &[u8]) {
    assert_eq!(manifest["key"], dump, "{manifest}");
    assert_eq!(manifest["size"], bytes.len() as u64, "{manifest}");
    assert_eq!(manifest["sha256"], sha256_hex(bytes).as_str(), "{manifest}");
    let archive = if manifest["compressed_with"] == "zstd" {
        zstd::stream::decode_all(bytes).expect("one zstd stream")
    } else {
        bytes.to_vec()
    };
    assert!(archive.starts_with(b"PGDMP"), "a custom-format archive");
}

/// `schema.table` and rows, as the manifest records them.
fn recorded_counts(manifest: &serde_json::Value) -> Vec<(String, u64)> {
    manifest["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| {
            (
                format!(
                    "{}.{}",
                    t["schema"].as_str().expect("schema"),
                    t["table"].as_str().expect("table")
                ),
                t["rows"].as_u64().expect("rows"),
            )
        })
        .collect()
}

/// nightly-backup.yaml of `source` into `store`, as the scheduled job runs it (`--mode live`).
fn nightly(dir: &Path, server: &S3Server, source: &TestDb, store: &str) -> Output {
    Drillbook::in_dir(dir)
        .args(&[
            "run",
            &playbook("nightly-backup.yaml"),
            "--mode",
            "live",
            "--var",
            &format!("store={store}"),
        ])
        .envs(server.env())
        .env("DATABASE_URL", source.url())
        .deadline(minutes(2))
        .run()
}

/// A server with one bucket, and the URL of a store under its `production` prefix.
fn server_with_bucket(label: &str) -> (S3Server, String) {
    let server = S3Server::start();
    let bucket = bucket_name(label);
    server.create_bucket(&bucket);
    (server, format!("s3://{bucket}/production"))
}

#[test]
fn nightly_backup_into_s3_matches_the_database() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, store) = server_with_bucket("nightly");
    let source = TestDb::create("drillbook_s3src");
    fixture(&source, 100_000, None);

    let output = nightly(dir.path(), &server, &source, &store);
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);

    let (dump, bytes, manifest) = only_backup(&server, &store);
    assert_manifest_matches(&manifest, &dump, &bytes);
    // What S3 served is what s3s-fs has on its disk.
    let bucket = store
        .trim_start_matches("s3://")
        .split('/')
        .next()
        .expect("bucket");
    let on_disk = std::fs::read(server.root.join(bucket).join("production").join(&dump))
        .expect("the dump in s3s-fs's directory");
    assert!(
        on_disk == bytes,
        "the served dump differs from the stored one"
    );
    assert_eq!(manifest["format"], "custom");
    assert_eq!(manifest["compression"], 0);
    assert_eq!(manifest["compressed_with"], "zstd");
    assert_eq!(manifest["database"], source.name.as_str());
    assert_eq!(manifest["large_objects"], 2);
    // The counts, checked independently with psql.
    let recorded = recorded_counts(&manifest);
    assert_eq!(recorded, source.row_counts());
    assert_eq!(recorded.iter().map(|(_, n)| n).sum::<u64>(), 100_000);

    let report = json_report(dir.path(), &run_of(dir.path(), "nightly-backup"));
    let backup = step(&report, "backup");
    assert_eq!(backup["outputs"]["key"], dump.as_str());
    assert_eq!(backup["outputs"]["sha256"], sha256_hex(&bytes).as_str());
    assert_eq!(step(&report, "verify")["status"], "succeeded");
    eprintln!(
        "nightly backup into S3: {} bytes dumped, {:.1} s in all",
        bytes.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn monthly_restore_smoke_from_s3() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, store) = server_with_bucket("monthly");
    let source = TestDb::create("drillbook_s3src");
    fixture(&source, 20_000, None);
    let output = nightly(dir.path(), &server, &source, &store);
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let (dump, _, _) = only_backup(&server, &store);

    let output = Drillbook::in_dir(dir.path())
        .args(&[
            "run",
            &playbook("monthly-restore-smoke.yaml"),
            "--var",
            &format!("store={store}"),
        ])
        .envs(server.env())
        .deadline(minutes(3))
        .run();
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let report = json_report(dir.path(), &run_of(dir.path(), "monthly-restore-smoke"));
    assert_eq!(step(&report, "assess")["outputs"]["backup"], dump.as_str());
    let smoke = step(&report, "smoke");
    assert_eq!(smoke["status"], "succeeded", "{smoke}");
    assert_eq!(smoke["outputs"]["passed"], 4, "{smoke}");
    let evidence = smoke["evidence"].to_string();
    for expected in [
        "20000 rows, each as in the backup",
        "2 large objects, 2 in the backup",
        "3 sequence(s), none behind",
    ] {
        assert!(evidence.contains(expected), "{expected}: {evidence}");
    }
    assert_eq!(report["objectives"]["rpo"]["met"], true);
    assert_eq!(report["objectives"]["rto"]["met"], true);
    eprintln!(
        "monthly restore smoke from S3: {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
}

/// How many attempts the report shows for a step.
fn attempts(step: &serde_json::Value) -> usize {
    step["attempts"].as_array().expect("attempts").len()
}

#[test]
fn s3_errors_are_retried_with_backoff() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, store) = server_with_bucket("retry");
    let source = TestDb::create("drillbook_s3src");
    fixture(&source, 5_000, None);

    // A small dump is one PutObject, the first PUT of the run (the manifest is the second):
    // the first three answers are 503 SlowDown.
    server.fail_next("PUT", 3);
    let output = nightly(dir.path(), &server, &source, &store);
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    assert_eq!(server.failed(), 3);
    let (dump, bytes, manifest) = only_backup(&server, &store);
    assert_manifest_matches(&manifest, &dump, &bytes);
    assert_eq!(recorded_counts(&manifest), source.row_counts());
    // The client retried the requests: the step itself ran once.
    let report = json_report(dir.path(), &run_of(dir.path(), "nightly-backup"));
    assert_eq!(attempts(step(&report, "backup")), 1, "{report}");
    let backed_up = started.elapsed();

    // Reads: the first three GETs of the restore (assess's listing) fail.
    server.fail_next("GET", 3);
    let output = Drillbook::in_dir(dir.path())
        .args(&[
            "run",
            &playbook("monthly-restore-smoke.yaml"),
            "--var",
            &format!("store={store}"),
        ])
        .envs(server.env())
        .deadline(minutes(3))
        .run();
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    assert_eq!(server.failed(), 6);
    let report = json_report(dir.path(), &run_of(dir.path(), "monthly-restore-smoke"));
    assert_eq!(attempts(step(&report, "assess")), 1, "{report}");
    assert_eq!(step(&report, "smoke")["outputs"]["passed"], 4);
    eprintln!(
        "S3 retries: backup {:.1} s, restore {:.1} s",
        backed_up.as_secs_f64(),
        (started.elapsed() - backed_up).as_secs_f64()
    );
}

/// Rows of random hex in the table the kill test dumps: 400k of them make about 16 MB at
/// compression 1 (random hex compresses to about half).
const BIG_ROWS: u64 = 800_000;

/// Processes whose parent is `parent` and whose command name is `name`.
fn children_named(parent: u32, name: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map_or("", |(_, comm)| comm);
        let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if comm == name && ppid == Some(parent) {
            found.push(pid);
        }
    }
    found
}

/// Files under `directory`, recursively, relative to it.
fn files_under(directory: &Path) -> Vec<String> {
    common::walk(directory)
        .iter()
        .map(|relative| relative.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_backup_killed_mid_upload_leaves_nothing_visible_and_resume_finishes() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = S3Server::start();
    let bucket = bucket_name("killed");
    server.create_bucket(&bucket);
    let store = format!("s3://{bucket}/prod");
    let source = TestDb::create("drillbook_big");
    source.psql(&format!(
        "CREATE TABLE big (id bigserial PRIMARY KEY, payload text);
         INSERT INTO big (payload)
             SELECT md5(random()::text) || md5(random()::text)
               FROM generate_series(1, {BIG_ROWS})"
    ));
    let filled = started.elapsed();
    std::fs::write(
        dir.path().join("big-backup.yaml"),
        format!(
            "version: 1\nname: big-backup\nsecrets: [DATABASE_URL]\nsteps:\n  - id: backup\n    kind: backup\n    database: \"{{{{ secrets.DATABASE_URL }}}}\"\n    store: {store}\n    compression: 1\n    timeout: 5m\n"
        ),
    )
    .expect("playbook");

    let mut child = Drillbook::in_dir(dir.path())
        .args(&["run", "big-backup.yaml"])
        .envs(server.env())
        .env("DATABASE_URL", source.url())
        .spawn();
    let logs = |child: &Running| {
        let (stdout, stderr) = child.output_so_far();
        format!("{stdout}\n{stderr}")
    };
    // The upload has begun once s3s-fs holds it and drillbook's marker for it is written
    // (right after the upload is created, before its first part).
    let markers = server.root.join(&bucket).join(".drillbook-incomplete");
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.upload_files().is_empty() || files_under(&markers).is_empty() {
        if let Some(status) = child.try_wait() {
            panic!(
                "drillbook ended ({status}) before its multipart upload began\n{}",
                logs(&child)
            );
        }
        assert!(
            Instant::now() < deadline,
            "no multipart upload began within 30 s\n{}",
            logs(&child)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // pg_dump may already have written everything (drillbook buffers a few parts).
    let pg_dumps: Vec<i32> = children_named(child.id(), "pg_dump")
        .into_iter()
        .filter(|&pid| common::alive(pid))
        .collect();
    let status = child.kill();
    let killed_at = started.elapsed();
    assert_eq!(status.code(), None, "killed by a signal\n{}", logs(&child));

    // The upload was under way: its parts and drillbook's marker are on the server...
    assert!(!server.upload_files().is_empty());
    assert_eq!(
        files_under(&markers).len(),
        1,
        "{:?}",
        files_under(&markers)
    );
    // ... and nothing of it is visible: no dump, no manifest.
    let whole_bucket = format!("s3://{bucket}");
    assert_eq!(keys(&server, &whole_bucket), Vec::<String>::new());
    assert_eq!(
        files_under(&server.root.join(&bucket).join("prod")),
        Vec::<String>::new()
    );

    // pg_dump runs in its own process group, so SIGKILL of drillbook does not reach it; with
    // its reader gone it must end on its own (EPIPE) and not keep the snapshot open.
    let killed = Instant::now();
    while pg_dumps.iter().any(|&pid| common::alive(pid)) {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "pg_dump {pg_dumps:?} still runs 10 s after drillbook was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pg_dump_lived = killed.elapsed();
    assert_eq!(
        source.psql(&format!(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = '{}' AND application_name = 'pg_dump'",
            source.name
        )),
        "0"
    );

    // Resume: the backup step is idempotent, so it is re-run without asking.
    let run = common::only_run(dir.path());
    let output = Drillbook::in_dir(dir.path())
        .args(&["resume", &run])
        .envs(server.env())
        .env("DATABASE_URL", source.url())
        .deadline(minutes(2))
        .run();
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let (dump, bytes, manifest) = only_backup(&server, &store);
    assert_manifest_matches(&manifest, &dump, &bytes);
    assert_eq!(
        recorded_counts(&manifest),
        vec![("public.big".to_owned(), BIG_ROWS)]
    );
    assert!(
        bytes.len() > 2 * (8 << 20),
        "{} bytes: not multipart",
        bytes.len()
    );
    // The crashed upload was aborted, and its marker removed, by the resumed step.
    assert_eq!(server.upload_files(), Vec::<String>::new());
    assert_eq!(files_under(&markers), Vec::<String>::new());
    assert_eq!(keys(&server, &whole_bucket).len(), 2);
    let report = json_report(dir.path(), &run);
    let backup = step(&report, "backup");
    assert_eq!(backup["status"], "succeeded", "{backup}");
    assert_eq!(attempts(backup), 2, "{backup}");
    let evidence = backup["evidence"].to_string();
    assert!(
        evidence.contains("removed what an interrupted upload left: aborted the unfinished upload"),
        "{evidence}"
    );
    assert_eq!(
        common::events(&common::journal(dir.path(), &run), "run_resumed", None).len(),
        1
    );
    // The resumed backup restores: downloaded in parallel byte ranges, checked, restored.
    let restored = Drillbook::in_dir(dir.path())
        .args(&[
            "run",
            &playbook("monthly-restore-smoke.yaml"),
            "--var",
            &format!("store={store}"),
        ])
        .envs(server.env())
        .deadline(minutes(3))
        .run();
    assert_eq!(
        restored.status, 0,
        "{}\n{}",
        restored.stdout, restored.stderr
    );
    let report = json_report(dir.path(), &run_of(dir.path(), "monthly-restore-smoke"));
    let smoke = step(&report, "smoke")["evidence"].to_string();
    assert!(
        smoke.contains(&format!("{BIG_ROWS} rows, each as in the backup")),
        "{smoke}"
    );
    eprintln!(
        "killed mid-upload: table filled in {:.1} s, killed at {:.1} s (pg_dump children then: \
         {pg_dumps:?}, gone {:.2} s later), dump {} bytes, {:.1} s in all",
        filled.as_secs_f64(),
        killed_at.as_secs_f64(),
        pg_dump_lived.as_secs_f64(),
        bytes.len(),
        started.elapsed().as_secs_f64()
    );
}
