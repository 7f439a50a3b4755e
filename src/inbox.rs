//! A running drillbook's inbox: decisions given with `drillbook approve` from another shell
//! while the run holds its lock (a terminal waits on the same question). The letter is a file
//! in the run's directory; the run takes it at the gate, journals the decision itself (the
//! journal has one writer), and leaves an answer file the sender reads back.
//!
//! Letters are written whole (a temporary file renamed), so the run never reads half of one;
//! a letter the run never takes is removed by its sender when it gives up waiting.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A decision for one step, from one person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Letter {
    /// Unique per letter: names its file and its answer's.
    pub id: String,
    pub step: String,
    pub approved: bool,
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The sender's host, as it says.
    pub host: String,
    /// The sender's SSH signature over the decision (`--sign-with`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The sender's account as its drillbook gives it: believed only for a letter relayed
    /// from a shared state (another machine's file owners mean nothing here), or one the web
    /// view left for a signed-in person (see `vouched`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed: Option<crate::event::OsAccount>,
    /// The sender's user id: the owner of the letter's file, as the file system vouches for it
    /// (never what the letter says).
    #[serde(skip)]
    pub uid: Option<u32>,
    /// Relayed by the run from a shared state, not left in its inbox on this machine.
    #[serde(skip)]
    pub relayed: bool,
    /// Left by the account that keeps the web view's sign-ins (the owner of the state
    /// directory's [`USERS_FILE`]), for a person signed in there: their claimed account holds.
    #[serde(skip)]
    pub vouched: bool,
}

/// The web view's accounts (`drillbook serve`), in the state directory. Its owner is the OS
/// account the server runs as: a letter of that account may speak for a signed-in person.
pub const USERS_FILE: &str = "users.json";

impl Letter {
    /// Who sent it: the file's owner, on the host the letter names.
    pub fn account(&self) -> crate::event::OsAccount {
        if self.relayed || self.vouched {
            return self
                .claimed
                .clone()
                .unwrap_or_else(|| crate::event::OsAccount {
                    user: "unknown".into(),
                    uid: u32::MAX,
                    host: self.host.clone(),
                    via: None,
                });
        }
        // SAFETY: getuid has no preconditions; a letter not read from a file is this process's.
        let uid = self.uid.unwrap_or_else(|| unsafe { libc::getuid() });
        crate::event::OsAccount {
            host: self.host.clone(),
            ..crate::account::os_account_of(uid)
        }
    }
}

/// The run's answer: what was recorded, or why not.
pub type Answer = Result<String, String>;

/// How often a sender looks for its answer.
const LOOK: Duration = Duration::from_millis(50);

fn folder(run_dir: &Path) -> PathBuf {
    run_dir.join("inbox")
}

fn letter_path(run_dir: &Path, id: &str) -> PathBuf {
    folder(run_dir).join(format!("{id}.letter"))
}

fn answer_path(run_dir: &Path, id: &str, relayed: bool) -> PathBuf {
    let folder = match relayed {
        true => relayed_folder(run_dir),
        false => folder(run_dir),
    };
    folder.join(format!("{id}.answer"))
}

/// Where the run puts letters it relays from a shared state: its own folder, which nobody
/// else may write (the letters there speak for accounts on other machines).
pub fn relayed_folder(run_dir: &Path) -> PathBuf {
    run_dir.join("relayed")
}

/// The OS account of the web view whose letters may speak for its signed-in people: the owner
/// of the state directory's users file (`<state>/runs/<id>` is the run's directory).
fn web_server(run_dir: &Path) -> Option<u32> {
    let state = run_dir.parent()?.parent()?;
    let metadata = std::fs::symlink_metadata(state.join(USERS_FILE)).ok()?;
    metadata
        .is_file()
        .then(|| std::os::unix::fs::MetadataExt::uid(&metadata))
}

/// Whether the relayed folder is the run's own: owned by this user, writable by nobody else.
fn relayed_is_ours(run_dir: &Path) -> bool {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::symlink_metadata(relayed_folder(run_dir)).is_ok_and(|m| {
        // SAFETY: geteuid has no preconditions.
        m.is_dir() && m.uid() == unsafe { libc::geteuid() } && m.permissions().mode() & 0o022 == 0
    })
}

/// Opens the inbox of a run that is starting: anyone who can reach the run's directory may
/// leave a letter (each file's owner is its sender), only its own sender or the run removes
/// one (sticky), and nobody but the run lists them.
pub fn open(run_dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let inbox = folder(run_dir);
    std::fs::create_dir_all(&inbox)?;
    std::fs::set_permissions(&inbox, std::fs::Permissions::from_mode(0o1733))?;
    let relayed = relayed_folder(run_dir);
    std::fs::create_dir_all(&relayed)?;
    std::fs::set_permissions(&relayed, std::fs::Permissions::from_mode(0o700))
}

/// Writes a letter where the run will find it.
pub fn post(run_dir: &Path, letter: &Letter) -> std::io::Result<()> {
    std::fs::create_dir_all(folder(run_dir))?;
    let path = letter_path(run_dir, &letter.id);
    let partial = path.with_extension("partial");
    std::fs::write(&partial, serde_json::to_vec(letter)?)?;
    std::fs::rename(&partial, &path)
}

/// The letters for `step`, oldest first, taken out of the inbox (others stay). A letter that
/// does not parse is answered as such and removed.
pub fn take(run_dir: &Path, step: &str) -> Vec<Letter> {
    let mut found: Vec<(std::time::SystemTime, Letter, PathBuf)> = Vec::new();
    let mut folders = vec![(folder(run_dir), false)];
    if relayed_is_ours(run_dir) {
        folders.push((relayed_folder(run_dir), true));
    }
    let entries = folders.into_iter().flat_map(|(folder, relayed)| {
        std::fs::read_dir(folder)
            .into_iter()
            .flat_map(|entries| entries.flatten())
            .map(move |entry| (entry, relayed))
    });
    for (entry, relayed) in entries {
        let path = entry.path();
        if path.extension().is_none_or(|ext| ext != "letter") {
            continue;
        }
        // Read through one descriptor, never following a link: the owner vouched for is the
        // owner of the bytes read.
        let Some((bytes, metadata)) = read_plain(&path) else {
            if let Some(id) = path.file_stem().and_then(|s| s.to_str()) {
                reply(
                    run_dir,
                    id,
                    relayed,
                    &Err("refused: a decision must be a plain file of its sender's".into()),
                );
            }
            let _ = std::fs::remove_file(&path);
            continue;
        };
        let Ok(mut letter) = serde_json::from_slice::<Letter>(&bytes) else {
            if let Some(id) = path.file_stem().and_then(|s| s.to_str()) {
                reply(
                    run_dir,
                    id,
                    relayed,
                    &Err("the running drillbook could not read this decision".into()),
                );
            }
            let _ = std::fs::remove_file(&path);
            continue;
        };
        if letter.step != step {
            continue;
        }
        letter.relayed = relayed;
        if !relayed {
            let owner = std::os::unix::fs::MetadataExt::uid(&metadata);
            letter.uid = Some(owner);
            letter.vouched = letter.claimed.as_ref().is_some_and(|c| c.via.is_some())
                && web_server(run_dir) == Some(owner);
        }
        let at = metadata.modified().unwrap_or(std::time::UNIX_EPOCH);
        found.push((at, letter, path));
    }
    found.sort_by_key(|(at, letter, _)| (*at, letter.id.clone()));
    found
        .into_iter()
        .filter_map(|(_, letter, path)| std::fs::remove_file(&path).ok().map(|()| letter))
        .collect()
}

/// A letter's bytes and its metadata, from one descriptor opened without following a symbolic
/// link; `None` for a link, anything but a plain file, or what cannot be read.
fn read_plain(path: &Path) -> Option<(Vec<u8>, std::fs::Metadata)> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let metadata = file.metadata().ok()?;
    if !metadata.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    Some((bytes, metadata))
}

/// The run's answer to letter `id`.
pub fn reply(run_dir: &Path, id: &str, relayed: bool, answer: &Answer) {
    let path = answer_path(run_dir, id, relayed);
    let partial = path.with_extension("partial-answer");
    let Ok(bytes) = serde_json::to_vec(answer) else {
        return;
    };
    if std::fs::write(&partial, bytes).is_ok() {
        let _ = std::fs::rename(&partial, &path);
    }
}

/// Waits up to `patience` for the answer to a letter posted earlier. `None` when none came:
/// the letter is then withdrawn, unless the run took it meanwhile (then its answer is waited
/// for a little longer, since the decision is being recorded).
pub fn await_answer(run_dir: &Path, id: &str, patience: Duration) -> Option<Answer> {
    let deadline = Instant::now() + patience;
    let answer = answer_path(run_dir, id, false);
    loop {
        if let Ok(bytes) = std::fs::read(&answer) {
            let _ = std::fs::remove_file(&answer);
            return serde_json::from_slice(&bytes).ok();
        }
        if Instant::now() >= deadline {
            // Removed by us: never taken. Gone already: taken, so an answer is coming.
            if std::fs::remove_file(letter_path(run_dir, id)).is_ok() {
                return None;
            }
            if Instant::now() >= deadline + patience {
                return None;
            }
        }
        std::thread::sleep(LOOK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(id: &str, step: &str) -> Letter {
        Letter {
            id: id.into(),
            step: step.into(),
            approved: true,
            by: "bob".into(),
            reason: None,
            host: "here".into(),
            signature: None,
            claimed: None,
            uid: None,
            relayed: false,
            vouched: false,
        }
    }

    #[test]
    fn a_letter_is_taken_once_by_its_step_and_answered() {
        let dir = tempfile::tempdir().unwrap();
        post(dir.path(), &letter("a", "restore")).unwrap();
        post(dir.path(), &letter("b", "promote")).unwrap();
        assert!(take(dir.path(), "flush").is_empty());
        let taken = take(dir.path(), "restore");
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].id, "a");
        // The sender is whoever owns the file, not whoever the letter says.
        // SAFETY: getuid has no preconditions.
        assert_eq!(taken[0].uid, Some(unsafe { libc::getuid() }));
        assert!(take(dir.path(), "restore").is_empty(), "taken once");
        reply(dir.path(), "a", false, &Ok("recorded".into()));
        assert_eq!(
            await_answer(dir.path(), "a", Duration::from_millis(10)),
            Some(Ok("recorded".into()))
        );
        // Nobody takes b: its sender withdraws it.
        assert_eq!(
            await_answer(dir.path(), "b", Duration::from_millis(10)),
            None
        );
        assert!(take(dir.path(), "promote").is_empty(), "withdrawn");
    }

    #[test]
    fn only_the_web_views_account_may_speak_for_a_signed_in_person() {
        let state = tempfile::tempdir().unwrap();
        let run_dir = state.path().join("runs").join("r1");
        std::fs::create_dir_all(&run_dir).unwrap();
        let web = crate::event::OsAccount {
            user: "bob".into(),
            uid: 0,
            host: "web-host".into(),
            via: Some("drillbook serve".into()),
        };
        let claiming = |id: &str| Letter {
            claimed: Some(web.clone()),
            ..letter(id, "promote")
        };
        // SAFETY: getuid has no preconditions.
        let me = unsafe { libc::getuid() };
        // No users file: the claim is not believed; the letter is its file owner's.
        post(&run_dir, &claiming("a")).unwrap();
        let taken = take(&run_dir, "promote");
        assert_eq!(taken[0].account().via, None);
        assert_eq!(taken[0].account().uid, me);
        // The users file is this account's: this account is the web view, and is believed.
        let users = state.path().join(USERS_FILE);
        std::fs::write(&users, "[]").unwrap();
        post(&run_dir, &claiming("b")).unwrap();
        assert_eq!(take(&run_dir, "promote")[0].account(), web);
        // Another account keeps the users file: this one's claim is not believed.
        if me == 0 {
            std::os::unix::fs::chown(&users, Some(4242), None).unwrap();
            post(&run_dir, &claiming("c")).unwrap();
            assert_eq!(take(&run_dir, "promote")[0].account().via, None);
        }
    }

    #[test]
    fn a_link_is_no_letter_whoever_owns_what_it_points_at() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("someone-elses");
        std::fs::write(
            &elsewhere,
            serde_json::to_vec(&letter("x", "restore")).unwrap(),
        )
        .unwrap();
        std::fs::create_dir_all(folder(dir.path())).unwrap();
        std::os::unix::fs::symlink(&elsewhere, letter_path(dir.path(), "x")).unwrap();
        assert!(take(dir.path(), "restore").is_empty());
        let answer = await_answer(dir.path(), "x", Duration::from_millis(10)).unwrap();
        assert!(answer.unwrap_err().contains("plain file"));
        assert!(
            elsewhere.exists(),
            "the link is removed, not what it points at"
        );
    }

    #[test]
    fn a_letter_that_does_not_parse_is_answered_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(folder(dir.path())).unwrap();
        std::fs::write(letter_path(dir.path(), "x"), "{not json").unwrap();
        assert!(take(dir.path(), "restore").is_empty());
        assert!(
            await_answer(dir.path(), "x", Duration::from_millis(10))
                .unwrap()
                .is_err()
        );
    }
}
