//! `assess` over a WAL archive (a store holding `base/` backups and `wal/`): the newest
//! complete base backup, the archive's continuity from that backup's start segment on every
//! timeline after it (a hole is named and fails the step: a restore would stop there), and the
//! RPO from the last commit the archive holds (`wal::last_commit`), not from the newest
//! segment's upload time.

use jiff::Timestamp;

use super::{Assess, Chosen, archived, none_found};
use crate::connect::pg_tools;
use crate::connect::store::{ObjectInfo, Store};
use crate::duration::human_bytes;
use crate::steps::{Done, StepContext, StepFailure};
use crate::wal::base::{BaseManifest, base_candidates, base_manifest_key, time_of};
use crate::wal::continuity::Holdings;
use crate::wal::last_commit::last_commit;

pub(super) async fn assess(
    step: &Assess,
    ctx: &StepContext<'_>,
    store: &Store,
    listing: &[ObjectInfo],
    wanted: Option<String>,
    before: Option<Timestamp>,
) -> Result<Done, StepFailure> {
    let mut candidates = base_candidates(listing);
    if let Some(key) = &wanted {
        candidates.retain(|c| &c.key == key);
    }
    // A backup that started before `before` may have ended after it, and restores to no
    // earlier moment than its end: the filter reads manifests (below), and keys only prune.
    if let Some(before) = before {
        candidates.retain(|c| time_of(&c.key).is_some_and(|at| at < before));
    }
    let mut evidence = Vec::new();
    let mut chosen = None;
    for candidate in &candidates {
        if !candidate.has_manifest {
            evidence.push(format!(
                "skipped {}: no manifest (an interrupted or unfinished base backup)",
                candidate.key
            ));
            continue;
        }
        let bytes = match store.get_bytes(&base_manifest_key(&candidate.key)).await {
            Ok(bytes) => bytes,
            // A manifest that could not be read says nothing about its backup: the step
            // fails (and its retry reads again) rather than choose an older one.
            Err(e) => {
                let mut failure = StepFailure::of(e);
                failure.evidence = evidence;
                return Err(failure);
            }
        };
        match BaseManifest::parse(&bytes) {
            Err(why) => evidence.push(format!("skipped {}: {why}", candidate.key)),
            Ok(manifest) if manifest.size != candidate.size => evidence.push(format!(
                "skipped {}: size mismatch: the manifest says {} bytes, the store holds {}",
                candidate.key, manifest.size, candidate.size
            )),
            Ok(manifest) if before.is_some_and(|before| manifest.finished_at >= before) => evidence
                .push(format!(
                    "skipped {}: it ended at {}, after {}",
                    candidate.key,
                    manifest.finished_at,
                    before.map(|b| b.to_string()).unwrap_or_default()
                )),
            Ok(manifest) => {
                chosen = Some(manifest);
                break;
            }
        }
    }
    let Some(manifest) = chosen else {
        return Err(none_found("base backup", store, &wanted, before, evidence));
    };
    evidence.push(format!(
        "chose {}: ended {}, {}, sha256 {}; needs the WAL from {}",
        manifest.key,
        manifest.finished_at,
        human_bytes(manifest.size),
        manifest.sha256,
        manifest.start_segment
    ));

    let size = manifest.wal_segment_size;
    let start = manifest.first_segment().ok_or_else(|| {
        StepFailure::permanent(format!(
            "{}'s manifest names no start segment",
            manifest.key
        ))
    })?;
    let holdings = Holdings::of(listing.iter().map(|o| o.key.as_str()), size);
    if let Some((missing, after)) = holdings.first_gap(start) {
        let mut failure = StepFailure::new(if missing == after {
            format!(
                "the archive in {} lacks {}, the first segment {} needs: it cannot be restored",
                store.url(),
                start.name(size),
                manifest.key
            )
        } else {
            format!(
                "the archive in {} lacks {} (the next archived is {}): a restore from {} stops there",
                store.url(),
                missing.name(size),
                after.name(size),
                manifest.key
            )
        });
        failure.evidence = evidence;
        return Err(failure);
    }
    let newest = holdings
        .newest(start.timeline)
        .map(|s| s.name(size))
        .unwrap_or_default();
    let timelines: Vec<String> = holdings
        .segments
        .range(start.timeline..)
        .map(|(timeline, _)| timeline.to_string())
        .collect();
    evidence.push(format!(
        "the archive runs unbroken from {} to {newest} (timeline{} {}{})",
        manifest.start_segment,
        if timelines.len() == 1 { "" } else { "s" },
        timelines.join(", "),
        if holdings.histories.is_empty() {
            String::new()
        } else {
            format!(
                "; history files for {}",
                holdings
                    .histories
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    ));

    let pg_waldump =
        pg_tools::find("pg_waldump", manifest.server_major()).map_err(StepFailure::of)?;
    let found = super::with_scratch(ctx, |scratch| async move {
        last_commit(store, &holdings, start, size, &pg_waldump.path, &scratch).await
    })
    .await?
    .map_err(StepFailure::new)?;
    archived(
        step,
        ctx,
        found,
        Chosen {
            backup: &manifest.key,
            ended: manifest.finished_at,
            bytes: manifest.size,
            sha256: &manifest.sha256,
        },
        evidence,
    )
}
