//! One live run per state directory and playbook. A [`RunLock`] is an exclusive advisory lock
//! on a lock file, held for the life of the run; the file says which run holds it and from
//! which process, so a second `run` or `resume` can say who is in the way.
//!
//! A holder that dies needs no clean-up: the kernel releases its lock with the process, and the
//! next `acquire` takes the file over whatever it still says. The file is never removed: if it
//! were unlinked on release, a process that had opened it just before could lock the unlinked
//! file while a third creates and locks a new one, and two runs would both hold "the" lock.
//! For the same reason it is rewritten in place, never replaced by a rename.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Held for the life of a run; dropping it releases the lock (the file stays).
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("run {run_id} is in progress (pid {pid})")]
    Held { run_id: String, pid: u32 },
    #[error("run {run_id} is in progress: {holder} holds it until {}; another runner may take it over after that", crate::format::format_time(*.until))]
    Leased {
        run_id: String,
        holder: String,
        until: jiff::Timestamp,
    },
    #[error("cannot lock {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
}

#[derive(Serialize, Deserialize)]
struct Holder {
    run_id: String,
    pid: u32,
    /// Held for a moment (`approve` writing one decision), not for a run: worth waiting for.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    brief: bool,
}

/// How often to look again when the lock is held but its file does not name a holder yet.
const ATTEMPTS: u32 = 50;
const PAUSE: Duration = Duration::from_millis(20);
/// How long to wait for brief holders, one after another, before giving up.
const BRIEF_WAIT: Duration = Duration::from_secs(30);

impl RunLock {
    /// The lock for a run, held until dropped. A brief holder is waited for; a run is not.
    pub fn acquire(path: &Path, run_id: &str) -> Result<RunLock, LockError> {
        Self::acquire_as(path, run_id, false)
    }

    /// The lock for a moment (one decision written): waits for other brief holders, so that
    /// racing `approve`s take turns instead of failing.
    pub fn acquire_brief(path: &Path, run_id: &str) -> Result<RunLock, LockError> {
        Self::acquire_as(path, run_id, true)
    }

    fn acquire_as(path: &Path, run_id: &str, brief: bool) -> Result<RunLock, LockError> {
        let io_error = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        // No truncation on open: until the lock is ours, the content belongs to the holder.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_error)?;
        let mut attempt = 0;
        let waiting_since = std::time::Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(source)) => return Err(io_error(source)),
            }
            // The holder writes its name right after locking, so an empty or partial file means
            // it is between the two (or has just let go): look again shortly.
            // A named holder whose process is gone is the last holder's note, read before the
            // new holder wrote its own: look again too.
            if let Some(holder) = read_holder(&mut file)
                .map_err(io_error)?
                .filter(|holder| Path::new(&format!("/proc/{}", holder.pid)).exists())
            {
                if holder.brief && waiting_since.elapsed() < BRIEF_WAIT {
                    std::thread::sleep(PAUSE);
                    continue;
                }
                return Err(LockError::Held {
                    run_id: holder.run_id,
                    pid: holder.pid,
                });
            }
            attempt += 1;
            if attempt >= ATTEMPTS {
                return Err(io_error(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "locked by another process that does not say which run it is",
                )));
            }
            std::thread::sleep(PAUSE);
        }
        let holder = Holder {
            run_id: run_id.to_string(),
            pid: std::process::id(),
            brief,
        };
        write_holder(&mut file, &holder).map_err(io_error)?;
        Ok(RunLock {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Closing the file would release the lock too; unlocking explicitly also covers a
        // duplicate of the descriptor that outlives this value.
        let _ = self.file.unlock();
    }
}

fn read_holder(file: &mut File) -> io::Result<Option<Holder>> {
    file.seek(SeekFrom::Start(0))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    // Content that does not parse names no holder; treat it like a half-written one.
    Ok(serde_json::from_slice(&bytes).ok())
}

fn write_holder(file: &mut File, holder: &Holder) -> io::Result<()> {
    let text = serde_json::to_string(holder).map_err(io::Error::other)?;
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    /// Names the lock file a child test process should hold (see `hold_lock_for_parent`).
    const HELPER_VARIABLE: &str = "DRILLBOOK_LOCK_TEST_HOLD";
    const HELPER_READY: &str = "drillbook-lock-helper-ready";

    fn holder_in(path: &Path) -> serde_json::Value {
        let text = std::fs::read_to_string(path).expect("read lock file");
        serde_json::from_str(&text).expect("lock file is JSON")
    }

    #[test]
    fn acquire_creates_directories_and_records_the_holder() {
        let directory = tempfile::tempdir().expect("dir");
        let path = directory.path().join("state/locks/nightly.lock");
        let lock = RunLock::acquire(&path, "run-1").expect("acquire");
        assert_eq!(lock.path(), path);
        assert_eq!(
            holder_in(&path),
            serde_json::json!({ "run_id": "run-1", "pid": std::process::id() })
        );
    }

    #[test]
    fn second_open_file_in_the_same_process_is_refused() {
        // flock locks belong to the open file description, so a second `open` conflicts even
        // within one process.
        let directory = tempfile::tempdir().expect("dir");
        let path = directory.path().join("run.lock");
        let _lock = RunLock::acquire(&path, "run-1").expect("acquire");
        let error = RunLock::acquire(&path, "run-2").expect_err("already held");
        let pid = std::process::id();
        assert!(
            matches!(&error, LockError::Held { run_id, pid: held } if run_id == "run-1" && *held == pid),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!("run run-1 is in progress (pid {pid})")
        );
        // The refused attempt must not have touched the holder's record.
        assert_eq!(holder_in(&path)["run_id"], "run-1");
    }

    #[test]
    fn released_lock_is_taken_over() {
        let directory = tempfile::tempdir().expect("dir");
        let path = directory.path().join("run.lock");
        drop(RunLock::acquire(&path, "run-1").expect("acquire"));
        assert!(path.exists(), "the file is left in place");
        let _lock = RunLock::acquire(&path, "run-2").expect("take over");
        assert_eq!(holder_in(&path)["run_id"], "run-2");
    }

    #[test]
    fn stale_file_of_a_dead_process_is_taken_over() {
        let directory = tempfile::tempdir().expect("dir");
        let path = directory.path().join("run.lock");
        // Longer than what is written now, so a missing truncation would leave a tail.
        let stale = r#"{"run_id": "crashed-run-with-a-long-id", "pid": 4194304}"#;
        std::fs::write(&path, stale).expect("write stale");
        let _lock = RunLock::acquire(&path, "run-2").expect("take over");
        assert_eq!(
            holder_in(&path),
            serde_json::json!({ "run_id": "run-2", "pid": std::process::id() })
        );
    }

    #[test]
    fn holder_that_never_names_itself_is_an_error_not_a_takeover() {
        let directory = tempfile::tempdir().expect("dir");
        let path = directory.path().join("run.lock");
        let other = File::create(&path).expect("create");
        other.try_lock().expect("lock by hand, writing nothing");
        let error = RunLock::acquire(&path, "run-2").expect_err("still held");
        assert!(matches!(error, LockError::Io { .. }), "{error:?}");
        assert!(error.to_string().contains("run.lock"), "{error}");
    }

    #[test]
    fn a_brief_holder_is_waited_for_and_a_run_is_not() {
        let directory = tempfile::tempdir().expect("dir");
        let path = directory.path().join("run.lock");
        let brief = RunLock::acquire_brief(&path, "run-1").expect("first");
        let releasing = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(brief);
        });
        let started = std::time::Instant::now();
        let second = RunLock::acquire_brief(&path, "run-1").expect("waited for");
        assert!(started.elapsed() >= Duration::from_millis(250));
        releasing.join().expect("thread");
        drop(second);
        let run = RunLock::acquire(&path, "run-1").expect("free");
        let started = std::time::Instant::now();
        let error = RunLock::acquire_brief(&path, "run-1").expect_err("a run holds it");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(error, LockError::Held { .. }), "{error:?}");
        drop(run);
    }

    #[test]
    fn io_errors_name_the_path() {
        let directory = tempfile::tempdir().expect("dir");
        let blocker = directory.path().join("not-a-directory");
        std::fs::write(&blocker, "").expect("write");
        let path = blocker.join("run.lock");
        let error = RunLock::acquire(&path, "run-1").expect_err("parent is a file");
        assert!(matches!(error, LockError::Io { .. }), "{error:?}");
        assert!(error.to_string().contains("not-a-directory"), "{error}");
    }

    #[test]
    fn lock_of_another_process_is_reported_until_it_dies() {
        let directory = tempfile::tempdir().expect("dir");
        let path = directory.path().join("run.lock");
        let executable = std::env::current_exe().expect("test executable");
        let mut child = Command::new(executable)
            .args([
                "--exact",
                "lock::tests::hold_lock_for_parent",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_VARIABLE, &path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn helper");
        let stdout = child.stdout.take().expect("piped stdout");
        let ready = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains(HELPER_READY));
        assert!(ready, "the helper did not take the lock");

        let error = RunLock::acquire(&path, "run-2").expect_err("held by the helper");
        let child_pid = child.id();
        assert!(
            matches!(&error, LockError::Held { run_id, pid } if run_id == "helper-run" && *pid == child_pid),
            "{error:?}"
        );

        // Killed without any chance to clean up: the kernel releases the lock.
        child.kill().expect("kill helper");
        child.wait().expect("reap helper");
        let _lock = RunLock::acquire(&path, "run-2").expect("take over from a dead holder");
        assert_eq!(holder_in(&path)["run_id"], "run-2");
    }

    /// Not a test by itself: the child process of the test above, holding the lock until its
    /// stdin closes (it is killed first; the parent's death also closes it).
    #[test]
    #[ignore = "helper process for lock_of_another_process_is_reported_until_it_dies"]
    fn hold_lock_for_parent() {
        let Some(path) = std::env::var_os(HELPER_VARIABLE) else {
            return;
        };
        let _lock = RunLock::acquire(Path::new(&path), "helper-run").expect("helper acquire");
        println!("{HELPER_READY}");
        io::stdout().flush().expect("flush");
        let mut rest = Vec::new();
        let _ = io::stdin().read_to_end(&mut rest);
    }
}
