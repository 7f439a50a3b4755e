//! What a sync sets out to do: from the two listings and the previous checksum report, the
//! objects to copy and the destination's extras; then, hashing what the destination already
//! holds, the copies it can do without.

use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::Timestamp;

use super::mirror::{Mirror, Vouched};
use super::transfer::settled;
use crate::checksums::{ChecksumReport, Entry};
use crate::connect::store::ObjectInfo;
use crate::steps::StepFailure;
use crate::steps::hashing::{Job, Side, hash_all};

/// What a sync decided from the two listings and the previous report.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Plan {
    /// Source objects to copy, largest first (so they do not trail at the end).
    pub(super) copy: Vec<ObjectInfo>,
    pub(super) unchanged: usize,
    /// Destination keys absent at the source, sorted.
    pub(super) extra: Vec<String>,
    /// The previous report's entries that still describe a destination object.
    pub(super) report: BTreeMap<String, Entry>,
}

/// `trusted`: whether the previous report's times are those of this source (it was written
/// by a sync from it).
pub(super) fn plan(
    source: &[ObjectInfo],
    destination: &[ObjectInfo],
    previous: &ChecksumReport,
    trusted: bool,
) -> Plan {
    let sizes: HashMap<&str, u64> = destination
        .iter()
        .map(|object| (object.key.as_str(), object.size))
        .collect();
    let report: BTreeMap<String, Entry> = previous
        .objects
        .iter()
        .filter(|(key, entry)| sizes.get(key.as_str()) == Some(&entry.size))
        .map(|(key, entry)| {
            let mut entry = entry.clone();
            if !trusted {
                // Still what the destination holds, but the time is another source's.
                entry.source_modified = None;
            }
            (key.clone(), entry)
        })
        .collect();
    let mut plan = Plan::default();
    for object in source {
        let same = sizes.get(object.key.as_str()) == Some(&object.size)
            && trusted
            && previous
                .unchanged(&object.key, object.size, object.modified)
                .is_some();
        if same {
            plan.unchanged += 1;
        } else {
            plan.copy.push(object.clone());
        }
    }
    plan.copy
        .sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.key.cmp(&b.key)));
    let at_source: HashSet<&str> = source.iter().map(|o| o.key.as_str()).collect();
    plan.extra = destination
        .iter()
        .filter(|object| !at_source.contains(object.key.as_str()))
        .map(|object| object.key.clone())
        .collect();
    plan.extra.sort();
    plan.report = report;
    plan
}

impl Mirror<'_, '_> {
    /// Takes out of `plan.copy` the objects the destination already holds with the bytes the
    /// source's report vouches for (hashed in the destination): a bucket restored from its
    /// mirror has no report of its own, and reading it is cheaper than copying everything
    /// back. Returns how many.
    pub(super) async fn confirm(
        &self,
        plan: &mut Plan,
        destination: &[ObjectInfo],
        vouched: &Vouched,
        report: &mut ChecksumReport,
    ) -> Result<usize, StepFailure> {
        let sizes: HashMap<&str, u64> = destination
            .iter()
            .map(|object| (object.key.as_str(), object.size))
            .collect();
        let candidates: Vec<Job> = plan
            .copy
            .iter()
            .filter(|object| sizes.get(object.key.as_str()) == Some(&object.size))
            .filter_map(|object| {
                vouched.get(&object.key).map(|sha256| Job {
                    key: object.key.clone(),
                    first: Side::Known(sha256.clone()),
                    second: Side::Read {
                        store: self.destination.clone(),
                        size: object.size,
                    },
                })
            })
            .collect();
        if candidates.is_empty() {
            return Ok(0);
        }
        let hashed: HashSet<String> = candidates.iter().map(|job| job.key.clone()).collect();
        let (mismatches, _) = hash_all(candidates, self.ctx).await?;
        let differ: HashSet<String> = mismatches.into_iter().map(|(key, ..)| key).collect();
        let now = Timestamp::now();
        let before = plan.copy.len();
        plan.copy.retain(|object| {
            if !hashed.contains(&object.key) || differ.contains(&object.key) {
                return true;
            }
            report.objects.insert(
                object.key.clone(),
                Entry {
                    size: object.size,
                    sha256: vouched[&object.key].clone(),
                    source_modified: object.modified.filter(|&modified| settled(modified, now)),
                },
            );
            false
        });
        let confirmed = before - plan.copy.len();
        plan.unchanged += confirmed;
        Ok(confirmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str, size: u64, modified: &str) -> ObjectInfo {
        ObjectInfo {
            key: key.to_owned(),
            size,
            modified: Some(modified.parse().expect("time")),
        }
    }

    fn entry(size: u64, modified: &str) -> Entry {
        Entry {
            size,
            sha256: "ab".into(),
            source_modified: Some(modified.parse().expect("time")),
        }
    }

    const T1: &str = "2026-11-24T02:00:00Z";
    const T2: &str = "2026-11-24T03:00:00Z";

    #[test]
    fn plans_copies_unchanged_and_extras() {
        let source = vec![
            object("same", 5, T1),
            object("newer", 5, T2),
            object("missing", 5, T1),
            object("no-entry", 5, T1),
            object("resized", 6, T1),
            object("big", 100, T1),
        ];
        let destination = vec![
            object("same", 5, T2),
            object("newer", 5, T2),
            object("no-entry", 5, T2),
            object("resized", 5, T2),
            object("big", 100, T2),
            object("extra/b", 1, T2),
            object("extra/a", 1, T2),
        ];
        let mut previous = ChecksumReport::new("s3://a");
        for (key, size) in [("same", 5), ("newer", 5), ("resized", 5), ("big", 100)] {
            previous.objects.insert(key.into(), entry(size, T1));
        }
        // An entry whose destination object is gone, or has another size, is dropped.
        previous.objects.insert("gone".into(), entry(1, T1));
        previous.objects.insert("extra/a".into(), entry(7, T1));

        let plan = plan(&source, &destination, &previous, true);
        let copied: Vec<&str> = plan.copy.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(copied, ["resized", "missing", "newer", "no-entry"]);
        assert_eq!(plan.unchanged, 2);
        assert_eq!(plan.extra, ["extra/a", "extra/b"]);
        let kept: Vec<&str> = plan.report.keys().map(String::as_str).collect();
        assert_eq!(kept, ["big", "newer", "resized", "same"]);

        // A report from another source vouches for nothing.
        let plan = super::plan(&source, &destination, &previous, false);
        assert_eq!((plan.copy.len(), plan.unchanged), (6, 0));
        assert_eq!(plan.copy[0].key, "big");
        assert!(plan.report.values().all(|e| e.source_modified.is_none()));
    }
}
