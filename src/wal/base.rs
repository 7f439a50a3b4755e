//! Base backups in the archive's store, beside the WAL they need:
//!
//! ```text
//! base/<time>.tar.zst                  pg_basebackup's tar (-X none), one zstd stream
//! base/<time>.tar.zst.manifest.json    written last: what it is and which WAL it needs
//! ```
//!
//! A base backup without its manifest is incomplete by definition, as a dump is. The manifest
//! says where the backup starts and ends in the WAL (its `backup_manifest`'s WAL ranges), so
//! that `assess` can check the archive holds every segment from there on, and a restore knows
//! where recovery first reaches a consistent state.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::label::WalRange;
use super::lsn::{Lsn, Segment};
use crate::connect::store::ObjectInfo;

/// Where base backups live under the archive's store.
pub const BASE_ROOT: &str = "base/";
pub const BASE_SUFFIX: &str = ".tar.zst";
const MANIFEST_SUFFIX: &str = ".manifest.json";

/// A base backup's manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaseManifest {
    pub manifest_version: u32,
    /// Always `base`: tells a base backup's manifest from a dump's.
    pub format: String,
    /// The object's key, relative to the store.
    pub key: String,
    /// Bytes stored (compressed), and their SHA-256 (lowercase hex).
    pub size: u64,
    pub sha256: String,
    /// How the tar is compressed: `zstd`.
    pub compression: String,
    /// The tar's size before compression, and how many files it holds.
    pub tar_size: u64,
    pub files: u64,
    /// The server backed up: `host:port`, its version, and its system identifier (which every
    /// WAL segment's header repeats) where drillbook's role could read it.
    pub server: String,
    pub server_version: String,
    pub system_identifier: Option<String>,
    pub pg_basebackup_version: String,
    /// The cluster's WAL segment size in bytes (16 MiB unless initdb was told otherwise).
    pub wal_segment_size: u64,
    /// Where the backup starts: its timeline, LSN and the first segment recovery needs.
    pub timeline: u32,
    pub start_lsn: String,
    pub start_segment: String,
    /// Where it is consistent: the end of its WAL range, and the segment holding it.
    pub end_lsn: String,
    pub end_segment: String,
    /// `backup_manifest`'s WAL ranges, as PostgreSQL wrote them.
    pub wal_ranges: Vec<WalRange>,
    /// `backup_manifest`'s own checksum (`Manifest-Checksum`): `pg_verifybackup` checks the
    /// restored files against that manifest.
    pub backup_manifest_checksum: String,
    /// The label given to pg_basebackup (`-l`), as `backup_label` and the server log show it.
    pub label: String,
    pub started_at: Timestamp,
    /// The backup is consistent as of no earlier than this: restoring it to a moment before
    /// is impossible.
    pub finished_at: Timestamp,
    pub created_by: String,
}

impl BaseManifest {
    pub fn parse(bytes: &[u8]) -> Result<BaseManifest, String> {
        let manifest: BaseManifest = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a drillbook base backup manifest: {e}"))?;
        if manifest.format != "base" {
            return Err(format!(
                "a manifest of format `{}`, not a base backup's",
                manifest.format
            ));
        }
        Ok(manifest)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// The first segment recovery from this backup reads.
    pub fn first_segment(&self) -> Option<Segment> {
        Segment::parse(&self.start_segment, self.wal_segment_size)
    }

    /// The server's major version (15 for `15.10`): the server programs a restore needs.
    pub fn server_major(&self) -> Option<u32> {
        self.server_version
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    }

    /// Where recovery from this backup first reaches a consistent state.
    pub fn consistent_at(&self) -> Option<Lsn> {
        Lsn::parse(&self.end_lsn)
    }
}

/// `base/20261205T101500.123Z.tar.zst`: sortable, and safe as a file name.
pub fn base_key(at: Timestamp) -> String {
    format!(
        "{BASE_ROOT}{}{BASE_SUFFIX}",
        at.strftime("%Y%m%dT%H%M%S%.3fZ")
    )
}

pub fn base_manifest_key(key: &str) -> String {
    format!("{key}{MANIFEST_SUFFIX}")
}

/// The time in a base backup's key.
pub fn time_of(key: &str) -> Option<Timestamp> {
    crate::format::time_in_key(key, BASE_SUFFIX)
}

/// A base backup found in a listing of `base/`, with whether its manifest is there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseCandidate {
    pub key: String,
    pub size: u64,
    pub has_manifest: bool,
}

/// The base backups in a listing, newest first.
pub fn base_candidates(objects: &[ObjectInfo]) -> Vec<BaseCandidate> {
    let keys: std::collections::HashSet<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    let mut found: Vec<BaseCandidate> = objects
        .iter()
        .filter(|o| o.key.ends_with(BASE_SUFFIX) && time_of(&o.key).is_some())
        .map(|o| BaseCandidate {
            key: o.key.clone(),
            size: o.size,
            has_manifest: keys.contains(base_manifest_key(&o.key).as_str()),
        })
        .collect();
    found.sort_by_key(|candidate| std::cmp::Reverse(time_of(&candidate.key)));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_time_and_name_their_manifest() {
        let at: Timestamp = "2026-12-05T10:15:00.123Z".parse().unwrap();
        let key = base_key(at);
        assert_eq!(key, "base/20261205T101500.123Z.tar.zst");
        assert_eq!(time_of(&key), Some(at));
        let later = base_key("2026-12-05T11:00:00Z".parse().unwrap());
        let object = |key: &str| ObjectInfo {
            key: key.to_owned(),
            size: 10,
            modified: None,
        };
        let listing = [
            object(&key),
            object(&base_manifest_key(&key)),
            object(&later),
            object("base/notes.txt"),
        ];
        let found = base_candidates(&listing);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].key, later);
        assert!(!found[0].has_manifest);
        assert!(found[1].has_manifest);
    }
}
