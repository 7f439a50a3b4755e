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

    pub fn lock_path(&self, playbook: &str) -> PathBuf {
        let name: String = playbook
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.root.join("locks").join(format!("{name}.lock"))
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
        RunState::fold(&replay.records).map_err(|e| format!("{}: {e}", path.display()))
    }
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
            PathBuf::from("/s/locks/___etc.lock")
        );
    }
}
