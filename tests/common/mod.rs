//! The one way the tests drive the real `drillbook` binary: the `Drillbook` builder, the way
//! casey/just's tests do. It runs the binary to completion (`run`), in the background
//! (`spawn`, a `Running` handle) or on a pseudo-terminal (`pty`, an expectrl session), in a
//! temporary directory of its own or in one the test gives. The rest of this module reads what
//! a run left behind (its journal, its run ids) and waits for things to happen.

#![allow(dead_code)]

pub mod s3;

pub mod archiving;
pub mod argv;
pub mod artifacts;
pub mod chromium;
pub mod drill;
pub mod faults;
pub mod http;
pub mod kill;
pub mod lab;
pub mod moto;
pub mod own_redis;
pub mod pg;
pub mod report;
pub mod screen;
pub mod swap;
pub mod tally;
pub mod web;

use std::io::Read;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use expectrl::session::OsSession;

/// The deadline of a run unless the test sets another: a hang is a failure.
const DEADLINE: Duration = Duration::from_secs(20);

/// How long the output is still read after drillbook has exited: it is all in the pipes by
/// then, unless a process drillbook left behind holds them open.
const READ_GRACE: Duration = Duration::from_secs(5);

/// The size of the pseudo-terminal `pty` runs drillbook on.
const COLUMNS: u16 = 120;
const LINES: u16 = 40;

/// The real binary, set up step by step and then run.
pub struct Drillbook {
    dir: Directory,
    args: Vec<String>,
    /// Variables set (`Some`) or removed (`None`), in order, over the isolated environment.
    env: Vec<(String, Option<String>)>,
    /// A hang is a failure: the process is killed after this long.
    deadline: Duration,
    discard_output: bool,
    /// Started as the leader of a process group of its own (`kill -9 -PGID` reaches it).
    own_group: bool,
    expected: Expected,
    /// Run as this OS user id instead of the test's own.
    uid: Option<u32>,
    /// Run under this host name, in a UTS namespace of its own ("another machine").
    host: Option<String>,
}

/// Where drillbook runs: a temporary directory the builder owns, or one the test gives.
enum Directory {
    Own(tempfile::TempDir),
    Given(PathBuf),
}

/// What `expect_status`, `expect_stdout` and `expect_stderr` ask for.
#[derive(Default)]
struct Expected {
    status: Option<i32>,
    stdout: Option<String>,
    stderr: Option<String>,
}

pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Drillbook {
    /// Runs in a new temporary directory, removed when the builder (or what it started) goes.
    pub fn new() -> Self {
        Self::with_dir(Directory::Own(
            tempfile::tempdir().expect("temporary directory"),
        ))
    }

    /// Runs in `dir`, which the test keeps (and has usually filled already).
    pub fn in_dir(dir: impl AsRef<Path>) -> Self {
        Self::with_dir(Directory::Given(dir.as_ref().to_path_buf()))
    }

    fn with_dir(dir: Directory) -> Self {
        Drillbook {
            dir,
            args: Vec::new(),
            env: Vec::new(),
            deadline: DEADLINE,
            discard_output: false,
            own_group: false,
            expected: Expected::default(),
            uid: None,
            host: None,
        }
    }

    /// Runs as another person: OS user id `uid` (with no password entry, so drillbook records
    /// it as `uid N`), through setpriv. Needs root, as CI has; the state directory must be
    /// open to that account ([`share_state`]).
    pub fn by_uid(mut self, uid: u32) -> Self {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "running drillbook as another OS account needs root (setpriv)"
        );
        self.uid = Some(uid);
        self
    }

    /// Runs as if on another machine named `host`: in a UTS namespace of its own whose host
    /// name is set (unshare, as root), the same process once started (`exec`).
    pub fn on_host(mut self, host: &str) -> Self {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "a host name of its own needs root (unshare --uts)"
        );
        self.host = Some(host.to_owned());
        self
    }

    pub fn dir(&self) -> &Path {
        match &self.dir {
            Directory::Own(dir) => dir.path(),
            Directory::Given(dir) => dir,
        }
    }

    pub fn playbook(self, name: &str, text: &str) -> Self {
        self.file(name, text.as_bytes())
    }

    /// Writes `bytes` to `name` in the directory, creating the directories on the way.
    pub fn file(self, name: &str, bytes: &[u8]) -> Self {
        let path = self.dir().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create directory");
        }
        std::fs::write(path, bytes).expect("write file");
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Sets a variable in drillbook's environment.
    pub fn env(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        self.env
            .push((name.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Sets each `(name, value)`: a `Vec` or an array of pairs, or a reference to one.
    pub fn envs<I>(mut self, pairs: I) -> Self
    where
        I: IntoIterator,
        I::Item: EnvPair,
    {
        for pair in pairs {
            let (name, value) = pair.pair();
            self.env.push((name, Some(value)));
        }
        self
    }

    /// Removes a variable from drillbook's environment (the test process's own included).
    pub fn env_remove(mut self, name: impl AsRef<str>) -> Self {
        self.env.push((name.as_ref().to_owned(), None));
        self
    }

    /// How long drillbook may run before it is killed and the test fails (20 s unless set).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Sends stdout and stderr to /dev/null instead of reading them (`Output` has them empty).
    pub fn discard_output(mut self) -> Self {
        self.discard_output = true;
        self
    }

    /// Starts drillbook as the leader of a process group of its own.
    pub fn own_process_group(mut self) -> Self {
        self.own_group = true;
        self
    }

    pub fn expect_status(mut self, status: i32) -> Self {
        self.expected.status = Some(status);
        self
    }

    pub fn expect_stderr(mut self, stderr: &str) -> Self {
        self.expected.stderr = Some(stderr.to_owned());
        self
    }

    pub fn expect_stdout(mut self, stdout: &str) -> Self {
        self.expected.stdout = Some(stdout.to_owned());
        self
    }

    /// Runs drillbook to completion with stdin closed; checks the expectations and that it
    /// did not panic.
    pub fn run(self) -> Output {
        self.spawn().wait()
    }

    /// Starts drillbook in the background with stdin closed, its output read as it comes
    /// (or discarded). The handle kills it when dropped, if it is still running.
    pub fn spawn(self) -> Running {
        let mut command = self.command(&[]);
        let (stdout, stderr) = if self.discard_output {
            (Stdio::null(), Stdio::null())
        } else {
            (Stdio::piped(), Stdio::piped())
        };
        if self.own_group {
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
        }
        let started = Instant::now();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start drillbook");
        let stdout = Captured::read(child.stdout.take());
        let stderr = Captured::read(child.stderr.take());
        let Drillbook {
            dir,
            args,
            deadline,
            expected,
            ..
        } = self;
        Running {
            child,
            args,
            started,
            deadline,
            stdout,
            stderr,
            expected,
            _dir: dir,
        }
    }

    /// Starts drillbook on a pseudo-terminal of 120 columns and 40 lines (TERM=xterm; COLUMNS
    /// and LINES say so too, unless the test sets them), its stdin, stdout and stderr. The
    /// session kills it when dropped; the test drives the conversation and its deadline.
    pub fn pty(self) -> Terminal {
        let columns = COLUMNS.to_string();
        let lines = LINES.to_string();
        let command = self.command(&[("TERM", "xterm"), ("COLUMNS", &columns), ("LINES", &lines)]);
        let mut session = OsSession::spawn(command).expect("spawn drillbook on a pty");
        session
            .get_process_mut()
            .set_window_size(COLUMNS, LINES)
            .expect("window size");
        Terminal {
            session,
            _dir: self.dir,
        }
    }

    /// The binary in the directory with the arguments, isolated from the caller's drillbook
    /// settings, `defaults` set, then the test's own variables.
    fn command(&self, defaults: &[(&str, &str)]) -> Command {
        let mut program: Vec<std::ffi::OsString> = Vec::new();
        if let Some(host) = &self.host {
            program.extend(
                [
                    "unshare",
                    "--uts",
                    "sh",
                    "-c",
                    "hostname \"$0\" && exec \"$@\"",
                    host,
                ]
                .map(Into::into),
            );
        }
        if let Some(uid) = self.uid {
            let uid = uid.to_string();
            program.extend(
                [
                    "setpriv",
                    "--reuid",
                    &uid,
                    "--regid",
                    &uid,
                    "--clear-groups",
                    "--",
                ]
                .map(Into::into),
            );
        }
        program.push(binary().into());
        let mut command = Command::new(&program[0]);
        command.args(&program[1..]);
        command
            .args(&self.args)
            .current_dir(self.dir())
            .env_remove("NO_COLOR")
            .env_remove("DRILLBOOK_STATE_DIR")
            .env_remove("DRILLBOOK_STATE")
            .env_remove("DRILLBOOK_LEASE")
            .env_remove("RUST_LOG")
            .envs(defaults.iter().copied());
        for (name, value) in &self.env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        command
    }
}

impl Expected {
    fn check(&self, output: &Output) {
        if let Some(expected) = &self.stderr {
            assert_eq!(
                &output.stderr, expected,
                "stderr differs\n--- got:\n{}",
                output.stderr
            );
        }
        if let Some(expected) = &self.stdout {
            assert_eq!(&output.stdout, expected, "stdout differs");
        }
        if let Some(status) = self.status {
            assert_eq!(
                output.status, status,
                "exit status; stdout:\n{}\nstderr:\n{}",
                output.stdout, output.stderr
            );
        }
        assert!(
            !output.stderr.contains("panicked"),
            "panic:\n{}",
            output.stderr
        );
    }
}

/// A `(name, value)` pair for `Drillbook::envs`, owned or borrowed.
pub trait EnvPair {
    fn pair(&self) -> (String, String);
}

impl<K: AsRef<str>, V: AsRef<str>> EnvPair for (K, V) {
    fn pair(&self) -> (String, String) {
        (self.0.as_ref().to_owned(), self.1.as_ref().to_owned())
    }
}

impl<K: AsRef<str>, V: AsRef<str>> EnvPair for &(K, V) {
    fn pair(&self) -> (String, String) {
        (self.0.as_ref().to_owned(), self.1.as_ref().to_owned())
    }
}

/// One of drillbook's output streams, read into memory by a thread as it comes.
struct Captured {
    text: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl Captured {
    fn read(pipe: Option<impl Read + Send + 'static>) -> Captured {
        let text = Arc::new(Mutex::new(Vec::new()));
        let reader = pipe.map(|mut pipe| {
            let text = text.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n @ 1..) = pipe.read(&mut buf) {
                    text.lock().expect("output").extend_from_slice(&buf[..n]);
                }
            })
        });
        Captured { text, reader }
    }

    /// Whether the stream is closed and all of it read.
    fn done(&self) -> bool {
        self.reader.as_ref().is_none_or(JoinHandle::is_finished)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().expect("output")).into_owned()
    }
}

/// drillbook running in the background: killed (SIGKILL) when dropped if still running.
pub struct Running {
    child: Child,
    args: Vec<String>,
    started: Instant,
    deadline: Duration,
    stdout: Captured,
    stderr: Captured,
    expected: Expected,
    /// Kept until drillbook is gone.
    _dir: Directory,
}

impl Running {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
    }

    /// Sends SIGINT, as Ctrl-C at a terminal does.
    pub fn interrupt(&self) {
        // SAFETY: signalling the child we started; it is not reaped before `wait` or `kill`,
        // so its pid cannot have been reused.
        unsafe { libc::kill(self.pid(), libc::SIGINT) };
    }

    /// The exit status, if drillbook has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait")
    }

    /// SIGKILL, then the exit status (no code: killed by a signal, unless it had exited).
    pub fn kill(&mut self) -> ExitStatus {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap")
    }

    /// What drillbook has printed so far: (stdout, stderr); empty if discarded.
    pub fn output_so_far(&self) -> (String, String) {
        (self.stdout.text(), self.stderr.text())
    }

    /// Waits for drillbook to exit, killing it and failing the test at the deadline (counted
    /// from the start); checks the expectations and that it did not panic.
    pub fn wait(mut self) -> Output {
        let status = loop {
            if let Some(status) = self.try_wait() {
                break status;
            }
            if self.started.elapsed() > self.deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let (stdout, stderr) = self.output_so_far();
                panic!(
                    "drillbook {:?} still running after {:?}\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}",
                    self.args, self.deadline
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let elapsed = self.started.elapsed();
        let exited = Instant::now();
        while !(self.stdout.done() && self.stderr.done()) && exited.elapsed() < READ_GRACE {
            std::thread::sleep(Duration::from_millis(5));
        }
        let output = Output {
            status: status.code().unwrap_or(-1),
            stdout: self.stdout.text(),
            stderr: self.stderr.text(),
            elapsed,
        };
        self.expected.check(&output);
        output
    }

    /// The same, with the deadline `limit` from now.
    pub fn wait_within(mut self, limit: Duration) -> Output {
        self.deadline = self.started.elapsed() + limit;
        self.wait()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// drillbook on a pseudo-terminal: the expectrl session (this derefs to it), which kills the
/// process when dropped.
pub struct Terminal {
    session: OsSession,
    /// Kept until the session (declared first, so dropped first) is gone.
    _dir: Directory,
}

impl Deref for Terminal {
    type Target = OsSession;

    fn deref(&self) -> &OsSession {
        &self.session
    }
}

impl DerefMut for Terminal {
    fn deref_mut(&mut self) -> &mut OsSession {
        &mut self.session
    }
}

/// The binary under test. Tests drive it with `Drillbook`; this is its path for what is built
/// beside it and for scripts that run it themselves.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_drillbook"))
}

/// `n` minutes, for the deadline of runs that do real work.
pub const fn minutes(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

/// The ids of the runs under `<dir>/.drillbook/runs`, sorted.
pub fn run_ids(dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(dir.join(".drillbook/runs"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                // `.<id>.starting`: a run killed before its first record, which is no run.
                .filter(|name| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// The only run in `dir`.
pub fn only_run(dir: &Path) -> String {
    let ids = run_ids(dir);
    assert_eq!(ids.len(), 1, "runs: {ids:?}");
    ids[0].clone()
}

/// A run's journal records, as JSON (a torn last line is skipped).
pub fn journal(dir: &Path, run_id: &str) -> Vec<serde_json::Value> {
    journal_so_far(dir, run_id).expect("journal")
}

/// The `step_finished` record of `step` in the newest run under `dir`.
pub fn finished_step(dir: &Path, step: &str) -> serde_json::Value {
    let run = run_ids(dir).pop().expect("a run");
    journal(dir, &run)
        .into_iter()
        .find(|r| r["event"] == "step_finished" && r["step"] == step)
        .unwrap_or_else(|| panic!("{step} never finished in {run}"))
}

/// The same while the run may still be starting: its directory can exist a moment before its
/// journal does.
fn journal_so_far(dir: &Path, run_id: &str) -> std::io::Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(
        dir.join(".drillbook/runs")
            .join(run_id)
            .join("journal.jsonl"),
    )?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

/// The files below `root`, recursively, as paths relative to it, sorted.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = below(root)
        .into_iter()
        .filter(|path| !path.is_dir())
        .filter_map(|path| Some(path.strip_prefix(root).ok()?.to_path_buf()))
        .collect();
    found.sort();
    found
}

/// Everything below `root`, directories and files, as full paths.
fn below(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            found.push(path);
        }
    }
    found
}

/// The files below `root` with their bytes, by path relative to it, sorted.
pub fn files_below(root: &Path) -> Vec<(String, Vec<u8>)> {
    walk(root)
        .into_iter()
        .map(|relative| {
            let bytes = std::fs::read(root.join(&relative)).expect("read");
            (relative.display().to_string(), bytes)
        })
        .collect()
}

/// Records of one event kind, optionally for one step.
pub fn events<'a>(
    records: &'a [serde_json::Value],
    event: &str,
    step: Option<&str>,
) -> Vec<&'a serde_json::Value> {
    records
        .iter()
        .filter(|r| r["event"] == event && step.is_none_or(|s| r["step"] == s))
        .collect()
}

/// Waits until `condition` holds (polling), failing after `limit`.
pub fn wait_for(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Opens a state directory (and the way to it) to every account, as a team's shared state
/// directory is to its group: other people's `drillbook approve` must write its journal.
pub fn share_state(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    // A run's inbox keeps its own mode (sticky, unlisted): the run sets it as it would for
    // any team.
    for path in below(dir).into_iter().chain([dir.to_path_buf()]) {
        let mode = match path.is_dir() {
            true if path.ends_with("inbox") => continue,
            true => 0o777,
            false => 0o666,
        };
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
    }
    let mut up = dir.parent();
    while let Some(parent) = up {
        if let Ok(meta) = std::fs::metadata(parent) {
            let mode = meta.permissions().mode() | 0o011;
            let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(mode));
        }
        up = parent.parent();
    }
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        })
        .unwrap_or(false)
}

/// Whether the (only) run in `dir` has journaled the start of `step` (any step for `None`).
pub fn step_started(dir: &Path, step: Option<&str>) -> bool {
    run_ids(dir).first().is_some_and(|run| {
        journal_so_far(dir, run)
            .is_ok_and(|records| !events(&records, "step_started", step).is_empty())
    })
}

/// An ed25519 key pair made with ssh-keygen (no passphrase): the private key's path, named
/// `<name>_key` in `dir`, and the public key's line. `owner`: the OS user id the private key
/// is given to (a person signing from their own account).
pub fn keypair(dir: &Path, name: &str, owner: Option<u32>) -> (PathBuf, String) {
    let key = dir.join(format!("{name}_key"));
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen (openssh-client)");
    assert!(made.success());
    if let Some(uid) = owner {
        std::os::unix::fs::chown(&key, Some(uid), Some(uid)).expect("chown the key");
    }
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    (key, public.trim().to_string())
}
