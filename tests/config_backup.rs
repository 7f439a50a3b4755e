//! Configuration backups (`config-backup`, `config-restore`) through the real binary, into a
//! local directory and into the loopback S3 server: a version only when the file changed,
//! restores that give the same bytes, a wrong identity that fails clearly and touches nothing,
//! and a canary that proves the plaintext reaches no store object, journal, log or report.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::drill::{json_report, step};
use common::s3::S3Server;
use common::{Drillbook, files_below, minutes, run_ids};

const FINGERPRINT_KEY: &str = "test-fingerprint-key-0123456789abcdef";

/// An age identity written as `age-keygen` writes it (mode 0600), and its public key.
fn identity(dir: &Path, name: &str) -> (PathBuf, String) {
    let (secret, public) = drillbook::encryption::generate();
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("# created: test\n# public key: {public}\n{secret}\n"),
    )
    .expect("write identity");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    (path, public)
}

/// A playbook backing up `file` into `store`, encrypted to `recipient`.
fn backup_playbook(dir: &Path, file: &Path, store: &str, recipient: &str) -> String {
    let path = dir.join("config-backup.yaml");
    std::fs::write(
        &path,
        format!(
            r#"version: 1
name: config-backup
secrets: [CONFIG_FINGERPRINT_KEY]
targets:
  live: {{ store: "{store}" }}
  drill: {{ store: "{store}" }}
steps:
  - id: env
    kind: config-backup
    file: "{}"
    store: "{{{{ target.store }}}}"
    recipients: ["{recipient}"]
    fingerprint_key: "{{{{ secrets.CONFIG_FINGERPRINT_KEY }}}}"
"#,
            file.display()
        ),
    )
    .expect("write playbook");
    path.display().to_string()
}

/// A playbook restoring the version `key` (or the newest of `env.production`) to `to`.
fn restore_playbook(
    dir: &Path,
    store: &str,
    identity: &Path,
    to: &Path,
    key: Option<&str>,
) -> String {
    let path = dir.join("config-restore.yaml");
    let which = match key {
        Some(key) => format!("key: \"{key}\""),
        None => "name: env.production".to_owned(),
    };
    std::fs::write(
        &path,
        format!(
            r#"version: 1
name: config-restore
targets:
  live: {{ file: "{to}" }}
  drill: {{ file: "{to}" }}
steps:
  - id: env_back
    kind: config-restore
    store: "{store}"
    {which}
    identity: "{}"
    to: "{{{{ target.file }}}}"
"#,
            identity.display(),
            to = to.display()
        ),
    )
    .expect("write playbook");
    path.display().to_string()
}

/// Runs `playbook` live in `dir`; returns the exit status and the new run's JSON report.
fn run(dir: &Path, playbook: &str, env: &[(String, String)]) -> (i32, serde_json::Value) {
    let before = run_ids(dir);
    let output = Drillbook::in_dir(dir)
        .args(&["run", playbook, "--mode", "live"])
        .env("CONFIG_FINGERPRINT_KEY", FINGERPRINT_KEY)
        .envs(env)
        .deadline(minutes(2))
        .run();
    let id = run_ids(dir)
        .into_iter()
        .find(|id| !before.contains(id))
        .unwrap_or_else(|| panic!("no new run: {}\n{}", output.stdout, output.stderr));
    (output.status, json_report(dir, &id))
}

/// One round trip against a store: `objects()` counts what the store holds.
fn round_trip(store: &str, env: &[(String, String)], objects: &dyn Fn() -> usize) {
    let work = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    let (key_file, public) = identity(work.path(), "config.agekey");
    let file = work.path().join(".env.production");
    std::fs::write(&file, "DATABASE_URL=postgres://app@db/app\nFEATURE=1\n").expect("write");
    let backup = backup_playbook(work.path(), &file, store, &public);

    let (status, report) = run(state.path(), &backup, env);
    assert_eq!(status, 0, "{report:#}");
    let first = step(&report, "env")["outputs"].clone();
    assert_eq!(first["changed"], true, "{first}");
    let first_key = first["key"].as_str().expect("key").to_owned();
    assert!(
        first_key.starts_with("env.production/") && first_key.ends_with(".age"),
        "{first_key}"
    );
    assert!(first_key.contains(&first["sha256"].as_str().expect("sha256")[..12]));
    assert_eq!(objects(), 2, "the ciphertext and its manifest");

    // Unchanged: nothing written, and the outputs name the version that holds it.
    let (status, report) = run(state.path(), &backup, env);
    assert_eq!(status, 0, "{report:#}");
    let again = &step(&report, "env")["outputs"];
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(again["key"], first["key"]);
    assert_eq!(again["sha256"], first["sha256"]);
    assert_eq!(objects(), 2, "an unchanged file writes nothing");

    // Changed: a new version beside the first, which is kept.
    std::fs::write(
        &file,
        "DATABASE_URL=postgres://app@standby/app\nFEATURE=1\n",
    )
    .expect("write");
    let (status, report) = run(state.path(), &backup, env);
    assert_eq!(status, 0, "{report:#}");
    let second = step(&report, "env")["outputs"].clone();
    assert_eq!(second["changed"], true);
    assert_ne!(second["key"], first["key"]);
    assert_eq!(objects(), 4, "a changed file makes a new version");

    // The newest restores to the same bytes, mode 0600, over what was there.
    let to = work.path().join("restored.env");
    std::fs::write(&to, "OLD=1\n").expect("write");
    let restore = restore_playbook(work.path(), store, &key_file, &to, None);
    let (status, report) = run(state.path(), &restore, env);
    assert_eq!(status, 0, "{report:#}");
    assert_eq!(
        std::fs::read(&to).expect("restored"),
        std::fs::read(&file).expect("source")
    );
    let mode = std::fs::metadata(&to).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(step(&report, "env_back")["outputs"]["key"], second["key"]);
    assert_eq!(
        step(&report, "env_back")["outputs"]["sha256"],
        second["sha256"]
    );

    // The first version, by its key: the first content.
    let restore = restore_playbook(work.path(), store, &key_file, &to, Some(&first_key));
    let (status, report) = run(state.path(), &restore, env);
    assert_eq!(status, 0, "{report:#}");
    assert_eq!(
        std::fs::read_to_string(&to).expect("restored"),
        "DATABASE_URL=postgres://app@db/app\nFEATURE=1\n"
    );

    // A stranger's identity: a clear failure naming the file, and the destination untouched.
    let (stranger, _) = identity(work.path(), "stranger.agekey");
    std::fs::write(&to, "UNTOUCHED\n").expect("write");
    let restore = restore_playbook(work.path(), store, &stranger, &to, None);
    let (status, report) = run(state.path(), &restore, env);
    assert_eq!(status, 1, "{report:#}");
    let failed = step(&report, "env_back");
    let error = failed["error"].as_str().expect("error");
    assert!(
        error.contains(&format!("the identity file {}", stranger.display()))
            && error.contains("does not match the recipients"),
        "{error}"
    );
    assert_eq!(
        failed["attempts"].as_array().map(Vec::len),
        Some(1),
        "not retried"
    );
    assert_eq!(std::fs::read_to_string(&to).expect("kept"), "UNTOUCHED\n");
    let siblings: Vec<_> = std::fs::read_dir(work.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("drillbook-"))
        .collect();
    assert!(siblings.is_empty(), "temporary files left: {siblings:?}");
}

#[test]
fn a_local_store_keeps_a_version_per_change_and_restores_it() {
    let store = tempfile::tempdir().expect("tempdir");
    let root = store.path().join("config");
    let url = root.display().to_string();
    round_trip(&url, &[], &|| files_below(&root).len());
}

#[test]
fn an_s3_store_keeps_a_version_per_change_and_restores_it() {
    let server = S3Server::start();
    server.create_bucket("config");
    let root = server.root.join("config");
    round_trip("s3://config/production", &server.env(), &|| {
        files_below(&root.join("production")).len()
    });
}

/// A unique canary in the file: after a backup and a restore, no byte of the store, of the
/// state directory (journals, logs, captured output) or of any report format holds it; nor
/// does anything hold the fingerprint key.
#[test]
fn the_plaintext_reaches_no_store_journal_log_or_report() {
    let canary = format!(
        "CANARY_{:016x}{:016x}",
        std::process::id() as u64 ^ 0x5eed,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_nanos() as u64
    );
    let work = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    let store = tempfile::tempdir().expect("tempdir");
    let url = store.path().display().to_string();
    let (key_file, public) = identity(work.path(), "config.agekey");
    let file = work.path().join(".env.production");
    std::fs::write(&file, format!("API_TOKEN={canary}\n")).expect("write");
    let backup = backup_playbook(work.path(), &file, &url, &public);
    let (status, report) = run(state.path(), &backup, &[]);
    assert_eq!(status, 0, "{report:#}");
    let to = work.path().join("restored.env");
    let restore = restore_playbook(work.path(), &url, &key_file, &to, None);
    let (status, report) = run(state.path(), &restore, &[]);
    assert_eq!(status, 0, "{report:#}");
    assert!(
        std::fs::read_to_string(&to)
            .expect("restored")
            .contains(&canary),
        "the canary made the round trip"
    );

    let mut scanned = 0;
    let mut found = Vec::new();
    let mut scan = |what: String, bytes: &[u8]| {
        scanned += 1;
        for needle in [canary.as_bytes(), FINGERPRINT_KEY.as_bytes()] {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(what.clone());
            }
        }
    };
    for (path, bytes) in files_below(store.path()) {
        scan(format!("store {path}"), &bytes);
    }
    for (path, bytes) in files_below(state.path()) {
        scan(format!("state {path}"), &bytes);
    }
    for id in run_ids(state.path()) {
        for format in ["text", "md", "json", "junit", "html"] {
            let output = Drillbook::in_dir(state.path())
                .args(&["report", &id, "--format", format])
                .deadline(minutes(1))
                .run();
            assert_eq!(output.status, 0, "{}", output.stderr);
            assert!(!output.stdout.is_empty(), "report {format}");
            scan(format!("report {id} {format}"), output.stdout.as_bytes());
            scan(
                format!("report {id} {format} (stderr)"),
                output.stderr.as_bytes(),
            );
        }
    }
    assert!(
        found.is_empty(),
        "the plaintext or the key leaked into: {found:?}"
    );
    // Not vacuous: the store's two objects, two journals and their logs, ten reports.
    assert!(scanned >= 2 + 2 + 20, "{scanned} scanned");
    assert_eq!(files_below(store.path()).len(), 2);
}

/// An identity file others can read is refused before anything is fetched; a playbook without
/// recipients, with a secret key as a recipient or with a fingerprint key written in it does
/// not validate.
#[test]
fn hostile_identities_and_recipients_are_refused_clearly() {
    let work = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    let store = tempfile::tempdir().expect("tempdir");
    let url = store.path().display().to_string();
    let (key_file, public) = identity(work.path(), "config.agekey");
    let file = work.path().join(".env.production");
    std::fs::write(&file, "A=1\n").expect("write");
    let backup = backup_playbook(work.path(), &file, &url, &public);
    let (status, report) = run(state.path(), &backup, &[]);
    assert_eq!(status, 0, "{report:#}");

    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let to = work.path().join("restored.env");
    std::fs::write(&to, "UNTOUCHED\n").expect("write");
    let restore = restore_playbook(work.path(), &url, &key_file, &to, None);
    let (status, report) = run(state.path(), &restore, &[]);
    assert_eq!(status, 1, "{report:#}");
    let error = step(&report, "env_back")["error"]
        .as_str()
        .expect("error")
        .to_owned();
    assert!(
        error.contains(&format!("identity file {}", key_file.display()))
            && error.contains("mode 0644")
            && error.contains("chmod 600"),
        "{error}"
    );
    assert_eq!(std::fs::read_to_string(&to).expect("kept"), "UNTOUCHED\n");

    let (secret, _) = drillbook::encryption::generate();
    for (recipients, fingerprint, expected) in [
        (
            "",
            "{{ secrets.CONFIG_FINGERPRINT_KEY }}",
            "needs `recipients:`",
        ),
        (
            &format!("recipients: [\"{secret}\"]") as &str,
            "{{ secrets.CONFIG_FINGERPRINT_KEY }}",
            "is an age identity (a secret key), not a recipient",
        ),
        (
            &format!("recipients: [\"{public}\"]") as &str,
            "written-in-the-playbook",
            "`fingerprint_key` must come from a secret",
        ),
    ] {
        let path = work.path().join("hostile.yaml");
        std::fs::write(
            &path,
            format!(
                r#"version: 1
name: hostile
secrets: [CONFIG_FINGERPRINT_KEY]
steps:
  - id: env
    kind: config-backup
    file: "{}"
    store: "{url}"
    {recipients}
    fingerprint_key: "{fingerprint}"
"#,
                file.display()
            ),
        )
        .expect("write");
        let output = Drillbook::new()
            .args(&["validate", &path.display().to_string()])
            .run();
        assert_eq!(output.status, 2, "{}\n{}", output.stdout, output.stderr);
        let said = format!("{}{}", output.stdout, output.stderr);
        assert!(said.contains(expected), "{said}");
        assert!(
            said.contains("hostile.yaml:"),
            "the error has its place: {said}"
        );
    }
}
