//! The store's runs copied into a local directory with a state directory's layout, so that
//! everything that reads runs reads them the same way. A journal is rebuilt from its records
//! in key order, every record present: a record removed from the middle leaves a gap the hash
//! chain then shows, rather than cutting the journal short.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::connect::store::Store;

/// One run's objects: its records' keys in order, and its files' (with their paths).
#[derive(Default)]
struct Objects {
    records: Vec<String>,
    files: Vec<(String, PathBuf)>,
}

pub(super) async fn pull(store: Store, root: PathBuf, run: Option<String>) -> Result<(), String> {
    let prefix = match &run {
        Some(id) => format!("runs/{id}/"),
        None => "runs/".to_owned(),
    };
    let listed = store.list(&prefix).await.map_err(|e| e.to_string())?;
    let mut runs: BTreeMap<String, Objects> = BTreeMap::new();
    for object in listed {
        let mut parts = object.key.splitn(4, '/');
        let (Some("runs"), Some(id), Some(kind), Some(rest)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if plain_path(id).is_none() {
            continue;
        }
        let objects = runs.entry(id.to_owned()).or_default();
        match kind {
            "journal" if rest.bytes().all(|b| b.is_ascii_digit()) => {
                objects.records.push(object.key.clone())
            }
            // Only the run asked for brings its files, and only to paths inside its directory.
            "files" if run.is_some() => {
                if let Some(path) = plain_path(rest) {
                    objects.files.push((object.key.clone(), path));
                }
            }
            _ => {}
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (id, objects) in runs {
        let store = store.clone();
        let run_dir = root.join("runs").join(&id);
        tasks.spawn(async move { pull_run(&store, &run_dir, objects).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| format!("copying the shared state failed: {e}"))??;
    }
    Ok(())
}

async fn pull_run(store: &Store, run_dir: &Path, objects: Objects) -> Result<(), String> {
    let mut journal = Vec::new();
    for key in &objects.records {
        let line = store.get_bytes(key).await.map_err(|e| e.to_string())?;
        journal.extend_from_slice(&line);
        journal.push(b'\n');
    }
    let write = |path: &Path, bytes: &[u8]| -> Result<(), String> {
        if std::fs::read(path).is_ok_and(|have| have == bytes) {
            return Ok(());
        }
        let parent = path.parent().unwrap_or(run_dir);
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        let partial = path.with_extension("pulling");
        std::fs::write(&partial, bytes)
            .and_then(|()| std::fs::rename(&partial, path))
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    if !objects.records.is_empty() {
        write(&run_dir.join(crate::journal::FILE_NAME), &journal)?;
    }
    for (key, path) in &objects.files {
        let bytes = store.get_bytes(key).await.map_err(|e| e.to_string())?;
        write(&run_dir.join(path), &bytes)?;
    }
    Ok(())
}

/// A relative path of plain names (no `..`, no root), as a key's tail may not be.
fn plain_path(rest: &str) -> Option<PathBuf> {
    let path = PathBuf::from(rest);
    let plain = !rest.is_empty()
        && path
            .components()
            .all(|component| matches!(component, Component::Normal(_)));
    (plain && path != Path::new(crate::journal::FILE_NAME)).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_come_out_of_the_store() {
        assert_eq!(plain_path("output/a.log"), Some("output/a.log".into()));
        for bad in ["", "../x", "output/../../x", "/etc/passwd", "journal.jsonl"] {
            assert_eq!(plain_path(bad), None, "{bad}");
        }
    }
}
