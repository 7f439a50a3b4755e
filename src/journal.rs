//! The run journal: `<state-dir>/runs/<run-id>/journal.jsonl`, one [`Record`] per line,
//! appended and flushed to disk (fsync) before the runner moves on. A crash can tear only the
//! last line; reading ignores a torn last line, and reopening for append cuts it off so the
//! next record starts on a clean line. A bad line anywhere else is real corruption and an
//! error.
//!
//! Each record carries the SHA-256 of the line before it (`prev`), so the journal is a hash
//! chain: [`verify`] finds where a record was edited, removed, inserted or moved, and the hash
//! of the last line (the chain's head) can be kept elsewhere to show that nothing was cut off
//! or rewritten from the end.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::event::{Event, Record};

pub const FILE_NAME: &str = "journal.jsonl";

pub struct Journal {
    file: File,
    path: PathBuf,
    next_seq: u64,
    /// The hash of the last line: the next record's `prev`.
    head: Option<String>,
    /// Where each record is written first when the run's state is shared (object storage).
    mirror: Option<Box<dyn Mirror>>,
    /// Until the first record is on disk, the run's directory is staged here (see
    /// [`Journal::create`]); the first append moves it into place.
    staged: Option<Staged>,
}

/// A new run's directory before its first record: `<runs>/.<id>.starting`, renamed to
/// `<runs>/<id>` once the record is on disk.
struct Staged {
    dir: PathBuf,
    run_dir: PathBuf,
}

/// The journal of record elsewhere: each line is written there before it is written here,
/// and a refusal (another runner took the run over) stops the append with nothing written.
pub trait Mirror: Send {
    fn append(&mut self, record: &Record, line: &[u8]) -> io::Result<()>;
}

/// What reading a journal found.
#[derive(Debug)]
pub struct Replay {
    pub records: Vec<Record>,
    /// Bytes of a torn last line that were ignored.
    pub torn_bytes: usize,
    /// Length of the intact prefix of the file.
    good_len: u64,
    /// The SHA-256 of each record's line, as written.
    pub hashes: Vec<String>,
}

impl Replay {
    /// The chain's head: the hash of the last intact line.
    pub fn head(&self) -> Option<&str> {
        self.hashes.last().map(String::as_str)
    }
}

/// The SHA-256 of one journal line without its newline, in hex.
pub fn line_hash(line: &[u8]) -> String {
    use sha2::Digest;
    crate::format::hex(&sha2::Sha256::digest(line))
}

impl Journal {
    /// Starts the journal of a new run; refuses to overwrite an existing one. The run's
    /// directory appears with its first record, never before: until then it is staged beside
    /// it under a name no run id takes (`.<id>.starting`), so a drillbook killed before the
    /// first record leaves no run that `resume` would find empty, only a hidden directory
    /// that the next start of the same id replaces.
    pub fn create(run_dir: &Path) -> io::Result<Journal> {
        if run_dir.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} already exists", run_dir.display()),
            ));
        }
        let (Some(parent), Some(name)) = (run_dir.parent(), run_dir.file_name()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a run's directory", run_dir.display()),
            ));
        };
        let mut staged_name = std::ffi::OsString::from(".");
        staged_name.push(name);
        staged_name.push(".starting");
        let staged = parent.join(staged_name);
        match std::fs::remove_dir_all(&staged) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        std::fs::create_dir_all(&staged)?;
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(staged.join(FILE_NAME))?;
        Ok(Journal {
            file,
            path: run_dir.join(FILE_NAME),
            next_seq: 0,
            head: None,
            mirror: None,
            staged: Some(Staged {
                dir: staged,
                run_dir: run_dir.to_owned(),
            }),
        })
    }

    /// Moves the staged run's directory into place, its first record on disk; the journal's
    /// entry in it and the rename must survive a crash too.
    fn publish(staged: &Staged) -> io::Result<()> {
        File::open(&staged.dir)?.sync_all()?;
        std::fs::rename(&staged.dir, &staged.run_dir)?;
        match staged.run_dir.parent() {
            Some(parent) => File::open(parent)?.sync_all(),
            None => Ok(()),
        }
    }

    /// Reopens a run's journal to continue it, returning what it already holds.
    pub fn reopen(run_dir: &Path) -> io::Result<(Journal, Replay)> {
        let path = run_dir.join(FILE_NAME);
        let replay = read(&path)?;
        let file = OpenOptions::new().write(true).open(&path)?;
        if replay.torn_bytes > 0 {
            file.set_len(replay.good_len)?;
            file.sync_all()?;
        }
        let file = OpenOptions::new().append(true).open(&path)?;
        let next_seq = replay.records.last().map_or(0, |r| r.seq + 1);
        let head = replay.head().map(str::to_owned);
        Ok((
            Journal {
                file,
                path,
                next_seq,
                head,
                mirror: None,
                staged: None,
            },
            replay,
        ))
    }

    /// Appends an event and waits until it is on disk.
    pub fn append(&mut self, event: Event) -> io::Result<Record> {
        let record = Record {
            seq: self.next_seq,
            at: crate::clock::now(),
            prev: self.head.clone(),
            event,
        };
        let mut line = serde_json::to_vec(&record).map_err(io::Error::other)?;
        let hash = line_hash(&line);
        if let Some(mirror) = &mut self.mirror {
            mirror.append(&record, &line)?;
        }
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()?;
        if let Some(staged) = &self.staged {
            Self::publish(staged)?;
            self.staged = None;
        }
        self.next_seq += 1;
        self.head = Some(hash);
        Ok(record)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the run's files go now: its directory, or until the first record the staged one
    /// (a file opened there moves with it).
    pub fn dir(&self) -> &Path {
        match &self.staged {
            Some(staged) => &staged.dir,
            None => self.path.parent().unwrap_or(Path::new(".")),
        }
    }

    /// Writes every record from now on to `mirror` first.
    pub fn mirrored(mut self, mirror: Box<dyn Mirror>) -> Journal {
        self.mirror = Some(mirror);
        self
    }

    /// The position the next record takes.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

/// Reads a journal, tolerating a torn last line.
pub fn read(path: &Path) -> io::Result<Replay> {
    let bytes = std::fs::read(path)?;
    let mut records = Vec::new();
    let mut hashes = Vec::new();
    let mut offset = 0usize;
    let mut good_len = 0u64;
    let mut line_number = 0usize;
    while offset < bytes.len() {
        line_number += 1;
        let end = bytes[offset..].iter().position(|b| *b == b'\n');
        let (line, next, complete) = match end {
            Some(end) => (&bytes[offset..offset + end], offset + end + 1, true),
            None => (&bytes[offset..], bytes.len(), false),
        };
        let is_last = next == bytes.len();
        match (serde_json::from_slice::<Record>(line), complete) {
            (Ok(record), true) => {
                records.push(record);
                hashes.push(line_hash(line));
                good_len = next as u64;
            }
            (Err(error), true) if !is_last => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: line {line_number} is corrupt ({error}); only the last line of a journal can be torn by a crash",
                        path.display()
                    ),
                ));
            }
            // The last line, cut short or garbled: a write the crash interrupted.
            _ => {
                return Ok(Replay {
                    records,
                    torn_bytes: bytes.len() - offset,
                    good_len,
                    hashes,
                });
            }
        }
        offset = next;
    }
    Ok(Replay {
        records,
        torn_bytes: 0,
        good_len,
        hashes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skipped(step: &str) -> Event {
        Event::StepSkipped {
            step: step.into(),
            reason: "test".into(),
            blocked: false,
        }
    }

    #[test]
    fn appends_and_reads_back_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut journal = Journal::create(&dir.path().join("run")).expect("create");
        journal.append(skipped("a")).expect("append");
        journal.append(skipped("b")).expect("append");
        let replay = read(journal.path()).expect("read");
        let steps: Vec<_> = replay
            .records
            .iter()
            .map(|r| (r.seq, r.event.step().map(str::to_owned)))
            .collect();
        assert_eq!(steps, [(0, Some("a".into())), (1, Some("b".into()))]);
        assert_eq!(replay.torn_bytes, 0);
    }

    #[test]
    fn create_refuses_an_existing_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = dir.path().join("run");
        Journal::create(&run)
            .expect("create")
            .append(skipped("a"))
            .expect("append");
        assert!(Journal::create(&run).is_err());
        assert_eq!(read(&run.join(FILE_NAME)).expect("read").records.len(), 1);
    }

    #[test]
    fn the_run_appears_with_its_first_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = dir.path().join("run");
        // A drillbook killed before its first record: no run, only a hidden staging directory.
        drop(Journal::create(&run).expect("create"));
        assert!(!run.exists());
        let names = |dir: &Path| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .expect("read_dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(dir.path()), [".run.starting"]);
        // Starting the same id again replaces it; the first record brings the run.
        let mut journal = Journal::create(&run).expect("create again");
        assert!(!run.exists());
        journal.append(skipped("a")).expect("append");
        assert_eq!(names(dir.path()), ["run"]);
        assert_eq!(names(&run), [FILE_NAME]);
        journal.append(skipped("b")).expect("append");
        assert_eq!(read(journal.path()).expect("read").records.len(), 2);
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_cut_on_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = dir.path().join("run");
        let path = {
            let mut journal = Journal::create(&run).expect("create");
            journal.append(skipped("a")).expect("append");
            journal.path().to_owned()
        };
        let intact = std::fs::metadata(&path).expect("meta").len();
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(br#"{"seq":1,"at":"2026-11-24T10:00:00Z","event":"step_sk"#)
            .expect("tear");
        drop(file);

        let replay = read(&path).expect("a torn last line is not fatal");
        assert_eq!(replay.records.len(), 1);
        assert!(replay.torn_bytes > 0);

        let (mut journal, replay) = Journal::reopen(&run).expect("reopen");
        assert_eq!(replay.records.len(), 1);
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), intact);
        let record = journal.append(skipped("b")).expect("append");
        assert_eq!(record.seq, 1);
        assert_eq!(read(&path).expect("read").records.len(), 2);
    }

    #[test]
    fn a_complete_but_garbled_last_line_counts_as_torn() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut journal = Journal::create(&dir.path().join("run")).expect("create");
        journal.append(skipped("a")).expect("append");
        let mut file = OpenOptions::new()
            .append(true)
            .open(journal.path())
            .expect("open");
        file.write_all(b"\0\0\0\n").expect("write");
        let replay = read(journal.path()).expect("read");
        assert_eq!(replay.records.len(), 1);
        assert_eq!(replay.torn_bytes, 4);
    }

    #[test]
    fn corruption_before_the_end_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut journal = Journal::create(&dir.path().join("run")).expect("create");
        journal.append(skipped("a")).expect("append");
        let mut file = OpenOptions::new()
            .append(true)
            .open(journal.path())
            .expect("open");
        file.write_all(b"garbage\n").expect("write");
        drop(file);
        journal.append(skipped("b")).expect("append");
        let error = read(journal.path()).expect_err("corrupt");
        assert!(error.to_string().contains("line 2 is corrupt"), "{error}");
    }
}
