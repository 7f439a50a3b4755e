//! `assess` against a real S3 server never chooses a backup whose object and manifest
//! disagree: the newest one, emptied (0 bytes under a manifest claiming more, what a broken
//! upload once left), is skipped with the reason in the evidence, and the one before it chosen.

mod common;

use std::time::Duration;

use common::Drillbook;
use common::s3::S3Server;
use drillbook::manifest::{Manifest, dump_key, manifest_key};
use sha2::Digest;

/// Writes a backup straight into the bucket's directory: `bytes` under its key and a manifest
/// that claims `claimed` bytes.
fn put_backup(server: &S3Server, age_hours: i64, bytes: &[u8], claimed: u64) -> String {
    let at = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(age_hours);
    let key = dump_key(at);
    let manifest = Manifest {
        manifest_version: 1,
        key: key.clone(),
        size: claimed,
        sha256: sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        format: "custom".into(),
        compression: 1,
        compressed_with: None,
        database: "app".into(),
        server_version: "15.0".into(),
        pg_dump_version: "15.0".into(),
        started_at: at,
        snapshot_at: at,
        finished_at: at,
        tables: Vec::new(),
        large_objects: 0,
        created_by: "test".into(),
    };
    let dir = server.root.join("backups/prod");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(&key), bytes).unwrap();
    std::fs::write(dir.join(manifest_key(&key)), manifest.to_bytes()).unwrap();
    key
}

#[test]
fn assess_skips_an_emptied_backup_in_s3_and_chooses_the_one_before() {
    let server = S3Server::start();
    server.create_bucket("backups");
    let good = put_backup(&server, 5, b"a good dump", 11);
    let emptied = put_backup(&server, 1, b"", 2_962_307);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "version: 1\nname: pick\nsteps:\n  - id: assess\n    kind: assess\n    store: s3://backups/prod\n",
    )
    .unwrap();
    let output = Drillbook::in_dir(dir.path())
        .args(&["run", "p.yaml"])
        .envs(server.env())
        .deadline(Duration::from_secs(60))
        .run();
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let run = common::only_run(dir.path());
    let finished = common::journal(dir.path(), &run)
        .into_iter()
        .find(|r| r["event"] == "step_finished" && r["step"] == "assess")
        .expect("assess finished");
    assert_eq!(finished["outputs"]["backup"], good.as_str(), "{finished:#}");
    let evidence = finished["evidence"].to_string();
    assert!(
        evidence.contains(&format!(
            "skipped {emptied}: size mismatch: the manifest says 2962307 bytes, the store holds 0"
        )),
        "{evidence}"
    );
}
