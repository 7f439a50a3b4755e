//! The checksum report `sync` writes into a destination: the SHA-256 and size of every object,
//! and the source object's modification time when it was hashed. `verify` checks parity
//! against it, and the next `sync` reuses it so unchanged objects are not hashed again.
//!
//! This file is the report in memory (and its first format, one JSON document, still read and
//! converted once); `stored.rs` is how it lives in a store now: a small head at
//! [`REPORT_KEY`], the entries as sorted JSON Lines, and what changed since as small sorted
//! segments, so a checkpoint writes only what changed.
//!
//! An ETag is not a checksum (the same bytes get different multipart ETags from different
//! tools), so parity is always decided on drillbook's own SHA-256.

mod entries;
mod stored;

pub use entries::Entries;
pub use stored::{Opened, ReadError, SEGMENTS, Writer, open, read};

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Where the report lives, relative to the destination's prefix. Keys under `.drillbook/` are
/// drillbook's own: never mirrored, compared or deleted.
pub const REPORT_KEY: &str = ".drillbook/checksums.json";
pub const OWN_PREFIX: &str = ".drillbook/";

/// What changed in a report since it was last saved, by key: the new entry, or `None` for a
/// removed one.
pub type Changes = BTreeMap<String, Option<Entry>>;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChecksumReport {
    pub report_version: u32,
    /// The store the objects were copied from.
    pub source: String,
    pub updated_at: Option<Timestamp>,
    /// By key (relative to the store's prefix).
    pub objects: BTreeMap<String, Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    /// The source object's modification time when it was hashed: the same size and time
    /// later mean the same object, so its hash is reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_modified: Option<Timestamp>,
}

impl ChecksumReport {
    pub fn new(source: &str) -> ChecksumReport {
        ChecksumReport {
            report_version: 1,
            source: source.to_string(),
            updated_at: None,
            objects: BTreeMap::new(),
        }
    }

    /// The first format (one JSON document), as written before segments.
    pub fn parse(bytes: &[u8]) -> Result<ChecksumReport, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a drillbook checksum report: {e}"))
    }

    /// The first format: what tests write to prove it is still read.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// The recorded hash of an object that still has this size and modification time.
    pub fn unchanged(&self, key: &str, size: u64, modified: Option<Timestamp>) -> Option<&Entry> {
        self.objects
            .get(key)
            .filter(|entry| entry.unchanged(size, modified))
    }
}

impl ChecksumReport {
    /// The SHA-256 this report vouches for, for a store that holds the object now with `size`
    /// bytes, modified at `modified`: the report's entry when the size agrees and the object
    /// was last written before the report was (an object written since is another object).
    ///
    /// `sync` checks copies against this, so a wrong answer fails safe: an object rewritten in
    /// the same second as the report is refused as damaged, never copied unchecked. `verify`,
    /// which skips hashing what a report vouches for, keeps a second's margin instead
    /// (`written_before` there).
    pub fn vouches(&self, key: &str, size: u64, modified: Option<Timestamp>) -> Option<&str> {
        self.objects
            .get(key)
            .and_then(|entry| entry.vouches(self.updated_at, size, modified))
    }
}

impl Entry {
    /// Whether the source object still has the size and modification time it had when hashed.
    pub fn unchanged(&self, size: u64, modified: Option<Timestamp>) -> bool {
        self.size == size && modified.is_some() && self.source_modified == modified
    }

    /// See [`ChecksumReport::vouches`]; `written`: the report's time.
    pub fn vouches(
        &self,
        written: Option<Timestamp>,
        size: u64,
        modified: Option<Timestamp>,
    ) -> Option<&str> {
        let written = written?;
        (self.size == size && modified.is_some_and(|m| m <= written))
            .then_some(self.sha256.as_str())
    }
}

/// Whether a key is drillbook's own bookkeeping rather than data.
pub fn is_own(key: &str) -> bool {
    key.starts_with(OWN_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_is_unchanged_while_its_size_and_time_are() {
        let at: Timestamp = "2026-11-24T02:00:00Z".parse().expect("time");
        let mut report = ChecksumReport::new("s3://a/b");
        report.objects.insert(
            "x/y.bin".into(),
            Entry {
                size: 5,
                sha256: "ab".into(),
                source_modified: Some(at),
            },
        );
        assert!(report.unchanged("x/y.bin", 5, Some(at)).is_some());
        assert!(report.unchanged("x/y.bin", 6, Some(at)).is_none());
        assert!(report.unchanged("x/y.bin", 5, None).is_none());
        assert!(report.unchanged("x/z.bin", 5, Some(at)).is_none());
        assert_eq!(ChecksumReport::parse(&report.to_bytes()), Ok(report));
        assert!(is_own(".drillbook/checksums.json") && !is_own("data/.drillbook"));
    }

    #[test]
    fn a_report_vouches_only_for_objects_written_before_it() {
        let time = |text: &str| -> Timestamp { text.parse().expect("time") };
        let mut report = ChecksumReport::new("s3://a/b");
        report.objects.insert(
            "k".into(),
            Entry {
                size: 5,
                sha256: "ab".into(),
                source_modified: None,
            },
        );
        let before = Some(time("2026-11-24T01:00:00Z"));
        assert_eq!(report.vouches("k", 5, before), None, "no time, no vouching");
        report.updated_at = Some(time("2026-11-24T02:00:00Z"));
        assert_eq!(report.vouches("k", 5, before), Some("ab"));
        assert_eq!(report.vouches("k", 6, before), None);
        assert_eq!(report.vouches("k", 5, None), None);
        assert_eq!(
            report.vouches("k", 5, Some(time("2026-11-24T03:00:00Z"))),
            None,
            "rewritten since the report"
        );
    }
}
