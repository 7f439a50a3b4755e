//! The backup manifest: what a dump holds and how to recognise it intact.
//!
//! A backup is two objects: `<time>.dump` and `<time>.dump.manifest.json`, written last. A dump
//! without a manifest, or whose size differs from its manifest's, is incomplete by definition.
//! Keys start with the snapshot time in UTC, so they sort oldest to newest.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::connect::store::ObjectInfo;

pub const DUMP_SUFFIX: &str = ".dump";
pub const MANIFEST_SUFFIX: &str = ".manifest.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub manifest_version: u32,
    /// The dump's key, relative to the store.
    pub key: String,
    pub size: u64,
    /// SHA-256 of the dump's bytes, lowercase hex.
    pub sha256: String,
    /// `custom` (pg_dump's archive), or `directory` (a tar of pg_dump's directory format).
    pub format: String,
    /// pg_dump's compression level (0 when drillbook compressed it: `compressed_with`).
    pub compression: u8,
    /// `zstd` when drillbook compressed pg_dump's uncompressed output on the way: the stored
    /// bytes are one zstd stream (`zstd -dc KEY | pg_restore …` by hand). Absent: as pg_dump
    /// wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressed_with: Option<String>,
    pub database: String,
    pub server_version: String,
    pub pg_dump_version: String,
    pub started_at: Timestamp,
    /// When the snapshot the dump reads was taken: the data is as of this moment, so RPO is
    /// measured from it.
    pub snapshot_at: Timestamp,
    pub finished_at: Timestamp,
    /// Every table's row count, read in the dump's own snapshot.
    pub tables: Vec<TableRows>,
    pub large_objects: u64,
    pub created_by: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRows {
    pub schema: String,
    pub table: String,
    pub rows: u64,
}

impl Manifest {
    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a drillbook manifest: {e}"))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

/// `20261124T181500.123Z.dump`: sortable, and safe as a file name.
pub fn dump_key(at: Timestamp) -> String {
    format!("{}{DUMP_SUFFIX}", crate::format::key_time(at))
}

pub fn manifest_key(dump: &str) -> String {
    format!("{dump}{MANIFEST_SUFFIX}")
}

/// The time in a dump key's name, when it was made by drillbook.
pub fn time_of(key: &str) -> Option<Timestamp> {
    crate::format::time_in_key(key, DUMP_SUFFIX)
}

/// A dump found in a store, with its manifest's key when there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub key: String,
    pub size: u64,
    pub manifest: Option<String>,
}

/// The dumps in a listing, newest first.
pub fn candidates(objects: &[ObjectInfo]) -> Vec<Candidate> {
    let manifests: std::collections::HashSet<&str> = objects
        .iter()
        .filter(|o| o.key.ends_with(MANIFEST_SUFFIX))
        .map(|o| o.key.as_str())
        .collect();
    let mut found: Vec<Candidate> = objects
        .iter()
        .filter(|o| o.key.ends_with(DUMP_SUFFIX))
        .map(|o| {
            let manifest = manifest_key(&o.key);
            Candidate {
                key: o.key.clone(),
                size: o.size,
                manifest: manifests.contains(manifest.as_str()).then_some(manifest),
            }
        })
        .collect();
    found.sort_by(|a, b| newest_first(&a.key, &b.key));
    found
}

/// By the time in the name; keys drillbook did not name sort after, by name.
fn newest_first(a: &str, b: &str) -> std::cmp::Ordering {
    match (time_of(a), time_of(b)) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => b.cmp(a),
    }
}

/// Why a dump cannot be used, or `None` when its manifest matches what the store holds.
pub fn incomplete(candidate: &Candidate, manifest: Result<&Manifest, &str>) -> Option<String> {
    if candidate.manifest.is_none() {
        return Some("no manifest (an interrupted or unfinished backup)".into());
    }
    match manifest {
        Err(error) => Some(format!("manifest unreadable: {error}")),
        Ok(manifest) if manifest.size != candidate.size => Some(format!(
            "size mismatch: the manifest says {} bytes, the store holds {}",
            manifest.size, candidate.size
        )),
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str, size: u64) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size,
            modified: None,
        }
    }

    #[test]
    fn keys_carry_their_time_and_sort_newest_first() {
        let at: Timestamp = "2026-11-24T18:15:00.123Z".parse().expect("time");
        let key = dump_key(at);
        assert_eq!(key, "20261124T181500.123Z.dump");
        assert_eq!(time_of(&key), Some(at));
        assert_eq!(time_of("nightly/20261124T181500.123Z.dump"), Some(at));
        assert_eq!(time_of("other.dump"), None);

        let listing = [
            object("20261122T020000.000Z.dump", 10),
            object("20261122T020000.000Z.dump.manifest.json", 1),
            object("20261124T020000.000Z.dump", 12),
            object("20261123T020000.000Z.dump", 11),
            object("20261123T020000.000Z.dump.manifest.json", 1),
            object("notes.txt", 3),
        ];
        let found = candidates(&listing);
        let keys: Vec<_> = found.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "20261124T020000.000Z.dump",
                "20261123T020000.000Z.dump",
                "20261122T020000.000Z.dump"
            ]
        );
        assert_eq!(found[0].manifest, None);
        assert_eq!(
            found[1].manifest.as_deref(),
            Some("20261123T020000.000Z.dump.manifest.json")
        );
    }

    #[test]
    fn an_incomplete_backup_says_why() {
        let bare = Candidate {
            key: "a.dump".into(),
            size: 5,
            manifest: None,
        };
        assert!(
            incomplete(&bare, Err("unused"))
                .expect("why")
                .contains("no manifest")
        );
        let with = Candidate {
            manifest: Some("a.dump.manifest.json".into()),
            ..bare
        };
        let at = Timestamp::UNIX_EPOCH;
        let manifest = Manifest {
            manifest_version: 1,
            key: "a.dump".into(),
            size: 6,
            sha256: String::new(),
            format: "custom".into(),
            compression: 1,
            compressed_with: None,
            database: "app".into(),
            server_version: "15.19".into(),
            pg_dump_version: "15.19".into(),
            started_at: at,
            snapshot_at: at,
            finished_at: at,
            tables: vec![],
            large_objects: 0,
            created_by: "test".into(),
        };
        assert_eq!(
            incomplete(&with, Ok(&manifest)).as_deref(),
            Some("size mismatch: the manifest says 6 bytes, the store holds 5")
        );
        assert_eq!(
            incomplete(
                &with,
                Ok(&Manifest {
                    size: 5,
                    ..manifest.clone()
                })
            ),
            None
        );
        assert_eq!(Manifest::parse(&manifest.to_bytes()), Ok(manifest));
    }
}
