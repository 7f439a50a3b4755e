//! What a sync sets out to do, decided in one pass: the source's listing, the destination's
//! and the destination's previous checksum report (and the source's own report, when the
//! source is itself a mirror) are read together in key order, and what to copy, what the
//! destination holds beyond the source, and which report entries no longer describe a
//! destination object are written to temporary files as they are found. Memory stays flat
//! whatever the number of objects.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::summary::Sample;
use crate::checksums::Entries;
use crate::connect::store::Listing;
use crate::steps::StepFailure;
use crate::steps::merge::{Alongside, Merged, Pair};
use crate::steps::spill::Spill;

/// A source object to copy, as the plan holds it.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ToCopy {
    pub(super) key: String,
    pub(super) size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) modified: Option<Timestamp>,
    /// The SHA-256 the source's own checksum report vouches for: the copy is checked
    /// against it as it is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) vouched: Option<String>,
    /// The destination holds an object of this size: when vouched for, it is hashed there
    /// first, and copied only if its bytes differ.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) present: bool,
}

/// What a sync decided.
pub(super) struct Plan {
    /// Source objects to copy, in key order.
    pub(super) copy: Spill<ToCopy>,
    pub(super) copy_count: usize,
    pub(super) copy_bytes: u64,
    /// Of the copies, those the source's report vouches for.
    pub(super) vouched: usize,
    pub(super) unchanged: usize,
    /// Destination keys absent at the source, in key order.
    pub(super) extra: Spill<String>,
    pub(super) extra_sample: Sample,
    /// Keys of the previous report whose destination object is gone or has another size.
    pub(super) dropped: Spill<String>,
    pub(super) source_objects: usize,
    pub(super) source_bytes: u64,
    pub(super) destination_objects: usize,
}

pub(super) fn spill_error(error: std::io::Error) -> StepFailure {
    StepFailure::new(format!(
        "could not keep the plan in a temporary file ({}): {error}",
        std::env::temp_dir().display()
    ))
}

/// The inputs of a plan, each read once in key order.
pub(super) struct Inputs {
    pub(super) source: Listing,
    /// `None` when the destination does not exist yet.
    pub(super) destination: Option<Listing>,
    /// The destination's previous report.
    pub(super) previous: Option<Entries>,
    /// Whether the previous report's times are this source's (it was written by a sync
    /// from it).
    pub(super) trusted: bool,
    /// The source's own report and its time.
    pub(super) source_report: Option<(Entries, Option<Timestamp>)>,
}

pub(super) async fn plan(inputs: Inputs) -> Result<Plan, StepFailure> {
    let Inputs {
        source,
        destination,
        previous,
        trusted,
        source_report,
    } = inputs;
    let mut previous = Alongside::new(previous, "the destination's checksum report".into());
    let (source_report, source_report_time) = match source_report {
        Some((entries, time)) => (Some(entries), time),
        None => (None, None),
    };
    let mut source_report = Alongside::new(source_report, "the source's checksum report".into());
    let mut plan = Plan {
        copy: Spill::new().map_err(spill_error)?,
        copy_count: 0,
        copy_bytes: 0,
        vouched: 0,
        unchanged: 0,
        extra: Spill::new().map_err(spill_error)?,
        extra_sample: Sample::default(),
        dropped: Spill::new().map_err(spill_error)?,
        source_objects: 0,
        source_bytes: 0,
        destination_objects: 0,
    };
    let mut merged = Merged::new(source, destination).await?;
    while let Some(Pair {
        key,
        a: object,
        b: copy,
    }) = merged.next().await?
    {
        plan.destination_objects += usize::from(copy.is_some());
        // The previous report's entry, while it still describes the destination's object;
        // the entries passed over describe nothing there.
        let entry = match &copy {
            Some(copy) => {
                let dropped = &mut plan.dropped;
                match previous
                    .entry_for(&key, |passed| dropped.push(&passed).map_err(spill_error))
                    .await?
                {
                    Some(entry) if entry.size == copy.size => Some(entry),
                    Some(_) => {
                        dropped.push(&key).map_err(spill_error)?;
                        None
                    }
                    None => None,
                }
            }
            None => None,
        };
        let Some(object) = object else {
            plan.extra.push(&key).map_err(spill_error)?;
            plan.extra_sample.add(&key);
            continue;
        };
        plan.source_objects += 1;
        plan.source_bytes += object.size;
        let present = copy.is_some_and(|copy| copy.size == object.size);
        let unchanged = present
            && trusted
            && entry.is_some_and(|entry| entry.unchanged(object.size, object.modified));
        if unchanged {
            plan.unchanged += 1;
            continue;
        }
        let vouched = source_report
            .entry_for(&key, |_| Ok(()))
            .await?
            .and_then(|entry| {
                entry
                    .vouches(source_report_time, object.size, object.modified)
                    .map(str::to_owned)
            });
        plan.vouched += usize::from(vouched.is_some());
        plan.copy_bytes += object.size;
        plan.copy_count += 1;
        plan.copy
            .push(&ToCopy {
                key,
                size: object.size,
                modified: object.modified,
                vouched,
                present,
            })
            .map_err(spill_error)?;
    }
    // What the report holds past the destination's last key describes nothing there.
    let dropped = &mut plan.dropped;
    previous
        .rest(|passed| dropped.push(&passed).map_err(spill_error))
        .await?;
    Ok(plan)
}
