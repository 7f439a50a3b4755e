//! The state directory: `<state-dir>/runs/<run-id>/` holds each run's journal, log and captured
//! output; `<state-dir>/locks/<playbook>.lock` keeps one live run per playbook.
//!
//! With a shared state (`--state URL`, [`crate::shared`]) the store is the state of record: a
//! runner works in a directory of its own below the state directory and writes its journal
//! to the store first, its hold on a playbook is a lease in the store, and what reads runs
//! reads a fresh copy of the store ([`StateDir::view`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::journal;
use crate::lock::{LockError, RunLock};
use crate::shared::Shared;
use crate::state::RunState;

pub const DEFAULT_DIR: &str = ".drillbook";

#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
    shared: Option<Shared>,
    /// A copy of the shared state, removed with its last clone.
    _copy: Option<Arc<Copy>>,
}

/// A directory removed when dropped.
#[derive(Debug)]
struct Copy(PathBuf);

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What keeps a run the only one of its playbook: a lock on this machine, or a lease in the
/// shared state.
pub enum Hold {
    Local(RunLock),
    Shared(crate::shared::Held),
}

impl StateDir {
    pub fn new(root: PathBuf) -> StateDir {
        StateDir {
            root,
            shared: None,
            _copy: None,
        }
    }

    /// The state kept in `shared`, worked on in `root`.
    pub fn shared(root: PathBuf, shared: Shared) -> StateDir {
        StateDir {
            root,
            shared: Some(shared),
            _copy: None,
        }
    }

    /// Where the state of record is: the store's URL or this directory.
    pub fn location(&self) -> String {
        match &self.shared {
            Some(shared) => shared.url().to_owned(),
            None => self.root.display().to_string(),
        }
    }

    /// The runs to read, as they stand: this directory, or a fresh copy of the shared state's
    /// journals (removed when the last clone of it goes).
    pub fn view(&self) -> Result<StateDir, String> {
        let Some(shared) = &self.shared else {
            return Ok(self.clone());
        };
        let copies = self.root.join("copies");
        remove_orphaned_copies(&copies);
        let root = copies.join(format!(
            "{}-{}",
            std::process::id(),
            crate::clock::now().as_nanosecond()
        ));
        std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        let copy = Arc::new(Copy(root.clone()));
        shared.pull(&root, None)?;
        Ok(StateDir {
            root,
            shared: Some(shared.clone()),
            _copy: Some(copy),
        })
    }

    /// Brings one run up to date from the shared state, with its log and captured output:
    /// a copy before it is read again, a runner's own directory before it resumes the run.
    pub fn refresh(&self, run_id: &str) -> Result<(), String> {
        match &self.shared {
            Some(shared) => {
                check_run_id(run_id)?;
                shared.pull(&self.root, Some(run_id))
            }
            None => Ok(()),
        }
    }

    /// Takes the hold on `playbook`'s runs for run `run_id`: the lock, or in a shared state the
    /// lease (renewed until the hold is dropped).
    pub fn hold(&self, playbook: &str, run_id: &str) -> Result<Hold, LockError> {
        match &self.shared {
            Some(shared) => shared
                .hold_for_run(&lock_name(playbook), run_id, self.run_dir(run_id))
                .map(Hold::Shared)
                .map_err(|refused| leased(shared, refused)),
            None => {
                let lock = RunLock::acquire(&self.lock_path(playbook), run_id)?;
                if let Some((run_id, pid)) = self.live_run_of(playbook) {
                    return Err(LockError::Held { run_id, pid });
                }
                Ok(Hold::Local(lock))
            }
        }
    }

    /// The journal of a run started or resumed here, written to the shared state first.
    pub fn journal_mirror(&self, run_id: &str) -> Option<Box<dyn journal::Mirror>> {
        let shared = self.shared.clone()?;
        Some(Box::new(crate::shared::StoreMirror::new(
            shared,
            run_id,
            &self.run_dir(run_id),
        )))
    }

    pub fn shared_state(&self) -> Option<&Shared> {
        self.shared.as_ref()
    }

    /// Whether a runner is driving this unfinished run: its drillbook's process is alive here,
    /// or, in a shared state, the playbook's lease is held for it and has not expired.
    pub fn running(&self, state: &RunState) -> bool {
        match &self.shared {
            Some(shared) => shared
                .holder(&lock_name(&state.playbook))
                .ok()
                .flatten()
                .is_some_and(|holder| holder.run_id == state.run_id),
            None => Path::new(&format!("/proc/{}", state.pid)).exists(),
        }
    }

    /// A run's outcome, or for an unfinished one whether a runner is driving it (`running`) or
    /// not (`stopped`).
    pub fn status_of(&self, state: &RunState) -> &'static str {
        match state.outcome() {
            Some(_) => state.outcome_name(),
            None if self.running(state) => "running",
            None => "stopped",
        }
    }

    /// Whether a run with this id exists.
    pub fn has_run(&self, run_id: &str) -> Result<bool, String> {
        match &self.shared {
            Some(shared) => shared.has_run(run_id),
            None => Ok(self.journal(run_id).exists()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.root.join("runs").join(run_id)
    }

    pub fn journal(&self, run_id: &str) -> PathBuf {
        self.run_dir(run_id).join(journal::FILE_NAME)
    }

    /// The lock file of a playbook's runs: `locks/<name>.lock`, the name encoded so that two
    /// playbooks never share one (see [`lock_name`]).
    pub fn lock_path(&self, playbook: &str) -> PathBuf {
        self.root
            .join("locks")
            .join(format!("{}.lock", lock_name(playbook)))
    }

    /// An unfinished run of `playbook` whose drillbook is still running (by its journalled
    /// pid, start time and boot), other than this process: its run id and pid. The lock file
    /// says the same while it exists; this still holds when `locks/` was deleted under a
    /// live run.
    pub fn live_run_of(&self, playbook: &str) -> Option<(String, u32)> {
        let me = std::process::id();
        let (runs, _) = self.list();
        runs.into_iter()
            .filter(|run| run.playbook == playbook && run.finished.is_none())
            .find_map(|run| {
                let process = run.process.as_ref()?;
                (process.pid != me
                    && crate::connect::child::alive(
                        process.pid,
                        process.start_time,
                        &process.boot_id,
                    ))
                .then(|| (run.run_id.clone(), process.pid))
            })
    }

    /// Every run with a readable journal, newest first, and the runs whose journal could not
    /// be read with the reason.
    pub fn list(&self) -> (Vec<RunState>, Vec<(String, String)>) {
        let mut runs = Vec::new();
        let mut broken = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.root.join("runs")) else {
            return (runs, broken);
        };
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            // A run not yet started (see `Journal::create`), or not a run.
            if id.starts_with('.') {
                continue;
            }
            match self.load(&id) {
                Ok(state) => runs.push(state),
                Err(error) => broken.push((id, error)),
            }
        }
        runs.sort_by(|a, b| {
            b.started_at
                .cmp(&a.started_at)
                .then(b.run_id.cmp(&a.run_id))
        });
        (runs, broken)
    }

    /// The run a person means: `latest` (the newest run), a run id, or any prefix of exactly
    /// one run id (`20261206-0215` for `20261206-021530-7f3a`).
    pub fn resolve(&self, given: &str) -> Result<String, String> {
        if given == "latest" {
            let (runs, _) = self.list();
            return runs
                .first()
                .map(|run| run.run_id.clone())
                .ok_or_else(|| format!("no runs in {} yet", self.location()));
        }
        if self.journal(given).is_file() || check_run_id(given).is_err() {
            return Ok(given.to_owned());
        }
        let mut matching: Vec<String> = std::fs::read_dir(self.root.join("runs"))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .filter(|id| id.starts_with(given))
                    .collect()
            })
            .unwrap_or_default();
        matching.sort();
        match matching.len() {
            0 => Ok(given.to_owned()),
            1 => Ok(matching.remove(0)),
            n => Err(format!(
                "`{given}` is the start of {n} run ids: {}{}; give more of one",
                matching[..n.min(5)].join(", "),
                if n > 5 { ", …" } else { "" }
            )),
        }
    }

    /// Folds one run's journal.
    pub fn load(&self, run_id: &str) -> Result<RunState, String> {
        check_run_id(run_id)?;
        let path = self.journal(run_id);
        let replay = journal::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("no run `{run_id}` in {}", self.location())
            }
            _ => format!("{}: {e}", path.display()),
        })?;
        let mut state =
            RunState::fold(&replay.records).map_err(|e| format!("{}: {e}", path.display()))?;
        state.journal = Some(crate::chain::check(&replay));
        Ok(state)
    }
}

/// Which runs a listing shows (`drillbook runs`, the web view): by playbook, mode, where the
/// run stands, and since when.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub playbook: Option<String>,
    pub mode: Option<String>,
    pub status: Option<String>,
    pub since: Option<jiff::Timestamp>,
}

/// What a status filter accepts: an outcome, or where an unfinished run stands.
pub const STATUSES: &[&str] = &[
    "succeeded",
    "failed",
    "aborted",
    "objective_missed",
    "interrupted",
    "waiting_approval",
    "invalid",
    "running",
    "stopped",
];

impl Filter {
    /// A filter from what a person typed; an empty value filters nothing.
    pub fn new(
        playbook: Option<String>,
        mode: Option<String>,
        status: Option<String>,
        since: Option<&str>,
    ) -> Result<Filter, String> {
        let given = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
        let (playbook, mode, status) = (given(playbook), given(mode), given(status));
        if let Some(status) = &status
            && !STATUSES.contains(&status.as_str())
        {
            return Err(format!(
                "--status {status}: expected one of {}",
                STATUSES.join(", ")
            ));
        }
        if let Some(mode) = &mode
            && !["drill", "incident", "live"].contains(&mode.as_str())
        {
            return Err(format!("--mode {mode}: expected drill, incident or live"));
        }
        let since = since
            .filter(|text| !text.trim().is_empty())
            .map(|text| {
                text.parse::<jiff::Timestamp>().or_else(|_| {
                    crate::duration::Duration::parse(text)
                        .ok()
                        .and_then(|ago| jiff::Timestamp::now().checked_sub(ago.signed()).ok())
                        .ok_or_else(|| {
                            format!(
                                "--since {text}: expected a time (2026-12-01T00:00:00Z) or a duration back from now (7d, 12h)"
                            )
                        })
                })
            })
            .transpose()?;
        Ok(Filter {
            playbook,
            mode,
            status,
            since,
        })
    }

    pub fn keeps(&self, dir: &StateDir, state: &RunState) -> bool {
        self.playbook.as_ref().is_none_or(|p| *p == state.playbook)
            && self.mode.as_ref().is_none_or(|m| m == state.mode.name())
            // An aborted run failed too (exit 1): `failed` finds it, `aborted` only it.
            && self.status.as_ref().is_none_or(|s| {
                let status = dir.status_of(state);
                *s == status || (s == "failed" && status == "aborted")
            })
            && self.since.is_none_or(|since| state.started_at >= since)
    }
}

/// Removes the copies of processes that are gone (killed before they could remove their own).
fn remove_orphaned_copies(copies: &Path) {
    let Ok(entries) = std::fs::read_dir(copies) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.split('-').next() else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A lease refused, as a lock would be.
fn leased(shared: &Shared, refused: crate::shared::Refused) -> LockError {
    match refused {
        crate::shared::Refused::Held(holder) => LockError::Leased {
            run_id: holder.run_id,
            holder: holder.holder,
            until: holder.expires_at + crate::lease::SKEW,
        },
        crate::shared::Refused::Failed(message) => LockError::Io {
            path: PathBuf::from(shared.url()),
            source: std::io::Error::other(message),
        },
    }
}

/// A playbook's name as a file name, injectively: ASCII letters, digits and `-` stay, every
/// other byte becomes `_` and two hex digits (`db.restore` is `db_2erestore`, `db_restore` is
/// `db_5frestore`). A name that would be long is cut and followed by `.` and the SHA-256 of
/// the whole name (no short name has a `.`).
pub fn lock_name(playbook: &str) -> String {
    use std::fmt::Write;
    let mut name = String::new();
    for byte in playbook.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' {
            name.push(char::from(byte));
        } else {
            let _ = write!(name, "_{byte:02x}");
        }
    }
    if name.len() > 120 {
        use sha2::Digest;
        let hash = crate::format::hex(&sha2::Sha256::digest(playbook.as_bytes()));
        name = format!("{}.{hash}", &name[..48]);
    }
    name
}

/// A new run id: sortable by time, short enough to type during an incident
/// (`20261124-143012-7f3a`).
pub fn new_run_id() -> String {
    let now = jiff::Timestamp::now();
    format!(
        "{}-{:04x}",
        now.strftime("%Y%m%d-%H%M%S"),
        fastrand::u16(..)
    )
}

/// Run ids become directory names: letters, digits, `.`, `-`, `_`, not starting with `.`.
pub fn check_run_id(id: &str) -> Result<(), String> {
    let valid = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{id}` is not a valid run id: use letters, digits, `.`, `-` and `_` (not starting with `.`)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_and_unique_prefixes_name_a_run() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::new(root.path().to_path_buf());
        assert!(dir.resolve("latest").unwrap_err().contains("no runs"));
        for id in [
            "20261206-021530-7f3a",
            "20261206-021530-9b2c",
            "20261207-090000-0001",
        ] {
            std::fs::create_dir_all(dir.run_dir(id)).unwrap();
        }
        assert_eq!(dir.resolve("20261207").unwrap(), "20261207-090000-0001");
        let ambiguous = dir.resolve("20261206-0215").unwrap_err();
        assert!(
            ambiguous.contains("20261206-021530-7f3a, 20261206-021530-9b2c"),
            "{ambiguous}"
        );
        assert_eq!(
            dir.resolve("20261206-021530-9").unwrap(),
            "20261206-021530-9b2c"
        );
        // Nothing matches: the name as given, for the usual "no run" message.
        assert_eq!(dir.resolve("nightly").unwrap(), "nightly");
        assert_eq!(dir.resolve("../x").unwrap(), "../x");
    }

    #[test]
    fn a_run_killed_before_its_first_record_is_no_run() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::new(root.path().to_path_buf());
        let id = "20261206-021530-7f3a";
        drop(crate::journal::Journal::create(&dir.run_dir(id)).unwrap());
        let (runs, broken) = dir.list();
        assert!(runs.is_empty() && broken.is_empty(), "{broken:?}");
        assert!(!dir.has_run(id).unwrap());
        assert_eq!(dir.resolve("20261206").unwrap(), "20261206");
    }

    #[test]
    fn run_ids_are_safe_directory_names() {
        assert!(check_run_id("nightly-2026-11-24").is_ok());
        assert!(check_run_id(&new_run_id()).is_ok());
        for bad in ["", "..", "../x", "a/b", ".hidden", "a b"] {
            assert!(check_run_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lock_names_cannot_escape_the_directory() {
        let dir = StateDir::new("/s".into());
        assert_eq!(
            dir.lock_path("../etc"),
            PathBuf::from("/s/locks/_2e_2e_2fetc.lock")
        );
    }

    #[test]
    fn lock_names_never_collide() {
        let names = [
            "db.restore",
            "db_restore",
            "db-restore",
            "db restore",
            "db_2erestore",
            "DB.restore",
            "dé",
            "d_c3_a9",
        ];
        let encoded: std::collections::BTreeSet<String> =
            names.iter().map(|name| lock_name(name)).collect();
        assert_eq!(encoded.len(), names.len(), "{encoded:?}");
        let long = "x".repeat(200);
        let longer = format!("{long}y");
        assert_ne!(lock_name(&long), lock_name(&longer));
        assert!(lock_name(&long).len() < 200);
    }
}
