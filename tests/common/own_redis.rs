//! A redis-server of the test's own on a free port of 127.0.0.1 (never the shared 6379),
//! persisting nothing, that the test can kill and start again on the same port.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct OwnRedis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    pub fn start() -> OwnRedis {
        // A port found free can be taken before redis-server binds it: then it exits, and
        // another port is tried.
        for _ in 0..5 {
            let mut redis = OwnRedis {
                port: free_port(),
                child: None,
                dir: tempfile::tempdir().expect("tempdir"),
            };
            if redis.try_start() {
                return redis;
            }
        }
        panic!("redis-server would not start on a free port");
    }

    /// Starts it (again) on its port; waits until it answers.
    pub fn restart(&mut self) {
        assert!(
            self.try_start(),
            "redis-server would not start again on {}",
            self.port
        );
    }

    /// Starts it on its port, on 127.0.0.1 and ::1; false when it exited (the port was taken).
    fn try_start(&mut self) -> bool {
        let log: PathBuf = self.dir.path().join("redis.log");
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "::1",
            ])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let started = Instant::now();
        while self.cli(&["PING"]).as_deref() != Some("PONG") {
            if child.try_wait().expect("redis-server status").is_some() {
                return false;
            }
            // A hang guard, not a timing assumption: it answers within milliseconds.
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "redis-server on {} never answered",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
        true
    }

    /// SIGKILL, and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self, db: u32) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    /// redis-cli's answer, trimmed; `None` when it failed (e.g. the server is down).
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        self.cli_in(0, args)
    }

    /// redis-cli in database `db`.
    pub fn cli_in(&self, db: u32, args: &[&str]) -> Option<String> {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-n", &db.to_string()])
            .args(args)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
        (output.status.success() && !text.starts_with("Could not connect")).then_some(text)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port free on both 127.0.0.1 and ::1.
fn free_port() -> u16 {
    loop {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = v4.local_addr().expect("address").port();
        if std::net::TcpListener::bind(("::1", port)).is_ok() {
            return port;
        }
    }
}
