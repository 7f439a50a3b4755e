//! The shipped storage playbooks, unchanged, against the real S3 server.

mod common;

use std::path::Path;

use common::drill::{drill, json_report, run_of, shipped, step};
use common::s3::S3Server;

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

fn files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let key = path.strip_prefix(root).expect("under root");
                found.push((
                    key.display().to_string(),
                    std::fs::read(&path).expect("read"),
                ));
            }
        }
    }
    found.sort();
    found
}

/// Runs the shipped storage-mirror from `s3://storage/production` to `s3://mirror/production`.
fn mirror(dir: &Path, env: &[(String, String)]) -> common::Output {
    drill(
        dir,
        &[
            "run",
            &shipped("storage-mirror.yaml"),
            "--var",
            "storage=s3://storage/production",
            "--var",
            "mirror=s3://mirror/production",
            "--var",
            "storage_class=STANDARD",
        ],
        env,
        3,
    )
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
    let source = files(&server.root.join("storage/production"));
    let mirrored: Vec<_> = files(&server.root.join("mirror/production"))
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
        "storage=s3://storage/production",
        "--var",
        "mirror=s3://mirror/production",
    ];
    let output = mirror(dir.path(), &env);
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let before = files(&server.root.join("storage/production"));

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
    let output = drill(dir.path(), &restore, &env, 3);
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let after: Vec<_> = files(&server.root.join("storage/production"))
        .into_iter()
        .filter(|(key, _)| !key.starts_with(".drillbook"))
        .collect();
    assert_eq!(after, before, "every object is back, byte for byte");
    let report = json_report(dir.path(), &run_of(dir.path(), "storage-restore"));
    // At least the 7 lost and the corrupted one. The bucket has no checksum report of its
    // own yet, so today every object is copied back (issue 5: compare by hash instead).
    let copied = step(&report, "restore")["outputs"]["copied"]
        .as_u64()
        .expect("copied");
    assert!((8..=20).contains(&copied), "{copied}");
    assert_eq!(step(&report, "parity")["status"], "succeeded");
    assert_eq!(step(&report, "approve")["status"], "skipped");
    assert_eq!(report["objectives"]["rto"]["met"], true);
}
