//! Whether the archive holds every segment recovery from a base backup will ask for. A
//! missing segment is silent at restore time — PostgreSQL takes the first file
//! `restore_command` cannot give as the end of the archive and promotes there, short of the
//! moment asked for — so it is looked for before anything starts.
//!
//! Per timeline, the segments must run without a hole from the first one needed (the
//! backup's start segment on its timeline; a later timeline's first segment, which starts at
//! its switch point) to the newest archived. A `.partial` segment (the old timeline's last,
//! after a promotion) ends its timeline.

use std::collections::{BTreeMap, BTreeSet};

use super::lsn::Segment;
use super::{ROOT, SUFFIX};

/// What the archive holds, per timeline, from a listing of its store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holdings {
    /// Segment numbers archived, per timeline (whole segments only).
    pub segments: BTreeMap<u32, BTreeSet<u64>>,
    /// Timelines with a history file.
    pub histories: BTreeSet<u32>,
}

impl Holdings {
    /// From object keys (relative to the store), for a cluster's segment size.
    pub fn of<'a>(keys: impl IntoIterator<Item = &'a str>, segment_size: u64) -> Holdings {
        let mut holdings = Holdings::default();
        for key in keys {
            let Some(name) = key
                .strip_prefix(ROOT)
                .and_then(|rest| rest.rsplit('/').next())
                .and_then(|file| file.strip_suffix(SUFFIX))
            else {
                continue;
            };
            if let Some(timeline) = name.strip_suffix(".history") {
                if let Ok(timeline) = u32::from_str_radix(timeline, 16) {
                    holdings.histories.insert(timeline);
                }
            } else if let Some(segment) = Segment::parse(name, segment_size) {
                holdings
                    .segments
                    .entry(segment.timeline)
                    .or_default()
                    .insert(segment.number);
            }
        }
        holdings
    }

    /// The newest segment on the newest timeline at or after `timeline`.
    pub fn newest(&self, timeline: u32) -> Option<Segment> {
        self.segments
            .range(timeline..)
            .next_back()
            .and_then(|(&timeline, numbers)| {
                numbers.last().map(|&number| Segment { timeline, number })
            })
    }

    /// The first hole in what recovery from `start` reads: the missing segment and the
    /// archived one after it. `None` when every timeline from `start`'s on runs unbroken.
    pub fn first_gap(&self, start: Segment) -> Option<(Segment, Segment)> {
        for (&timeline, numbers) in self.segments.range(start.timeline..) {
            let from = if timeline == start.timeline {
                start.number
            } else {
                *numbers.first()?
            };
            let mut expected = from;
            for &number in numbers.range(from..) {
                if number != expected {
                    return Some((
                        Segment {
                            timeline,
                            number: expected,
                        },
                        Segment { timeline, number },
                    ));
                }
                expected += 1;
            }
            if timeline == start.timeline && expected == from {
                // Not even the start segment is there.
                return Some((start, start));
            }
        }
        if !self.segments.contains_key(&start.timeline) {
            return Some((start, start));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB16: u64 = 16 << 20;

    fn key(name: &str) -> String {
        if name.ends_with(".history") {
            format!("wal/{name}.zst")
        } else {
            format!("wal/{}/{name}.zst", &name[..16])
        }
    }

    fn holdings(names: &[&str]) -> Holdings {
        let keys: Vec<String> = names.iter().map(|n| key(n)).collect();
        let mut all: Vec<&str> = keys.iter().map(String::as_str).collect();
        all.push("base/20261205T100000.000Z.tar.zst");
        Holdings::of(all, MIB16)
    }

    fn segment(name: &str) -> Segment {
        Segment::parse(name, MIB16).unwrap()
    }

    #[test]
    fn a_hole_is_named_with_the_segment_after_it() {
        let archive = holdings(&[
            "000000010000000000000001",
            "000000010000000000000002",
            "000000010000000000000003",
            "000000010000000000000005",
            "000000010000000000000002.00000028.backup",
        ]);
        let start = segment("000000010000000000000002");
        let (missing, after) = archive.first_gap(start).unwrap();
        assert_eq!(missing.name(MIB16), "000000010000000000000004");
        assert_eq!(after.name(MIB16), "000000010000000000000005");
        assert_eq!(
            archive.newest(1).unwrap().name(MIB16),
            "000000010000000000000005"
        );
    }

    #[test]
    fn an_unbroken_archive_across_a_promotion_and_a_log_boundary_has_no_gap() {
        let archive = holdings(&[
            "0000000100000000000000FE",
            "0000000100000000000000FF",
            "000000010000000100000000",
            "000000010000000100000001.partial",
            "00000002.history",
            "000000020000000100000001",
            "000000020000000100000002",
        ]);
        assert_eq!(archive.first_gap(segment("0000000100000000000000FE")), None);
        assert!(archive.histories.contains(&2));
        assert_eq!(
            archive.newest(1).unwrap().name(MIB16),
            "000000020000000100000002"
        );
    }

    #[test]
    fn a_missing_start_segment_is_a_gap() {
        let archive = holdings(&["000000010000000000000003"]);
        let start = segment("000000010000000000000002");
        assert_eq!(archive.first_gap(start).map(|(m, _)| m), Some(start));
        assert_eq!(
            Holdings::default().first_gap(start).map(|(m, _)| m),
            Some(start)
        );
    }
}
