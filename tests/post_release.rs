//! The shipped post-release-verify, end to end, against local stores that drillbook itself
//! filled first: a real database backup (nightly-backup against the test PostgreSQL), a real
//! mirror (storage-mirror) and a real configuration backup (`config-backup`). The Markdown
//! block it writes names the real keys and SHA-256s, read back from the stores' own manifests
//! and report; a damaged configuration backup fails the run and no block is written.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::drill::{json_report, run_of, shipped, step};
use common::{Drillbook, minutes};

fn sha256_hex(bytes: &[u8]) -> String {
    common::artifacts::sha256_hex(bytes)
}

/// Runs a playbook `--mode live` in `dir` with `vars`; asserts it succeeded.
fn live(dir: &Path, playbook: &str, vars: &[String], env: &[(String, String)]) -> common::Output {
    let mut args = vec![
        "run".to_owned(),
        playbook.to_owned(),
        "--mode".into(),
        "live".into(),
    ];
    for var in vars {
        args.push("--var".into());
        args.push(var.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Drillbook::in_dir(dir)
        .args(&args)
        .envs(env)
        .deadline(minutes(5))
        .run()
}

#[test]
fn post_release_verify_prints_the_real_artifact_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let stores = tempfile::tempdir().expect("tempdir");
    let backups = stores.path().join("backups");
    let storage = stores.path().join("storage");
    let mirror = stores.path().join("mirror");
    let config = stores.path().join("config");

    // A real backup of a real database.
    let database = common::pg::TestDb::create("drillbook_post_release");
    common::pg::fixture(&database, 500, None);
    let output = live(
        dir,
        &shipped("nightly-backup.yaml"),
        &[format!("store={}", backups.display())],
        &[("DATABASE_URL".into(), database.url())],
    );
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);

    // A real mirror of a bucket.
    for i in 0..12 {
        let path = storage.join(format!("uploads/{}/object-{i}.bin", i % 3));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, format!("object {i} ").repeat(50 + i)).expect("write");
    }
    let output = live(
        dir,
        &shipped("storage-mirror.yaml"),
        &[
            format!("storage={}", storage.display()),
            format!("mirror={}", mirror.display()),
            "storage_class=STANDARD".into(),
        ],
        &[],
    );
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);

    // A real configuration backup.
    let (secret, public) = drillbook::encryption::generate();
    let work = tempfile::tempdir().expect("tempdir");
    let env_file = work.path().join(".env.production");
    std::fs::write(&env_file, "SECRET_KEY=release-test\n").expect("write");
    let key_file = work.path().join("config.agekey");
    std::fs::write(&key_file, format!("{secret}\n")).expect("write");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let playbook = work.path().join("config-backup.yaml");
    std::fs::write(
        &playbook,
        format!(
            r#"version: 1
name: config-backup
secrets: [CONFIG_FINGERPRINT_KEY]
targets:
  live: {{ store: "{}" }}
  drill: {{ store: "{}/drill" }}
steps:
  - id: env
    kind: config-backup
    file: "{}"
    store: "{{{{ target.store }}}}"
    recipients: ["{public}"]
    fingerprint_key: "{{{{ secrets.CONFIG_FINGERPRINT_KEY }}}}"
"#,
            config.display(),
            work.path().display(),
            env_file.display()
        ),
    )
    .expect("write");
    let output = live(
        dir,
        &playbook.display().to_string(),
        &[],
        &[(
            "CONFIG_FINGERPRINT_KEY".into(),
            "a-fingerprint-key-of-32-bytes-ok".into(),
        )],
    );
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);

    // What the stores hold, read from their own manifests and report.
    let dump_manifest = std::fs::read_dir(&backups)
        .expect("backups")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".dump.manifest.json"))
        .expect("a dump manifest");
    let dump: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&dump_manifest).expect("read")).expect("json");
    let report_bytes = std::fs::read(mirror.join(".drillbook/checksums.json")).expect("report");
    let config_manifest = common::files_below(&config)
        .into_iter()
        .find(|(key, _)| key.ends_with(".age.manifest.json"))
        .expect("a configuration backup's manifest");
    let sealed: serde_json::Value = serde_json::from_slice(&config_manifest.1).expect("json");

    let notes = dir.join("release-notes.md");
    let verify = |dir: &Path| {
        live(
            dir,
            &shipped("post-release-verify.yaml"),
            &[
                format!("store={}", backups.display()),
                format!("mirror={}", mirror.display()),
                format!("config_store={}", config.display()),
                "release=v9.9.9".into(),
                format!("notes={}", notes.display()),
            ],
            &[],
        )
    };
    let output = verify(dir);
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let block = std::fs::read_to_string(&notes).expect("the notes were written");
    let row = |name: &str| {
        block
            .lines()
            .find(|line| line.starts_with(&format!("| {name}")))
            .unwrap_or_else(|| panic!("no `{name}` row in:\n{block}"))
            .to_owned()
    };
    assert!(
        block.starts_with("### Backups verified after v9.9.9\n"),
        "{block}"
    );
    let database_row = row("database backup");
    for expected in [
        dump["key"].as_str().expect("key"),
        dump["sha256"].as_str().expect("sha256"),
    ] {
        assert!(
            database_row.contains(&format!("`{expected}`")),
            "{database_row}"
        );
    }
    let mirror_row = row("storage mirror");
    assert!(
        mirror_row.contains("`.drillbook/checksums.json`")
            && mirror_row.contains(&format!("`{}`", sha256_hex(&report_bytes)))
            && mirror_row.contains("12 objects"),
        "{mirror_row}"
    );
    let config_row = row("configuration backup");
    let config_key = sealed["key"].as_str().expect("key");
    let config_sha = sealed["sha256"].as_str().expect("sha256");
    assert!(
        config_row.contains(&format!("`{config_key}`"))
            && config_row.contains(&format!("`{config_sha}`")),
        "{config_row}"
    );
    let time = |text: &str| text.trim().parse::<jiff::Timestamp>().expect("a time");
    let cells: Vec<&str> = config_row.split('|').collect();
    assert_eq!(
        time(cells[cells.len() - 2]),
        time(sealed["taken_at"].as_str().expect("time")),
        "{config_row}"
    );
    // The ciphertext's hash is that of the stored bytes, re-read (deep).
    let stored = std::fs::read(config.join(config_key)).expect("ciphertext");
    assert_eq!(sha256_hex(&stored), config_sha);
    // The same block is the message in the run's report, for whoever reads that instead.
    let run = run_of(dir, "post-release-verify");
    let report = json_report(dir, &run);
    assert_eq!(step(&report, "config")["outputs"]["newest"], config_key);
    let markdown = Drillbook::in_dir(dir)
        .args(&["report", &run, "--format", "md"])
        .deadline(minutes(1))
        .run()
        .stdout;
    assert!(markdown.contains(config_sha), "{markdown}");

    // A damaged configuration backup (one byte flipped): the run fails, no block is written.
    std::fs::remove_file(&notes).expect("remove");
    let mut damaged = stored.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    std::fs::write(config.join(config_key), &damaged).expect("damage");
    let output = verify(dir);
    assert_eq!(output.status, 1, "{}\n{}", output.stdout, output.stderr);
    assert!(!notes.exists(), "no notes from a failed check");
}
