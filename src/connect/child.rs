//! The one way drillbook starts a program. Every child gets three things, so that none outlives
//! the drillbook that started it:
//!
//! - **A parent-death signal**: `PR_SET_PDEATHSIG(SIGKILL)`, set in the child between fork and
//!   exec. If drillbook had already died by then, the child sees another parent and exits
//!   instead of running unwatched.
//! - **Its own process group**, so that whatever it starts (pg_restore's workers, a shell's
//!   pipeline) can be stopped together.
//! - **Kill the group on drop**: a step that ends, fails, times out or is cancelled takes the
//!   whole group with it.
//!
//! The parent-death signal belongs to the *thread* that forked, not the process: the kernel
//! sends it when that thread exits. Async spawns here run on a tokio worker thread (or the
//! thread that drives the runtime), which lives as long as the runtime, that is the run. The
//! blocking helper ([`output_blocking`]) waits for its child on the thread that forked it, so
//! that thread outlives the child even on a `spawn_blocking` thread, which tokio ends when it
//! has been idle a while. Never spawn a long-lived child from a `spawn_blocking` closure
//! without waiting for it there.
//!
//! What a program forks does not inherit the parent-death signal. A grandchild that stays in
//! the group is reached by the group kill; if drillbook dies, by the [`guard`](super::guard),
//! a process told of every group started and finished, which kills the groups it still holds
//! when drillbook is gone; and by `resume` (see [`survivors`]) if the guard died too. What
//! escapes: a program that leaves its process group (`setsid`, a daemon) and its children.
//!
//! Each start is told to the task's [`Watcher`], if any: the engine journals it, with the pid's
//! start time and the boot, so that `resume` can recognise a survivor and nothing else.

use std::future::Future;
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::unix::process::CommandExt;
use std::process::{Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

/// A started child, as the journal names it: a pid is reused, a pid with its start time on one
/// boot is not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Started {
    pub pid: u32,
    /// The process group it leads.
    pub pgid: u32,
    /// `starttime` of `/proc/PID/stat`: clock ticks after boot.
    pub start_time: u64,
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
    /// The program's file name, never its arguments (they may hold anything).
    pub program: String,
}

/// Told about each child started by the task it is set for; an error (the journal cannot be
/// written) kills the child and fails the start.
pub type Watcher = Arc<dyn Fn(&Started) -> Result<(), String> + Send + Sync>;

tokio::task_local! {
    static WATCHER: Watcher;
}

thread_local! {
    static BLOCKING_WATCHER: std::cell::RefCell<Option<Watcher>> = const { std::cell::RefCell::new(None) };
}

/// Runs `work` with `watcher` told of every child it starts (on this task, and in [`blocking`]
/// closures it runs).
pub async fn watched<F: Future>(watcher: Watcher, work: F) -> F::Output {
    WATCHER.scope(watcher, work).await
}

fn current_watcher() -> Option<Watcher> {
    WATCHER
        .try_with(Arc::clone)
        .ok()
        .or_else(|| BLOCKING_WATCHER.with(|w| w.borrow().clone()))
}

/// `tokio::task::spawn_blocking` that keeps the task's watcher for the children `work` starts.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    let watcher = current_watcher();
    tokio::task::spawn_blocking(move || {
        BLOCKING_WATCHER.with(|w| *w.borrow_mut() = watcher);
        let result = work();
        BLOCKING_WATCHER.with(|w| *w.borrow_mut() = None);
        result
    })
    .await
}

/// A running child; dropping it kills its process group (and the child).
pub struct Child {
    inner: tokio::process::Child,
    group: Group,
}

impl Child {
    /// Signals the child's whole process group.
    pub fn signal_group(&self, signal: libc::c_int) {
        self.group.signal(signal);
    }
}

impl Deref for Child {
    type Target = tokio::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl DerefMut for Child {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

/// A child's process group; dropping it kills the group.
struct Group(Option<libc::pid_t>);

impl Group {
    fn signal(&self, signal: libc::c_int) {
        if let Some(pgid) = self.0 {
            kill(-pgid, signal);
        }
    }
}

/// kill(2), for a pid (positive) or a process group (negative); never 0, 1, -1 (everything).
fn kill(pid: libc::pid_t, signal: libc::c_int) {
    if pid.unsigned_abs() > 1 {
        // SAFETY: kill(2) takes plain integers and touches no memory; the pid or group was
        // started by drillbook (its pid the group id, by process_group(0)).
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
        // Killed: the guard must never kill this group id again (it may be reused).
        if let Some(pgid) = self.0.and_then(|pgid| u32::try_from(pgid).ok()) {
            super::guard::forget(pgid);
        }
    }
}

/// Sets up a command as every child must be: parent-death signal, own process group.
fn prepare(command: &mut std::process::Command) {
    let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
    command.process_group(0);
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // async-signal-safe functions (prctl, getppid), allocating nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // drillbook died before the signal was armed: the child was already orphaned.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Starts `command` as a child that dies with drillbook (see the module's documentation), and
/// tells the task's watcher.
pub fn spawn(command: &mut tokio::process::Command) -> io::Result<Child> {
    prepare(command.as_std_mut());
    command.kill_on_drop(true);
    let program = program_name(command.as_std().get_program());
    let inner = command.spawn()?;
    let pid = inner.id();
    let child = Child {
        inner,
        group: Group(pid.and_then(|pid| libc::pid_t::try_from(pid).ok())),
    };
    if let Some(pid) = pid {
        tell(&started(pid, program))?;
    }
    Ok(child)
}

/// Runs `command` to its end and collects its output (stdout and stderr piped).
pub async fn output(command: &mut tokio::process::Command) -> io::Result<Output> {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = spawn(command)?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let (status, stdout, stderr) = tokio::join!(child.wait(), read_all(stdout), read_all(stderr));
    Ok(Output {
        status: status?,
        stdout: stdout?,
        stderr: stderr?,
    })
}

async fn read_all(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if let Some(mut pipe) = pipe {
        pipe.read_to_end(&mut bytes).await?;
    }
    Ok(bytes)
}

/// Runs `command` to its end on this thread (stdout and stderr piped). The thread waits for
/// the child, so it outlives it: safe on a `spawn_blocking` thread too.
pub fn output_blocking(command: &mut std::process::Command) -> io::Result<Output> {
    prepare(command);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let program = program_name(command.get_program());
    let child = command.spawn()?;
    let group = Group(libc::pid_t::try_from(child.id()).ok());
    tell(&started(child.id(), program))?;
    let output = child.wait_with_output();
    drop(group);
    output
}

fn started(pid: u32, program: String) -> Started {
    Started {
        pid,
        pgid: pid,
        start_time: stat(pid).map_or(0, |s| s.start_time),
        boot_id: boot_id().to_string(),
        program,
    }
}

/// Tells the guard, then the watcher; if the watcher cannot record the child, the child goes.
fn tell(started: &Started) -> io::Result<()> {
    super::guard::watch(started);
    let Some(watcher) = current_watcher() else {
        return Ok(());
    };
    watcher(started).map_err(|message| {
        drop(Group(libc::pid_t::try_from(started.pid).ok()));
        io::Error::other(format!("{message}; the program was stopped"))
    })
}

fn program_name(program: &std::ffi::OsStr) -> String {
    std::path::Path::new(program)
        .file_name()
        .unwrap_or(program)
        .to_string_lossy()
        .into_owned()
}

/// This boot of this machine (empty when the kernel does not say).
pub fn boot_id() -> &'static str {
    static BOOT: OnceLock<String> = OnceLock::new();
    BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|id| id.trim().to_string())
            .unwrap_or_default()
    })
}

/// What `/proc/PID/stat` says of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    pub pgid: u32,
    pub start_time: u64,
}

/// A process's state, group and start time, or `None` when it does not exist.
pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The command name (field 2) is in parentheses and may hold anything, ')' included.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state (3), ppid (4), pgrp (5) … starttime (22).
    Some(Stat {
        state: fields.first()?.chars().next()?,
        pgid: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Whether the process a journal names (pid, start time, boot) is still running.
pub fn alive(pid: u32, start_time: u64, boot: &str) -> bool {
    boot == boot_id() && stat(pid).is_some_and(|s| s.start_time == start_time && s.state != 'Z')
}

/// The processes left of a journalled child: itself (the same pid and start time) and the
/// members of its process group started no earlier. A group whose leader's pid now belongs
/// to another process is not the child's. Nothing from another boot.
pub fn survivors(child: &Started) -> Vec<u32> {
    if child.boot_id != boot_id() || child.pgid <= 1 {
        return Vec::new();
    }
    if let Some(leader) = stat(child.pgid)
        && child.pgid == child.pid
        && leader.start_time != child.start_time
    {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mine = std::process::id();
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != mine)
        .filter(|pid| {
            stat(*pid).is_some_and(|s| {
                s.state != 'Z'
                    && if *pid == child.pid {
                        s.start_time == child.start_time
                    } else {
                        s.pgid == child.pgid && s.start_time >= child.start_time
                    }
            })
        })
        .collect()
}

/// How a survivor was stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stopped {
    /// Processes found running.
    pub processes: usize,
    /// SIGKILL was needed after the grace period.
    pub killed: bool,
    /// Still there after SIGKILL and the wait (they cannot be stopped from here).
    pub remaining: usize,
    pub waited: Duration,
}

/// Stops what is left of a journalled child: SIGTERM to each survivor (found by pid, start
/// time and group, never the group id alone, which may since name another group),
/// `grace` to go, then SIGKILL, then waits until they are gone (up to `grace`, and at least
/// 5 s). `None` when nothing of it is running.
pub fn stop(child: &Started, grace: Duration) -> Option<Stopped> {
    let found = survivors(child);
    if found.is_empty() {
        return None;
    }
    let started = Instant::now();
    let send = |signal| {
        for pid in survivors(child) {
            kill(libc::pid_t::try_from(pid).unwrap_or(0), signal);
        }
    };
    send(libc::SIGTERM);
    let gone = |limit: Duration| {
        let until = Instant::now() + limit;
        loop {
            if survivors(child).is_empty() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let mut killed = false;
    if !gone(grace) {
        killed = true;
        send(libc::SIGKILL);
        gone(grace.max(Duration::from_secs(5)));
    }
    Some(Stopped {
        processes: found.len(),
        killed,
        remaining: survivors(child).len(),
        waited: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_read_past_odd_command_names() {
        let line = "4242 (a) b (c)) S 1 4240 4240 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                pgid: 4240,
                start_time: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let me = std::process::id();
        let s = stat(me).expect("own stat");
        assert!(alive(me, s.start_time, boot_id()));
        assert!(!alive(me, s.start_time + 1, boot_id()));
        assert!(!alive(me, s.start_time, "another-boot"));
        // A child journalled on another boot is gone, whatever runs under its pid now.
        let other_boot = Started {
            pid: me,
            pgid: s.pgid,
            start_time: s.start_time,
            boot_id: "another-boot".into(),
            program: "x".into(),
        };
        assert_eq!(survivors(&other_boot), Vec::<u32>::new());
        assert_eq!(stop(&other_boot, Duration::from_millis(10)), None);
    }

    #[tokio::test]
    async fn children_are_watched_and_their_group_dies_on_drop() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let watcher: Watcher = Arc::new(move |started: &Started| {
            record.lock().expect("lock").push(started.clone());
            Ok(())
        });
        let pid = watched(watcher, async {
            let mut command = tokio::process::Command::new("/bin/sh");
            command.args(["-c", "sleep 30 & wait"]);
            let child = spawn(&mut command).expect("spawn");
            let pid = child.id().expect("pid");
            tokio::time::sleep(Duration::from_millis(200)).await;
            let started = seen.lock().expect("lock")[0].clone();
            assert_eq!(started.program, "sh");
            assert_eq!(started.pid, pid);
            assert!(survivors(&started).len() >= 2, "the shell and its sleep");
            drop(child);
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(survivors(&started), Vec::<u32>::new());
            pid
        })
        .await;
        assert!(pid > 1);
    }

    #[test]
    fn a_survivor_is_stopped_and_waited_for() {
        let mut command = std::process::Command::new("/bin/sh");
        command
            .args(["-c", "trap '' TERM; sleep 30 & wait"])
            .process_group(0);
        let mut child = command.spawn().expect("spawn");
        let pid = child.id();
        std::thread::sleep(Duration::from_millis(200));
        let started = Started {
            pid,
            pgid: pid,
            start_time: stat(pid).expect("stat").start_time,
            boot_id: boot_id().to_string(),
            program: "sh".into(),
        };
        let stopped = stop(&started, Duration::from_millis(300)).expect("found");
        // The shell ignores SIGTERM (its sleep does not): SIGKILL was needed.
        assert!(stopped.killed);
        assert_eq!(stopped.remaining, 0, "{stopped:?}");
        let _ = child.wait();
        assert_eq!(stop(&started, Duration::from_millis(100)), None);
    }
}
