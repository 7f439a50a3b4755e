//! Running a cluster's server: starting it (again, after a crash or reboot), knowing whether
//! it runs, stopping it and removing the cluster, all with the server programs it was made
//! with, run as the server's OS user.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::os_user::server_user;
use super::{Cluster, ClusterError, io_error};

/// Lines of a program's output or log quoted in an error.
const TAIL_LINES: usize = 5;

impl Cluster {
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
            let output = crate::connect::child::output_blocking(&mut stop)
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

    /// pg_ctl start -w: returns once the server accepts connections. The postmaster detaches
    /// from us on purpose, so that it outlives drillbook for `resume`.
    pub(super) async fn start(&self) -> Result<(), ClusterError> {
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
    pub(super) fn running_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        let data = self.data().canonicalize().ok()?;
        // The postmaster works in its data directory; a zombie has no working directory.
        let cwd = fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
        (cwd == data).then_some(pid)
    }

    /// One of the server programs this cluster was made with, run as the server's OS user.
    pub(super) fn server_command(
        &self,
        program: &str,
    ) -> Result<std::process::Command, ClusterError> {
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

/// Runs a program to completion; a failure quotes the end of its output.
pub(super) async fn run(what: &str, command: std::process::Command) -> Result<(), ClusterError> {
    let program = PathBuf::from(command.get_program());
    let mut command = tokio::process::Command::from(command);
    // initdb must not run on if we are cancelled or drillbook dies; pg_ctl start's postmaster
    // is detached from pg_ctl (its own session, so out of the group killed on drop, and no
    // parent-death signal, which a fork does not inherit) and survives this, as it should:
    // the cluster's record stops it.
    let output = super::super::child::output(&mut command)
        .await
        .map_err(io_error("run", &program))?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
