//! The shipped storage playbooks, unchanged, against the real S3 server: the nightly jobs as
//! their schedule runs them (`--mode live`), storage-restore as a drill into the bucket the
//! test restores (its `drill_storage`).

mod common;

use std::path::Path;

use common::drill::{json_report, run_of, shipped, step};
use common::s3::S3Server;
use common::{Drillbook, files_below, minutes};

/// Writes `count` objects under `bucket/prefix` on the S3 server's disk (s3s-fs serves them).
fn seed(server: &S3Server, bucket: &str, prefix: &str, count: usize) {
    for i in 0..count {
        let path = server
            .root
            .join(bucket)
            .join(prefix)
            .join(format!("dir{}/object-{i}.bin", i % 3));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, format!("object {i} ").repeat(100 + i)).expect("write");
    }
}

/// Runs the shipped storage-mirror from `s3://storage/production` to `s3://mirror/production`,
/// as the nightly schedule does (`--mode live`).
fn mirror(dir: &Path, env: &[(String, String)]) -> common::Output {
    Drillbook::in_dir(dir)
        .args(&[
            "run",
            &shipped("storage-mirror.yaml"),
            "--mode",
            "live",
            "--var",
            "storage=s3://storage/production",
            "--var",
            "mirror=s3://mirror/production",
            "--var",
            "storage_class=STANDARD",
        ])
        .envs(env)
        .deadline(minutes(3))
        .run()
}

#[test]
fn storage_mirror_copies_the_bucket_and_proves_parity() {
    let server = S3Server::start();
    server.create_bucket("storage");
    server.create_bucket("mirror");
    seed(&server, "storage", "production", 30);
    let dir = tempfile::tempdir().expect("tempdir");
    let env = server.env();
    let output = mirror(dir.path(), &env);
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let source = files_below(&server.root.join("storage/production"));
    let mirrored: Vec<_> = files_below(&server.root.join("mirror/production"))
        .into_iter()
        .filter(|(key, _)| !key.starts_with(".drillbook"))
        .collect();
    assert_eq!(source.len(), 30);
    assert_eq!(mirrored, source, "the mirror holds the same keys and bytes");
    let report = json_report(dir.path(), &run_of(dir.path(), "storage-mirror"));
    assert_eq!(step(&report, "mirror")["outputs"]["copied"], 30);
    assert_eq!(step(&report, "parity")["status"], "succeeded");
    assert_eq!(step(&report, "parity")["outputs"]["missing"], 0);

    // An object deleted at the source stays in the mirror, and the next night still passes.
    std::fs::remove_file(server.root.join("storage/production/dir0/object-0.bin")).expect("rm");
    let output = mirror(dir.path(), &env);
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    assert!(
        server
            .root
            .join("mirror/production/dir0/object-0.bin")
            .is_file()
    );
    let second = common::drill::runs_of(dir.path(), "storage-mirror")
        .into_iter()
        .find(|id| {
            json_report(dir.path(), id)["steps"][1]["evidence"]
                .to_string()
                .contains("kept on purpose")
        });
    assert!(
        second.is_some(),
        "the second night lists the extra object as kept"
    );
}

#[test]
fn storage_restore_brings_lost_objects_back_from_the_mirror() {
    let server = S3Server::start();
    server.create_bucket("storage");
    server.create_bucket("mirror");
    seed(&server, "storage", "production", 20);
    let dir = tempfile::tempdir().expect("tempdir");
    let env = server.env();
    let buckets = [
        "--var",
        "drill_storage=s3://storage/production",
        "--var",
        "mirror=s3://mirror/production",
    ];
    let output = mirror(dir.path(), &env);
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let before = files_below(&server.root.join("storage/production"));

    // Disaster: a third of the bucket is lost, one object is corrupted (same size).
    for i in (0..20).step_by(3) {
        std::fs::remove_file(
            server
                .root
                .join(format!("storage/production/dir{}/object-{i}.bin", i % 3)),
        )
        .expect("rm");
    }
    let corrupted = server.root.join("storage/production/dir1/object-1.bin");
    let mut bytes = std::fs::read(&corrupted).expect("read");
    bytes[0] ^= 0xff;
    std::fs::write(&corrupted, bytes).expect("corrupt");

    let restore_playbook = shipped("storage-restore.yaml");
    let mut restore = vec!["run", restore_playbook.as_str()];
    restore.extend(buckets);
    let output = Drillbook::in_dir(dir.path())
        .args(&restore)
        .envs(&env)
        .deadline(minutes(3))
        .run();
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let after: Vec<_> = files_below(&server.root.join("storage/production"))
        .into_iter()
        .filter(|(key, _)| !key.starts_with(".drillbook"))
        .collect();
    assert_eq!(after, before, "every object is back, byte for byte");
    let report = json_report(dir.path(), &run_of(dir.path(), "storage-restore"));
    // Exactly the 7 lost and the corrupted one: the bucket has no checksum report of its own,
    // so the other 12 were re-hashed there against the mirror's report, not copied again.
    assert_eq!(step(&report, "restore")["outputs"]["copied"], 8);
    assert_eq!(step(&report, "restore")["outputs"]["unchanged"], 12);
    assert_eq!(step(&report, "parity")["status"], "succeeded");
    assert_eq!(step(&report, "approve")["status"], "skipped");
    assert_eq!(report["objectives"]["rto"]["met"], true);
}

/// The mirror's checksum report, rewritten as if its last sync were `ago` in the past.
fn age_report(root: &Path, ago: jiff::SignedDuration) {
    let path = root.join(".drillbook/checksums.json");
    let mut report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("report")).expect("report JSON");
    let then = jiff::Timestamp::now() - ago;
    report["updated_at"] = then.to_string().into();
    std::fs::write(&path, serde_json::to_vec(&report).expect("JSON")).expect("write report");
}

/// Flips the first byte of a file: same size, other bytes.
fn flip(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[0] ^= 0xff;
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn storage_restore_refuses_a_stale_or_damaged_mirror() {
    let server = S3Server::start();
    server.create_bucket("storage");
    server.create_bucket("mirror");
    seed(&server, "storage", "production", 12);
    let dir = tempfile::tempdir().expect("tempdir");
    let env = server.env();
    let output = mirror(dir.path(), &env);
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let storage = server.root.join("storage/production");
    let mirrored = server.root.join("mirror/production");
    let lost = storage.join("dir1/object-4.bin");
    let damaged = storage.join("dir2/object-5.bin");
    std::fs::remove_file(&lost).expect("rm");
    std::fs::remove_file(&damaged).expect("rm");
    let restore_playbook = shipped("storage-restore.yaml");
    let restore = [
        "run",
        restore_playbook.as_str(),
        "--var",
        "drill_storage=s3://storage/production",
        "--var",
        "mirror=s3://mirror/production",
    ];

    // A mirror last synced three days ago: stopped before anything is written.
    age_report(&mirrored, jiff::SignedDuration::from_hours(72));
    let output = Drillbook::in_dir(dir.path())
        .args(&restore)
        .envs(&env)
        .deadline(minutes(3))
        .run();
    assert_eq!(output.status, 1, "{}\n{}", output.stdout, output.stderr);
    let first = run_of(dir.path(), "storage-restore");
    let report = json_report(dir.path(), &first);
    let check = step(&report, "check_mirror");
    assert_eq!(check["status"], "failed");
    assert!(
        check["error"]
            .as_str()
            .expect("error")
            .contains("old (at most"),
        "{check}"
    );
    assert_ne!(step(&report, "restore")["status"], "succeeded");
    assert!(
        step(&report, "restore")["attempts"]
            .as_array()
            .is_none_or(|a| a.is_empty())
    );
    assert!(!lost.exists() && !damaged.exists(), "nothing was written");

    // A fresh mirror with one object damaged in it (same size): everything else comes back,
    // the damaged copy is not written over the bucket, and the run fails naming it.
    // (Damaged as bit rot would: the file's time is older than the report's, so the
    // report still vouches for it and only reading the bytes shows the damage.)
    let rotten = mirrored.join("dir2/object-5.bin");
    flip(&rotten);
    std::fs::File::options()
        .write(true)
        .open(&rotten)
        .and_then(|file| {
            file.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        })
        .expect("backdate");
    age_report(&mirrored, jiff::SignedDuration::ZERO);
    let output = Drillbook::in_dir(dir.path())
        .args(&restore)
        .envs(&env)
        .deadline(minutes(3))
        .run();
    assert_eq!(output.status, 1, "{}\n{}", output.stdout, output.stderr);
    let run = common::drill::runs_of(dir.path(), "storage-restore")
        .into_iter()
        .find(|id| id != &first)
        .expect("second run");
    let report = json_report(dir.path(), &run);
    let restored = step(&report, "restore");
    assert_eq!(restored["status"], "failed");
    let error = restored["error"].as_str().expect("error");
    assert!(
        error.contains("dir2/object-5.bin")
            && error.contains("not those the source's checksum report records"),
        "{error}"
    );
    assert!(
        restored["evidence"].to_string().contains("not tried again"),
        "{restored}"
    );
    assert!(lost.is_file(), "the intact lost object is back");
    assert!(!damaged.exists(), "the damaged copy was not written");
    assert_eq!(restored["outputs"]["copied"], 1);
}

/// Runs the shipped weekly-verify; returns its exit status and report.
fn weekly(dir: &Path, env: &[(String, String)]) -> (i32, serde_json::Value) {
    let before = common::drill::runs_of(dir, "weekly-verify");
    let output = Drillbook::in_dir(dir)
        .args(&[
            "run",
            &shipped("weekly-verify.yaml"),
            "--var",
            "store=s3://backups/production",
            "--var",
            "mirror=s3://mirror/production",
        ])
        .envs(env)
        .deadline(minutes(3))
        .run();
    let run = common::drill::runs_of(dir, "weekly-verify")
        .into_iter()
        .find(|id| !before.contains(id))
        .unwrap_or_else(|| panic!("no new run: {}\n{}", output.stdout, output.stderr));
    (output.status, json_report(dir, &run))
}

/// The JUnit report of the newest weekly-verify run: (testcases, failed testcase names).
fn junit(dir: &Path) -> (usize, Vec<String>) {
    let run = common::drill::runs_of(dir, "weekly-verify")
        .into_iter()
        .max_by_key(|id| {
            std::fs::metadata(dir.join(".drillbook/runs").join(id))
                .and_then(|m| m.modified())
                .ok()
        })
        .expect("a run");
    let output = Drillbook::in_dir(dir)
        .args(&["report", &run, "--format", "junit"])
        .deadline(minutes(1))
        .run();
    let xml = roxmltree::Document::parse(&output.stdout).expect("JUnit parses");
    let cases: Vec<_> = xml
        .descendants()
        .filter(|node| node.has_tag_name("testcase"))
        .collect();
    let failed = cases
        .iter()
        .filter(|case| case.children().any(|c| c.has_tag_name("failure")))
        .map(|case| case.attribute("name").unwrap_or_default().to_owned())
        .collect();
    (cases.len(), failed)
}

#[test]
fn weekly_verify_passes_when_fresh_and_fails_on_each_breakage() {
    let server = S3Server::start();
    for bucket in ["storage", "mirror", "backups"] {
        server.create_bucket(bucket);
    }
    seed(&server, "storage", "production", 10);
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let env = server.env();
    let output = mirror(dir, &env);
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let database = common::pg::TestDb::create("drillbook_weekly");
    common::pg::fixture(&database, 3_000, None);
    let mut backup_env = env.clone();
    backup_env.push(("DATABASE_URL".into(), database.url()));
    let output = Drillbook::in_dir(dir)
        .args(&[
            "run",
            &shipped("nightly-backup.yaml"),
            "--mode",
            "live",
            "--var",
            "store=s3://backups/production",
        ])
        .envs(&backup_env)
        .deadline(minutes(5))
        .run();
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let backups = server.root.join("backups/production");
    let dump = std::fs::read_dir(&backups)
        .expect("backups")
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|e| e == "dump"))
        .expect("a dump");
    let mirrored = server.root.join("mirror/production");

    // Everything fresh and intact: both branches pass, JUnit for CI says so.
    let (status, report) = weekly(dir, &env);
    assert_eq!(status, 0, "{report:#}");
    assert_eq!(
        step(&report, "verify_backup")["status"],
        "succeeded",
        "{report:#}"
    );
    assert_eq!(
        step(&report, "verify_mirror")["status"],
        "succeeded",
        "{report:#}"
    );
    assert_eq!(junit(dir), (3, vec![]));

    // Bit rot in the mirror: only re-reading the bytes (deep) finds it.
    let rotten = mirrored.join("dir0/object-3.bin");
    let modified = std::fs::metadata(&rotten)
        .and_then(|m| m.modified())
        .expect("mtime");
    let rot = |path: &Path| {
        flip(path);
        std::fs::File::options()
            .write(true)
            .open(path)
            .and_then(|file| file.set_modified(modified))
            .expect("keep the time");
    };
    rot(&rotten);
    let (status, report) = weekly(dir, &env);
    assert_eq!(status, 1, "{report:#}");
    let mirror_check = step(&report, "verify_mirror");
    assert_eq!(mirror_check["status"], "failed");
    assert_eq!(mirror_check["outputs"]["mismatched"], 1);
    assert!(
        mirror_check["evidence"]
            .to_string()
            .contains("dir0/object-3.bin"),
        "{mirror_check}"
    );
    assert_eq!(
        step(&report, "verify_backup")["status"],
        "succeeded",
        "{report:#}"
    );
    assert_eq!(junit(dir), (3, vec!["verify_mirror".to_owned()]));
    rot(&rotten);

    // A damaged backup (same size): its SHA-256 no longer matches the manifest.
    flip(&dump);
    let (status, report) = weekly(dir, &env);
    assert_eq!(status, 1, "{report:#}");
    let backup_check = step(&report, "verify_backup");
    assert_eq!(backup_check["status"], "failed");
    assert!(
        backup_check["error"]
            .to_string()
            .contains("its manifest says"),
        "{backup_check}"
    );
    assert_eq!(
        step(&report, "verify_mirror")["status"],
        "succeeded",
        "{report:#}"
    );
    flip(&dump);

    // A mirror whose last sync was three days ago.
    age_report(&mirrored, jiff::SignedDuration::from_hours(72));
    let (status, report) = weekly(dir, &env);
    assert_eq!(status, 1, "{report:#}");
    let mirror_check = step(&report, "verify_mirror");
    assert!(
        mirror_check["error"].to_string().contains("old (at most"),
        "{mirror_check}"
    );
    assert_eq!(
        step(&report, "verify_backup")["status"],
        "succeeded",
        "{report:#}"
    );
    age_report(&mirrored, jiff::SignedDuration::ZERO);

    // The newest backup is two days old (the nightly job stopped).
    let old_key = drillbook::manifest::dump_key(
        jiff::Timestamp::now() - jiff::SignedDuration::from_hours(48),
    );
    let manifest_path = |dump: &Path| {
        dump.with_file_name(drillbook::manifest::manifest_key(
            &dump.file_name().expect("name").to_string_lossy(),
        ))
    };
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(manifest_path(&dump)).expect("manifest"))
            .expect("JSON");
    manifest["key"] = old_key.clone().into();
    let old_dump = backups.join(&old_key);
    std::fs::rename(&dump, &old_dump).expect("rename");
    std::fs::remove_file(manifest_path(&dump)).expect("rm manifest");
    std::fs::write(
        manifest_path(&old_dump),
        serde_json::to_vec(&manifest).expect("JSON"),
    )
    .expect("manifest");
    let (status, report) = weekly(dir, &env);
    assert_eq!(status, 1, "{report:#}");
    assert_eq!(
        step(&report, "assess")["outputs"]["backup"],
        old_key.as_str()
    );
    let backup_check = step(&report, "verify_backup");
    assert_eq!(backup_check["status"], "failed");
    assert!(
        backup_check["error"].to_string().contains("old (at most"),
        "{backup_check}"
    );
    assert_eq!(
        step(&report, "verify_mirror")["status"],
        "succeeded",
        "{report:#}"
    );

    // The backup store cannot be listed (its bucket is gone): `assess` fails at once (a
    // permanent error, one attempt despite its retry), and the mirror still gives its verdict.
    std::fs::remove_dir_all(&backups).expect("remove the backups");
    std::fs::remove_dir_all(server.root.join("backups")).expect("remove the bucket");
    let (status, report) = weekly(dir, &env);
    assert_eq!(status, 1, "{report:#}");
    let assess = step(&report, "assess");
    assert_eq!(assess["status"], "failed", "{assess}");
    assert_eq!(
        assess["attempts"].as_array().map(Vec::len),
        Some(1),
        "{assess}"
    );
    assert_eq!(
        assess["attempts"][0]["error_class"], "permanent",
        "{assess}"
    );
    assert_eq!(step(&report, "verify_backup")["status"], "skipped");
    assert_eq!(
        step(&report, "verify_mirror")["status"],
        "succeeded",
        "{report:#}"
    );
}
