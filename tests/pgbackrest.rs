//! `engine: pgbackrest`: a stanza on a throwaway PostgreSQL 15 cluster (a posix repository,
//! archive_command `pgbackrest archive-push`), backed up by pgBackRest itself, then assessed
//! and restored to a time by drillbook — the same before/after rows check as drillbook's own
//! point-in-time restore. pgBackRest is Debian's package (`.ci/run` installs it).

mod common;

use std::path::{Path, PathBuf};

use common::archiving::{ArchivingPrimary, postgres_ids};
use common::{Drillbook, minutes};

/// The stanza's configuration, in `dir` (repository, logs and locks there too).
fn configure(dir: &Path, cluster: &drillbook::connect::cluster::Cluster) -> PathBuf {
    let (uid, gid) = postgres_ids();
    for sub in ["repo", "log", "lock"] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
    }
    let config = dir.join("pgbackrest.conf");
    std::fs::write(
        &config,
        format!(
            "[global]\nrepo1-path={}\nrepo1-retention-full=2\nlog-path={}\nlock-path={}\nlog-level-console=warn\nlog-level-file=off\nstart-fast=y\n\n[drill]\npg1-path={}\npg1-port={}\npg1-socket-path={}\n",
            dir.join("repo").display(),
            dir.join("log").display(),
            dir.join("lock").display(),
            cluster.dir.join("data").display(),
            cluster.port,
            cluster.dir.join("socket").display()
        ),
    )
    .unwrap();
    std::os::unix::fs::chown(&config, Some(uid), Some(gid)).unwrap();
    config
}

fn pgbackrest(config: &Path, args: &[&str]) {
    let output = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--", "pgbackrest"])
        .arg(format!("--config={}", config.display()))
        .arg("--stanza=drill")
        .args(args)
        .output()
        .expect("pgbackrest (Debian's package; .ci/run installs it)");
    assert!(
        output.status.success(),
        "pgbackrest {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn drill(config: &Path, recovery_target: &str, expect: &str) -> String {
    format!(
        r#"version: 1
name: pgbackrest-drill
objectives:
  rpo: 1h
steps:
  - id: assess
    kind: assess
    engine: pgbackrest
    stanza: drill
    config: {config}
  - id: restore
    kind: restore
    engine: pgbackrest
    stanza: drill
    config: {config}
    backup: "{{{{ steps.assess.outputs.backup }}}}"
    target: ephemeral
    recovery_target: "{recovery_target}"
  - id: check
    kind: smoke-test
    database: "{{{{ steps.restore.outputs.target }}}}"
    checks:
      - sql: "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM drill"
        expect: "{expect}"
"#,
        config = config.display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pgbackrest_stanza_restores_to_a_time_with_the_row_before_and_not_the_one_after() {
    let mut config = PathBuf::new();
    let primary = ArchivingPrimary::start_with(|store, cluster| {
        config = configure(store, cluster);
        format!(
            "pgbackrest --config={} --stanza=drill archive-push %p",
            config.display()
        )
    })
    .await;
    pgbackrest(&config, &["stanza-create"]);
    primary.sql("CREATE TABLE drill (id int, note text)");
    pgbackrest(&config, &["backup", "--type=full"]);
    primary.sql("INSERT INTO drill VALUES (1, 'before the target')");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let moment = primary.sql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    primary.sql("INSERT INTO drill VALUES (2, 'after the target')");
    primary.switch_and_archive();

    for (target, expect) in [(moment.as_str(), "1"), ("latest", "1,2")] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.yaml"), drill(&config, target, expect)).unwrap();
        let output = Drillbook::in_dir(dir.path())
            .args(&["run", "p.yaml"])
            .deadline(minutes(5))
            .run();
        assert_eq!(
            output.status, 0,
            "{target}: {}\n{}",
            output.stdout, output.stderr
        );
        let assessed = common::finished_step(dir.path(), "assess");
        assert!(
            assessed.to_string().contains("the last commit archived"),
            "the RPO comes from the archive's last commit: {assessed}"
        );
        assert_eq!(
            common::finished_step(dir.path(), "restore")["outputs"]["target_reached"],
            true
        );
    }
}
