//! Decisions for a run in progress through the shared state: `approve` on any machine leaves a
//! letter under `runs/<id>/inbox/`; the runner holding the run moves it into its own relayed
//! folder (see [`crate::inbox`]), decides on it at the gate, and its answer goes back the same
//! way. The letter's account is the sender's drillbook's word: across machines only a
//! signature binds a decision to a person.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{Shared, keys};
use crate::connect::store::{Condition, Store};
use crate::inbox::{self, Answer, Letter};

/// How often the runner looks for letters, and a sender for its answer.
const LOOK: Duration = Duration::from_millis(250);

/// The runner's side, for as long as it holds the run.
pub(super) async fn relay(store: Store, run_id: String, run_dir: PathBuf) {
    let prefix = keys::inbox_prefix(&run_id);
    let folder = inbox::relayed_folder(&run_dir);
    loop {
        if let Ok(objects) = store.list(&prefix).await {
            for object in objects {
                let Some(name) = object.key.strip_prefix(&prefix) else {
                    continue;
                };
                if !name.ends_with(".letter") {
                    continue;
                }
                let plain = name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
                if plain && let Ok(bytes) = store.get_bytes(&object.key).await {
                    let path = folder.join(name);
                    let partial = path.with_extension("partial");
                    if std::fs::write(&partial, bytes).is_err()
                        || std::fs::rename(&partial, &path).is_err()
                    {
                        continue;
                    }
                }
                let _ = store.delete(&object.key).await;
            }
        }
        send_answers(&store, &run_id, &run_dir).await;
        tokio::time::sleep(LOOK).await;
    }
}

/// Sends the run's answers back to their senders (also once more as the run lets go of the
/// run: a decision taken just before it ended is still answered).
pub(super) async fn send_answers(store: &Store, run_id: &str, run_dir: &std::path::Path) {
    let prefix = keys::inbox_prefix(run_id);
    let Ok(entries) = std::fs::read_dir(inbox::relayed_folder(run_dir)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".answer") {
            continue;
        }
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        if store
            .put_bytes(&format!("{prefix}{name}"), bytes)
            .await
            .is_ok()
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// How a letter through the shared state ended.
pub enum Posted {
    Answered(Answer),
    /// Nobody took it within the patience given; it was withdrawn.
    Untaken,
}

/// Leaves `letter` for run `run_id` and waits up to `patience` for the runner's answer; a
/// letter never taken is withdrawn.
pub fn post_letter(
    shared: &Shared,
    run_id: &str,
    letter: &Letter,
    patience: Duration,
) -> Result<Posted, String> {
    let prefix = keys::inbox_prefix(run_id);
    let letter_key = format!("{prefix}{}.letter", letter.id);
    let answer_key = format!("{prefix}{}.answer", letter.id);
    let bytes = serde_json::to_vec(letter).map_err(|e| e.to_string())?;
    let key = letter_key.clone();
    shared
        .call(move |store| async move { store.put_if(&key, bytes, &Condition::Absent).await })?
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + patience;
    loop {
        let key = answer_key.clone();
        let answer = shared.call(move |store| async move { store.get_tagged(&key).await })?;
        if let Ok(Some((bytes, _))) = answer {
            let key = answer_key.clone();
            let _ = shared.call(move |store| async move { store.delete(&key).await });
            return serde_json::from_slice(&bytes)
                .map(Posted::Answered)
                .map_err(|e| format!("the runner's answer does not read: {e}"));
        }
        if Instant::now() >= deadline {
            // Still there: never taken, withdrawn. Gone: taken, so an answer is coming.
            let key = letter_key.clone();
            let still_there = shared
                .call(move |store| async move { store.head(&key).await })?
                .map_err(|e| e.to_string())?
                .is_some();
            if still_there {
                let key = letter_key.clone();
                let _ = shared.call(move |store| async move { store.delete(&key).await });
                return Ok(Posted::Untaken);
            }
            if Instant::now() >= deadline + patience {
                return Ok(Posted::Untaken);
            }
        }
        std::thread::sleep(LOOK);
    }
}
