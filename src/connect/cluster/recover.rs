//! A throwaway cluster made from a base backup and recovered from the WAL archive to a target:
//! the caller unpacks the backup into an empty data directory ([`Cluster::for_restore`],
//! [`Restoring::command_in_data`]), then [`Restoring::recover`] configures recovery and waits
//! until the server has promoted itself, or says why it stopped.
//!
//! What the restored cluster is given, whatever the backup's own settings say (the backup's
//! `postgresql.conf` and `pg_hba.conf` are kept beside as `*.from-backup`; ours are appended
//! last to `postgresql.auto.conf`, which PostgreSQL reads last): its own port and socket on
//! loopback, trust for local connections, **`archive_mode = off`** (a drill must never push
//! its new timeline into production's archive), no preloaded libraries, `hot_standby = off`
//! (so the primary's connection and worker limits need not be matched: the server accepts
//! connections once recovery has ended), and throwaway durability.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::create::{Unfinished, quote, server_program};
use super::os_user::{give, server_user};
use super::{Cluster, ClusterError, io_error};

/// What recovery is told: where the WAL comes from and where to stop.
#[derive(Clone, Debug)]
pub struct Recovery {
    /// A shell command with `%f` and `%p`, as `restore_command` wants it.
    pub restore_command: String,
    /// `recovery_target_*` settings (name, value unquoted); none for the end of the archive.
    pub target: Vec<(&'static str, String)>,
}

/// Where recovery ended, as the server's log says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// "recovery stopping before commit of transaction 741, time 2026-12-05 10:00:01.5+00",
    /// when a target stopped it.
    pub stopped: Option<String>,
    /// "last completed transaction was at log time …": the moment the data is as of.
    pub last_transaction: Option<String>,
    /// The timeline the promoted cluster writes on.
    pub timeline: Option<u32>,
    /// "consistent recovery state reached at 0/…".
    pub consistent_at: Option<String>,
    /// WAL files restored from the archive, and the last one.
    pub restored_files: usize,
    pub last_restored: Option<String>,
    /// What `restore_command` said in the log (a damaged segment, an unreachable store).
    pub complaints: Vec<String>,
}

/// A cluster whose data directory is being filled; removed if dropped before it recovers.
pub struct Restoring {
    cluster: Cluster,
    unfinished: Unfinished,
}

impl Cluster {
    /// An empty data directory for a cluster to be restored into, for `server_major`'s server
    /// programs (that exact version where installed: a base backup starts only with its own
    /// major version).
    pub fn for_restore(
        base: &Path,
        name: &str,
        server_major: u32,
    ) -> Result<Restoring, ClusterError> {
        let postgres = server_program("postgres", Some(server_major))?;
        if postgres.version.major != server_major {
            return Err(ClusterError::Failed {
                program: "postgres".into(),
                status: format!("version {}", postgres.version),
                output: format!(
                    "a base backup of PostgreSQL {server_major} starts only with PostgreSQL {server_major}'s server programs: install them (postgresql-{server_major})"
                ),
            });
        }
        let (cluster, unfinished) = Cluster::prepare(base, name, &postgres)?;
        let data = cluster.data();
        fs::create_dir(&data).map_err(io_error("create directory", &data))?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700))
            .map_err(io_error("set permissions of", &data))?;
        give(&data, server_user()?)?;
        Ok(Restoring {
            cluster,
            unfinished,
        })
    }
}

impl Restoring {
    pub fn data(&self) -> PathBuf {
        self.cluster.data()
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// `program` run in the data directory as the server's OS user, so that what it writes
    /// there (an unpacked backup) is the server's own.
    pub fn command_in_data(&self, program: &str) -> Result<std::process::Command, ClusterError> {
        let mut command = std::process::Command::new(program);
        command.current_dir(self.data());
        if let Some(user) = server_user()? {
            use std::os::unix::process::CommandExt;
            command.uid(user.uid).gid(user.gid);
        }
        Ok(command)
    }

    /// Configures recovery, starts the server, and waits until it has promoted itself
    /// (the cluster is then kept, like any throwaway cluster, until the run's cleanup) or
    /// has stopped (an error quoting its log: a missing segment, a target past the archive).
    pub async fn recover(self, recovery: &Recovery) -> Result<(Cluster, Recovered), ClusterError> {
        let cluster = self.cluster.clone();
        let user = server_user()?;
        cluster.configure_recovery(recovery, user)?;
        let log = cluster.dir.join("log");
        let mut start = cluster.server_command("pg_ctl")?;
        // No -w: replaying an archive takes as long as it takes; we watch the server instead.
        start
            .args(["start", "-W", "-D"])
            .arg(cluster.data())
            .arg("-l")
            .arg(&log);
        super::server::run("pg_ctl start", start).await?;
        let mut absent = 0u32;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let logged = fs::read_to_string(&log).unwrap_or_default();
            if cluster.running_pid().is_none() {
                // A postmaster that has not yet written its pid is not a dead one: only its
                // log's last word, or a long silence, says it stopped.
                absent += 1;
                let said = logged.contains("FATAL:")
                    || logged.contains("PANIC:")
                    || logged.contains("database system is shut down");
                if said || absent > 100 {
                    return Err(ClusterError::Failed {
                        program: "recovery".into(),
                        status: "the server stopped".into(),
                        output: why_stopped(&logged),
                    });
                }
                continue;
            }
            absent = 0;
            if ready(&cluster.data()) && logged.contains("database system is ready to accept") {
                let pid = cluster
                    .running_pid()
                    .and_then(|pid| u32::try_from(pid).ok());
                cluster.write_record(pid)?;
                self.unfinished.disarm();
                return Ok((cluster, recovered(&logged)));
            }
        }
    }
}

impl Cluster {
    fn configure_recovery(
        &self,
        recovery: &Recovery,
        user: Option<super::os_user::ServerUser>,
    ) -> Result<(), ClusterError> {
        let data = self.data();
        for name in ["postgresql.conf", "pg_hba.conf"] {
            let path = data.join(name);
            if path.exists() {
                let kept = data.join(format!("{name}.from-backup"));
                fs::rename(&path, &kept).map_err(io_error("rename", &path))?;
            }
        }
        let _ = fs::remove_file(data.join("standby.signal"));
        let socket = quote(&self.dir.join("socket").to_string_lossy());
        let settings = format!(
            "# Written by drillbook: restored from a base backup for a drill.\n\
             # The backup's own configuration is kept in postgresql.conf.from-backup.\n\
             port = {}\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = {socket}\n",
            self.port
        );
        let hba = "# Written by drillbook: local connections only, trusted (a throwaway cluster).\n\
                   local all all trust\n\
                   host all all 127.0.0.1/32 trust\n";
        let mut overrides = format!(
            "\n# Written by drillbook, last so that it wins over ALTER SYSTEM settings above.\n\
             port = {}\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = {socket}\n\
             archive_mode = off\n\
             archive_command = ''\n\
             shared_preload_libraries = ''\n\
             ssl = off\n\
             hot_standby = off\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             primary_conninfo = ''\n\
             restore_command = {}\n\
             recovery_target_timeline = 'latest'\n\
             recovery_target_action = 'promote'\n",
            self.port,
            quote(&recovery.restore_command)
        );
        for (name, value) in &recovery.target {
            overrides.push_str(&format!("{name} = {}\n", quote(value)));
        }
        let auto = data.join("postgresql.auto.conf");
        let mut auto_text = fs::read_to_string(&auto).unwrap_or_default();
        auto_text.push_str(&overrides);
        for (path, text) in [
            (data.join("postgresql.conf"), settings.as_str()),
            (data.join("pg_hba.conf"), hba),
            (auto, auto_text.as_str()),
            (data.join("recovery.signal"), ""),
        ] {
            fs::write(&path, text).map_err(io_error("write", &path))?;
            give(&path, user)?;
        }
        let ident = data.join("pg_ident.conf");
        if !ident.exists() {
            fs::write(&ident, "").map_err(io_error("write", &ident))?;
            give(&ident, user)?;
        }
        Ok(())
    }
}

/// The postmaster says it is ready in postmaster.pid's status line.
fn ready(data: &Path) -> bool {
    fs::read_to_string(data.join("postmaster.pid"))
        .map(|text| text.lines().any(|line| line.trim() == "ready"))
        .unwrap_or(false)
}

/// The lines that say why a recovery stopped: its FATAL and PANIC lines, else the log's end.
fn why_stopped(log: &str) -> String {
    let fatal: Vec<&str> = log
        .lines()
        .filter(|line| {
            line.contains("FATAL:")
                || line.contains("PANIC:")
                || line.contains("ERROR:")
                || line.contains("in configuration file")
        })
        .collect();
    if fatal.is_empty() {
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    } else {
        fatal.join(" | ")
    }
}

/// What the log of a finished recovery says about where it ended.
fn recovered(log: &str) -> Recovered {
    let after = |line: &str, marker: &str| {
        line.find(marker)
            .map(|at| line[at + marker.len()..].trim().to_owned())
    };
    let mut recovered = Recovered::default();
    for line in log.lines() {
        if let Some(rest) = after(line, "LOG:  recovery stopping ") {
            recovered.stopped = Some(format!("recovery stopping {rest}"));
        } else if let Some(rest) = after(line, "last completed transaction was at log time ") {
            recovered.last_transaction = Some(rest);
        } else if let Some(rest) = after(line, "selected new timeline ID: ") {
            recovered.timeline = rest.parse().ok();
        } else if let Some(rest) = after(line, "consistent recovery state reached at ") {
            recovered.consistent_at = Some(rest);
        } else if let Some(rest) = after(line, "restored log file \"") {
            recovered.restored_files += 1;
            let name = rest.split('"').next().unwrap_or_default();
            if name.len() == 24 {
                recovered.last_restored = Some(name.to_owned());
            }
        } else if line.starts_with("drillbook") {
            recovered.complaints.push(line.to_owned());
        }
    }
    recovered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_says_where_recovery_ended() {
        let log = "\
2026-12-05 10:00:00.100 UTC [1] LOG:  starting point-in-time recovery to 2026-12-05 09:59:00+00
2026-12-05 10:00:00.200 UTC [1] LOG:  restored log file \"000000010000000000000002\" from archive
2026-12-05 10:00:00.300 UTC [1] LOG:  consistent recovery state reached at 0/2000100
2026-12-05 10:00:00.400 UTC [1] LOG:  restored log file \"000000010000000000000003\" from archive
2026-12-05 10:00:00.500 UTC [1] LOG:  recovery stopping before commit of transaction 741, time 2026-12-05 09:59:01.5+00
2026-12-05 10:00:00.600 UTC [1] LOG:  last completed transaction was at log time 2026-12-05 09:58:59.9+00
2026-12-05 10:00:00.700 UTC [1] LOG:  selected new timeline ID: 2
2026-12-05 10:00:00.800 UTC [1] LOG:  database system is ready to accept connections
";
        let found = recovered(log);
        assert_eq!(
            found.stopped.as_deref(),
            Some(
                "recovery stopping before commit of transaction 741, time 2026-12-05 09:59:01.5+00"
            )
        );
        assert_eq!(
            found.last_transaction.as_deref(),
            Some("2026-12-05 09:58:59.9+00")
        );
        assert_eq!(found.timeline, Some(2));
        assert_eq!(found.consistent_at.as_deref(), Some("0/2000100"));
        assert_eq!(found.restored_files, 2);
        assert_eq!(
            found.last_restored.as_deref(),
            Some("000000010000000000000003")
        );
        let failed = "x LOG:  redo starts\ny FATAL:  recovery ended before configured recovery target was reached\nz LOG:  startup process exited";
        assert_eq!(
            why_stopped(failed),
            "y FATAL:  recovery ended before configured recovery target was reached"
        );
    }
}
