//! Parity: two stores compared, or a store with its own checksum report, on keys, sizes and
//! drillbook's own SHA-256 (see the module documentation of `verify` for when content is
//! hashed).

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::findings::{Findings, plural, thousands};
use crate::checksums::Opened;
use crate::connect::store::{Listing, Store};
use crate::duration::human_bytes;
use crate::steps::hashing::{Job, Side, hash_all};
use crate::steps::merge::{Alongside, Merged, Pair};
use crate::steps::spill::Spill;
use crate::steps::{StepContext, StepFailure};

/// Listings may give modification times truncated to the second: an object listed within a
/// second before the report's `updated_at` may have been written after it.
const TIME_GRAIN: SignedDuration = SignedDuration::from_secs(1);

/// One key whose content is to be hashed, kept in a temporary file until the comparison of
/// keys and sizes is done: the first side's size (`None`: its checksum is `known`), the
/// second's, and the checksum trusted for the second side, if any.
#[derive(Serialize, Deserialize)]
struct ToHash {
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    first: Option<u64>,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    known: Option<String>,
}

fn spill_error(error: std::io::Error) -> StepFailure {
    StepFailure::new(format!(
        "could not keep the objects to hash in a temporary file ({}): {error}",
        std::env::temp_dir().display()
    ))
}

/// Hashes what `spill` holds: the first side in `first` (or its known checksum), the
/// second in `second` (or the checksum trusted for it). Returns the bytes read.
async fn hash_spilled(
    spill: Spill<ToHash>,
    total: u64,
    (first, second): (&Store, &Store),
    findings: &mut Findings,
    ctx: &StepContext<'_>,
) -> Result<u64, StepFailure> {
    let items = spill.read().map_err(spill_error)?;
    let jobs = items.map(|item| {
        let item = item.map_err(spill_error)?;
        let read = |store: &Store, size: u64| Side::Read {
            store: store.clone(),
            size,
        };
        Ok(match item.first {
            Some(size) => Job {
                key: item.key,
                first: read(first, size),
                second: match item.known {
                    Some(sha256) => Side::Known(sha256),
                    None => read(second, item.size),
                },
            },
            None => Job {
                key: item.key,
                first: Side::Known(item.known.unwrap_or_default()),
                second: read(second, item.size),
            },
        })
    });
    let bytes = hash_all(jobs, total, ctx, |key, a, b| {
        findings.contents.push((key, a, b))
    })
    .await?;
    findings.contents.sort();
    Ok(bytes)
}

/// `source` against `destination`: keys on one side only, sizes, and content (see the module
/// comment for when content is hashed). The listings and the destination's report are read
/// together in key order.
pub(super) async fn parity(
    (source, source_listing): (&Store, Listing),
    (destination, destination_listing): (&Store, Listing),
    report: Option<Opened>,
    deep: bool,
    ctx: &StepContext<'_>,
) -> Result<Findings, StepFailure> {
    let mut findings = Findings {
        sides: ("source", "destination"),
        ..Findings::default()
    };
    // The report's source times describe the store it was synced from: only trusted when
    // that is this source.
    let report_source = report.as_ref().map(|r| r.source.clone());
    let same_source = report_source.as_deref() == Some(source.url());
    let updated_at = report.as_ref().and_then(|r| r.updated_at);
    let mut entries = Alongside::new(
        report.map(|r| r.entries),
        format!("the checksum report of {}", destination.url()),
    );
    let mut to_hash = Spill::new().map_err(spill_error)?;
    let mut total = 0u64;
    let mut trusted = 0usize;
    let mut merged = Merged::new(source_listing, Some(destination_listing)).await?;
    while let Some(Pair { key, a, b }) = merged.next().await? {
        findings.compared += 1;
        let (object, copy) = match (a, b) {
            (Some(object), Some(copy)) => (object, copy),
            (Some(_), None) => {
                findings.missing.push(key);
                continue;
            }
            (None, _) => {
                findings.extra.push(key);
                continue;
            }
        };
        if object.size != copy.size {
            findings.sizes.push((key, object.size, copy.size));
            continue;
        }
        // What the report vouches for the destination's bytes, if it can.
        let entry = if deep {
            None
        } else {
            entries.entry_for(&key, |_| Ok(())).await?
        };
        let vouched = entry
            .filter(|entry| entry.size == copy.size && written_before(copy.modified, updated_at));
        let source_unchanged = same_source
            && vouched
                .as_ref()
                .is_some_and(|entry| entry.unchanged(object.size, object.modified));
        if source_unchanged {
            trusted += 1;
            continue;
        }
        let known = vouched.map(|entry| entry.sha256);
        total += object.size + if known.is_some() { 0 } else { copy.size };
        to_hash
            .push(&ToHash {
                key,
                first: Some(object.size),
                size: copy.size,
                known,
            })
            .map_err(spill_error)?;
    }
    let hashed = to_hash.len();
    let bytes = hash_spilled(to_hash, total, (source, destination), &mut findings, ctx).await?;
    findings.hashing.push(if deep {
        format!(
            "sha256 of both sides compared for {} {} ({} read)",
            thousands(hashed as u64),
            plural(hashed, "object", "objects"),
            human_bytes(bytes)
        )
    } else {
        let source_of_trust = match (report_source, same_source) {
            (None, _) => format!("{} has no checksum report", destination.url()),
            (Some(other), false) => format!(
                "the checksum report of {} was made from another source ({other}), so only its checksums of untouched destination objects are used",
                destination.url(),
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
/// cannot vouch for (everything with `deep`). The listing and the report are read together
/// in key order.
pub(super) async fn against_report(
    (store, listing): (&Store, Listing),
    report: Opened,
    deep: bool,
    ctx: &StepContext<'_>,
) -> Result<Findings, StepFailure> {
    let mut findings = Findings {
        against: " with the checksum report",
        sides: ("report", "store"),
        ..Findings::default()
    };
    let updated_at = report.updated_at;
    let mut entries = Alongside::new(
        Some(report.entries),
        format!("the checksum report of {}", store.url()),
    );
    let mut to_hash = Spill::new().map_err(spill_error)?;
    let (mut total, mut same_size) = (0u64, 0usize);
    let mut listing = Some(listing);
    let mut next = crate::steps::merge::pull(&mut listing).await?;
    loop {
        // The report's entries before the next object (or all that are left) are missing.
        let mut missing = Vec::new();
        let entry = match &next {
            Some(object) => {
                entries
                    .entry_for(&object.key, |key| {
                        missing.push(key);
                        Ok(())
                    })
                    .await?
            }
            None => {
                entries
                    .rest(|key| {
                        missing.push(key);
                        Ok(())
                    })
                    .await?;
                None
            }
        };
        findings.compared += missing.len();
        for key in missing {
            if !crate::checksums::is_own(&key) {
                findings.missing.push(key);
            } else {
                findings.compared -= 1;
            }
        }
        let Some(object) = next.take() else { break };
        next = crate::steps::merge::pull(&mut listing).await?;
        findings.compared += 1;
        let Some(entry) = entry else {
            findings.extra.push(object.key);
            continue;
        };
        if entry.size != object.size {
            findings.sizes.push((object.key, entry.size, object.size));
            continue;
        }
        same_size += 1;
        if deep || !written_before(object.modified, updated_at) {
            total += object.size;
            to_hash
                .push(&ToHash {
                    key: object.key,
                    first: None,
                    size: object.size,
                    known: Some(entry.sha256),
                })
                .map_err(spill_error)?;
        }
    }
    let hashed = to_hash.len();
    let bytes = hash_spilled(to_hash, total, (store, store), &mut findings, ctx).await?;
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
