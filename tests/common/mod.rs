//! A small builder that drives the real `drillbook` binary, the way casey/just's tests do.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Drillbook {
    dir: tempfile::TempDir,
    args: Vec<String>,
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
        let output = run_binary(self.dir.path(), &self.args, self.deadline);
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
    let started = Instant::now();
    let mut child = Command::new(binary())
        .args(args)
        .current_dir(dir)
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
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
