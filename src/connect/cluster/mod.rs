//! Throwaway local PostgreSQL clusters: an ephemeral restore target, the quickstart's demo
//! source. drillbook makes them with `initdb`, starts them with `pg_ctl` on a free loopback port,
//! and records each in a `cluster.json` so that another drillbook process (a later `resume`, the
//! teardown after a crash) can find, restart and stop it.
//!
//! Layout of one cluster, `<base>/<name>/`:
//!
//! ```text
//! cluster.json   port, superuser, data path, postmaster pid, server programs used
//! data/          the data directory (initdb)
//! socket/        unix_socket_directories
//! log            the server's log (pg_ctl -l)
//! ```
//!
//! `initdb` and `postgres` refuse to run as root. When drillbook runs as root, the server
//! programs run as the `postgres` OS user, and `<name>/` is given to that user. That user must
//! be able to reach it: where `base` or a directory above it is not searchable (`x`) by
//! `postgres` (a state directory under `/root`), the cluster is made in
//! `$TMPDIR/drillbook-clusters/<name>-<random>/` instead and `<base>/<name>` is a link to it,
//! so `found` and `destroy_all` work the same. The socket path,
//! `<base>/<name>/socket/.s.PGSQL.<port>`, must also stay under 107 bytes (a limit of Unix
//! sockets), so keep `base` short.
//!
//! Whether a cluster is running is read from `/proc` (Linux), like the rest of drillbook's
//! assumptions about where PostgreSQL is installed.
//!
//! These clusters trade durability for speed (`fsync`, `synchronous_commit` and
//! `full_page_writes` are off): they survive drillbook being killed, and their own postmaster
//! being killed (losing at most the last fraction of a second of commits, which
//! `synchronous_commit = off` had not yet written), but not the machine crashing: after a
//! reboot, trust nothing in them and restore again.
//!
//! Here: the cluster, its errors, and finding and destroying those under a base directory.
//! Making one is in `create`, making one from a base backup in `recover`, running and
//! stopping its server in `server`, its
//! `cluster.json` in `record`, and the OS user the server runs as in `os_user`.

mod create;
mod os_user;
mod record;
mod recover;
mod server;

pub use recover::{Recovered, Recovery, Restoring};

pub(crate) use os_user::{lookup_user, server_user};

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::pg_tools::ToolError;

/// A PostgreSQL cluster drillbook created for itself (an ephemeral restore target, or the
/// quickstart's demo source). It lives in `<dir>` = `<base>/<name>/` (data/, socket/, log, and a
/// small `cluster.json` recording port, superuser, data path, pid so another process — a later
/// `resume`, or teardown after a crash — can find and stop it).
///
/// Dropping a `Cluster` does not stop it: it is meant to outlive the process that made it.
/// Call [`Cluster::destroy`] (or [`destroy_all`]) when done.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    pub superuser: String,
    /// The directory of the `initdb`, `pg_ctl` and `postgres` it was made with: a cluster must
    /// always be started by its own major version.
    bin_dir: PathBuf,
    /// The server version, for descriptions ("15.20").
    version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "cluster name `{0}` must be a plain directory name (not empty, no `/`, not `.` or `..`)"
    )]
    InvalidName(String),
    #[error("{0} already exists: pick another cluster name, or destroy that cluster first")]
    Exists(PathBuf),
    #[error("the cluster at {0} is gone (it has no data directory): make a new one")]
    Gone(PathBuf),
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(
        "initdb and postgres refuse to run as root, and there is no `{0}` OS user to run them as: create it (the PostgreSQL packages do)"
    )]
    NoServerUser(String),
    #[error(
        "{path} (mode {mode:o}) cannot be searched by the `{user}` OS user the server runs as: allow it (chmod o+x {path}) or put the clusters under another directory"
    )]
    NotTraversable {
        path: PathBuf,
        user: String,
        mode: u32,
    },
    #[error("could not {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "port {port} on 127.0.0.1 is taken by another program, so the cluster at {dir} cannot start on it: stop that program, or destroy the cluster and make a new one"
    )]
    PortTaken { port: u16, dir: PathBuf },
    #[error("`{program}` failed ({status}): {output}")]
    Failed {
        program: String,
        status: String,
        output: String,
    },
}

impl Cluster {
    /// The URL of a database in it: postgres://postgres@127.0.0.1:PORT/<database>
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/{}",
            self.superuser,
            self.port,
            percent_encode(database)
        )
    }

    /// Finds clusters under `base` (reading cluster.json) — used by resume and by teardown.
    /// Directories without a readable record are skipped.
    pub fn found(base: &Path) -> Vec<Cluster> {
        // Absolute: the server programs do not run in our working directory.
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        let Ok(entries) = fs::read_dir(&base) else {
            return Vec::new();
        };
        let mut clusters: Vec<Cluster> = entries
            .flatten()
            .filter_map(|entry| Cluster::read(&entry.path()))
            .collect();
        clusters.sort_by(|a, b| a.dir.cmp(&b.dir));
        clusters
    }

    /// What it is, for lists of what was created or removed.
    pub fn describe(&self) -> String {
        format!(
            "PostgreSQL {} cluster on 127.0.0.1:{} at {}",
            self.version,
            self.port,
            self.dir.display()
        )
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
}

/// Destroys every cluster under `base`; returns what it removed (descriptions) — called by the
/// engine at the end of a run. What it could not remove is logged and left for another try.
pub async fn destroy_all(base: &Path) -> Vec<String> {
    let mut removed = Vec::new();
    for cluster in Cluster::found(base) {
        match cluster.destroy().await {
            Ok(()) => removed.push(cluster.describe()),
            Err(error) => {
                tracing::warn!(dir = %cluster.dir.display(), %error, "could not destroy a throwaway cluster");
            }
        }
    }
    // Links to clusters that lived outside `base`, now gone.
    if let Ok(entries) = fs::read_dir(base) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_symlink() && !path.exists() {
                let _ = fs::remove_file(&path);
            }
        }
    }
    removed
}

/// A database name as a URL path segment.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ClusterError {
    let path = path.to_path_buf();
    move |source| ClusterError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_the_database_name() {
        let cluster = Cluster {
            dir: PathBuf::from("/x"),
            port: 54321,
            superuser: "postgres".to_string(),
            bin_dir: PathBuf::new(),
            version: "15.20".to_string(),
        };
        assert_eq!(
            cluster.url("restore_1"),
            "postgres://postgres@127.0.0.1:54321/restore_1"
        );
        assert_eq!(
            cluster.url("a b/c"),
            "postgres://postgres@127.0.0.1:54321/a%20b%2Fc"
        );
    }
}
