//! A small builder that drives the real `drillbook` binary, the way casey/just's tests do.

#![allow(dead_code)]

pub mod s3;

pub mod drill;
pub mod http;
pub mod pg;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Drillbook {
    dir: tempfile::TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
    status: Option<i32>,
    stderr: Option<String>,
    stdout: Option<String>,
    /// A hang is a failure: the process is killed after this long.
    deadline: Duration,
}

pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Drillbook {
    pub fn new() -> Self {
        Drillbook {
            dir: tempfile::tempdir().expect("temporary directory"),
            args: Vec::new(),
            env: Vec::new(),
            status: None,
            stderr: None,
            stdout: None,
            deadline: Duration::from_secs(20),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn playbook(self, name: &str, text: &str) -> Self {
        self.file(name, text.as_bytes())
    }

    pub fn file(self, name: &str, bytes: &[u8]) -> Self {
        let path = self.dir.path().join(name);
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

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    pub fn expect_status(mut self, status: i32) -> Self {
        self.status = Some(status);
        self
    }

    pub fn expect_stderr(mut self, stderr: &str) -> Self {
        self.stderr = Some(stderr.to_owned());
        self
    }

    pub fn expect_stdout(mut self, stdout: &str) -> Self {
        self.stdout = Some(stdout.to_owned());
        self
    }

    pub fn run(self) -> Output {
        let output = run_binary_with(self.dir.path(), &self.args, &self.env, self.deadline);
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
                "exit status; stderr:\n{}",
                output.stderr
            );
        }
        assert!(
            !output.stderr.contains("panicked"),
            "panic:\n{}",
            output.stderr
        );
        output
    }
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_drillbook"))
}

/// Runs the binary in `dir` with stdin closed, killing it if it outlives `deadline`.
pub fn run_binary(dir: &Path, args: &[String], deadline: Duration) -> Output {
    run_binary_with(dir, args, &[], deadline)
}

/// The binary as a command in `dir`, isolated from the caller's drillbook settings.
pub fn command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command
        .args(args)
        .current_dir(dir)
        .env_remove("NO_COLOR")
        .env_remove("DRILLBOOK_STATE_DIR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    command
}

pub fn run_binary_with(
    dir: &Path,
    args: &[String],
    env: &[(String, String)],
    deadline: Duration,
) -> Output {
    let started = Instant::now();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = command(dir, &args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start drillbook");
    let mut stdout_pipe = child.stdout.take().expect("stdout");
    let mut stderr_pipe = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout_pipe.read_to_string(&mut text);
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            panic!("drillbook {args:?} still running after {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    Output {
        status: status.code().unwrap_or(-1),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
        elapsed,
    }
}

/// Runs drillbook in `dir` to completion (20 s deadline).
pub fn drillbook(dir: &Path, args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let output = run_binary(dir, &args, Duration::from_secs(20));
    assert!(
        !output.stderr.contains("panicked"),
        "panic:\n{}",
        output.stderr
    );
    output
}

/// The ids of the runs under `<dir>/.drillbook/runs`, sorted.
pub fn run_ids(dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(dir.join(".drillbook/runs"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
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

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        })
        .unwrap_or(false)
}

/// Starts drillbook in `dir` in the background, its output discarded.
pub fn spawn(dir: &Path, args: &[&str]) -> std::process::Child {
    command(dir, args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start drillbook")
}

/// Whether the (only) run in `dir` has journaled the start of `step` (any step for `None`).
pub fn step_started(dir: &Path, step: Option<&str>) -> bool {
    run_ids(dir).first().is_some_and(|run| {
        journal_so_far(dir, run)
            .is_ok_and(|records| !events(&records, "step_started", step).is_empty())
    })
}
