//! Point-in-time recovery against real throwaway PostgreSQL 15 clusters: a primary archiving
//! through `drillbook wal push`, base backups taken by the `backup` step (`format: base`)
//! into the same directory store, and restores from them.

mod common;

use std::path::Path;

use common::archiving::{ArchivingPrimary, server_bin};
use common::artifacts::sha256_hex;
use common::{Drillbook, Output, minutes};

/// Runs `playbook` (YAML text) in `dir` against `primary` (DATABASE_URL) as a live run.
fn run(dir: &Path, playbook: &str, primary: &ArchivingPrimary) -> Output {
    std::fs::write(dir.join("p.yaml"), playbook).unwrap();
    Drillbook::in_dir(dir)
        .args(&["run", "p.yaml", "--mode", "live"])
        .env("DATABASE_URL", primary.url())
        .deadline(minutes(5))
        .run()
}

fn base_backup_playbook(store: &Path) -> String {
    format!(
        "version: 1\nname: base-backup\nsecrets: [DATABASE_URL]\nsteps:\n  - id: backup\n    kind: backup\n    format: base\n    database: \"{{{{ secrets.DATABASE_URL }}}}\"\n    store: {}\n",
        store.display()
    )
}

/// The base backups' manifests in a directory store, oldest first.
fn base_manifests(store: &Path) -> Vec<serde_json::Value> {
    let mut names: Vec<_> = std::fs::read_dir(store.join("base"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".tar.zst.manifest.json"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .map(|name| {
            serde_json::from_slice(&std::fs::read(store.join("base").join(name)).unwrap()).unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_base_backup_streams_into_the_archive_with_the_wal_range_it_needs() {
    let primary = ArchivingPrimary::start().await;
    primary.sql("CREATE TABLE drill (id int, note text)");
    primary.sql("INSERT INTO drill SELECT g, md5(g::text) FROM generate_series(1, 20000) g");
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &base_backup_playbook(&primary.store), &primary);
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);

    let manifests = base_manifests(&primary.store);
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    let manifest = &manifests[0];
    assert_eq!(manifest["format"], "base");
    assert_eq!(manifest["compression"], "zstd");
    assert_eq!(manifest["timeline"], 1);
    assert_eq!(manifest["wal_segment_size"], 16 << 20);
    let key = manifest["key"].as_str().unwrap();
    let object = std::fs::read(primary.store.join(key)).unwrap();
    assert_eq!(manifest["size"], object.len() as u64);
    assert_eq!(manifest["sha256"], sha256_hex(&object));
    assert!(manifest["tar_size"].as_u64().unwrap() > object.len() as u64);
    // pg_backup_stop waited for the WAL the backup needs: it is in the archive.
    for field in ["start_segment", "end_segment"] {
        let segment = manifest[field].as_str().unwrap();
        let archived = primary
            .store
            .join("wal")
            .join(&segment[..16])
            .join(format!("{segment}.zst"));
        assert!(archived.is_file(), "{field} {segment} is not archived");
    }

    // The object is pg_basebackup's tar as zstd reads it, and PostgreSQL's own verifier
    // accepts what it holds against its backup_manifest.
    let extracted = tempfile::tempdir().unwrap();
    let unpacked = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc '{}' | tar -xf - -C '{}'",
            primary.store.join(key).display(),
            extracted.path().display()
        ))
        .status()
        .unwrap();
    assert!(unpacked.success());
    let label = std::fs::read_to_string(extracted.path().join("backup_label")).unwrap();
    assert!(
        label.contains(&format!(
            "START WAL LOCATION: {} (file {})",
            manifest["start_lsn"].as_str().unwrap(),
            manifest["start_segment"].as_str().unwrap()
        )),
        "{label}"
    );
    let backup_manifest =
        std::fs::read_to_string(extracted.path().join("backup_manifest")).unwrap();
    assert!(
        backup_manifest.contains(&format!(
            "\"Manifest-Checksum\": \"{}\"",
            manifest["backup_manifest_checksum"].as_str().unwrap()
        )),
        "the manifest records backup_manifest's own checksum"
    );
    assert!(backup_manifest.contains(&format!(
        "\"End-LSN\": \"{}\"",
        manifest["end_lsn"].as_str().unwrap()
    )));
    let verified = std::process::Command::new(server_bin().join("pg_verifybackup"))
        .arg("--no-parse-wal")
        .arg(extracted.path())
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    // The record of the upload in flight went once the manifest was written.
    let run = common::run_ids(dir.path()).pop().unwrap();
    let pending = dir.path().join(".drillbook/runs").join(run).join("pending");
    assert_eq!(common::walk(&pending), Vec::<std::path::PathBuf>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_base_backup_of_a_server_that_does_not_archive_is_refused_before_it_starts() {
    let base = tempfile::tempdir().unwrap();
    let cluster = drillbook::connect::cluster::Cluster::create(base.path(), "plain", Some(15))
        .await
        .unwrap();
    let store = base.path().join("store");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), base_backup_playbook(&store)).unwrap();
    let output = Drillbook::in_dir(dir.path())
        .args(&["run", "p.yaml", "--mode", "live"])
        .env("DATABASE_URL", cluster.url("postgres"))
        .deadline(minutes(2))
        .run();
    cluster.destroy().await.unwrap();
    assert_ne!(output.status, 0);
    let text = format!("{}\n{}", output.stdout, output.stderr);
    assert!(text.contains("archive_mode is off"), "{text}");
    assert!(
        !store.join("base").exists() || std::fs::read_dir(store.join("base")).unwrap().count() == 0,
        "nothing was stored"
    );
}

fn restore_playbook(store: &Path, key: &str, recovery_target: &str, expect: &str) -> String {
    format!(
        r#"version: 1
name: pitr-restore
steps:
  - id: restore
    kind: restore
    backup: {key}
    store: {store}
    target: ephemeral
    recovery_target: "{recovery_target}"
  - id: check
    kind: smoke-test
    database: "{{{{ steps.restore.outputs.target }}}}"
    checks:
      - sql: "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM drill"
        expect: "{expect}"
"#,
        store = store.display()
    )
}

/// The `restore` step's outputs in the only run under `dir`.
fn restore_outputs(dir: &Path) -> serde_json::Value {
    common::finished_step(dir, "restore")["outputs"].clone()
}

/// A primary with a base backup taken by drillbook, then row 1, a moment, row 2, all
/// archived: (primary, base backup key, the moment between the rows).
async fn backed_up_with_two_rows() -> (ArchivingPrimary, String, String) {
    let primary = ArchivingPrimary::start().await;
    primary.sql("CREATE TABLE drill (id int, note text)");
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &base_backup_playbook(&primary.store), &primary);
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let key = base_manifests(&primary.store)[0]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    primary.sql("INSERT INTO drill VALUES (1, 'before the target')");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let moment = primary.sql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    primary.sql("INSERT INTO drill VALUES (2, 'after the target')");
    primary.switch_and_archive();
    (primary, key, moment)
}

fn restore(dir: &Path, playbook: &str) -> Output {
    std::fs::write(dir.join("r.yaml"), playbook).unwrap();
    Drillbook::in_dir(dir)
        .args(&["run", "r.yaml"])
        .deadline(minutes(5))
        .run()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_to_a_moment_has_the_row_before_it_and_not_the_one_after() {
    let (primary, key, moment) = backed_up_with_two_rows().await;
    let archive_before = common::archiving::contents(&primary.store);

    let dir = tempfile::tempdir().unwrap();
    let output = restore(
        dir.path(),
        &restore_playbook(&primary.store, &key, &moment, "1"),
    );
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let outputs = restore_outputs(dir.path());
    assert_eq!(outputs["target_reached"], true, "{outputs}");
    assert_eq!(outputs["timeline"], 2, "{outputs}");
    assert!(outputs["recovered_to"].as_str().unwrap() < moment.replace('T', " ").as_str());

    let dir = tempfile::tempdir().unwrap();
    let output = restore(
        dir.path(),
        &restore_playbook(&primary.store, &key, "latest", "1,2"),
    );
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);

    // The restored clusters archived nothing: their timeline 2 is not in the archive.
    assert_eq!(common::archiving::contents(&primary.store), archive_before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_past_the_archive_fails_with_postgresql_s_own_words() {
    let (primary, key, _) = backed_up_with_two_rows().await;
    let later = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(1))
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let output = restore(
        dir.path(),
        &restore_playbook(&primary.store, &key, &later, "1,2"),
    );
    assert_ne!(output.status, 0);
    let text = format!("{}\n{}", output.stdout, output.stderr);
    assert!(
        text.contains("recovery ended before configured recovery target was reached"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hole_in_the_archive_refuses_the_restore_and_a_damaged_segment_fails_it() {
    let (primary, key, _) = backed_up_with_two_rows().await;
    primary.sql("INSERT INTO drill VALUES (3, 'later still')");
    primary.switch_and_archive();
    primary.sql("INSERT INTO drill VALUES (4, 'and later')");
    primary.switch_and_archive();
    let manifest = &base_manifests(&primary.store)[0];
    let end = manifest["end_segment"].as_str().unwrap().to_owned();
    let mut segments: Vec<String> = common::walk(&primary.store.join("wal"))
        .into_iter()
        .map(|p| p.display().to_string())
        .filter(|p| p.ends_with(".zst") && p.len() == "0000000100000000/".len() + 28)
        .collect();
    segments.sort();
    // A segment after the backup's end and before the newest.
    let middle = segments
        .iter()
        .find(|p| p.as_str() > format!("{}/{end}.zst", &end[..16]).as_str())
        .unwrap()
        .clone();
    assert_ne!(&middle, segments.last().unwrap());
    let middle_path = primary.store.join("wal").join(&middle);
    let kept = std::fs::read(&middle_path).unwrap();

    // Damaged: one byte changed near the end of the compressed segment.
    let mut damaged = kept.clone();
    let at = damaged.len() - 10;
    damaged[at] ^= 0xff;
    std::fs::write(&middle_path, &damaged).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = restore(
        dir.path(),
        &restore_playbook(&primary.store, &key, "latest", "1,2,3,4"),
    );
    assert_ne!(output.status, 0);
    let text = format!("{}\n{}", output.stdout, output.stderr);
    assert!(text.contains("a segment could not be read"), "{text}");

    // Missing: named, and nothing restored.
    std::fs::remove_file(&middle_path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = restore(
        dir.path(),
        &restore_playbook(&primary.store, &key, "latest", "1,2,3,4"),
    );
    assert_ne!(output.status, 0);
    let text = format!("{}\n{}", output.stdout, output.stderr);
    let name = middle.rsplit('/').next().unwrap().trim_end_matches(".zst");
    assert!(text.contains(&format!("lacks {name}")), "{text}");
    assert!(!text.contains("recovered to"), "{text}");
}

/// RPO over the archive comes from the last archived commit: an idle primary goes on
/// switching segments, and the newest segment's time would understate the loss.
#[tokio::test(flavor = "multi_thread")]
async fn assess_over_the_archive_measures_the_rpo_from_the_last_archived_commit() {
    let (primary, key, _) = backed_up_with_two_rows().await;
    // The last commit, then idleness: segments switched with no commit in them.
    let last: jiff::Timestamp = {
        primary.sql("INSERT INTO drill VALUES (9, 'the last commit')");
        primary
            .sql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
            .parse()
            .unwrap()
    };
    primary.switch_and_archive();
    std::thread::sleep(std::time::Duration::from_secs(2));
    primary.sql("CHECKPOINT");
    let idle_segment = primary.switch_and_archive();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        format!(
            "version: 1\nname: archive-rpo\nobjectives:\n  rpo: 1h\nsteps:\n  - id: assess\n    kind: assess\n    store: {}\n",
            primary.store.display()
        ),
    )
    .unwrap();
    let output = Drillbook::in_dir(dir.path())
        .args(&["run", "a.yaml"])
        .deadline(minutes(2))
        .run();
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let finished = common::finished_step(dir.path(), "assess");
    let outputs = &finished["outputs"];
    assert_eq!(outputs["backup"], key.as_str());
    let taken: jiff::Timestamp = outputs["taken_at"].as_str().unwrap().parse().unwrap();
    // The commit happened just before `last` was read, and 2 s before the idle segment.
    let before_last = last.duration_since(taken);
    assert!(
        before_last >= jiff::SignedDuration::ZERO
            && before_last < jiff::SignedDuration::from_millis(500),
        "taken_at {taken}, the commit just before {last}"
    );
    let evidence = finished.to_string();
    assert!(evidence.contains("the archive runs unbroken"), "{evidence}");
    assert!(
        evidence.contains(&format!("to {idle_segment}")),
        "the idle segment is archived and was looked past: {evidence}"
    );
}

/// A hole in the archive is named by `assess`.
#[tokio::test(flavor = "multi_thread")]
async fn assess_names_a_hole_in_the_archive() {
    let (primary, _, _) = backed_up_with_two_rows().await;
    primary.sql("INSERT INTO drill VALUES (3, 'later')");
    let hole = primary.switch_and_archive();
    primary.sql("INSERT INTO drill VALUES (4, 'later still')");
    primary.switch_and_archive();
    std::fs::remove_file(
        primary
            .store
            .join("wal")
            .join(&hole[..16])
            .join(format!("{hole}.zst")),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        format!(
            "version: 1\nname: archive-hole\nsteps:\n  - id: assess\n    kind: assess\n    store: {}\n",
            primary.store.display()
        ),
    )
    .unwrap();
    let output = Drillbook::in_dir(dir.path())
        .args(&["run", "a.yaml"])
        .deadline(minutes(2))
        .run();
    assert_ne!(output.status, 0);
    let text = format!("{}\n{}", output.stdout, output.stderr);
    assert!(text.contains(&format!("lacks {hole}")), "{text}");
}

fn shipped(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("playbooks")
        .join(name)
        .display()
        .to_string()
}

/// base-backup.yaml twice, the first backup made 8 days old: the second run keeps itself and
/// prunes the old backup and only the WAL before its own start; then pitr-restore-drill.yaml
/// restores from what is left and meets its objectives.
#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_base_backup_prunes_and_the_shipped_pitr_drill_restores() {
    let primary = ArchivingPrimary::start().await;
    primary.sql("CREATE TABLE drill (id int, note text)");
    primary.sql("INSERT INTO drill VALUES (1, 'in every backup')");
    let store = primary.store.display().to_string();
    let base_backup = |dir: &Path| {
        let output = Drillbook::in_dir(dir)
            .args(&[
                "run",
                &shipped("base-backup.yaml"),
                "--mode",
                "live",
                "--var",
                &format!("wal_store={store}"),
            ])
            .env("DATABASE_URL", primary.url())
            .deadline(minutes(5))
            .run();
        assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    };
    let dir = tempfile::tempdir().unwrap();
    base_backup(dir.path());
    // The first backup, made 8 days old: renamed, its manifest rewritten to match.
    let first = base_manifests(&primary.store).remove(0);
    let first_key = first["key"].as_str().unwrap().to_owned();
    let old_at = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_hours(8 * 24))
        .unwrap();
    let old_key = format!("base/{}.tar.zst", old_at.strftime("%Y%m%dT%H%M%S%.3fZ"));
    let mut old = first.clone();
    old["key"] = old_key.clone().into();
    old["started_at"] = old_at.to_string().into();
    old["finished_at"] = old_at.to_string().into();
    std::fs::rename(primary.store.join(&first_key), primary.store.join(&old_key)).unwrap();
    std::fs::remove_file(primary.store.join(format!("{first_key}.manifest.json"))).unwrap();
    std::fs::write(
        primary.store.join(format!("{old_key}.manifest.json")),
        serde_json::to_vec_pretty(&old).unwrap(),
    )
    .unwrap();
    for i in 2..5 {
        primary.sql(&format!(
            "INSERT INTO drill VALUES ({i}, 'between the backups')"
        ));
        primary.switch_and_archive();
    }

    let dir = tempfile::tempdir().unwrap();
    base_backup(dir.path());
    let manifests = base_manifests(&primary.store);
    assert_eq!(
        manifests.len(),
        1,
        "the old backup is pruned: {manifests:?}"
    );
    let kept = &manifests[0];
    assert_ne!(kept["key"], old_key.as_str());
    assert!(!primary.store.join(&old_key).exists());
    let start = kept["start_segment"].as_str().unwrap();
    let wal: Vec<String> = common::walk(&primary.store.join("wal"))
        .into_iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        wal.iter().any(|name| name == &format!("{start}.zst")),
        "the kept backup's start segment stays: {wal:?}"
    );
    assert!(
        wal.iter().all(|name| &name[..24] >= start),
        "no WAL before the kept backup's start is left: {wal:?}"
    );
    primary.sql("INSERT INTO drill VALUES (5, 'after the second backup')");
    primary.switch_and_archive();

    let dir = tempfile::tempdir().unwrap();
    let output = Drillbook::in_dir(dir.path())
        .args(&[
            "run",
            &shipped("pitr-restore-drill.yaml"),
            "--var",
            &format!("wal_store={store}"),
        ])
        .deadline(minutes(5))
        .run();
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    let assessed = common::finished_step(dir.path(), "assess");
    assert!(
        assessed.to_string().contains("the last commit archived"),
        "the RPO comes from the archive: {assessed}"
    );
    assert_eq!(assessed["outputs"]["backup"], kept["key"]);
    assert_eq!(restore_outputs(dir.path())["target_reached"], true);
}

/// database-restore.yaml in a drill, with the WAL archive beside the dumps: `assess_archive`
/// reads the archive's last commit (a write after the dump), while the RPO the report gives is
/// the age of the dump the restore brought back.
#[tokio::test(flavor = "multi_thread")]
async fn the_database_restore_reports_the_archive_beside_the_dump_it_restored() {
    let primary = ArchivingPrimary::start().await;
    primary.sql("CREATE TABLE drill (id int, note text)");
    primary.sql("INSERT INTO drill VALUES (1, 'in the dump')");
    let dir = tempfile::tempdir().unwrap();
    let dumps = dir.path().join("dumps");
    let nightly = Drillbook::in_dir(dir.path())
        .args(&[
            "run",
            &shipped("nightly-backup.yaml"),
            "--mode",
            "live",
            "--var",
            &format!("store={}", dumps.display()),
        ])
        .env("DATABASE_URL", primary.url())
        .deadline(minutes(5))
        .run();
    assert_eq!(nightly.status, 0, "{}\n{}", nightly.stdout, nightly.stderr);
    let output = run(dir.path(), &base_backup_playbook(&primary.store), &primary);
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    primary.sql("INSERT INTO drill VALUES (2, 'only in the archive')");
    primary.switch_and_archive();

    let staging = common::pg::TestDb::create("drillbook_pitr_staging");
    let env_file = dir.path().join("app.env");
    std::fs::write(&env_file, "DATABASE_URL=postgres://old@db/app\n").unwrap();
    let output = Drillbook::in_dir(dir.path())
        .args(&[
            "run",
            &shipped("database-restore.yaml"),
            "--run-id",
            "restore-drill",
            "--approve-all",
            "--var",
            &format!("store={}", dumps.display()),
            "--var",
            &format!("drill_wal_store={}", primary.store.display()),
            "--var",
            &format!("drill_env_file={}", env_file.display()),
            "--var",
            "drill_redis_host=127.0.0.1",
        ])
        .env("DRILL_RESTORE_URL", staging.url())
        .env("DRILL_REDIS_URL", "redis://127.0.0.1:6379/14")
        .deadline(minutes(5))
        .run();
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    assert_eq!(
        staging.psql("SELECT string_agg(note, ',') FROM drill"),
        "in the dump"
    );

    let report = common::drill::json_report(dir.path(), "restore-drill");
    let archive = common::drill::step(&report, "assess_archive");
    assert_eq!(archive["status"], "succeeded", "{archive}");
    assert!(
        archive.to_string().contains("the last commit archived"),
        "{archive}"
    );
    let (dump, archived) = (
        common::drill::assessed_age(&report, "assess"),
        common::drill::assessed_age(&report, "assess_archive"),
    );
    assert!(dump > archived + 1.0, "dump {dump} s, archive {archived} s");
    let achieved = common::drill::reported_rpo(&report);
    assert!(
        (achieved - dump).abs() < 1.0,
        "RPO {achieved} s, the dump's age {dump} s"
    );
}
