//! The S3 fault suite: backup, restore, mirror (`sync`), `verify` and `assess` run through the
//! fault proxy (tests/common/faults.rs: 503 storms, resets before and after the server acted,
//! truncated bodies, slow answers, wrong Content-Length) at 5 % and 15 % of requests, for
//! several seeds. Each run either succeeds with correct data — checked on the S3 server's
//! disk, not through the proxy — or fails cleanly (exit 1, a message, no panic); after any
//! run no object differs from its manifest or checksum report, and `assess` never picks a
//! backup whose object and manifest disagree.
//!
//! `cargo test` runs two seeds per rate; `DRILLBOOK_FAULT_SEEDS=N` runs N (bench/faults.sh).

mod common;

use std::path::{Path, PathBuf};

use common::artifacts::{
    backup_problems, backups, mirror_differences, missing_from_mirror, random_objects,
    report_problems,
};
use common::drill::{json_report, step};
use common::faults::FaultProxy;
use common::pg::{TestDb, fixture};
use common::s3::S3Server;
use common::tally::{RATES, Tally, seeds};
use common::{Drillbook, Output, minutes, run_ids};

/// Seeds per rate in `cargo test`.
const BOUNDED: u64 = 2;

/// Rows of random text beside the fixture: a dump of about 10 MB, so uploads are multipart
/// and downloads are ranged.
const BIG_ROWS: u64 = 250_000;

fn source_db() -> TestDb {
    let source = TestDb::create("dbk_fault_src");
    fixture(&source, 5_000, None);
    source.psql(&format!(
        "CREATE TABLE big (id bigserial PRIMARY KEY, payload text);
         INSERT INTO big (payload)
             SELECT md5(random()::text) || md5(random()::text)
               FROM generate_series(1, {BIG_ROWS})"
    ));
    source
}

/// Runs the playbook `text` (written to `name` in `dir`) with `env`; its output and run id.
fn run_playbook(
    dir: &Path,
    name: &str,
    text: &str,
    env: &[(String, String)],
    extra: &[(&str, String)],
) -> (Output, String) {
    std::fs::write(dir.join(name), text).expect("playbook");
    let before = run_ids(dir);
    let output = Drillbook::in_dir(dir)
        .args(&["run", name, "--mode", "live"])
        .envs(env)
        .envs(extra)
        .deadline(minutes(4))
        .run();
    let run = run_ids(dir)
        .into_iter()
        .find(|id| !before.contains(id))
        .unwrap_or_default();
    (output, run)
}

fn backup_playbook(store: &str) -> String {
    format!(
        "version: 1\nname: fault-backup\nsecrets: [DATABASE_URL]\nsteps:\n  - id: backup\n    kind: backup\n    database: \"{{{{ secrets.DATABASE_URL }}}}\"\n    store: {store}\n    retry: {{ attempts: 2, backoff: 1s }}\n  - id: verify\n    kind: verify\n    source: {store}\n    backup: \"{{{{ steps.backup.outputs.key }}}}\"\n    deep: true\n    retry: {{ attempts: 2, backoff: 1s }}\n"
    )
}

/// One backup of `source` into `store`, straight to the server (no faults).
fn backup_directly(dir: &Path, server: &S3Server, source: &TestDb, store: &str) {
    let (output, _) = run_playbook(
        dir,
        "backup.yaml",
        &backup_playbook(store),
        &server.env(),
        &[("DATABASE_URL", source.url())],
    );
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
}

fn label(what: &str, rate: f64, seed: u64) -> String {
    format!("{what} at {:.0}% seed {seed}", rate * 100.0)
}

#[test]
fn backups_through_faults_are_correct_or_fail_cleanly() {
    let mut tally = Tally::new("backup");
    let server = S3Server::start();
    server.create_bucket("backups");
    let source = source_db();
    let counts = source.row_counts();
    for rate in RATES {
        for seed in seeds(BOUNDED) {
            let label = label("backup", rate, seed);
            let dir = tempfile::tempdir().expect("tempdir");
            let prefix = format!("r{}-s{seed}", (rate * 100.0) as u32);
            let proxy = FaultProxy::start(&server.endpoint, rate, seed);
            let (output, run) = run_playbook(
                dir.path(),
                "backup.yaml",
                &backup_playbook(&format!("s3://backups/{prefix}")),
                &proxy.env(&server),
                &[("DATABASE_URL", source.url())],
            );
            tally.counts.add(&proxy.counts());
            drop(proxy);
            let on_disk = server.root.join("backups").join(&prefix);
            let succeeded = tally.run(&label, &output);
            // Whatever happened, no manifest describes other bytes than its dump's.
            tally.check(&label, backup_problems(&on_disk));
            if succeeded {
                let found = backups(&on_disk);
                if found.len() != 1 {
                    tally.check(&label, vec![format!("{} backups stored", found.len())]);
                    continue;
                }
                let report = json_report(dir.path(), &run);
                let key = step(&report, "backup")["outputs"]["key"].clone();
                if found[0].0 != key.as_str().unwrap_or_default() {
                    tally.check(
                        &label,
                        vec![format!("stored {}, reported {key}", found[0].0)],
                    );
                }
                let recorded: Vec<(String, u64)> = found[0].1["tables"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        (
                            format!("{}.{}", t["schema"].as_str().unwrap_or(""), t["table"]),
                            t["rows"].as_u64().unwrap_or(0),
                        )
                    })
                    .map(|(name, rows)| (name.replace('"', ""), rows))
                    .collect();
                if recorded != counts {
                    tally.check(&label, vec![format!("manifest counts {recorded:?}")]);
                }
            }
        }
    }
    tally.finish();
}

fn restore_playbook(store: &str) -> String {
    format!(
        "version: 1\nname: fault-restore\nsecrets: [RESTORE_URL]\nsteps:\n  - id: assess\n    kind: assess\n    store: {store}\n    retry: {{ attempts: 2, backoff: 1s }}\n  - id: restore\n    kind: restore\n    backup: \"{{{{ steps.assess.outputs.backup }}}}\"\n    store: {store}\n    target: \"{{{{ secrets.RESTORE_URL }}}}\"\n    jobs: 2\n    retry: {{ attempts: 2, backoff: 1s }}\n"
    )
}

#[test]
fn restores_through_faults_are_whole_or_leave_the_target_alone() {
    let mut tally = Tally::new("restore");
    let server = S3Server::start();
    server.create_bucket("backups");
    let source = source_db();
    let setup = tempfile::tempdir().expect("tempdir");
    backup_directly(setup.path(), &server, &source, "s3://backups/prod");
    let expected = source.content_hashes();
    for rate in RATES {
        for seed in seeds(BOUNDED) {
            let label = label("restore", rate, seed);
            let dir = tempfile::tempdir().expect("tempdir");
            let target = TestDb::create("dbk_fault_tgt");
            target.psql("CREATE TABLE keep_me (id int); INSERT INTO keep_me VALUES (7)");
            let untouched = target.content_hashes();
            let proxy = FaultProxy::start(&server.endpoint, rate, seed);
            let (output, _) = run_playbook(
                dir.path(),
                "restore.yaml",
                &restore_playbook("s3://backups/prod"),
                &proxy.env(&server),
                &[("RESTORE_URL", target.url())],
            );
            tally.counts.add(&proxy.counts());
            drop(proxy);
            let now = target.content_hashes();
            if tally.run(&label, &output) {
                if now != expected {
                    tally.check(
                        &label,
                        vec![format!("restored {now:?}, source {expected:?}")],
                    );
                }
            } else if now != untouched {
                tally.check(
                    &label,
                    vec![format!("a failed restore changed the target: {now:?}")],
                );
            }
        }
    }
    tally.finish();
}

/// Objects for the mirror: many small ones and two above a part (uploaded as one streamed
/// request each), under nested keys.
fn mirror_source(dir: &Path) -> PathBuf {
    let source = dir.join("objects");
    random_objects(&source, 7, 24, 200_000, 3, "object");
    source
}

fn mirror_playbook(local: &Path, up: &str, copy: &str, down: &Path) -> String {
    let retry = "retry: { attempts: 2, backoff: 1s }";
    format!(
        "version: 1\nname: fault-mirror\nsteps:\n  - id: up\n    kind: sync\n    source: {}\n    destination: {up}\n    {retry}\n  - id: copy\n    kind: sync\n    needs: [up]\n    source: {up}\n    destination: {copy}\n    {retry}\n  - id: down\n    kind: sync\n    needs: [copy]\n    source: {copy}\n    destination: {}\n    {retry}\n  - id: parity\n    kind: verify\n    needs: [copy]\n    source: {up}\n    destination: {copy}\n    deep: true\n    {retry}\n",
        local.display(),
        down.display()
    )
}

#[test]
fn mirrors_through_faults_are_byte_identical_or_fail_cleanly() {
    let mut tally = Tally::new("mirror");
    let server = S3Server::start();
    server.create_bucket("storage");
    let base = tempfile::tempdir().expect("tempdir");
    let local = mirror_source(base.path());
    for rate in RATES {
        for seed in seeds(BOUNDED) {
            let label = label("mirror", rate, seed);
            let dir = tempfile::tempdir().expect("tempdir");
            let name = format!("r{}-s{seed}", (rate * 100.0) as u32);
            let down = dir.path().join("down");
            let text = mirror_playbook(
                &local,
                &format!("s3://storage/up-{name}"),
                &format!("s3://storage/copy-{name}"),
                &down,
            );
            let proxy = FaultProxy::start(&server.endpoint, rate, seed);
            let (output, _) =
                run_playbook(dir.path(), "mirror.yaml", &text, &proxy.env(&server), &[]);
            tally.counts.add(&proxy.counts());
            drop(proxy);
            let succeeded = tally.run(&label, &output);
            let up = server.root.join("storage").join(format!("up-{name}"));
            let copy = server.root.join("storage").join(format!("copy-{name}"));
            for (what, mirror) in [("up", &up), ("copy", &copy), ("down", &down)] {
                let label = format!("{label} ({what})");
                // Nothing in a mirror differs from the source or from its checksum report.
                tally.check(&label, mirror_differences(&local, mirror));
                tally.check(&label, report_problems(mirror));
                if succeeded {
                    tally.check(&label, missing_from_mirror(&local, mirror));
                }
            }
        }
    }
    tally.finish();
}

fn verify_playbook(store: &str) -> String {
    format!(
        "version: 1\nname: fault-verify\nsteps:\n  - id: verify\n    kind: verify\n    source: {store}\n    deep: true\n    retry: {{ attempts: 2, backoff: 1s }}\n"
    )
}

#[test]
fn verify_through_faults_never_passes_a_corrupt_mirror() {
    let mut tally = Tally::new("verify");
    let server = S3Server::start();
    server.create_bucket("storage");
    let base = tempfile::tempdir().expect("tempdir");
    let local = mirror_source(base.path());
    // A good mirror, and a copy of it with one byte of one object flipped on the server's disk.
    let setup = tempfile::tempdir().expect("tempdir");
    for name in ["good", "bad"] {
        let text = format!(
            "version: 1\nname: seed-{name}\nsteps:\n  - id: up\n    kind: sync\n    source: {}\n    destination: s3://storage/{name}\n",
            local.display()
        );
        let (output, _) = run_playbook(setup.path(), "seed.yaml", &text, &server.env(), &[]);
        assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    }
    let flipped = server.root.join("storage/bad/d1/object-4.bin");
    let mut bytes = std::fs::read(&flipped).expect("object");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&flipped, bytes).expect("flip");
    for rate in RATES {
        for seed in seeds(BOUNDED) {
            for (name, good) in [("good", true), ("bad", false)] {
                let label = label(&format!("verify {name}"), rate, seed);
                let dir = tempfile::tempdir().expect("tempdir");
                let proxy = FaultProxy::start(&server.endpoint, rate, seed);
                let (output, _) = run_playbook(
                    dir.path(),
                    "verify.yaml",
                    &verify_playbook(&format!("s3://storage/{name}")),
                    &proxy.env(&server),
                    &[],
                );
                tally.counts.add(&proxy.counts());
                drop(proxy);
                if tally.run(&label, &output) && !good {
                    tally.check(&label, vec!["passed a mirror with a flipped byte".into()]);
                }
            }
        }
    }
    tally.finish();
}

fn assess_playbook(store: &str) -> String {
    format!(
        "version: 1\nname: fault-assess\nsteps:\n  - id: assess\n    kind: assess\n    store: {store}\n    retry: {{ attempts: 2, backoff: 1s }}\n"
    )
}

#[test]
fn assess_through_faults_never_picks_a_backup_its_manifest_does_not_describe() {
    let mut tally = Tally::new("assess");
    let server = S3Server::start();
    server.create_bucket("backups");
    let source = TestDb::create("dbk_fault_assess");
    fixture(&source, 2_000, None);
    let setup = tempfile::tempdir().expect("tempdir");
    // Three backups: the oldest good, the middle one emptied (0 bytes under a manifest
    // claiming more, as in the issue), the newest cut short by a byte.
    for _ in 0..3 {
        backup_directly(setup.path(), &server, &source, "s3://backups/prod");
    }
    let store = server.root.join("backups/prod");
    let found = backups(&store);
    assert_eq!(found.len(), 3, "{found:?}");
    let good = found[0].0.clone();
    std::fs::write(store.join(&found[1].0), b"").expect("empty the middle one");
    // And a store of two good backups: the newest must be chosen, a transient error while
    // reading its manifest must not make an older one look like the newest good backup.
    for _ in 0..2 {
        backup_directly(setup.path(), &server, &source, "s3://backups/two");
    }
    let two = backups(&server.root.join("backups/two"));
    let newest_good = two[1].0.clone();
    let newest = store.join(&found[2].0);
    let bytes = std::fs::read(&newest).expect("dump");
    std::fs::write(&newest, &bytes[..bytes.len() - 1]).expect("cut the newest");
    for rate in RATES {
        for seed in seeds(BOUNDED) {
            let label = label("assess", rate, seed);
            let dir = tempfile::tempdir().expect("tempdir");
            let proxy = FaultProxy::start(&server.endpoint, rate, seed);
            let (output, run) = run_playbook(
                dir.path(),
                "assess.yaml",
                &assess_playbook("s3://backups/prod"),
                &proxy.env(&server),
                &[],
            );
            tally.counts.add(&proxy.counts());
            drop(proxy);
            if tally.run(&label, &output) {
                let report = json_report(dir.path(), &run);
                let chosen = &step(&report, "assess")["outputs"]["backup"];
                if chosen != good.as_str() {
                    tally.check(&label, vec![format!("chose {chosen}, not {good}")]);
                }
            }
            let label = format!("{label} (two good)");
            let proxy = FaultProxy::start(&server.endpoint, rate, seed + 1000);
            let (output, run) = run_playbook(
                dir.path(),
                "assess2.yaml",
                &assess_playbook("s3://backups/two"),
                &proxy.env(&server),
                &[],
            );
            tally.counts.add(&proxy.counts());
            drop(proxy);
            if tally.run(&label, &output) {
                let report = json_report(dir.path(), &run);
                let chosen = &step(&report, "assess")["outputs"]["backup"];
                if chosen != newest_good.as_str() {
                    tally.check(&label, vec![format!("chose {chosen}, not {newest_good}")]);
                }
            }
        }
    }
    tally.finish();
}
