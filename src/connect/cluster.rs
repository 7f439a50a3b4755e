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

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::pg_tools::{self, ToolError};

/// The database superuser of every cluster (initdb -U).
const SUPERUSER: &str = "postgres";
/// The OS user the server programs run as when drillbook runs as root.
const SERVER_OS_USER: &str = "postgres";
/// Where Debian and Ubuntu put each major version's server programs.
const VERSIONED_DIRS: &str = "/usr/lib/postgresql";
/// The record another process reads to find the cluster.
const RECORD: &str = "cluster.json";
/// Our settings, included from postgresql.conf so that a plain `pg_ctl start` uses them too.
const SETTINGS: &str = "drillbook.conf";
/// How many ports to try: another process can take the free port we picked before the
/// server binds it.
const PORT_ATTEMPTS: u32 = 5;
/// Lines of a program's output or log quoted in an error.
const TAIL_LINES: usize = 5;

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

/// What `cluster.json` holds. `data` and `pid` are for humans and other tools: drillbook
/// itself trusts `<dir>/data` and `data/postmaster.pid`, which stay right if `base` moves.
#[derive(Serialize, Deserialize)]
struct Record {
    port: u16,
    superuser: String,
    data: PathBuf,
    pid: Option<u32>,
    bin_dir: PathBuf,
    version: String,
}

/// The OS user the server programs run as, when it is not ourselves.
#[derive(Clone, Copy)]
pub(crate) struct ServerUser {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

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
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(ClusterError::InvalidName(name.to_string()));
        }
        let initdb = server_program("initdb", server_major)?;
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
        let bin_dir = initdb
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut cluster = Cluster {
            dir,
            port: free_port()?,
            superuser: SUPERUSER.to_string(),
            bin_dir,
            version: initdb.version.to_string(),
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

    /// Starts it again if it is not running (after a crash or reboot; a stale postmaster.pid
    /// must not block it). Idempotent. It keeps its port: if another program took it meanwhile,
    /// this fails and says so.
    pub async fn ensure_running(&self) -> Result<(), ClusterError> {
        if self.running_pid().is_some() {
            return Ok(());
        }
        if !self.data().is_dir() {
            return Err(ClusterError::Gone(self.dir.clone()));
        }
        // Its postmaster is gone. The lock files it left (postmaster.pid, and the socket's
        // .s.PGSQL.<port>.lock) name its PID, which may now be a zombie or, after a reboot,
        // another process: postgres would take either for a live server and refuse to start.
        // Removing them is safe: postgres finds leftover backends of the old server through
        // the shared memory block keyed by the data directory, not through these files.
        remove_if_present(&self.data().join("postmaster.pid"))?;
        let socket = self.dir.join("socket");
        if let Ok(entries) = fs::read_dir(&socket) {
            for entry in entries.flatten() {
                remove_if_present(&entry.path())?;
            }
        }
        // Backends of a killed postmaster exit on their own within moments; until they have,
        // postgres refuses to start ("pre-existing shared memory block ... is still in use").
        let mut attempts = 0;
        loop {
            match self.start().await {
                Err(error) if leftover_backends(&error) && attempts < 50 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                result => return result,
            }
        }
    }

    /// pg_ctl stop -m immediate (if running) and remove the directory. Idempotent; never
    /// panics. When the server cannot be stopped, the directory is kept so that a later
    /// teardown can try again.
    pub async fn destroy(&self) -> Result<(), ClusterError> {
        let cluster = self.clone();
        tokio::task::spawn_blocking(move || cluster.destroy_blocking())
            .await
            .unwrap_or_else(|error| {
                Err(io_error("tear down the cluster at", &self.dir)(
                    io::Error::other(error),
                ))
            })
    }

    /// [`Cluster::destroy`], blocking the calling thread (a few hundred milliseconds): for
    /// `Drop` guards, which cannot wait for a future.
    pub fn destroy_blocking(&self) -> Result<(), ClusterError> {
        if self.running_pid().is_some() {
            let mut stop = self.server_command("pg_ctl")?;
            stop.args(["stop", "-m", "immediate", "-w", "-D"])
                .arg(self.data());
            let output = stop
                .output()
                .map_err(io_error("run", &self.bin_dir.join("pg_ctl")))?;
            // A server that stopped on its own meanwhile is as good as stopped.
            if !output.status.success() && self.running_pid().is_some() {
                return Err(failed("pg_ctl stop", &output));
            }
        }
        // An initdb killed by a cancelled `create` may still be writing for a moment.
        let mut attempts = 0;
        loop {
            match fs::remove_dir_all(&self.dir) {
                Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(_) if attempts < 3 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                result => return result.map_err(io_error("remove directory", &self.dir)),
            }
        }
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

    fn read(dir: &Path) -> Option<Cluster> {
        let path = dir.join(RECORD);
        let text = fs::read_to_string(&path).ok()?;
        match serde_json::from_str::<Record>(&text) {
            Ok(record) => Some(Cluster {
                // Through the link, when the cluster lives outside `base`.
                dir: dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()),
                port: record.port,
                superuser: record.superuser,
                bin_dir: record.bin_dir,
                version: record.version,
            }),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "unreadable cluster record; skipped");
                None
            }
        }
    }

    /// Written atomically: a reader never sees half a record.
    fn write_record(&self, pid: Option<u32>) -> Result<(), ClusterError> {
        let record = Record {
            port: self.port,
            superuser: self.superuser.clone(),
            data: self.data(),
            pid,
            bin_dir: self.bin_dir.clone(),
            version: self.version.clone(),
        };
        let path = self.dir.join(RECORD);
        let temporary = self.dir.join(format!("{RECORD}.new"));
        let text = serde_json::to_string_pretty(&record).map_err(io::Error::other);
        text.and_then(|text| fs::write(&temporary, text + "\n"))
            .map_err(io_error("write", &temporary))?;
        fs::rename(&temporary, &path).map_err(io_error("write", &path))
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

    /// pg_ctl start -w: returns once the server accepts connections. The postmaster detaches
    /// from us on purpose, so that it outlives drillbook for `resume`.
    async fn start(&self) -> Result<(), ClusterError> {
        let log = self.dir.join("log");
        // Quote only what this attempt logged.
        let logged_before = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut start = self.server_command("pg_ctl")?;
        // -l matters beyond keeping the log: without it the postmaster would inherit our pipes
        // and reading pg_ctl's output would never end.
        start
            .args(["start", "-w", "-D"])
            .arg(self.data())
            .arg("-l")
            .arg(&log);
        match run("pg_ctl start", start).await {
            Ok(()) => {
                let pid = self.running_pid().and_then(|pid| u32::try_from(pid).ok());
                self.write_record(pid)
            }
            Err(ClusterError::Failed {
                program,
                status,
                output,
            }) => {
                let logged = fs::read(&log).unwrap_or_default();
                let logged = logged.get(logged_before as usize..).unwrap_or_default();
                let logged = String::from_utf8_lossy(logged);
                // Looked for in the whole log: several lines follow this one.
                if logged.contains("Address already in use") {
                    return Err(ClusterError::PortTaken {
                        port: self.port,
                        dir: self.dir.clone(),
                    });
                }
                Err(ClusterError::Failed {
                    program,
                    status,
                    output: format!("{output} | log: {}", tail(&logged)),
                })
            }
            Err(error) => Err(error),
        }
    }

    /// The postmaster's PID if it is running: the PID in postmaster.pid belongs to a live
    /// process working in our data directory (not a zombie, not a PID reused after a reboot).
    fn running_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        let data = self.data().canonicalize().ok()?;
        // The postmaster works in its data directory; a zombie has no working directory.
        let cwd = fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
        (cwd == data).then_some(pid)
    }

    /// One of the server programs this cluster was made with, run as the server's OS user.
    fn server_command(&self, program: &str) -> Result<std::process::Command, ClusterError> {
        let mut command = std::process::Command::new(self.bin_dir.join(program));
        // A directory the server's user can enter (drillbook's own may be private to root).
        command
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(user) = server_user()? {
            // Running as root, std also drops root's supplementary groups.
            command.uid(user.uid).gid(user.gid);
        }
        Ok(command)
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
struct Unfinished(Option<Cluster>);

impl Unfinished {
    fn disarm(mut self) {
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
fn server_program(
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

/// Who the server programs run as: ourselves, unless we are root (initdb and postgres refuse).
fn server_user() -> Result<Option<ServerUser>, ClusterError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    lookup_user(SERVER_OS_USER)
        .map(Some)
        .ok_or_else(|| ClusterError::NoServerUser(SERVER_OS_USER.to_string()))
}

/// The ids of the OS user `name`, if it exists.
pub(crate) fn lookup_user(name: &str) -> Option<ServerUser> {
    let name = CString::new(name).ok()?;
    // SAFETY: passwd is plain data; all-zero is a valid value that getpwnam_r overwrites.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buffer = vec![0 as libc::c_char; 4096];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwnam_r writes only into `entry` and `buffer`, whose sizes we pass; we read
    // only the numeric ids afterwards.
    let status = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    (status == 0 && !found.is_null()).then_some(ServerUser {
        uid: entry.pw_uid,
        gid: entry.pw_gid,
    })
}

/// The server's user needs to search every directory down to the cluster's. Judged from the
/// mode bits with the user's primary group only, which is what the programs we start have.
fn check_traversable(path: &Path, user: ServerUser) -> Result<(), ClusterError> {
    for directory in path.ancestors() {
        let metadata = fs::metadata(directory).map_err(io_error("inspect", directory))?;
        let mode = metadata.mode();
        let search = if metadata.uid() == user.uid {
            0o100
        } else if metadata.gid() == user.gid {
            0o010
        } else {
            0o001
        };
        if mode & search == 0 {
            return Err(ClusterError::NotTraversable {
                path: directory.to_path_buf(),
                user: SERVER_OS_USER.to_string(),
                mode: mode & 0o7777,
            });
        }
    }
    Ok(())
}

/// Hands a path we created (as root) to the server's user.
fn give(path: &Path, user: Option<ServerUser>) -> Result<(), ClusterError> {
    match user {
        Some(user) => std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
            .map_err(io_error("change the owner of", path)),
        None => Ok(()),
    }
}

/// A port nobody listens on now. Another process may take it before the server binds it;
/// `create` then tries another.
fn free_port() -> Result<u16, ClusterError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(io_error("find a free port on", Path::new("127.0.0.1")))
}

/// Runs a program to completion; a failure quotes the end of its output.
async fn run(what: &str, command: std::process::Command) -> Result<(), ClusterError> {
    let program = PathBuf::from(command.get_program());
    let mut command = tokio::process::Command::from(command);
    // initdb must not run on if we are cancelled; pg_ctl start's postmaster is detached from
    // pg_ctl and survives this, as it should.
    command.kill_on_drop(true);
    let output = command.output().await.map_err(io_error("run", &program))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(failed(what, &output))
    }
}

fn failed(what: &str, output: &std::process::Output) -> ClusterError {
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    ClusterError::Failed {
        program: what.to_string(),
        status: output.status.to_string(),
        output: tail(&text),
    }
}

/// The last lines of a program's output, on one line. For the server's log they include its
/// FATAL line, which only a HINT and "database system is shut down" follow.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join(" | ")
}

/// Backends of a killed postmaster still hold its shared memory.
fn leftover_backends(error: &ClusterError) -> bool {
    matches!(error, ClusterError::Failed { output, .. } if output.contains("pre-existing shared memory block"))
}

fn remove_if_present(path: &Path) -> Result<(), ClusterError> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(io_error("remove stale", path)(error))
        }
        _ => Ok(()),
    }
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
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
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

    #[test]
    fn failures_quote_the_last_lines_and_are_classified() {
        let text = "one\n\ntwo\nthree\nfour\nfive\nFATAL:  pre-existing shared memory block (key 1, ID 2) is still in use\n";
        assert_eq!(
            tail(text),
            "two | three | four | five | FATAL:  pre-existing shared memory block (key 1, ID 2) is still in use"
        );
        let error = ClusterError::Failed {
            program: "pg_ctl start".to_string(),
            status: "exit status: 1".to_string(),
            output: tail(text),
        };
        assert!(leftover_backends(&error));
        assert_eq!(quote("/tmp/it's"), "'/tmp/it''s'");
    }
}
