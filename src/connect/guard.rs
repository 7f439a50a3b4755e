//! The guard: a small process that kills drillbook's programs' process groups when drillbook
//! dies, however it dies.
//!
//! Why: the parent-death signal ([`child`](super::child)) reaches only drillbook's direct
//! children. `sh -c "sleep 30; echo done >> side"` loses its `sh` with drillbook, but the
//! `sleep` it forked lives on in the group, orphaned, and would write `side` 30 s later. A
//! group is killed when its step ends, but a SIGKILLed drillbook ends nothing.
//!
//! How: the first time drillbook starts a program, it re-executes itself as
//! `drillbook __guard` ([`SUBCOMMAND`]; not in `--help`), the read end of a pipe as the
//! guard's standard input. Every program [`child`](super::child) starts is written to the
//! pipe (`watch PID PGID START_TIME`), and every group that has been killed and is done with
//! (`forget PGID`). When the pipe reaches end of file, drillbook is gone (the kernel closes
//! its end on any exit): the guard SIGKILLs what is left of every group it still holds, then
//! exits. After a clean run it holds nothing and simply exits.
//!
//! The guard:
//! - holds nothing of drillbook's but the pipe: every descriptor drillbook opens is
//!   close-on-exec (the run lock's flock is never held by the guard), and it closes any other
//!   descriptor above 2 at start; its stdout and stderr are `/dev/null`, so that nobody reading
//!   drillbook's output waits for it. The write end is close-on-exec too: no program holds it
//!   open past drillbook.
//! - runs in its own process group and ignores SIGINT, SIGTERM, SIGHUP and SIGQUIT: Ctrl-C at
//!   the terminal (drillbook's to handle) or a supervisor's SIGTERM to everything does not end
//!   it before drillbook; only the end of the pipe does.
//! - kills only what [`child::survivors`] finds of a group: the leader with its journalled
//!   start time, or members started no earlier, so a group id that now names another group
//!   (pid reuse) is left alone; and never a group reported finished (`forget`), which
//!   drillbook sends only after SIGKILLing the group.
//!
//! Limits: a program that leaves its group (`setsid`, a daemon) is out of reach, on purpose
//! for PostgreSQL: `pg_ctl start` forks a postmaster that calls `setsid`, so the server runs
//! in its own session and group and outlives drillbook (the throwaway clusters are stopped by
//! their records; a `command` step's `pg_ctl start` leaves a server running, as asked). A
//! SIGKILL of the guard itself (the OOM killer, `kill -9` of it) leaves only the parent-death
//! signal and `resume`'s stop of survivors (the engine's `survivors.rs`). If the guard
//! cannot start, drillbook says so once on standard error and runs on without it: a drill
//! should not fail because of its safety net, and `resume` still stops what a crash leaves.
//! Only the drillbook binary starts a guard ([`enable`]); a library user (tests) has none.

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::child::{self, Started};

/// The hidden first argument that makes the drillbook binary a guard.
pub const SUBCOMMAND: &str = "__guard";

/// How long the guard keeps killing a group whose members are still there (a process forking
/// as it is killed) before it gives up on it.
const PERSIST: Duration = Duration::from_secs(2);

static ENABLED: AtomicBool = AtomicBool::new(false);

/// The pipe's write end, once the guard started; `None` when it could not start, or has gone.
static PIPE: OnceLock<Mutex<Option<std::fs::File>>> = OnceLock::new();

/// Lets this process start a guard on its first program: only the drillbook binary (its
/// `main`), which the guard re-executes.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Tells the guard about a program just started (starting the guard first, if need be).
pub(super) fn watch(started: &Started) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let pipe = PIPE.get_or_init(|| Mutex::new(start().map_err(|e| warn(&e)).ok()));
    send(
        pipe,
        &format!(
            "watch {} {} {}\n",
            started.pid, started.pgid, started.start_time
        ),
    );
}

/// Tells the guard that a group has been killed and is none of its business any more.
pub(super) fn forget(pgid: u32) {
    if let Some(pipe) = PIPE.get() {
        send(pipe, &format!("forget {pgid}\n"));
    }
}

fn send(pipe: &Mutex<Option<std::fs::File>>, line: &str) {
    let Ok(mut pipe) = pipe.lock() else { return };
    if let Some(file) = pipe.as_mut()
        && let Err(e) = file.write_all(line.as_bytes())
    {
        *pipe = None;
        warn(&format!("the guard process has gone ({e})"));
    }
}

fn warn(why: &str) {
    let message = format!(
        "{why}: programs' own children may outlive a crash of drillbook (a resume stops them)"
    );
    eprintln!("warning: {message}");
    tracing::warn!("{message}");
}

/// Starts `drillbook __guard` on a new pipe; the write end.
fn start() -> Result<std::fs::File, String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given; both are ours.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!(
            "could not start the guard process (pipe: {})",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: pipe2 succeeded; each descriptor is open and owned by nothing else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let exe = std::env::current_exe()
        .ok()
        .filter(|exe| exe.exists())
        .unwrap_or_else(|| "/proc/self/exe".into());
    let mut command = Command::new(&exe);
    command
        .arg(SUBCOMMAND)
        .stdin(Stdio::from(read))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    command
        .spawn()
        .map_err(|e| format!("could not start the guard process ({}: {e})", exe.display()))?;
    Ok(std::fs::File::from(write))
}

/// The guard's `main`: reads standard input to its end, then kills what is left.
pub fn serve() -> ExitCode {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: SIG_IGN installs no handler; nothing runs on the signal.
        unsafe {
            libc::signal(signal, libc::SIG_IGN);
        }
    }
    close_inherited();
    let held = hold(io::stdin().lock());
    for started in held.values() {
        kill(started);
    }
    ExitCode::SUCCESS
}

/// Closes every descriptor above standard error (none should have come through exec).
fn close_inherited() {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: close(2) of a descriptor this fresh process holds and nothing uses (the
        // directory listing's own is already closed: EBADF, harmless).
        unsafe {
            libc::close(fd);
        }
    }
}

/// The groups `input` leaves watched and not forgotten when it ends, by group id.
fn hold(input: impl BufRead) -> HashMap<u32, Started> {
    let mut held = HashMap::new();
    for line in input.lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["watch", pid, pgid, start_time] => {
                let (Ok(pid), Ok(pgid), Ok(start_time)) =
                    (pid.parse(), pgid.parse(), start_time.parse())
                else {
                    continue;
                };
                held.insert(
                    pgid,
                    Started {
                        pid,
                        pgid,
                        start_time,
                        boot_id: child::boot_id().to_string(),
                        program: String::new(),
                    },
                );
            }
            ["forget", pgid] => {
                if let Ok(pgid) = pgid.parse::<u32>() {
                    held.remove(&pgid);
                }
            }
            _ => {}
        }
    }
    held
}

/// SIGKILLs what is left of a group, until nothing is (or [`PERSIST`] has passed).
fn kill(started: &Started) {
    let until = Instant::now() + PERSIST;
    loop {
        let left = child::survivors(started);
        if left.is_empty() || Instant::now() >= until {
            return;
        }
        // Its members hold the group id: it is still this group's.
        let pids =
            std::iter::once(-i64::from(started.pgid)).chain(left.iter().map(|p| i64::from(*p)));
        for pid in pids {
            if let Ok(pid) = libc::pid_t::try_from(pid)
                && pid.unsigned_abs() > 1
            {
                // SAFETY: kill(2) takes plain integers; the group and pids were just found
                // to be the watched program's (its start time, its group).
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    fn group(script: &str) -> (std::process::Child, Started) {
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", script])
            .process_group(0)
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(200));
        let pid = child.id();
        let started = Started {
            pid,
            pgid: pid,
            start_time: child::stat(pid).expect("stat").start_time,
            boot_id: child::boot_id().to_string(),
            program: "sh".into(),
        };
        assert!(child::survivors(&started).len() >= 2, "sh and its sleep");
        // Reaped in the background, as drillbook's own children are once they exit.
        let _ = child.try_wait();
        (child, started)
    }

    #[test]
    fn at_the_end_of_its_input_the_guard_kills_what_it_holds_and_nothing_forgotten() {
        let (mut watched, kept) = group("sleep 30 & wait");
        let (mut forgotten, left) = group("sleep 30 & wait");
        let input = format!(
            "watch {} {} {}\nnonsense\nwatch {} {} {}\nforget {}\n",
            kept.pid, kept.pgid, kept.start_time, left.pid, left.pgid, left.start_time, left.pgid
        );
        let held = hold(input.as_bytes());
        assert_eq!(held.len(), 1);
        for started in held.values() {
            kill(started);
        }
        let _ = watched.wait();
        assert_eq!(child::survivors(&kept), Vec::<u32>::new());
        assert!(
            child::survivors(&left).len() >= 2,
            "a forgotten group is left alone"
        );
        // SAFETY: the test's own group, still running (checked just above).
        unsafe {
            libc::kill(
                -libc::pid_t::try_from(left.pgid).expect("pgid"),
                libc::SIGKILL,
            );
        }
        let _ = forgotten.wait();
    }

    #[test]
    fn a_group_id_now_led_by_another_process_is_not_killed() {
        let (mut running, started) = group("sleep 30 & wait");
        let stale = Started {
            start_time: started.start_time.saturating_sub(1),
            ..started.clone()
        };
        kill(&stale);
        assert!(child::survivors(&started).len() >= 2);
        kill(&started);
        let _ = running.wait();
        assert_eq!(child::survivors(&started), Vec::<u32>::new());
    }
}
