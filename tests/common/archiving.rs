//! A throwaway PostgreSQL primary whose archiver runs the real `drillbook wal push` into a
//! directory store: what the WAL and point-in-time recovery tests back up, archive and restore
//! from. Its server runs as the `postgres` OS user (TESTING.md), so the store and every
//! directory above the binary must let that user through.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drillbook::connect::cluster::Cluster;

/// The postgres OS user's uid and gid: the server's files must be its own.
pub fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| {
        let output = std::process::Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id");
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse::<u32>()
            .expect("the postgres OS user")
    };
    (id("-u"), id("-g"))
}

/// The newest installed server programs' directory (TESTING.md).
pub fn server_bin() -> PathBuf {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server programs")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort();
    PathBuf::from(format!(
        "/usr/lib/postgresql/{}/bin",
        versions.last().expect("a PostgreSQL version")
    ))
}

/// Runs a server program as the postgres OS user; panics with its output on failure.
pub fn as_postgres(program: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("runuser");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{program:?} {args:?}: {text}");
    text
}

/// A data directory stopped by `pg_ctl stop` when the test ends, however it ends.
pub struct Server {
    pub data: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(server_bin().join("pg_ctl"))
            .args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
    }
}

pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A primary archiving into `store` (a directory the postgres user owns) through the real
/// binary. Stopped when dropped; its files go with `base`.
pub struct ArchivingPrimary {
    pub base: tempfile::TempDir,
    pub store: PathBuf,
    pub cluster: Cluster,
    _server: Server,
}

impl ArchivingPrimary {
    /// Archiving through `drillbook wal push` into `store`.
    pub async fn start() -> ArchivingPrimary {
        ArchivingPrimary::start_with(|store, _| {
            format!(
                "DRILLBOOK_WAL_STORE={} {} wal push %p",
                store.display(),
                super::binary().display()
            )
        })
        .await
    }

    /// Archiving with the command `archive_command(store, cluster)` returns (it may write
    /// the files the command needs first).
    pub async fn start_with(
        archive_command: impl FnOnce(&Path, &Cluster) -> String,
    ) -> ArchivingPrimary {
        let base = tempfile::tempdir().unwrap();
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let (uid, gid) = postgres_ids();
        let store = base.path().join("archive");
        std::fs::create_dir(&store).unwrap();
        std::os::unix::fs::chown(&store, Some(uid), Some(gid)).unwrap();
        let binary = super::binary();
        // The archiver runs drillbook as postgres: every directory above it must let it through.
        for dir in binary.ancestors().skip(1) {
            let mode = std::fs::metadata(dir).unwrap().permissions().mode();
            assert!(
                mode & 0o001 != 0,
                "{} is closed to the postgres user",
                dir.display()
            );
        }
        let cluster = Cluster::create(base.path(), "primary", Some(15))
            .await
            .expect("a throwaway cluster");
        let server = Server {
            data: cluster.dir.join("data"),
        };
        let command = archive_command(&store, &cluster);
        let conf = cluster.dir.join("data/postgresql.conf");
        let mut settings = std::fs::read_to_string(&conf).unwrap();
        settings.push_str(&format!(
            "\narchive_mode = on\narchive_command = '{}'\n",
            command.replace('\'', "''")
        ));
        std::fs::write(&conf, settings).unwrap();
        let data = cluster.dir.join("data");
        let log = cluster.dir.join("log");
        as_postgres(
            &server_bin().join("pg_ctl"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-m",
                "fast",
                "restart",
            ],
        );
        let primary = ArchivingPrimary {
            base,
            store,
            cluster,
            _server: server,
        };
        assert_eq!(primary.sql("SHOW archive_mode"), "on");
        primary
    }

    pub fn url(&self) -> String {
        self.cluster.url("postgres")
    }

    pub fn sql(&self, sql: &str) -> String {
        super::pg::psql_url(&self.url(), sql)
    }

    /// Switches to a new segment and waits until the one switched from is archived; its name.
    pub fn switch_and_archive(&self) -> String {
        let switched = self.sql("SELECT pg_walfile_name(pg_switch_wal())");
        wait_until(
            "the switched segment is archived",
            Duration::from_secs(60),
            || {
                self.sql(&format!(
                    "SELECT coalesce(last_archived_wal, '') >= '{switched}' FROM pg_stat_archiver"
                )) == "t"
            },
        );
        assert_eq!(self.sql("SELECT failed_count FROM pg_stat_archiver"), "0");
        switched
    }
}

/// Every file under `dir` with its bytes' SHA-256: the archive, to compare before and after.
pub fn contents(dir: &Path) -> Vec<(String, String)> {
    super::walk(dir)
        .into_iter()
        .map(|relative| {
            let bytes = std::fs::read(dir.join(&relative)).unwrap();
            (
                relative.display().to_string(),
                super::artifacts::sha256_hex(&bytes),
            )
        })
        .collect()
}
