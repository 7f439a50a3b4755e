//! Making a cluster: a directory the server's user can reach, initdb, our settings, and a
//! first start on a free port; torn down again if anything fails on the way.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::os_user::{SERVER_OS_USER, ServerUser, check_traversable, give, server_user};
use super::server::run;
use super::{Cluster, ClusterError, io_error};
use crate::connect::pg_tools;

/// The database superuser of every cluster (initdb -U).
const SUPERUSER: &str = "postgres";
/// Where Debian and Ubuntu put each major version's server programs.
const VERSIONED_DIRS: &str = "/usr/lib/postgresql";
/// Our settings, included from postgresql.conf so that a plain `pg_ctl start` uses them too.
const SETTINGS: &str = "drillbook.conf";
/// How many ports to try: another process can take the free port we picked before the
/// server binds it.
const PORT_ATTEMPTS: u32 = 5;

impl Cluster {
    /// initdb (-U postgres, --auth=trust, -E UTF8, --no-locale, `--no-sync`) + start with
    /// pg_ctl -w on a free 127.0.0.1 port (listen_addresses=127.0.0.1,
    /// unix_socket_directories=<dir>/socket, fsync=off, synchronous_commit=off,
    /// full_page_writes=off — throwaway, speed matters), waiting until it accepts connections.
    /// `server_major`: which major version's server programs to use (None = the newest
    /// installed; a newer one when that exact version is not installed).
    /// Cancel-safe enough: if it fails midway, or the future is dropped, it stops whatever it
    /// started and removes `dir`. See the module documentation for what `base` must allow.
    pub async fn create(
        base: &Path,
        name: &str,
        server_major: Option<u32>,
    ) -> Result<Cluster, ClusterError> {
        let initdb = server_program("initdb", server_major)?;
        let (mut cluster, unfinished) = Cluster::prepare(base, name, &initdb)?;
        let user = server_user()?;

        let mut initdb = cluster.server_command("initdb")?;
        initdb
            .arg("-D")
            .arg(cluster.data())
            .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8"])
            .args(["--no-locale", "--no-sync"]);
        run("initdb", initdb).await?;

        let conf = cluster.data().join("postgresql.conf");
        append(&conf, &format!("\ninclude = '{SETTINGS}'\n"))?;
        for attempt in 1.. {
            cluster.write_settings(user)?;
            match cluster.start().await {
                Ok(()) => break,
                Err(ClusterError::PortTaken { .. }) if attempt < PORT_ATTEMPTS => {
                    tracing::debug!(port = cluster.port, "port taken; trying another");
                    cluster.port = free_port()?;
                    cluster.write_record(None)?;
                }
                Err(error) => return Err(error),
            }
        }
        unfinished.disarm();
        tracing::info!(dir = %cluster.dir.display(), port = cluster.port, "created a throwaway PostgreSQL cluster");
        Ok(cluster)
    }

    /// The directory of a new cluster (`<base>/<name>/`, or a link to one the server's user
    /// can reach), its socket directory and its record, for the server programs beside
    /// `tool`; the data directory is the caller's to make. Torn down when the guard is
    /// dropped before it is disarmed.
    pub(super) fn prepare(
        base: &Path,
        name: &str,
        tool: &pg_tools::Tool,
    ) -> Result<(Cluster, Unfinished), ClusterError> {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(ClusterError::InvalidName(name.to_string()));
        }
        let user = server_user()?;
        fs::create_dir_all(base).map_err(io_error("create directory", base))?;
        // Absolute, because the paths go into the server's configuration.
        let base = base
            .canonicalize()
            .map_err(io_error("resolve directory", base))?;
        let dir = base.join(name);
        if fs::symlink_metadata(&dir).is_ok() {
            return Err(ClusterError::Exists(dir));
        }
        // The server's user must reach its data directory. Where it cannot enter `base` (a
        // state directory under /root, say), the cluster lives in the temporary directory
        // and `base/name` is a link to it, so `found` and teardown still find it.
        let dir = match user.map(|user| check_traversable(&base, user)) {
            Some(Err(ClusterError::NotTraversable { path, .. })) => {
                let elsewhere = outside(name)?;
                std::os::unix::fs::symlink(&elsewhere, &dir)
                    .map_err(io_error("create the link", &dir))?;
                tracing::info!(
                    "{} is closed to the `{SERVER_OS_USER}` user: the cluster lives in {}",
                    path.display(),
                    elsewhere.display()
                );
                elsewhere
            }
            Some(Err(error)) => return Err(error),
            _ => {
                fs::create_dir(&dir).map_err(io_error("create directory", &dir))?;
                dir
            }
        };
        let bin_dir = tool
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let cluster = Cluster {
            dir,
            port: free_port()?,
            superuser: SUPERUSER.to_string(),
            bin_dir,
            version: tool.version.to_string(),
        };
        // From here on, an error or a dropped future tears down what exists so far.
        let unfinished = Unfinished(Some(cluster.clone()));

        let socket = cluster.dir.join("socket");
        fs::create_dir(&socket).map_err(io_error("create directory", &socket))?;
        for path in [&cluster.dir, &socket] {
            fs::set_permissions(path, fs::Permissions::from_mode(0o700))
                .map_err(io_error("set permissions of", path))?;
            give(path, user)?;
        }
        cluster.write_record(None)?;
        Ok((cluster, unfinished))
    }

    /// Rewritten before every start by `create`, since the port may change between attempts.
    fn write_settings(&self, user: Option<ServerUser>) -> Result<(), ClusterError> {
        let socket = quote(&self.dir.join("socket").to_string_lossy());
        let text = format!(
            "# Written by drillbook: a throwaway cluster, so durability is traded for speed.\n\
             port = {}\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = {socket}\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n",
            self.port
        );
        let path = self.data().join(SETTINGS);
        fs::write(&path, text).map_err(io_error("write", &path))?;
        give(&path, user)
    }
}

/// A fresh directory for a cluster under the temporary directory, which every user can enter.
fn outside(name: &str) -> Result<PathBuf, ClusterError> {
    let parent = std::env::temp_dir().join("drillbook-clusters");
    fs::create_dir_all(&parent).map_err(io_error("create directory", &parent))?;
    fs::set_permissions(&parent, fs::Permissions::from_mode(0o711))
        .map_err(io_error("set permissions of", &parent))?;
    let dir = parent.join(format!("{name}-{:016x}", fastrand::u64(..)));
    fs::create_dir(&dir).map_err(io_error("create directory", &dir))?;
    Ok(dir)
}

/// Tears a half-made cluster down when `create` fails or its future is dropped.
pub(super) struct Unfinished(Option<Cluster>);

impl Unfinished {
    pub(super) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(cluster) = self.0.take()
            && let Err(error) = cluster.destroy_blocking()
        {
            tracing::warn!(dir = %cluster.dir.display(), %error, "could not remove a half-made cluster");
        }
    }
}

/// `initdb` of `server_major` exactly when it is installed, else the newest at least as new.
pub(super) fn server_program(
    program: &str,
    server_major: Option<u32>,
) -> Result<pg_tools::Tool, ClusterError> {
    let tool = pg_tools::find(program, server_major)?;
    let exact = server_major
        .filter(|major| *major != tool.version.major)
        .map(|major| {
            Path::new(VERSIONED_DIRS)
                .join(major.to_string())
                .join("bin")
                .join(program)
        })
        .and_then(|path| {
            pg_tools::version_of(&path).map(|version| pg_tools::Tool { path, version })
        });
    let tool = exact.unwrap_or(tool);
    // Through symlinks (/usr/local/bin/initdb), to the directory that also holds its pg_ctl.
    let path = tool.path.canonicalize().unwrap_or(tool.path);
    Ok(pg_tools::Tool { path, ..tool })
}

/// A port nobody listens on now. Another process may take it before the server binds it;
/// `create` then tries another.
pub(super) fn free_port() -> Result<u16, ClusterError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(io_error("find a free port on", Path::new("127.0.0.1")))
}

fn append(path: &Path, text: &str) -> Result<(), ClusterError> {
    use std::io::Write;
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(io_error("append to", path))
}

/// A string value in postgresql.conf.
pub(super) fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_values_are_quoted() {
        assert_eq!(quote("/tmp/it's"), "'/tmp/it''s'");
    }
}
