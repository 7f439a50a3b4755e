//! The checksum report as it lives in a store (format 2), made to be read and written as a
//! stream and saved incrementally:
//!
//! - [`REPORT_KEY`] holds a small head: `{"report_version":2,"source":…,"updated_at":…,
//!   "generation":…,"entries":…}`.
//! - `entries` names the generation's entries, `.drillbook/checksums/<generation>.jsonl`: one
//!   JSON object a line, `{"key":…,"size":…,"sha256":…,"source_modified":…}` (the last when
//!   known), sorted by key (bytewise, as S3 lists).
//! - What changed since follows in segments `.drillbook/checksums/<generation>.d/<n>.jsonl`,
//!   applied in order: a first line `{"segment":n,"source":…,"written_at":…}`, then sorted
//!   lines, each an entry as above or `{"key":…,"removed":true}`. A segment from another
//!   source than the report's so far makes the earlier entries' times another source's (they
//!   are dropped) and the report that source's. The report's time is the latest of the
//!   head's and the segments'.
//!
//! A checkpoint writes one segment with what changed since the last one; the head is written
//! when a generation starts (and, quiet, to say when the mirror was last brought up to date;
//! `entries_source` in it names the source the entries were written for, when segments moved
//! to another). A report is read as a stream: the entries and every segment merged in key
//! order (`entries.rs`). When the segments number [`MAX_SEGMENTS`], the next save merges them
//! into a new generation, written as a stream, and removes the old one's files. A report in
//! the first format (one JSON document at [`REPORT_KEY`]) is read whole, and replaced by a
//! generation at the first save.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::entries::{Entries, File};
use super::{Changes, ChecksumReport, Entry, REPORT_KEY};
use crate::connect::store::{Store, StoreError};

/// Where generations and their segments live.
pub const SEGMENTS: &str = ".drillbook/checksums/";
const FORMAT: u32 = 2;
/// A save writes a new generation whole once its segments are this many (they are all read
/// at once, a file each, when the report is read). A sync spaces its checkpoints out as it
/// goes (see `sync::checkpoint`), so a first mirror of a million objects stays below this.
const MAX_SEGMENTS: u32 = 128;
/// Bytes buffered before they are handed to the store when a generation is written.
const CHUNK: usize = 256 << 10;

#[derive(Serialize, Deserialize)]
struct Head {
    report_version: u32,
    source: String,
    updated_at: Option<Timestamp>,
    generation: String,
    entries: String,
    /// The source the entries file was written for, when segments since moved to another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entries_source: Option<String>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct SegmentHead {
    segment: u32,
    source: String,
    written_at: Timestamp,
}

/// One line of a generation or segment.
#[derive(Serialize, Deserialize)]
pub(super) struct Line<'a> {
    #[serde(borrow)]
    key: std::borrow::Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source_modified: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    removed: bool,
}

impl<'a> Line<'a> {
    fn entry(key: &'a str, entry: &'a Entry) -> Line<'a> {
        Line {
            key: key.into(),
            size: Some(entry.size),
            sha256: Some(entry.sha256.as_str().into()),
            source_modified: entry.source_modified,
            removed: false,
        }
    }

    fn removed(key: &'a str) -> Line<'a> {
        Line {
            key: key.into(),
            size: None,
            sha256: None,
            source_modified: None,
            removed: true,
        }
    }

    /// The key, and the entry (`None` for a removal, or a line without size and hash).
    pub(super) fn into_owned(self) -> (String, Option<Entry>) {
        let entry = match (self.removed, self.size, self.sha256) {
            (false, Some(size), Some(sha256)) => Some(Entry {
                size,
                sha256: sha256.into_owned(),
                source_modified: self.source_modified,
            }),
            _ => None,
        };
        (self.key.into_owned(), entry)
    }

    fn write(&self, out: &mut Vec<u8>) {
        // Serializing strings and numbers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, self);
        out.push(b'\n');
    }
}

/// A report opened in a store: its head, and its entries to be read as a stream.
pub struct Opened {
    /// The store its objects were copied from.
    pub source: String,
    /// When it was last brought up to date.
    pub updated_at: Option<Timestamp>,
    /// The SHA-256 of the head's bytes: names this state of the report.
    pub sha256: String,
    pub entries: Entries,
    base: Base,
}

/// What a writer extends.
#[derive(Clone)]
enum Base {
    /// Nothing usable: the first save writes a generation of its own.
    Fresh,
    /// A report in the first format: the first save converts it.
    FirstFormat,
    /// A generation and how many segments follow it.
    Generation {
        name: String,
        segments: u32,
        /// The source its entries file was written for.
        source: String,
    },
}

impl Opened {
    /// Whether the report was in the first format (it is converted at the next save).
    pub fn first_format(&self) -> bool {
        matches!(self.base, Base::FirstFormat)
    }

    /// A writer that saves into this report.
    pub fn writer(&self) -> Writer {
        Writer {
            base: self.base.clone(),
            source: self.source.clone(),
            written: 0,
        }
    }

    /// The whole report in memory (for small ones, and tests).
    pub async fn load(mut self) -> Result<ChecksumReport, ReadError> {
        let mut report = ChecksumReport::new(&self.source);
        report.updated_at = self.updated_at;
        while let Some((key, entry)) = self.entries.next().await? {
            report.objects.insert(key, entry);
        }
        Ok(report)
    }
}

/// Where segment `number` of `generation` lives.
fn segment_key(generation: &str, number: u32) -> String {
    format!("{SEGMENTS}{generation}.d/{number:08}.jsonl")
}

/// Why a report could not be read: the store failed, or what it holds is not a report.
#[derive(Debug)]
pub enum ReadError {
    Store(StoreError),
    /// Names the key (and line) and what was expected.
    Format(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Store(error) => error.fmt(f),
            ReadError::Format(message) => f.write_str(message),
        }
    }
}

impl From<StoreError> for ReadError {
    fn from(error: StoreError) -> ReadError {
        ReadError::Store(error)
    }
}

impl From<String> for ReadError {
    fn from(message: String) -> ReadError {
        ReadError::Format(message)
    }
}

/// The report in `store`, whole: `None` when it has none; an error (naming the key and what
/// is wrong) when it cannot be read or is not a report.
pub async fn read(store: &Store) -> Result<Option<ChecksumReport>, ReadError> {
    match open(store).await? {
        Some(opened) => Ok(Some(opened.load().await?)),
        None => Ok(None),
    }
}

/// The report in `store`, opened to be read as a stream: `None` when it has none; an error
/// (naming the key and what is wrong) when it cannot be read or is not a report.
pub async fn open(store: &Store) -> Result<Option<Opened>, ReadError> {
    let head_bytes = match store.get_bytes(REPORT_KEY).await {
        Ok(bytes) => bytes,
        Err(error) if error.is_not_found() => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let sha256 = {
        use sha2::Digest;
        crate::format::hex(&sha2::Sha256::digest(&head_bytes))
    };
    let version = serde_json::from_slice::<serde_json::Value>(&head_bytes)
        .ok()
        .and_then(|value| value.get("report_version")?.as_u64());
    if version != Some(u64::from(FORMAT)) {
        // The first format is one JSON document: read whole, once, and converted at the
        // next save.
        let report = ChecksumReport::parse(&head_bytes)
            .map_err(|e| ReadError::Format(format!("{REPORT_KEY}: {e}")))?;
        return Ok(Some(Opened {
            source: report.source,
            updated_at: report.updated_at,
            sha256,
            entries: Entries::whole(report.objects),
            base: Base::FirstFormat,
        }));
    }
    let head: Head = serde_json::from_slice(&head_bytes)
        .map_err(|e| format!("{REPORT_KEY}: not a drillbook checksum report: {e}"))?;
    let mut files = vec![File::open(store, &head.entries).await?];
    let entries_source = head.entries_source.unwrap_or(head.source);
    let (mut source, mut updated_at, mut times_from) = (entries_source.clone(), head.updated_at, 0);
    // Segments are numbered from 1 and written one after the other: read until the first
    // missing one (a GET each, where a listing of the prefix can cost a walk of the bucket).
    let mut segments = 0u32;
    loop {
        let key = segment_key(&head.generation, segments + 1);
        let mut file = match File::open(store, &key).await {
            Ok(file) => file,
            Err(ReadError::Store(error)) if error.is_not_found() => break,
            Err(error) => return Err(error),
        };
        let segment_head = file.segment_head().await?;
        if segment_head.source != source {
            // Written for another source: the earlier entries' times are that one's.
            times_from = files.len();
            source = segment_head.source;
        }
        updated_at = updated_at.max(Some(segment_head.written_at));
        files.push(file);
        segments += 1;
    }
    Ok(Some(Opened {
        source,
        updated_at,
        sha256,
        entries: Entries::merged(files, times_from).await?,
        base: Base::Generation {
            name: head.generation,
            segments,
            source: entries_source,
        },
    }))
}

/// Saves a report into a store as it changes: [`Writer::checkpoint`] writes what changed
/// since the last save as a segment, [`Writer::finish`] that and the head.
pub struct Writer {
    base: Base,
    /// The source the stored report is of.
    source: String,
    /// Bytes this writer wrote, over all saves.
    pub written: u64,
}

impl Writer {
    /// For a store without a usable report: the first save writes a new one.
    pub fn new() -> Writer {
        Writer {
            base: Base::Fresh,
            source: String::new(),
            written: 0,
        }
    }

    /// Saves `changes` (then emptied), made for `source`: a segment, or a new generation when
    /// there is none yet in the current format (or the segments have grown too many).
    pub async fn checkpoint(
        &mut self,
        store: &Store,
        source: &str,
        changes: &mut Changes,
    ) -> Result<(), StoreError> {
        match &self.base {
            Base::Generation { segments, .. } if *segments < MAX_SEGMENTS => {
                if changes.is_empty() && source == self.source {
                    return Ok(());
                }
                self.segment(store, source, changes).await
            }
            _ => self.generation(store, source, changes).await,
        }
    }

    /// The final save: what changed (if anything), then the head again, whose time says when
    /// the report was last brought up to date.
    pub async fn finish(
        &mut self,
        store: &Store,
        source: &str,
        changes: &mut Changes,
    ) -> Result<(), StoreError> {
        let fresh = !matches!(self.base, Base::Generation { .. });
        self.checkpoint(store, source, changes).await?;
        if !fresh {
            self.head(store, source, Timestamp::now()).await?;
        }
        Ok(())
    }

    /// Writes the stored report with `changes` applied as a new generation, points the head at
    /// it, and removes the files of the others.
    async fn generation(
        &mut self,
        store: &Store,
        source: &str,
        changes: &mut Changes,
    ) -> Result<(), StoreError> {
        let failed = |key: &str, message: String| StoreError::Failed {
            action: "rewrite the checksum report",
            url: store.url().to_owned(),
            key: key.to_owned(),
            message,
        };
        let stored = match self.base {
            Base::Fresh => None,
            _ => match open(store).await {
                Ok(opened) => opened,
                Err(ReadError::Store(error)) => return Err(error),
                Err(ReadError::Format(message)) => return Err(failed(REPORT_KEY, message)),
            },
        };
        let now = Timestamp::now();
        let generation = format!(
            "{}-{:08x}",
            now.strftime("%Y%m%dT%H%M%S%.3fZ"),
            fastrand::u32(..)
        );
        let entries_key = format!("{SEGMENTS}{generation}.jsonl");
        let (mut sender, receiver) = tokio::io::duplex(CHUNK);
        let produce = async {
            let same_source = stored.as_ref().is_some_and(|s| s.source == source);
            let mut old = stored.map(|stored| stored.entries);
            let mut new = changes.iter().peekable();
            let mut buffer = Vec::with_capacity(CHUNK + 1024);
            loop {
                let old_key = match &mut old {
                    Some(entries) => entries
                        .peek()
                        .await
                        .map_err(|e| std::io::Error::other(e.to_string()))?
                        .map(|(key, _)| key.clone()),
                    None => None,
                };
                let take_new = match (&old_key, new.peek()) {
                    (None, None) => break,
                    (None, Some(_)) => true,
                    (Some(_), None) => false,
                    (Some(old_key), Some((new_key, _))) => new_key.as_str() <= old_key.as_str(),
                };
                if take_new {
                    let Some((key, entry)) = new.next() else {
                        break;
                    };
                    if old_key.as_deref() == Some(key.as_str())
                        && let Some(entries) = &mut old
                    {
                        entries
                            .next()
                            .await
                            .map_err(|e| std::io::Error::other(e.to_string()))?;
                    }
                    if let Some(entry) = entry {
                        Line::entry(key, entry).write(&mut buffer);
                    }
                } else if let Some(entries) = &mut old
                    && let Some((key, mut entry)) = entries
                        .next()
                        .await
                        .map_err(|e| std::io::Error::other(e.to_string()))?
                {
                    if !same_source {
                        entry.source_modified = None;
                    }
                    Line::entry(&key, &entry).write(&mut buffer);
                }
                if buffer.len() >= CHUNK {
                    sender.write_all(&buffer).await?;
                    buffer.clear();
                }
            }
            sender.write_all(&buffer).await?;
            sender.shutdown().await
        };
        let consume = store.put_stream(&entries_key, receiver, &|_| {});
        let (produced, consumed) = tokio::join!(produce, consume);
        produced.map_err(|e| failed(&entries_key, e.to_string()))?;
        self.written += consumed?;
        self.base = Base::Generation {
            name: generation.clone(),
            segments: 0,
            source: source.to_owned(),
        };
        changes.clear();
        self.head(store, source, now).await?;
        // The head names the new generation: the rest is garbage now.
        let current = format!("{SEGMENTS}{generation}");
        for object in store.list(SEGMENTS).await? {
            if !object.key.starts_with(&current) {
                store.delete(&object.key).await?;
            }
        }
        Ok(())
    }

    /// Writes `changes` as the generation's next segment.
    async fn segment(
        &mut self,
        store: &Store,
        source: &str,
        changes: &mut Changes,
    ) -> Result<(), StoreError> {
        let Base::Generation { name, segments, .. } = &mut self.base else {
            return Ok(());
        };
        let number = *segments + 1;
        let mut bytes = Vec::new();
        let _ = serde_json::to_writer(
            &mut bytes,
            &SegmentHead {
                segment: number,
                source: source.to_owned(),
                written_at: Timestamp::now(),
            },
        );
        bytes.push(b'\n');
        for (key, entry) in changes.iter() {
            match entry {
                Some(entry) => Line::entry(key, entry).write(&mut bytes),
                None => Line::removed(key).write(&mut bytes),
            }
        }
        let size = bytes.len() as u64;
        store.put_bytes(&segment_key(name, number), bytes).await?;
        *segments = number;
        self.written += size;
        self.source = source.to_owned();
        changes.clear();
        Ok(())
    }

    async fn head(&mut self, store: &Store, source: &str, at: Timestamp) -> Result<(), StoreError> {
        let Base::Generation {
            name,
            source: entries_source,
            ..
        } = &self.base
        else {
            return Ok(());
        };
        let mut bytes = serde_json::to_vec(&Head {
            report_version: FORMAT,
            source: source.to_owned(),
            updated_at: Some(at),
            generation: name.clone(),
            entries: format!("{SEGMENTS}{name}.jsonl"),
            entries_source: (entries_source != source).then(|| entries_source.clone()),
        })
        .unwrap_or_default();
        bytes.push(b'\n');
        self.written += bytes.len() as u64;
        self.source = source.to_owned();
        store.put_bytes(REPORT_KEY, bytes).await
    }
}

impl Default for Writer {
    fn default() -> Writer {
        Writer::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sha256: &str, modified: Option<&str>) -> Option<Entry> {
        Some(Entry {
            size: 1,
            sha256: sha256.to_owned(),
            source_modified: modified.map(|m| m.parse().expect("time")),
        })
    }

    #[tokio::test]
    async fn segments_are_merged_in_order_and_a_new_source_voids_earlier_times() {
        let base = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&base.path().display().to_string())
            .await
            .expect("open");
        let t = Some("2026-01-01T00:00:00Z");
        let mut writer = Writer::new();
        let mut changes = Changes::new();
        changes.insert("a".into(), entry("a1", t));
        changes.insert("b".into(), entry("b1", t));
        changes.insert("c".into(), entry("c1", t));
        writer
            .checkpoint(&store, "s3://one", &mut changes)
            .await
            .expect("generation");
        assert!(changes.is_empty());
        changes.insert("b".into(), None);
        changes.insert("d".into(), entry("d1", t));
        writer
            .checkpoint(&store, "s3://one", &mut changes)
            .await
            .expect("segment");
        let report = read(&store).await.expect("read").expect("a report");
        let keys: Vec<&str> = report.objects.keys().map(String::as_str).collect();
        assert_eq!(keys, ["a", "c", "d"]);
        assert!(report.objects["a"].source_modified.is_some());

        // Another source: what came before keeps its checksums but not its times.
        changes.insert("c".into(), entry("c2", t));
        writer
            .finish(&store, "s3://two", &mut changes)
            .await
            .expect("finish");
        let report = read(&store).await.expect("read").expect("a report");
        assert_eq!(report.source, "s3://two");
        assert_eq!(report.objects["a"].sha256, "a1");
        assert_eq!(report.objects["a"].source_modified, None);
        assert_eq!(report.objects["c"].sha256, "c2");
        assert!(report.objects["c"].source_modified.is_some());
        let head: serde_json::Value =
            serde_json::from_slice(&store.get_bytes(REPORT_KEY).await.expect("head"))
                .expect("json");
        assert_eq!(head["source"], "s3://two");
        assert_eq!(head["entries_source"], "s3://one");

        // Rewritten whole, as a stream: the same report, one file.
        let opened = open(&store).await.expect("open").expect("a report");
        let mut writer = opened.writer();
        drop(opened);
        writer.base = match writer.base {
            Base::Generation { name, source, .. } => Base::Generation {
                name,
                source,
                segments: MAX_SEGMENTS,
            },
            base => base,
        };
        let mut changes = Changes::new();
        changes.insert("e".into(), entry("e1", t));
        writer
            .checkpoint(&store, "s3://two", &mut changes)
            .await
            .expect("compaction");
        let rewritten = read(&store).await.expect("read").expect("a report");
        let keys: Vec<&str> = rewritten.objects.keys().map(String::as_str).collect();
        assert_eq!(keys, ["a", "c", "d", "e"]);
        assert_eq!(rewritten.objects["a"].source_modified, None);
        assert!(rewritten.objects["c"].source_modified.is_some());
        let files = store.list(SEGMENTS).await.expect("list");
        assert_eq!(files.len(), 1, "{files:?}");
    }

    #[tokio::test]
    async fn an_unsorted_segment_is_refused_naming_its_line() {
        let base = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&base.path().display().to_string())
            .await
            .expect("open");
        let mut writer = Writer::new();
        let mut changes = Changes::new();
        changes.insert("a".into(), entry("a1", None));
        writer
            .checkpoint(&store, "s3://one", &mut changes)
            .await
            .expect("generation");
        let head: serde_json::Value =
            serde_json::from_slice(&store.get_bytes(REPORT_KEY).await.expect("head"))
                .expect("json");
        let generation = head["generation"].as_str().expect("generation");
        let segment = format!(
            "{{\"segment\":1,\"source\":\"s3://one\",\"written_at\":\"2026-01-01T00:00:00Z\"}}\n{}\n{}\n",
            r#"{"key":"z","size":1,"sha256":"z"}"#, r#"{"key":"b","size":1,"sha256":"b"}"#
        );
        store
            .put_bytes(
                &format!("{SEGMENTS}{generation}.d/00000001.jsonl"),
                segment.into_bytes(),
            )
            .await
            .expect("put");
        let error = match read(&store).await {
            Err(error) => error.to_string(),
            Ok(report) => panic!("read: {:?}", report.map(|r| r.objects)),
        };
        assert!(
            error.contains("00000001.jsonl line 3") && error.contains("out of order"),
            "{error}"
        );
    }
}
