//! A run's journal written to the store first: record N is the object `runs/<id>/journal/N`,
//! written only if absent. A runner that lost its run finds the position taken and writes
//! nothing more; the run's log and captured output follow each finished step.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{Shared, keys};
use crate::connect::store::{Condition, Put};
use crate::event::{Event, Record};

pub struct StoreMirror {
    shared: Shared,
    run_id: String,
    run_dir: PathBuf,
    /// Files uploaded, as they were then (length, modified).
    uploaded: HashMap<PathBuf, (u64, SystemTime)>,
}

impl StoreMirror {
    pub fn new(shared: Shared, run_id: &str, run_dir: &Path) -> StoreMirror {
        StoreMirror {
            shared,
            run_id: run_id.to_owned(),
            run_dir: run_dir.to_path_buf(),
            uploaded: HashMap::new(),
        }
    }

    /// Uploads the run's log and captured output that changed since the last upload. A
    /// failure is logged, not fatal: the journal is what must be there.
    pub fn upload_files(&mut self) {
        let mut files = vec![self.run_dir.join("drillbook.log")];
        files.extend(below(&self.run_dir.join("output")));
        for path in files {
            let Ok(metadata) = std::fs::metadata(&path) else {
                continue;
            };
            let seen = (
                metadata.len(),
                metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            );
            if self.uploaded.get(&path) == Some(&seen) {
                continue;
            }
            let Ok(relative) = path.strip_prefix(&self.run_dir) else {
                continue;
            };
            let Some(relative) = relative.to_str() else {
                continue;
            };
            let key = format!("{}{relative}", keys::files_prefix(&self.run_id));
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            match self
                .shared
                .call(|store| async move { store.put_bytes(&key, bytes).await })
            {
                Ok(Ok(())) => {
                    self.uploaded.insert(path, seen);
                }
                Ok(Err(error)) => tracing::warn!(
                    "cannot copy {} to the shared state: {error}",
                    path.display()
                ),
                Err(error) => tracing::warn!(
                    "cannot copy {} to the shared state: {error}",
                    path.display()
                ),
            }
        }
    }
}

impl crate::journal::Mirror for StoreMirror {
    fn append(&mut self, record: &Record, line: &[u8]) -> io::Result<()> {
        let key = keys::journal(&self.run_id, record.seq);
        let bytes = line.to_vec();
        let written = self.shared.call(|store| async move {
            match store
                .put_if(&key, bytes.clone(), &Condition::Absent)
                .await?
            {
                Put::Written(_) => Ok(true),
                // A retried write whose first answer was lost finds its own bytes there.
                Put::Refused => Ok(store
                    .get_tagged(&key)
                    .await?
                    .is_some_and(|(there, _)| there == bytes)),
            }
        });
        match written {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                return Err(io::Error::other(format!(
                    "record {} of run {} in {} was written by another runner: this runner lost the run and writes nothing more",
                    record.seq,
                    self.run_id,
                    self.shared.url()
                )));
            }
            Ok(Err(error)) => return Err(io::Error::other(shared_error(&self.shared, &error))),
            Err(error) => return Err(io::Error::other(error)),
        }
        if matches!(
            record.event,
            Event::StepFinished { .. } | Event::RunFinished { .. } | Event::Interrupted { .. }
        ) {
            self.upload_files();
        }
        Ok(())
    }
}

fn shared_error(shared: &Shared, error: &crate::connect::store::StoreError) -> String {
    format!(
        "the shared state {} cannot be written: {error}",
        shared.url()
    )
}

/// Every file below `dir`, recursively.
fn below(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(entry.path()),
                Ok(kind) if kind.is_file() => found.push(entry.path()),
                _ => {}
            }
        }
    }
    found
}
