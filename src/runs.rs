//! The state directory: `<state-dir>/runs/<run-id>/` holds each run's journal, log and captured
//! output; `<state-dir>/locks/<playbook>.lock` keeps one live run per playbook.

use std::path::{Path, PathBuf};

use crate::journal;
use crate::state::RunState;

pub const DEFAULT_DIR: &str = ".drillbook";

#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: PathBuf) -> StateDir {
        StateDir { root }
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
                .ok_or_else(|| format!("no runs in {} yet", self.root.display()));
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
                format!("no run `{run_id}` in {}", self.root.display())
            }
            _ => format!("{}: {e}", path.display()),
        })?;
        let mut state =
            RunState::fold(&replay.records).map_err(|e| format!("{}: {e}", path.display()))?;
        state.journal = Some(crate::chain::check(&replay));
        Ok(state)
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
