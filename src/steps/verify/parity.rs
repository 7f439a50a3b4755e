//! Parity: two stores compared, or a store with its own checksum report, on keys, sizes and
//! drillbook's own SHA-256 (see the module documentation of `verify` for when content is
//! hashed).

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use super::findings::{Findings, plural, thousands};
use crate::checksums::{ChecksumReport, is_own};
use crate::connect::store::{ObjectInfo, Store};
use crate::duration::human_bytes;
use crate::steps::hashing::{Job, Side, hash_all};
use crate::steps::{StepContext, StepFailure};

/// Listings may give modification times truncated to the second: an object listed within a
/// second before the report's `updated_at` may have been written after it.
const TIME_GRAIN: SignedDuration = SignedDuration::from_secs(1);

/// `source` against `destination`: keys on one side only, sizes, and content (see the module
/// comment for when content is hashed).
pub(super) async fn parity(
    (source, source_objects): (&Store, &[ObjectInfo]),
    (destination, destination_objects): (&Store, &[ObjectInfo]),
    report: Option<&ChecksumReport>,
    deep: bool,
    ctx: &StepContext<'_>,
) -> Result<Findings, StepFailure> {
    let mut findings = Findings {
        sides: ("source", "destination"),
        ..Findings::default()
    };
    let sources: BTreeMap<&str, &ObjectInfo> = data(source_objects);
    let destinations: BTreeMap<&str, &ObjectInfo> = data(destination_objects);
    findings.extra = destinations
        .keys()
        .filter(|key| !sources.contains_key(*key))
        .map(|key| key.to_string())
        .collect();
    findings.compared = sources.len() + findings.extra.len();
    // The report's source times describe the store it was synced from: only trusted when
    // that is this source.
    let same_source = report.is_some_and(|r| r.source == source.url());
    let updated_at = report.and_then(|r| r.updated_at);
    let mut jobs = Vec::new();
    let mut trusted = 0usize;
    for (key, object) in &sources {
        let Some(copy) = destinations.get(key) else {
            findings.missing.push(key.to_string());
            continue;
        };
        if object.size != copy.size {
            findings
                .sizes
                .push((key.to_string(), object.size, copy.size));
            continue;
        }
        // What the report vouches for the destination's bytes, if it can.
        let vouched = (!deep)
            .then_some(report)
            .flatten()
            .and_then(|r| r.objects.get(*key))
            .filter(|entry| entry.size == copy.size && written_before(copy.modified, updated_at));
        let source_unchanged = vouched.is_some()
            && same_source
            && report.is_some_and(|r| r.unchanged(key, object.size, object.modified).is_some());
        if source_unchanged {
            trusted += 1;
            continue;
        }
        jobs.push(Job {
            key: key.to_string(),
            first: Side::Read {
                store: source.clone(),
                size: object.size,
            },
            second: match vouched {
                Some(entry) => Side::Known(entry.sha256.clone()),
                None => Side::Read {
                    store: destination.clone(),
                    size: copy.size,
                },
            },
        });
    }
    let hashed = jobs.len();
    let (contents, bytes) = hash_all(jobs, ctx).await?;
    findings.contents = contents;
    findings.hashing.push(if deep {
        format!(
            "sha256 of both sides compared for {} {} ({} read)",
            thousands(hashed as u64),
            plural(hashed, "object", "objects"),
            human_bytes(bytes)
        )
    } else {
        let source_of_trust = match (report, same_source) {
            (None, _) => format!("{} has no checksum report", destination.url()),
            (Some(_), false) => format!(
                "the checksum report of {} was made from another source ({}), so only its checksums of untouched destination objects are used",
                destination.url(),
                report.map_or("", |r| r.source.as_str())
            ),
            (Some(_), true) => format!(
                "{} trusted from the checksum report of {}",
                thousands(trusted as u64),
                destination.url()
            ),
        };
        format!(
            "sha256 compared for {} {} ({} read); {source_of_trust}",
            thousands(hashed as u64),
            plural(hashed, "object", "objects"),
            human_bytes(bytes)
        )
    });
    Ok(findings)
}

/// `store` against its own checksum report: keys, sizes, and content for what the report
/// cannot vouch for (everything with `deep`).
pub(super) async fn against_report(
    store: &Store,
    stored: &[ObjectInfo],
    report: &ChecksumReport,
    deep: bool,
    ctx: &StepContext<'_>,
) -> Result<Findings, StepFailure> {
    let mut findings = Findings {
        against: " with the checksum report",
        sides: ("report", "store"),
        ..Findings::default()
    };
    let objects = data(stored);
    let entries: BTreeMap<&str, _> = report
        .objects
        .iter()
        .filter(|(key, _)| !is_own(key))
        .map(|(key, entry)| (key.as_str(), entry))
        .collect();
    findings.extra = objects
        .keys()
        .filter(|key| !entries.contains_key(*key))
        .map(|key| key.to_string())
        .collect();
    findings.compared = entries.len() + findings.extra.len();
    let mut jobs = Vec::new();
    for (key, entry) in &entries {
        let Some(object) = objects.get(key) else {
            findings.missing.push(key.to_string());
            continue;
        };
        if entry.size != object.size {
            findings
                .sizes
                .push((key.to_string(), entry.size, object.size));
            continue;
        }
        if deep || !written_before(object.modified, report.updated_at) {
            jobs.push(Job {
                key: key.to_string(),
                first: Side::Known(entry.sha256.clone()),
                second: Side::Read {
                    store: store.clone(),
                    size: object.size,
                },
            });
        }
    }
    let hashed = jobs.len();
    let (contents, bytes) = hash_all(jobs, ctx).await?;
    findings.contents = contents;
    let same_size = entries.len() - findings.missing.len() - findings.sizes.len();
    findings.hashing.push(format!(
        "sha256 compared with the report for {} {} ({} read){}",
        thousands(hashed as u64),
        plural(hashed, "object", "objects"),
        human_bytes(bytes),
        if deep {
            String::new()
        } else {
            format!(
                "; {} untouched since the report was written, their checksums trusted (`deep: true` re-hashes them)",
                thousands((same_size - hashed) as u64)
            )
        }
    ));
    Ok(findings)
}

/// The data objects of a listing by key: drillbook's own keys are never compared.
fn data(objects: &[ObjectInfo]) -> BTreeMap<&str, &ObjectInfo> {
    objects
        .iter()
        .filter(|o| !is_own(&o.key))
        .map(|o| (o.key.as_str(), o))
        .collect()
}

/// Whether an object was certainly last written before the report was: then the report's
/// checksum describes it. Unknown times mean no.
fn written_before(modified: Option<Timestamp>, updated_at: Option<Timestamp>) -> bool {
    match (modified, updated_at) {
        (Some(modified), Some(updated_at)) => modified
            .checked_add(TIME_GRAIN)
            .is_ok_and(|end| end <= updated_at),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_objects_certainly_written_before_the_report_are_vouched_for() {
        let at = |text: &str| Some(text.parse::<Timestamp>().expect("time"));
        let report = at("2026-11-24T02:00:00.500Z");
        assert!(written_before(at("2026-11-24T01:59:59Z"), report));
        assert!(written_before(at("2026-11-24T01:59:59.500Z"), report));
        // Listed as 02:00:00, it may have been written at 02:00:00.900.
        assert!(!written_before(at("2026-11-24T02:00:00Z"), report));
        assert!(!written_before(at("2026-11-24T02:00:01Z"), report));
        assert!(!written_before(None, report));
        assert!(!written_before(at("2026-11-24T01:00:00Z"), None));
    }
}
