//! The `sync` step through the real binary, against a real S3 server (s3s-fs on loopback,
//! started in-process) and local directories.
//!
//! What drillbook copied is checked independently of it: s3s-fs keeps every object as a plain
//! file under `<root>/<bucket>/<key>`, so both sides are walked and hashed here, on disk.
//! Fixtures are written there the same way (S3 serves them like any other object).

mod common;

use common::report::tree;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use common::Output;
use common::drill::{json_report, run_of, step};
use common::report::report_in;
use common::s3::S3Server;
use common::{Drillbook, minutes};

const REPORT: &str = ".drillbook/checksums.json";
const MIB: usize = 1 << 20;

/// A one-step sync playbook; `extra` adds parameters (YAML lines at the step's indentation).
fn playbook(extra: &str) -> String {
    format!(
        "version: 1
name: mirror
vars:
  source: \"\"
  destination: \"\"
steps:
  - id: mirror
    kind: sync
    source: \"{{{{ vars.source }}}}\"
    destination: \"{{{{ vars.destination }}}}\"
{extra}"
    )
}

/// Runs `playbook_text` in a new state directory under `base`, with the S3 server's
/// environment; returns the output and the step's JSON report.
fn sync(
    base: &Path,
    server: &S3Server,
    playbook_text: &str,
    source: &str,
    destination: &str,
) -> (Output, serde_json::Value) {
    let dir = new_dir(base);
    std::fs::write(dir.join("mirror.yaml"), playbook_text).expect("playbook");
    let output = Drillbook::in_dir(&dir)
        .args(&[
            "run",
            "mirror.yaml",
            "--var",
            &format!("source={source}"),
            "--var",
            &format!("destination={destination}"),
        ])
        .envs(server.env())
        .deadline(minutes(2))
        .run();
    let report = json_report(&dir, &run_of(&dir, "mirror"));
    (output, step(&report, "mirror").clone())
}

/// A fresh directory under `base` for one run's state.
fn new_dir(base: &Path) -> PathBuf {
    let count = std::fs::read_dir(base).map_or(0, |entries| entries.count());
    let dir = base.join(format!("run-{count}"));
    std::fs::create_dir_all(&dir).expect("run directory");
    dir
}

/// Writes `bytes` at `root/key`, dated `age` ago (objects in a bucket are rarely brand new;
/// a sync does not trust the time of an object written in the last second).
fn put(root: &Path, key: &str, bytes: &[u8], age: Duration) {
    common::report::put_at(root, key, bytes, SystemTime::now() - age);
}

fn random(rng: &mut fastrand::Rng, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    rng.fill(&mut bytes);
    bytes
}

const HOUR: Duration = Duration::from_secs(3600);

/// `count` small objects (1–8 KiB) under nested keys, some deep. Returns their keys.
fn small_objects(root: &Path, count: usize, rng: &mut fastrand::Rng) -> Vec<String> {
    (0..count)
        .map(|i| {
            let key = match i % 10 {
                0 => format!("a/b/c/d/e/f/deep-{i:04}.txt"),
                1..=4 => format!("uploads/{}/{}/photo-{i:04}.jpg", i % 7, i % 13),
                _ => format!("documents/{}/doc-{i:04}.pdf", i % 17),
            };
            let len = rng.usize(1024..=8192);
            put(root, &key, &random(rng, len), HOUR);
            key
        })
        .collect()
}

fn output(step: &serde_json::Value, name: &str) -> u64 {
    step["outputs"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("output {name}: {step}"))
}

fn evidence(step: &serde_json::Value) -> Vec<String> {
    step["evidence"]
        .as_array()
        .expect("evidence")
        .iter()
        .map(|line| line.as_str().expect("a line").to_owned())
        .collect()
}

/// The evidence line that starts with `prefix`.
fn line<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find(|line| line.starts_with(prefix))
        .unwrap_or_else(|| panic!("no evidence line `{prefix}…` in {lines:#?}"))
}

fn assert_succeeded(output: &Output, step: &serde_json::Value) {
    assert_eq!(
        output.status, 0,
        "{}\n{}\n{step:#}",
        output.stdout, output.stderr
    );
    assert_eq!(step["status"], "succeeded", "{step:#}");
}

/// Two buckets on one server: `storage` (the source) and `mirror`, and the directories
/// s3s-fs keeps their `production` prefixes in.
fn two_buckets() -> (S3Server, PathBuf, PathBuf) {
    let server = S3Server::start();
    server.create_bucket("storage");
    server.create_bucket("mirror");
    let storage = server.root.join("storage/production");
    let mirror = server.root.join("mirror/production");
    (server, storage, mirror)
}

const STORAGE: &str = "s3://storage/production";
const MIRROR: &str = "s3://mirror/production";

#[test]
fn mirrors_a_bucket_then_copies_only_what_changed() {
    let started = Instant::now();
    let base = tempfile::tempdir().expect("tempdir");
    let (server, storage, mirror) = two_buckets();
    let mut rng = fastrand::Rng::with_seed(5);
    let mut keys = small_objects(&storage, 2_000, &mut rng);
    // A few 100 MB objects: both buckets are on one server, so these are copied there
    // (CopyObject) and read back in ranges to hash them.
    for (i, size) in [100_000_000, 100_000_000, 100 * MIB]
        .into_iter()
        .enumerate()
    {
        let key = format!("media/video/large-{i}.bin");
        put(&storage, &key, &random(&mut rng, size), HOUR);
        keys.push(key);
    }
    let total = keys.len() as u64;
    let source = tree(&storage);
    let total_bytes: u64 = source.values().map(|(size, _)| size).sum();
    let fixture = started.elapsed();

    // First run: everything is copied, byte for byte.
    let (out, first) = sync(base.path(), &server, &playbook(""), STORAGE, MIRROR);
    assert_succeeded(&out, &first);
    assert_eq!(output(&first, "copied"), total);
    assert_eq!(output(&first, "unchanged"), 0);
    assert_eq!(output(&first, "deleted"), 0);
    assert_eq!(output(&first, "objects"), total);
    assert_eq!(output(&first, "bytes"), total_bytes);
    assert_eq!(first["outputs"]["report"], REPORT);
    assert_eq!(tree(&mirror), source);
    assert_eq!(report_in(&mirror), source);
    let first_evidence = evidence(&first);
    let rate = line(&first_evidence, "copied 2003 objects").to_owned();
    assert!(
        line(&first_evidence, "copied (first 10 of 2003): ").contains("a/b/c/d/e/f/deep-0000.txt"),
        "{first_evidence:#?}"
    );
    // Both buckets are on one server: the server copied the three large objects and one small
    // one (which showed that s3s-fs gives no SHA-256 for a copy), drillbook read each copy back
    // to hash it, and read the other small objects through; the report above matches.
    assert!(
        line(&first_evidence, "4 of the copies were made by the server").contains("CopyObject"),
        "{first_evidence:#?}"
    );

    // Second run: nothing to do.
    let (out, second) = sync(base.path(), &server, &playbook(""), STORAGE, MIRROR);
    assert_succeeded(&out, &second);
    assert_eq!(output(&second, "copied"), 0);
    assert_eq!(output(&second, "unchanged"), total);
    assert_eq!(output(&second, "bytes"), 0);
    assert_eq!(output(&second, "deleted"), 0);
    let second_elapsed = out.elapsed;

    // Ten objects change (one keeps its size), five go, five arrive.
    let changed: Vec<String> = keys.iter().step_by(150).take(10).cloned().collect();
    for (n, key) in changed.iter().enumerate() {
        let len = if n == 0 {
            source[key].0 as usize
        } else {
            rng.usize(1024..=8192)
        };
        put(
            &storage,
            key,
            &random(&mut rng, len),
            Duration::from_secs(600),
        );
    }
    let removed: Vec<String> = keys.iter().skip(7).step_by(300).take(5).cloned().collect();
    for key in &removed {
        assert!(!changed.contains(key));
        std::fs::remove_file(storage.join(key)).expect("remove");
    }
    let added: Vec<String> = (0..5)
        .map(|i| format!("uploads/new/{i}/added.bin"))
        .collect();
    for key in &added {
        put(
            &storage,
            key,
            &random(&mut rng, 3000),
            Duration::from_secs(600),
        );
    }
    let source = tree(&storage);
    let (out, third) = sync(
        base.path(),
        &server,
        &playbook("    delete: true\n"),
        STORAGE,
        MIRROR,
    );
    assert_succeeded(&out, &third);
    assert_eq!(output(&third, "copied"), 15);
    assert_eq!(output(&third, "deleted"), 5);
    assert_eq!(output(&third, "unchanged"), total - 15);
    assert_eq!(output(&third, "objects"), total);
    assert_eq!(tree(&mirror), source);
    assert_eq!(report_in(&mirror), source);
    let third_evidence = evidence(&third);
    let mut expected_copies: Vec<String> = changed.iter().chain(&added).cloned().collect();
    expected_copies.sort();
    assert_eq!(
        line(&third_evidence, "copied (first 10 of 15)"),
        format!(
            "copied (first 10 of 15): {}",
            expected_copies[..10].join(", ")
        )
    );
    let mut expected_deletions = removed.clone();
    expected_deletions.sort();
    assert_eq!(
        line(&third_evidence, "deleted (5)"),
        format!("deleted (5): {}", expected_deletions.join(", "))
    );
    eprintln!(
        "fixture {:.1} s; first run: {rate}; no-op run {:.2} s; whole test {:.1} s",
        fixture.as_secs_f64(),
        second_elapsed.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_directory_goes_to_s3_and_back_byte_for_byte() {
    let base = tempfile::tempdir().expect("tempdir");
    let server = S3Server::start();
    server.create_bucket("storage");
    let original = base.path().join("original");
    let mut rng = fastrand::Rng::with_seed(7);
    small_objects(&original, 40, &mut rng);
    put(&original, "empty/nothing.txt", b"", HOUR);
    put(&original, "top.txt", b"top level\n", HOUR);
    // Larger than a 5 MiB part: a multipart upload with the step's `part_size`.
    put(
        &original,
        "media/big.bin",
        &random(&mut rng, 11 * MIB),
        HOUR,
    );
    let expected = tree(&original);
    let restored = base.path().join("restored/new/directory");

    let text = format!(
        "version: 1
name: mirror
vars:
  source: \"\"
  destination: \"\"
steps:
  - id: up
    kind: sync
    source: {}
    destination: s3://storage/tree
    part_size: 5MiB
  - id: mirror
    kind: sync
    needs: [up]
    source: s3://storage/tree
    destination: file://{}
",
        original.display(),
        restored.display()
    );
    let (out, down) = sync(base.path(), &server, &text, "", "");
    assert_succeeded(&out, &down);
    assert_eq!(output(&down, "copied"), expected.len() as u64);
    assert_eq!(tree(&server.root.join("storage/tree")), expected);
    assert_eq!(report_in(&server.root.join("storage/tree")), expected);
    assert_eq!(tree(&restored), expected);
    assert_eq!(report_in(&restored), expected);
    let lines = evidence(&down);
    assert!(
        line(&lines, "source s3://storage/tree: 43 objects").contains(&format!(
            "; destination file://{}: 0 objects before the sync (a new directory)",
            restored.display()
        )),
        "{lines:#?}"
    );
    // No partial files are left behind.
    assert!(
        expected.keys().all(|key| !key.contains(".partial-")),
        "{expected:?}"
    );
}

#[test]
fn an_empty_source_does_not_wipe_the_mirror() {
    let base = tempfile::tempdir().expect("tempdir");
    let (server, storage, mirror) = two_buckets();
    std::fs::create_dir_all(&storage).expect("empty source prefix");
    let mut rng = fastrand::Rng::with_seed(11);
    small_objects(&mirror, 3, &mut rng);
    let before = tree(&mirror);

    let (out, refused) = sync(
        base.path(),
        &server,
        &playbook("    delete: true\n"),
        STORAGE,
        MIRROR,
    );
    assert_eq!(out.status, 1, "{}\n{}", out.stdout, out.stderr);
    let message = "the source s3://storage/production lists no objects: refusing to delete the mirror's 3 objects in s3://mirror/production (set allow_empty_source: true if the source is meant to be empty)";
    assert_eq!(refused["error"], message, "{refused:#}");
    assert!(out.stderr.contains(message), "{}", out.stderr);
    assert_eq!(tree(&mirror), before);
    assert!(!mirror.join(".drillbook").exists(), "nothing written");

    // Said explicitly, it is allowed.
    let (out, allowed) = sync(
        base.path(),
        &server,
        &playbook("    delete: true\n    allow_empty_source: true\n"),
        STORAGE,
        MIRROR,
    );
    assert_succeeded(&out, &allowed);
    assert_eq!(output(&allowed, "deleted"), 3);
    assert_eq!(tree(&mirror), BTreeMap::new());
    assert_eq!(report_in(&mirror), BTreeMap::new());
}

#[test]
fn failed_copies_fail_the_step_and_delete_nothing() {
    let base = tempfile::tempdir().expect("tempdir");
    let (server, storage, mirror) = two_buckets();
    let mut rng = fastrand::Rng::with_seed(13);
    small_objects(&storage, 30, &mut rng);
    small_objects(&mirror.join("old"), 2, &mut rng);
    let before = tree(&mirror);

    // s3s-fs accepts only STANDARD and REDUCED_REDUNDANCY: the class is really sent, and
    // every small object is refused.
    let (out, failed) = sync(
        base.path(),
        &server,
        &playbook(
            "    delete: true\n    storage_class: GLACIER_IR\n    concurrency: 4\n    server_side_copy: false\n",
        ),
        STORAGE,
        MIRROR,
    );
    assert_eq!(out.status, 1, "{}\n{}", out.stdout, out.stderr);
    let error = failed["error"].as_str().expect("error");
    assert!(
        error.contains("objects could not be synced")
            && error.contains("(a re-run copies only what is missing)")
            && error.contains("InvalidStorageClass"),
        "{error}"
    );
    // After ten failures no new transfer starts (the four in flight finish).
    let failures = evidence(&failed)
        .iter()
        .filter(|line| line.starts_with("failed: "))
        .count();
    assert!((10..=14).contains(&failures), "{failures}");
    assert_eq!(output(&failed, "copied"), 0);
    assert_eq!(output(&failed, "deleted"), 0);
    assert_eq!(tree(&mirror), before, "nothing deleted, nothing copied");

    let (out, standard) = sync(
        base.path(),
        &server,
        &playbook("    delete: true\n    storage_class: STANDARD\n    server_side_copy: false\n"),
        STORAGE,
        MIRROR,
    );
    assert_succeeded(&out, &standard);
    assert_eq!(
        (output(&standard, "copied"), output(&standard, "deleted")),
        (30, 2)
    );
    assert_eq!(tree(&mirror), tree(&storage));
}

#[test]
fn server_errors_during_streamed_uploads_are_retried() {
    let base = tempfile::tempdir().expect("tempdir");
    let (server, storage, mirror) = two_buckets();
    let mut rng = fastrand::Rng::with_seed(19);
    for i in 0..3 {
        put(
            &storage,
            &format!("large/{i}.bin"),
            &random(&mut rng, 17 * MIB),
            HOUR,
        );
    }
    small_objects(&storage, 5, &mut rng);
    // A streamed body cannot be sent twice by the S3 client: sync tries the object again.
    server.fail_next("PUT", 3);
    let (out, step) = sync(
        base.path(),
        &server,
        &playbook("    concurrency: 2\n    server_side_copy: false\n"),
        STORAGE,
        MIRROR,
    );
    assert_succeeded(&out, &step);
    assert_eq!(server.failed(), 3);
    assert_eq!(output(&step, "copied"), 8);
    assert_eq!(tree(&mirror), tree(&storage));
    assert_eq!(report_in(&mirror), tree(&storage));
}

#[test]
fn a_mirror_killed_halfway_resumes_and_copies_only_what_is_missing() {
    let base = tempfile::tempdir().expect("tempdir");
    let dir = base.path();
    let (server, storage, mirror) = two_buckets();
    let mut rng = fastrand::Rng::with_seed(17);
    let total = 800;
    small_objects(&storage, total, &mut rng);
    std::fs::write(dir.join("mirror.yaml"), playbook("    concurrency: 2\n")).expect("playbook");

    let mut child = Drillbook::in_dir(dir)
        .args(&[
            "run",
            "mirror.yaml",
            "--var",
            &format!("source={STORAGE}"),
            "--var",
            &format!("destination={MIRROR}"),
        ])
        .envs(server.env())
        .spawn();
    // The first checkpoint of the report (after 500 copies or 10 s): then kill.
    common::wait_for(Duration::from_secs(60), "the first checkpoint", || {
        mirror.join(REPORT).exists()
    });
    assert!(
        child.try_wait().is_none(),
        "the sync finished before it could be killed"
    );
    let status = child.kill();
    assert_eq!(status.code(), None, "killed by a signal");

    let recorded = report_in(&mirror);
    let copied_before = tree(&mirror);
    assert!(!recorded.is_empty());
    assert!(
        copied_before.len() >= recorded.len() && copied_before.len() < total,
        "{} copied, {} recorded",
        copied_before.len(),
        recorded.len()
    );
    // Whatever the report vouches for is really there.
    for (key, entry) in &recorded {
        assert_eq!(copied_before.get(key), Some(entry), "{key}");
    }

    // Resume: `sync` is idempotent, so the step runs again without asking.
    let run = run_of(dir, "mirror");
    let out = Drillbook::in_dir(dir)
        .args(&["resume", &run])
        .envs(server.env())
        .deadline(minutes(2))
        .run();
    assert_eq!(out.status, 0, "{}\n{}", out.stdout, out.stderr);
    let report = json_report(dir, &run);
    let resumed = step(&report, "mirror");
    assert_eq!(resumed["status"], "succeeded", "{resumed:#}");
    assert_eq!(resumed["attempts"].as_array().map(Vec::len), Some(2));
    // Exactly what the report did not vouch for is copied again: the objects never copied,
    // and those copied after the last checkpoint (which the report cannot vouch for).
    let recopied = copied_before.len() - recorded.len();
    assert_eq!(
        output(resumed, "copied"),
        (total - recorded.len()) as u64,
        "{resumed:#}"
    );
    assert_eq!(output(resumed, "unchanged"), recorded.len() as u64);
    assert_eq!(tree(&mirror), tree(&storage));
    assert_eq!(report_in(&mirror), tree(&storage));
    eprintln!(
        "killed after {} copies ({} in the report); the resumed run copied {} ({recopied} of them again)",
        copied_before.len(),
        recorded.len(),
        total - recorded.len()
    );
}

#[test]
fn an_interrupted_mirror_saves_its_report_and_aborts_its_uploads() {
    let base = tempfile::tempdir().expect("tempdir");
    let dir = base.path();
    let (server, storage, mirror) = two_buckets();
    let mut rng = fastrand::Rng::with_seed(19);
    small_objects(&storage, 300, &mut rng);
    for i in 0..2 {
        put(
            &storage,
            &format!("media/large-{i}.bin"),
            &random(&mut rng, 40 * MIB),
            HOUR,
        );
    }
    // Objects from 16 MiB go up in parts (200 MiB by default).
    std::fs::write(
        dir.join("mirror.yaml"),
        playbook("    multipart_threshold: 16MiB\n    server_side_copy: false\n"),
    )
    .expect("playbook");
    let mut child = Drillbook::in_dir(dir)
        .args(&[
            "run",
            "mirror.yaml",
            "--var",
            &format!("source={STORAGE}"),
            "--var",
            &format!("destination={MIRROR}"),
        ])
        .envs(server.env())
        .discard_output()
        .spawn();
    // Large objects go first: interrupt while one is being uploaded in parts.
    common::wait_for(Duration::from_secs(30), "a multipart upload", || {
        server
            .upload_files()
            .iter()
            .any(|name| name.contains(".part-"))
    });
    child.interrupt();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "still running");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    eprintln!(
        "interrupted: exited {:.1} s after SIGINT",
        started.elapsed().as_secs_f64()
    );

    let records = common::journal(dir, &run_of(dir, "mirror"));
    assert_eq!(
        common::events(&records, "step_finished", Some("mirror"))[0]["status"],
        "cancelled"
    );
    // The upload in flight was aborted before the process ended: no parts, no markers.
    assert_eq!(server.upload_files(), Vec::<String>::new());
    let markers = server.root.join("mirror/.drillbook-incomplete");
    assert!(
        !markers.exists() || tree(&markers).is_empty(),
        "{:?}",
        tree(&markers)
    );
    // Nothing half-copied is visible, and what was copied is in the saved report.
    let source = tree(&storage);
    let copied = tree(&mirror);
    for (key, entry) in &copied {
        assert_eq!(source.get(key), Some(entry), "{key}");
    }
    if mirror.join(REPORT).exists() {
        for (key, entry) in report_in(&mirror) {
            assert_eq!(copied.get(&key), Some(&entry), "{key}");
        }
    }
}

#[test]
fn impossible_parameters_are_refused_before_running() {
    let output = Drillbook::new()
        .playbook(
            "mirror.yaml",
            &playbook("    concurrency: 0\n    part_size: 1MiB\n"),
        )
        .args(&["validate", "mirror.yaml"])
        .expect_status(2)
        .run();
    assert!(
        output.stderr.contains("`concurrency` is at least 1"),
        "{}",
        output.stderr
    );
    assert!(
        output
            .stderr
            .contains("`part_size` is from 5MiB to 5GiB (S3's limits on a part), not 1MiB"),
        "{}",
        output.stderr
    );
}
