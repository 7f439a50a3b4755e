//! Which base backups and WAL files a retention lets go: base backups started before the
//! cutoff (never the newest complete one), and the WAL before the start segment of the oldest
//! complete base backup kept — never a file a kept backup needs. Timeline history files are
//! always kept (they are tiny, and every later timeline's recovery reads them).

use jiff::Timestamp;

use super::base::{BaseManifest, base_manifest_key, time_of};
use super::lsn::Segment;
use super::{ROOT, SUFFIX};
use crate::connect::store::ObjectInfo;

/// What to delete, in the order to delete it: each backup's manifest before its object (a
/// half-pruned backup is then incomplete, never a manifest without its data), then the WAL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pruning {
    pub backups: Vec<String>,
    pub wal: Vec<String>,
    /// The first segment kept, which the oldest kept backup needs.
    pub kept_from: Option<String>,
}

impl Pruning {
    /// Keys in deletion order.
    pub fn keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for backup in &self.backups {
            keys.push(base_manifest_key(backup));
            keys.push(backup.clone());
        }
        keys.extend(self.wal.iter().cloned());
        keys
    }
}

/// `complete`: the base backups with a readable manifest matching their object (newest first
/// or in any order). `listing`: every object in the store.
pub fn prune(listing: &[ObjectInfo], complete: &[BaseManifest], cutoff: Timestamp) -> Pruning {
    let mut pruning = Pruning::default();
    let newest_complete = complete.iter().max_by_key(|m| m.started_at);
    let kept: Vec<&BaseManifest> = complete
        .iter()
        .filter(|m| {
            m.started_at >= cutoff
                || Some(m.key.as_str()) == newest_complete.map(|n| n.key.as_str())
        })
        .collect();
    // The oldest kept backup's first segment: everything before it goes.
    let floor = kept
        .iter()
        .filter_map(|m| m.first_segment().map(|s| (s, m.wal_segment_size)))
        .min();
    for object in listing {
        let Some(started) = time_of(&object.key) else {
            continue;
        };
        let is_kept = kept.iter().any(|m| m.key == object.key);
        if started < cutoff && !is_kept {
            pruning.backups.push(object.key.clone());
        }
    }
    let Some((floor, size)) = floor else {
        // No complete backup is kept: no WAL is known to be unneeded.
        return pruning;
    };
    pruning.kept_from = Some(floor.name(size));
    for object in listing {
        let Some(name) = object
            .key
            .strip_prefix(ROOT)
            .and_then(|rest| rest.rsplit('/').next())
            .and_then(|file| file.strip_suffix(SUFFIX))
        else {
            continue;
        };
        if name.ends_with(".history") {
            continue;
        }
        // A segment, its .partial, or a .backup file named after a segment.
        let Some(segment) = name.get(..24).and_then(|head| Segment::parse(head, size)) else {
            continue;
        };
        if segment.timeline <= floor.timeline && segment.number < floor.number {
            pruning.wal.push(object.key.clone());
        }
    }
    pruning
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB16: u64 = 16 << 20;

    fn manifest(key: &str, started: &str, start_segment: &str) -> BaseManifest {
        let at: Timestamp = started.parse().unwrap();
        BaseManifest {
            manifest_version: 1,
            format: "base".into(),
            key: key.into(),
            size: 1,
            sha256: String::new(),
            compression: "zstd".into(),
            tar_size: 1,
            files: 1,
            server: String::new(),
            server_version: "15.10".into(),
            system_identifier: None,
            pg_basebackup_version: "15.10".into(),
            wal_segment_size: MIB16,
            timeline: 1,
            start_lsn: String::new(),
            start_segment: start_segment.into(),
            end_lsn: String::new(),
            end_segment: start_segment.into(),
            wal_ranges: Vec::new(),
            backup_manifest_checksum: String::new(),
            label: String::new(),
            started_at: at,
            finished_at: at,
            created_by: String::new(),
        }
    }

    fn objects(keys: &[&str]) -> Vec<ObjectInfo> {
        keys.iter()
            .map(|k| ObjectInfo {
                key: (*k).into(),
                size: 1,
                modified: None,
            })
            .collect()
    }

    #[test]
    fn old_backups_go_with_the_wal_before_the_oldest_kept_one() {
        let old = "base/20261101T000000.000Z.tar.zst";
        let kept = "base/20261204T000000.000Z.tar.zst";
        let listing = objects(&[
            old,
            "base/20261101T000000.000Z.tar.zst.manifest.json",
            kept,
            "base/20261204T000000.000Z.tar.zst.manifest.json",
            "base/20261102T000000.000Z.tar.zst",
            "wal/0000000100000000/000000010000000000000001.zst",
            "wal/0000000100000000/000000010000000000000004.00000028.backup.zst",
            "wal/0000000100000000/000000010000000000000004.zst",
            "wal/0000000100000000/000000010000000000000005.zst",
            "wal/00000002.history.zst",
        ]);
        let complete = [
            manifest(old, "2026-11-01T00:00:00Z", "000000010000000000000001"),
            manifest(kept, "2026-12-04T00:00:00Z", "000000010000000000000005"),
        ];
        let pruning = prune(&listing, &complete, "2026-11-28T00:00:00Z".parse().unwrap());
        assert_eq!(
            pruning.backups,
            vec![
                old.to_string(),
                "base/20261102T000000.000Z.tar.zst".to_string()
            ]
        );
        assert_eq!(
            pruning.wal,
            vec![
                "wal/0000000100000000/000000010000000000000001.zst",
                "wal/0000000100000000/000000010000000000000004.00000028.backup.zst",
                "wal/0000000100000000/000000010000000000000004.zst",
            ]
        );
        assert_eq!(
            pruning.kept_from.as_deref(),
            Some("000000010000000000000005")
        );
        assert_eq!(pruning.keys()[0], format!("{old}.manifest.json"));
    }

    #[test]
    fn the_newest_complete_backup_and_its_wal_stay_however_old() {
        let only = "base/20261101T000000.000Z.tar.zst";
        let listing = objects(&[
            only,
            "base/20261101T000000.000Z.tar.zst.manifest.json",
            "wal/0000000100000000/000000010000000000000001.zst",
            "wal/0000000100000000/000000010000000000000002.zst",
        ]);
        let complete = [manifest(
            only,
            "2026-11-01T00:00:00Z",
            "000000010000000000000002",
        )];
        let pruning = prune(&listing, &complete, "2026-11-28T00:00:00Z".parse().unwrap());
        assert!(pruning.backups.is_empty());
        assert_eq!(
            pruning.wal,
            vec!["wal/0000000100000000/000000010000000000000001.zst"]
        );
        // No complete backup: nothing of the WAL goes.
        let pruning = prune(&listing, &[], "2026-11-28T00:00:00Z".parse().unwrap());
        assert!(pruning.wal.is_empty());
    }
}
