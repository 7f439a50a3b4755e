//! `drillbook wal push` / `wal fetch`, the real binary against a directory and the in-process
//! S3 server, and as a real PostgreSQL cluster's archive_command and restore_command. No
//! mocks: every byte goes through the filesystem or HTTP.

mod common;

#[path = "wal/postgres.rs"]
mod postgres;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::s3::S3Server;
use common::{Drillbook, Output};

const MIB: usize = 1 << 20;
const SEGMENT: &str = "000000010000000000000001";
const SEGMENT_KEY: &str = "wal/0000000100000000/000000010000000000000001.zst";
const HISTORY: &str = "00000002.history";

/// Bytes shaped like WAL: 8 KiB pages, part zeros, part repeated tuples, part noise.
fn wal_like(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut bytes = vec![0u8; size];
    for page in bytes.chunks_mut(8192) {
        let used = rng.usize(..page.len());
        for (i, byte) in page[..used].iter_mut().enumerate() {
            *byte = if i % 5 == 0 {
                rng.u8(..)
            } else {
                b"INSERT pgbench_accounts"[i % 23]
            };
        }
    }
    bytes
}

fn random(size: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0; size];
    fastrand::Rng::with_seed(seed).fill(&mut bytes);
    bytes
}

/// A store and the environment that points drillbook at it.
struct Archive {
    /// For a directory store: the directory; for S3: the bucket's directory in s3s-fs.
    root: PathBuf,
    env: Vec<(String, String)>,
    server: Option<S3Server>,
    _dir: tempfile::TempDir,
}

impl Archive {
    fn directory() -> Archive {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("archive");
        Archive {
            env: vec![("DRILLBOOK_WAL_STORE".into(), root.display().to_string())],
            root,
            server: None,
            _dir: dir,
        }
    }

    fn s3() -> Archive {
        let server = S3Server::start();
        server.create_bucket("wal");
        let mut env = server.env();
        env.push(("DRILLBOOK_WAL_STORE".into(), "s3://wal/prod/db1".into()));
        Archive {
            root: server.root.join("wal/prod/db1"),
            env,
            server: Some(server),
            _dir: tempfile::tempdir().unwrap(),
        }
    }

    fn drillbook(&self, args: &[&str]) -> Drillbook {
        Drillbook::new()
            .env_remove("DRILLBOOK_WAL_CONFIG")
            .envs(&self.env)
            .args(args)
            .deadline(Duration::from_secs(60))
    }

    fn push(&self, path: &Path) -> Output {
        self.drillbook(&["wal", "push", path.to_str().unwrap()])
            .run()
    }

    fn fetch(&self, name: &str, path: &Path) -> Output {
        self.drillbook(&["wal", "fetch", name, path.to_str().unwrap()])
            .run()
    }

    fn object(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
}

/// A file named `name` holding `bytes` in a directory of its own.
pub(crate) fn file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn succeeded(output: &Output, what: &str) {
    assert_eq!(output.status, 0, "{what}: {}", output.stderr);
}

fn failed_with(output: &Output, status: i32, words: &[&str]) {
    assert_eq!(output.status, status, "stderr: {}", output.stderr);
    for word in words {
        assert!(
            output.stderr.contains(word),
            "`{word}` in: {}",
            output.stderr
        );
    }
}

fn round_trip(archive: &Archive) {
    let work = tempfile::tempdir().unwrap();
    let segment = wal_like(16 * MIB, 1);
    let path = file(&work.path().join("pg_wal"), SEGMENT, &segment);
    let started = Instant::now();
    let pushed = archive.push(&path);
    let elapsed = started.elapsed();
    succeeded(&pushed, "push");
    assert_eq!(pushed.stderr, "", "push is quiet when it succeeds");
    let stored = std::fs::metadata(archive.object(SEGMENT_KEY))
        .unwrap()
        .len();
    eprintln!(
        "pushed 16 MiB in {elapsed:?} (the whole process, {:.0} MiB/s), stored {stored} bytes ({:.1}x smaller)",
        16.0 / elapsed.as_secs_f64(),
        segment.len() as f64 / stored as f64
    );
    assert!(stored < segment.len() as u64 / 2);

    let history = b"1\t0/3000060\tno recovery target specified\n";
    let history_path = file(&work.path().join("pg_wal"), HISTORY, history);
    succeeded(&archive.push(&history_path), "push history");
    assert!(archive.object("wal/00000002.history.zst").exists());

    let restored = work.path().join("restore/RECOVERYXLOG");
    std::fs::create_dir_all(restored.parent().unwrap()).unwrap();
    let fetched = archive.fetch(SEGMENT, &restored);
    succeeded(&fetched, "fetch");
    assert_eq!(fetched.stderr, "");
    assert!(
        std::fs::read(&restored).unwrap() == segment,
        "byte-identical"
    );
    let restored_history = work.path().join("restore/RECOVERYHISTORY");
    succeeded(&archive.fetch(HISTORY, &restored_history), "fetch history");
    assert_eq!(std::fs::read(&restored_history).unwrap(), history);
    // Nothing but the two files: no temporary left beside them.
    assert_eq!(
        std::fs::read_dir(restored.parent().unwrap())
            .unwrap()
            .count(),
        2
    );
}

#[test]
fn a_segment_round_trips_through_a_directory_store_and_zstd_reads_the_object_as_it_is() {
    let archive = Archive::directory();
    round_trip(&archive);
    // By hand, without drillbook: the metadata is a skippable frame zstd passes over.
    let output = std::process::Command::new("zstd")
        .args(["-d", "-c", "-q"])
        .arg(archive.object(SEGMENT_KEY))
        .output()
        .expect("zstd");
    assert!(output.status.success(), "{:?}", output);
    assert!(output.stdout == wal_like(16 * MIB, 1));
}

#[test]
fn a_segment_round_trips_through_s3() {
    round_trip(&Archive::s3());
}

#[test]
fn settings_can_come_from_a_config_file_alone() {
    let server = S3Server::start();
    server.create_bucket("wal");
    let work = tempfile::tempdir().unwrap();
    let config = file(
        work.path(),
        "wal.conf",
        format!(
            "# the archive of db1\nDRILLBOOK_WAL_STORE=s3://wal/db1\nAWS_ENDPOINT_URL={}\n\
             AWS_REGION=us-east-1\nAWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\n\
             DRILLBOOK_WAL_COMPRESSION_LEVEL=1\n",
            server.endpoint,
            common::s3::ACCESS_KEY,
            common::s3::SECRET_KEY
        )
        .as_bytes(),
    );
    let segment = wal_like(2 * MIB, 2);
    let path = file(&work.path().join("pg_wal"), SEGMENT, &segment);
    let bare = |args: &[&str]| {
        let mut drillbook = Drillbook::new();
        for name in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ENDPOINT_URL",
        ] {
            drillbook = drillbook.env_remove(name);
        }
        drillbook
            .env_remove("DRILLBOOK_WAL_STORE")
            .env("DRILLBOOK_WAL_CONFIG", config.to_str().unwrap())
            .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/aws-credentials",
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(args)
            .deadline(Duration::from_secs(60))
            .run()
    };
    succeeded(&bare(&["wal", "push", path.to_str().unwrap()]), "push");
    assert!(server.root.join("wal/db1").join(SEGMENT_KEY).exists());
    let restored = work.path().join("restored");
    succeeded(
        &bare(&["wal", "fetch", SEGMENT, restored.to_str().unwrap()]),
        "fetch",
    );
    assert!(std::fs::read(&restored).unwrap() == segment);
}

fn pushing_again(archive: &Archive) {
    let work = tempfile::tempdir().unwrap();
    let segment = wal_like(MIB, 3);
    let path = file(&work.path().join("a"), SEGMENT, &segment);
    succeeded(&archive.push(&path), "first push");
    let stored = std::fs::read(archive.object(SEGMENT_KEY)).unwrap();
    let again = archive.push(&path);
    succeeded(&again, "the same bytes again");
    assert_eq!(again.stderr, "");

    let mut other = segment.clone();
    other[1000] ^= 0xff;
    let other_path = file(&work.path().join("b"), SEGMENT, &other);
    let refused = archive.push(&other_path);
    failed_with(
        &refused,
        1,
        &[SEGMENT, "already archived with different content"],
    );
    assert!(std::fs::read(archive.object(SEGMENT_KEY)).unwrap() == stored);

    let history = file(&work.path().join("a"), HISTORY, b"1\t0/3000060\tbefore\n");
    succeeded(&archive.push(&history), "history");
    let stored = std::fs::read(archive.object("wal/00000002.history.zst")).unwrap();
    succeeded(&archive.push(&history), "the same history again");
    let changed = file(&work.path().join("b"), HISTORY, b"1\t0/4000000\tafter\n");
    failed_with(&archive.push(&changed), 1, &[HISTORY, "never overwritten"]);
    assert_eq!(
        std::fs::read(archive.object("wal/00000002.history.zst")).unwrap(),
        stored
    );
}

#[test]
fn pushing_twice_succeeds_with_the_same_bytes_and_fails_with_others_in_a_directory() {
    pushing_again(&Archive::directory());
}

#[test]
fn pushing_twice_succeeds_with_the_same_bytes_and_fails_with_others_in_s3() {
    pushing_again(&Archive::s3());
}

fn missing_and_corrupt(archive: &Archive) {
    let work = tempfile::tempdir().unwrap();
    let destination = work.path().join("pg_wal/RECOVERYXLOG");
    std::fs::create_dir_all(destination.parent().unwrap()).unwrap();
    for name in [HISTORY, SEGMENT] {
        let output = archive.fetch(name, &destination);
        assert_eq!(output.status, 1, "{name}: {}", output.stderr);
        assert_eq!(
            output.stderr, "",
            "{name}: a missing file is not worth a word"
        );
        assert!(!destination.exists());
    }

    let segment = wal_like(4 * MIB, 4);
    succeeded(
        &archive.push(&file(&work.path().join("src"), SEGMENT, &segment)),
        "push",
    );
    let object = archive.object(SEGMENT_KEY);
    let mut bytes = std::fs::read(&object).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&object, &bytes).unwrap();
    let output = archive.fetch(SEGMENT, &destination);
    failed_with(&output, 1, &[SEGMENT, "damaged", "nothing was written"]);
    assert!(!destination.exists());
    assert_eq!(
        std::fs::read_dir(destination.parent().unwrap())
            .unwrap()
            .count(),
        0,
        "no temporary file left"
    );
}

#[test]
fn a_missing_file_is_exit_1_in_silence_and_a_corrupt_one_is_refused_in_a_directory() {
    missing_and_corrupt(&Archive::directory());
}

#[test]
fn a_missing_file_is_exit_1_in_silence_and_a_corrupt_one_is_refused_in_s3() {
    missing_and_corrupt(&Archive::s3());
}

/// Starts pushes of a 16 MiB segment and SIGKILLs each as soon as `started` sees its upload
/// under way, until one is caught in the middle; then checks nothing is visible and that a
/// push afterwards succeeds.
fn killed_mid_push(archive: &Archive, started: impl Fn() -> bool) {
    let work = tempfile::tempdir().unwrap();
    // Incompressible, so the upload is as large and as slow as a segment can make it.
    let segment = random(16 * MIB, 5);
    let path = file(&work.path().join("pg_wal"), SEGMENT, &segment);
    let mut caught = false;
    for _ in 0..10 {
        let mut running = archive
            .drillbook(&["wal", "push", path.to_str().unwrap()])
            .spawn();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !started() && running.try_wait().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        let status = running.kill();
        if status.code().is_none() {
            caught = true;
            break;
        }
        // It finished first: start again from an empty archive.
        let _ = std::fs::remove_dir_all(archive.object("wal"));
    }
    assert!(caught, "never caught a push in the middle");
    assert!(!archive.object(SEGMENT_KEY).exists(), "no partial segment");
    let destination = work.path().join("restored");
    let fetched = archive.fetch(SEGMENT, &destination);
    assert_eq!((fetched.status, fetched.stderr.as_str()), (1, ""));
    assert!(!destination.exists());

    succeeded(&archive.push(&path), "the push after the kill");
    succeeded(&archive.fetch(SEGMENT, &destination), "fetch");
    assert!(std::fs::read(&destination).unwrap() == segment);
}

fn partial_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().contains(".partial-"))
            .count()
    })
}

#[test]
fn a_push_killed_midway_leaves_no_segment_in_a_directory_and_is_pushed_again() {
    let archive = Archive::directory();
    let dir = archive.object("wal/0000000100000000");
    killed_mid_push(&archive, || partial_files(&dir) > 0);
    assert_eq!(
        partial_files(&dir),
        0,
        "the new push removed the old partial"
    );
}

#[test]
fn a_push_killed_midway_leaves_no_object_in_s3_and_is_pushed_again() {
    let archive = Archive::s3();
    let server = archive.server.as_ref().unwrap();
    // Under way once the upload's marker (its id, for whoever cleans up) is written.
    let markers = server
        .root
        .join("wal/.drillbook-incomplete/prod/db1/wal/0000000100000000");
    killed_mid_push(&archive, || {
        std::fs::read_dir(&markers).is_ok_and(|mut entries| entries.next().is_some())
    });
    assert_eq!(
        server.upload_files(),
        Vec::<String>::new(),
        "the new push aborted the unfinished upload"
    );
}

#[test]
fn every_error_exits_below_128_with_a_message() {
    let archive = Archive::directory();
    let work = tempfile::tempdir().unwrap();
    let segment = file(&work.path().join("pg_wal"), SEGMENT, b"data");
    let segment = segment.to_str().unwrap();

    // A directory where the segment should be: the file cannot be read.
    std::fs::create_dir_all(work.path().join("odd").join(SEGMENT)).unwrap();
    let unreadable = work.path().join("odd").join(SEGMENT);
    let cases: Vec<(Drillbook, i32, Vec<&str>)> = vec![
        (
            archive.drillbook(&["wal", "push", "--store", "gs://bucket/wal", segment]),
            2,
            vec!["unsupported scheme `gs://`", "gs://bucket/wal"],
        ),
        (
            archive.drillbook(&["wal", "push", "/nowhere/pg_wal/000000010000000000000009"]),
            1,
            vec!["cannot open /nowhere/pg_wal/000000010000000000000009"],
        ),
        (
            archive.drillbook(&["wal", "push", unreadable.to_str().unwrap()]),
            1,
            vec!["cannot read", SEGMENT],
        ),
        (
            archive.drillbook(&["wal", "push", "/tmp/postgresql.conf"]),
            2,
            vec!["`postgresql.conf` is not a WAL file name"],
        ),
        (
            archive.drillbook(&["wal", "fetch", "../etc/passwd", "/tmp/x"]),
            2,
            vec!["not a WAL file name"],
        ),
        (
            Drillbook::new()
                .env_remove("DRILLBOOK_WAL_STORE")
                .env_remove("DRILLBOOK_WAL_CONFIG")
                .args(&["wal", "push", segment]),
            2,
            vec!["no WAL store is configured", "DRILLBOOK_WAL_STORE"],
        ),
        (
            archive.drillbook(&["wal", "push", "--config", "/nowhere/wal.conf", segment]),
            2,
            vec!["cannot read the config file /nowhere/wal.conf"],
        ),
        (archive.drillbook(&["wal", "push"]), 2, vec!["<PATH>"]),
    ];
    for (drillbook, status, words) in cases {
        let output = drillbook.run();
        failed_with(&output, status, &words);
    }
}

/// An S3 server that does not answer: a failure (exit 1) after the client's retries, and a
/// SIGTERM while it waits is exit 1 too, never the signal's 143.
#[test]
fn an_unreachable_s3_server_and_a_signal_exit_below_128() {
    let work = tempfile::tempdir().unwrap();
    let segment = file(&work.path().join("pg_wal"), SEGMENT, b"data");
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = |args: &[&str]| {
        Drillbook::new()
            .env_remove("DRILLBOOK_WAL_CONFIG")
            .env("DRILLBOOK_WAL_STORE", "s3://wal/db1")
            .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
            .env("AWS_ACCESS_KEY_ID", "key")
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(args)
            .deadline(Duration::from_secs(90))
    };
    let output = unreachable(&["wal", "push", segment.to_str().unwrap()]).run();
    failed_with(&output, 1, &["s3://wal/db1"]);
    let output = unreachable(&["wal", "fetch", SEGMENT, "/tmp/never-written"]).run();
    failed_with(&output, 1, &["s3://wal/db1"]);

    let running = unreachable(&["wal", "push", segment.to_str().unwrap()]).spawn();
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling the child we started and have not reaped.
    unsafe { libc::kill(running.pid(), libc::SIGTERM) };
    let output = running.wait();
    failed_with(&output, 1, &["stopped by SIGTERM"]);
}
