//! Failures are classified: permanent ones (a missing or invalid bucket, a refused parameter)
//! fail at once, whatever the step's `retry`; transient ones (503s) are retried. The class is
//! in the journal. And two backups into one store at once both succeed: neither's cleanup
//! removes the other's upload in flight.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Drillbook;
use common::pg::{TestDb, fixture};
use common::s3::S3Server;

/// A `sync` from a local directory into `destination`, retried 3 times 5 s apart.
fn sync_playbook(destination: &str, extra: &str) -> String {
    format!(
        "version: 1\nname: classes\nsteps:\n  - id: copy\n    kind: sync\n    source: ./data\n    destination: \"{destination}\"\n{extra}    retry: {{ attempts: 3, backoff: 5s }}\n"
    )
}

/// Runs `playbook` against `server`; returns the copy step's `step_finished` records and the
/// time it took.
fn run_sync(server: &S3Server, playbook: &str) -> (Vec<serde_json::Value>, Duration) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/a.txt"), b"some bytes").unwrap();
    std::fs::write(dir.path().join("p.yaml"), playbook).unwrap();
    let started = Instant::now();
    let output = Drillbook::in_dir(dir.path())
        .args(&["run", "p.yaml", "--mode", "live", "--approve-all"])
        .envs(server.env())
        .deadline(Duration::from_secs(120))
        .run();
    let elapsed = started.elapsed();
    let run = common::only_run(dir.path());
    let finished: Vec<_> = common::journal(dir.path(), &run)
        .into_iter()
        .filter(|r| r["event"] == "step_finished" && r["step"] == "copy")
        .collect();
    assert!(!finished.is_empty(), "{}\n{}", output.stdout, output.stderr);
    (finished, elapsed)
}

fn assert_permanent_once(finished: &[serde_json::Value], elapsed: Duration, why: &str) {
    assert_eq!(finished.len(), 1, "{why}: {finished:#?}");
    assert_eq!(finished[0]["status"], "failed", "{why}: {finished:#?}");
    assert_eq!(
        finished[0]["error_class"], "permanent",
        "{why}: {finished:#?}"
    );
    assert!(elapsed < Duration::from_secs(20), "{why}: {elapsed:?}");
}

#[test]
fn a_missing_bucket_fails_at_once_despite_retry() {
    let server = S3Server::start();
    let (finished, elapsed) = run_sync(&server, &sync_playbook("s3://no-such-bucket/x", ""));
    assert_permanent_once(&finished, elapsed, "missing bucket");
    assert_eq!(server.requests("HEAD", ""), 1);
    assert!(
        finished[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("does not exist")),
        "{finished:#?}"
    );
}

#[test]
fn an_invalid_bucket_name_fails_at_once_despite_retry() {
    let server = S3Server::start();
    let (finished, elapsed) = run_sync(&server, &sync_playbook("s3://Bad_Bucket!/x", ""));
    assert_permanent_once(&finished, elapsed, "invalid bucket name");
}

#[test]
fn a_storage_class_the_server_refuses_fails_at_once_despite_retry() {
    let server = S3Server::start();
    server.create_bucket("mirror");
    let (finished, elapsed) = run_sync(
        &server,
        &sync_playbook("s3://mirror/x", "    storage_class: NOT_A_CLASS\n"),
    );
    assert_permanent_once(&finished, elapsed, "invalid storage class");
    // Nor did the S3 client retry the refused request itself, nor the sync its object.
    assert_eq!(server.requests("PUT", "/mirror/x/a.txt"), 1);
}

#[test]
fn injected_503s_are_transient_and_retried_until_the_step_succeeds() {
    let server = S3Server::start();
    server.create_bucket("mirror");
    // More 503s than the S3 client's own 5 attempts: the first attempt of the step fails
    // (transient), the next one succeeds.
    server.fail_next("*", 6);
    let (finished, _) = run_sync(&server, &sync_playbook("s3://mirror/x", ""));
    let last = finished.last().unwrap();
    assert_eq!(last["status"], "succeeded", "{finished:#?}");
    assert!(server.failed() >= 6);
    for failed in &finished[..finished.len() - 1] {
        assert_eq!(failed["error_class"], "transient", "{finished:#?}");
    }
    assert!(last.get("error_class").is_none(), "{last}");
    assert_eq!(
        std::fs::read(server.root.join("mirror/x/a.txt")).unwrap(),
        b"some bytes"
    );
}

#[test]
fn a_refused_postgresql_login_fails_at_once_despite_retry() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "version: 1\nname: login\nsteps:\n  - id: smoke\n    kind: smoke-test\n    database: postgres://no_such_role_drillbook@127.0.0.1:5432/postgres\n    checks:\n      - sql: SELECT 1\n        expect: \"1\"\n    retry: { attempts: 3, backoff: 5s }\n",
    )
    .unwrap();
    let started = Instant::now();
    Drillbook::in_dir(dir.path())
        .args(&["run", "p.yaml"])
        .deadline(Duration::from_secs(60))
        .expect_status(1)
        .run();
    let run = common::only_run(dir.path());
    let finished: Vec<_> = common::journal(dir.path(), &run)
        .into_iter()
        .filter(|r| r["event"] == "step_finished")
        .collect();
    assert_permanent_once(&finished, started.elapsed(), "refused login");
    assert!(
        finished[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no_such_role_drillbook")),
        "{finished:#?}"
    );
}

/// One backup of `db` into the directory `store`, from its own state directory.
fn backup(dir: &Path, db: &TestDb, store: &Path) -> Drillbook {
    let playbook = "version: 1\nname: bk\nsteps:\n  - id: backup\n    kind: backup\n    database: \"{{ secrets.DATABASE_URL }}\"\n    store: \"{{ vars.store }}\"\nvars:\n  store: x\nsecrets: [DATABASE_URL]\n";
    std::fs::write(dir.join("p.yaml"), playbook).unwrap();
    Drillbook::in_dir(dir)
        .args(&[
            "run",
            "p.yaml",
            "--mode",
            "live",
            "--approve-all",
            "--var",
            &format!("store={}", store.display()),
        ])
        .env("DATABASE_URL", db.url())
        .deadline(Duration::from_secs(120))
}

#[test]
fn two_backups_into_one_store_at_once_both_succeed() {
    let first_db = TestDb::create("drillbook_concurrent_a");
    fixture(&first_db, 2_000, None);
    let second_db = TestDb::create("drillbook_concurrent_b");
    fixture(&second_db, 2_000, None);
    let store_dir = tempfile::tempdir().unwrap();
    let store = store_dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let (first_dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    // The first backup's pg_dump waits for a lock while its upload is open.
    let mut holder = std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            &first_db.url(),
            "-c",
            "BEGIN; LOCK TABLE shop.orders IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT;",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let first = backup(first_dir.path(), &first_db, &store).spawn();
    let partial = || {
        std::fs::read_dir(&store)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains(".partial-"))
    };
    common::wait_for(
        Duration::from_secs(30),
        "the first upload to start",
        partial,
    );

    // The second backup runs to its end meanwhile; its cleanup leaves the first's upload be.
    let second = backup(second_dir.path(), &second_db, &store).run();
    assert_eq!(second.status, 0, "{}\n{}", second.stdout, second.stderr);
    assert!(partial(), "the first backup's upload in flight was removed");

    let first = first.wait();
    assert_eq!(first.status, 0, "{}\n{}", first.stdout, first.stderr);
    holder.wait().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&store)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".dump")).count(),
        2,
        "{names:?}"
    );
    assert_eq!(
        names
            .iter()
            .filter(|n| n.ends_with(".manifest.json"))
            .count(),
        2,
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.contains(".partial-")), "{names:?}");
}

/// A body streamed from a reader (an object of known size sent as one request) cannot be
/// replayed: after a 503 the client does not resend it (it would send an exhausted body), the
/// upload fails as transient, nothing is stored, and a retry must start from the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_request_is_not_resent_after_a_503() {
    use drillbook::connect::store::{PutOptions, Store};
    let server = S3Server::start();
    server.create_bucket("streamed");
    let store = Store::open_with("s3://streamed/p", &server.settings())
        .await
        .unwrap();
    let data = vec![7u8; 20 << 20];
    let options = PutOptions {
        size_hint: Some(data.len() as u64),
        ..PutOptions::default()
    };
    server.fail_next("PUT", 1);
    let result = store
        .put_stream_with("x.dump", data.as_slice(), &options, &|_| {})
        .await;
    let error = result.expect_err("a streamed body cannot be resent");
    assert!(!error.is_permanent(), "{error}");
    assert_eq!(server.requests("PUT", "/streamed/p/x.dump"), 1);
    assert!(store.head("x.dump").await.unwrap().is_none());
}
