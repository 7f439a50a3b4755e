//! `sync`: mirror a store/prefix to another, with a checksum report.
//!
//! Both sides are listed; a source object is copied unless the destination has it with the
//! same size and the checksum report says it came from the source object of this very size
//! and modification time. Copies stream from the source through SHA-256 into the
//! destination, many at once, with the memory of all uploads in flight bounded. The report is
//! written into the destination as the copy goes, so a sync killed halfway and run again
//! copies only what it had not finished.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::hashing::{Job, Side, hash_all, sha256_of};
use super::{Done, Progress, StepContext, StepFailure, Unit};
use crate::checksums::{ChecksumReport, Entry, REPORT_KEY, is_own};
use crate::connect::store::{ObjectInfo, PutOptions, Store};
use crate::duration::{ByteSize, human_bytes};

/// Copies what is missing or different from `source` to `destination` (S3 or directories,
/// either way), many transfers in flight, and writes a checksum report (SHA-256, size, key of
/// every object) into the destination. Resumable: a re-run copies only what is still missing.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sync {
    pub source: String,
    pub destination: String,
    /// Remove destination objects absent at the source. Never deletes at the source.
    #[serde(default)]
    pub delete: bool,
    /// Allow `delete` when the source lists empty (refused by default: an empty source during
    /// an incident is a reason to stop, not to wipe the mirror).
    #[serde(default)]
    pub allow_empty_source: bool,
    /// Transfers in flight (default sized for throughput).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Multipart part size for large objects (default 16MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_size: Option<ByteSize>,
    /// Objects of this size and larger go to S3 as multipart uploads, smaller ones as one
    /// request each (default 200MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipart_threshold: Option<ByteSize>,
    /// Copy server-side (CopyObject) when both stores are on the same S3 server (default);
    /// `false` reads every object through drillbook (servers without a working CopyObject).
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub server_side_copy: bool,
    /// S3 storage class for the copies, e.g. `GLACIER_IR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

fn yes() -> bool {
    true
}

fn is_yes(value: &bool) -> bool {
    *value
}

/// Transfers in flight by default: small objects are bound by request latency, not bandwidth,
/// so many at once.
const DEFAULT_CONCURRENCY: u32 = 32;
const DEFAULT_PART_SIZE: u64 = 16 << 20;
/// S3's limits on a part's size.
const MIN_PART_SIZE: u64 = 5 << 20;
const MAX_PART_SIZE: u64 = 5 << 30;
/// What all uploads in flight may buffer at once, whatever the concurrency and the objects'
/// sizes: a large object's parts in flight take most of it, small objects fill the rest.
const MEMORY_BUDGET: u64 = 96 << 20;
/// The memory budget's unit (a semaphore permit).
const MEMORY_UNIT: u64 = 1 << 10;
/// The report is written after this many copies, or this long, whichever comes first...
const CHECKPOINT_OBJECTS: usize = 500;
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);
/// ... but not more often than this many times the last write took, so a huge report costs
/// the copy at most a tenth of its time.
const CHECKPOINT_SPACING: u32 = 10;
/// How long a cancelled sync may spend saving what it copied and aborting its uploads.
const CANCEL_GRACE: Duration = Duration::from_secs(5);
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// Up to this size a copy between stores on one server is read through (one GET, one PUT)
/// rather than made by the server, unless the server gives the copy's SHA-256: otherwise the
/// copy must be read back to hash it, a second request after the first, where reading through
/// overlaps the two. Larger objects are copied by the server and read back, so their bytes
/// cross the network once instead of twice.
const SMALL_OBJECT: u64 = 8 << 20;
/// Tries per object, the next one after `COPY_BACKOFF` times the tries so far.
const COPY_ATTEMPTS: u32 = 3;
const COPY_BACKOFF: Duration = Duration::from_millis(500);
/// No new transfers start after this many failures: they usually share a cause.
const MAX_FAILURES: usize = 10;
/// Keys listed one by one in the evidence; the counts cover all of them.
const SHOWN: usize = 10;
/// Listings may give modification times truncated to the second: an object written within
/// a second after the one copied could show the same time (and size). Such a fresh copy is
/// recorded without its time, so the next sync compares it again instead of trusting it.
const TIME_GRAIN: SignedDuration = SignedDuration::from_secs(1);

impl super::StepKind for Sync {
    const NAME: &'static str = "sync";
    const OUTPUTS: &'static [&'static str] = &[
        "copied",
        "deleted",
        "unchanged",
        "bytes",
        "objects",
        "report",
    ];
    const IDEMPOTENT: bool = true;
    const SCALES_WITH_SIZE: bool = true;

    fn summary(&self) -> String {
        format!("mirror {} to {}", self.source, self.destination)
    }

    fn check(
        &self,
        node: &crate::loader::node::Node,
        out: &mut Vec<crate::diagnostic::Diagnostic>,
    ) {
        if self.concurrency == Some(0) {
            out.push(super::at_key(
                node,
                "concurrency",
                "`concurrency` is at least 1",
            ));
        }
        if let Some(size) = self.part_size
            && !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&size.0)
        {
            out.push(super::at_key(
                node,
                "part_size",
                format!("`part_size` is from 5MiB to 5GiB (S3's limits on a part), not {size}"),
            ));
        }
        if let Some(size) = self.multipart_threshold
            && !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&size.0)
        {
            out.push(super::at_key(
                node,
                "multipart_threshold",
                format!(
                    "`multipart_threshold` is from 5MiB to 5GiB (S3's limits on a part and on one request), not {size}"
                ),
            ));
        }
    }

    async fn run(&self, ctx: &StepContext<'_>) -> Result<Done, StepFailure> {
        let render = |text: &str| (ctx.render)(text).map_err(StepFailure::new);
        let source_text = render(&self.source)?;
        let destination_text = render(&self.destination)?;
        let storage_class = match &self.storage_class {
            Some(class) => Some(render(class)?.trim().to_owned()).filter(|c| !c.is_empty()),
            None => None,
        };
        // The copy phase watches the token itself, to save its checkpoint before stopping.
        let (source, destination) = cancellable(&ctx.cancel, async {
            tokio::try_join!(Store::open(&source_text), Store::open(&destination_text))
                .map_err(StepFailure::of)
        })
        .await?;
        if overlap(&source, &source_text, &destination, &destination_text) {
            return Err(StepFailure::new(format!(
                "the source {} and the destination {} overlap: a mirror inside its source (or a source inside its mirror) would copy itself",
                source.url(),
                destination.url()
            )));
        }
        let mirror = Mirror {
            step: self,
            ctx,
            source,
            destination,
            storage_class,
            evidence: Vec::new(),
        };
        mirror.run().await
    }
}

/// Runs `work` unless the step is cancelled first (the work is then dropped).
async fn cancellable<T>(
    cancel: &CancellationToken,
    work: impl Future<Output = Result<T, StepFailure>>,
) -> Result<T, StepFailure> {
    tokio::select! {
        result = work => result,
        _ = cancel.cancelled() => Err(StepFailure::cancelled()),
    }
}

/// Whether one store lies inside the other: the same bucket (and server) or directory, and
/// one prefix within the other.
fn overlap(a: &Store, a_text: &str, b: &Store, b_text: &str) -> bool {
    let place = |store: &Store, text: &str| -> String {
        let mut place = if store.is_local() {
            let path = store.url().strip_prefix("file://").unwrap_or(store.url());
            std::path::absolute(path)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| path.to_owned())
        } else {
            // The same bucket name on another server is another bucket.
            let query = text.split_once('?').map_or("", |(_, query)| query);
            format!("{query} {}", store.url())
        };
        if !place.ends_with('/') {
            place.push('/');
        }
        place
    };
    if a.is_local() != b.is_local() {
        return false;
    }
    let (a, b) = (place(a, a_text), place(b, b_text));
    a.starts_with(&b) || b.starts_with(&a)
}

/// What a sync decided from the two listings and the previous report.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    /// Source objects to copy, largest first (so they do not trail at the end).
    copy: Vec<ObjectInfo>,
    unchanged: usize,
    /// Destination keys absent at the source, sorted.
    extra: Vec<String>,
    /// The previous report's entries that still describe a destination object.
    report: BTreeMap<String, Entry>,
}

/// `trusted`: whether the previous report's times are those of this source (it was written
/// by a sync from it).
fn plan(
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

struct Mirror<'a, 'c> {
    step: &'a Sync,
    ctx: &'a StepContext<'c>,
    source: Store,
    destination: Store,
    storage_class: Option<String>,
    evidence: Vec<String>,
}

/// The SHA-256 the source's own checksum report vouches for, per object to copy (a mirror
/// being restored from): a copy whose bytes differ fails before its last byte is written.
type Vouched = HashMap<String, String>;

/// What the copy phase did.
#[derive(Default)]
struct Copied {
    keys: Vec<String>,
    bytes: u64,
    /// Listed at the source but gone when read: not copied, not a failure.
    vanished: Vec<String>,
    /// Copies whose time was too fresh to trust next time (see [`TIME_GRAIN`]).
    fresh: usize,
    failures: Vec<(String, String)>,
    /// Of the failures, those damaged at the source (see [`Outcome::Damaged`]).
    damaged: usize,
    /// Of the copies, those made by the server.
    server_side: usize,
    elapsed: Duration,
}

impl Mirror<'_, '_> {
    async fn run(mut self) -> Result<Done, StepFailure> {
        let cancel = self.ctx.cancel.clone();
        let listed_at = Instant::now();
        let destination_exists = cancellable(&cancel, async {
            self.destination.exists().await.map_err(StepFailure::of)
        })
        .await?;
        let (source_objects, destination_objects) = cancellable(&cancel, async {
            let destination = async {
                if destination_exists {
                    self.destination.list("").await
                } else {
                    Ok(Vec::new())
                }
            };
            tokio::try_join!(self.source.list(""), destination).map_err(StepFailure::of)
        })
        .await?;
        let source_objects: Vec<ObjectInfo> = source_objects
            .into_iter()
            .filter(|object| !is_own(&object.key))
            .collect();
        let destination_objects: Vec<ObjectInfo> = destination_objects
            .into_iter()
            .filter(|object| !is_own(&object.key))
            .collect();
        let listed = listed_at.elapsed();

        // Before anything is touched: an empty source is a reason to stop, not to wipe.
        if self.step.delete
            && source_objects.is_empty()
            && !destination_objects.is_empty()
            && !self.step.allow_empty_source
        {
            return Err(StepFailure::new(format!(
                "the source {} lists no objects: refusing to delete the mirror's {} objects in {} (set allow_empty_source: true if the source is meant to be empty)",
                self.source.url(),
                destination_objects.len(),
                self.destination.url()
            )));
        }

        let source_bytes: u64 = source_objects.iter().map(|o| o.size).sum();
        self.evidence.push(format!(
            "source {}: {} objects, {}; destination {}: {} objects before the sync{} (listed in {:.1} s)",
            self.source.url(),
            source_objects.len(),
            human_bytes(source_bytes),
            self.destination.url(),
            destination_objects.len(),
            if destination_exists { "" } else { " (a new directory)" },
            listed.as_secs_f64()
        ));
        let (previous, had_report) = if destination_exists {
            cancellable(&cancel, self.previous_report()).await?
        } else {
            (ChecksumReport::new(self.source.url()), false)
        };
        let trusted = previous.source == self.source.url();
        if had_report && !trusted {
            self.evidence.push(format!(
                "the destination's checksum report was written by a sync from {}, not {}: its entries are not trusted, every object is copied again",
                previous.source,
                self.source.url()
            ));
        }
        let mut plan = plan(&source_objects, &destination_objects, &previous, trusted);
        let mut report = ChecksumReport {
            objects: plan.report.clone(),
            ..ChecksumReport::new(self.source.url())
        };
        if destination_exists && !plan.copy.is_empty() {
            // What an earlier, killed sync was uploading (only drillbook's own uploads: other
            // programs may be writing to this bucket).
            let removed = cancellable(&cancel, async {
                self.destination
                    .remove_own_incomplete("")
                    .await
                    .map_err(StepFailure::of)
            })
            .await?;
            for removed in removed {
                self.evidence.push(format!(
                    "removed what an interrupted upload left: {removed}"
                ));
            }
        }
        if let Some(class) = &self.storage_class {
            self.evidence.push(if self.destination.is_local() {
                format!(
                    "storage_class {class} ignored: the destination is a local directory, which has no storage classes"
                )
            } else {
                format!("copies stored as storage class {class}")
            });
        }

        let vouched = cancellable(&cancel, self.vouched(&plan.copy)).await?;
        let confirmed = cancellable(
            &cancel,
            self.confirm(&mut plan, &destination_objects, &vouched, &mut report),
        )
        .await?;
        let copied = self.copy(&plan.copy, vouched, &mut report).await?;
        let mut deleted = Vec::new();
        let mut failures = copied.failures.clone();
        if !plan.extra.is_empty() {
            if !self.step.delete {
                self.evidence.push(format!(
                    "kept, though absent at the source (delete: false) {}",
                    first(&plan.extra)
                ));
            } else if !copied.failures.is_empty() {
                // As rclone does: a sync that could not copy everything deletes nothing.
                self.evidence.push(format!(
                    "{} destination objects absent at the source were not deleted, because copies failed",
                    plan.extra.len()
                ));
            } else {
                let (gone, failed) = self.delete(&plan.extra).await?;
                for key in &gone {
                    report.objects.remove(key);
                }
                deleted = gone;
                failures.extend(failed);
            }
        }

        let changed =
            !had_report || report.objects != previous.objects || report.source != previous.source;
        let mut report_error = None;
        // Written even when nothing changed: its time says when the mirror was last brought
        // up to date, which is what a freshness check of a quiet bucket's mirror must see.
        let report_line = if changed || failures.is_empty() {
            match cancellable(&cancel, async {
                Ok(write_report(&self.destination, &mut report).await)
            })
            .await?
            {
                Ok(_) => format!(
                    "checksum report {REPORT_KEY} in {}: {} objects",
                    self.destination.url(),
                    report.objects.len()
                ),
                Err(error) => {
                    let line = format!("the checksum report could not be written: {error}");
                    report_error = Some(line.clone());
                    line
                }
            }
        } else {
            format!(
                "checksum report {REPORT_KEY} in {}: unchanged, {} objects",
                self.destination.url(),
                report.objects.len()
            )
        };

        let mut evidence = std::mem::take(&mut self.evidence);
        let seconds = copied.elapsed.as_secs_f64().max(0.001);
        let objects_per_second = copied.keys.len() as f64 / seconds;
        evidence.push(format!(
            "copied {} objects ({}) in {:.1} s: {:.1} MiB/s, {:.*} objects/s",
            copied.keys.len(),
            human_bytes(copied.bytes),
            copied.elapsed.as_secs_f64(),
            copied.bytes as f64 / f64::from(1 << 20) / seconds,
            if objects_per_second < 10.0 { 1 } else { 0 },
            objects_per_second
        ));
        if copied.server_side > 0 {
            evidence.push(format!(
                "{} of the copies were made by the server (CopyObject: both stores are on it), each read back to hash it unless the server gave its SHA-256 (small objects are read through unless it does)",
                copied.server_side
            ));
        }
        evidence.push(format!(
            "unchanged: {} objects (same size, and the same modification time as when the report recorded them{})",
            plan.unchanged,
            if confirmed > 0 {
                format!(
                    "; {confirmed} of them re-hashed in the destination and found to be the bytes the source's report records"
                )
            } else {
                String::new()
            }
        ));
        evidence.push(format!("deleted: {} objects", deleted.len()));
        let mut copied_keys = copied.keys.clone();
        copied_keys.sort();
        if !copied_keys.is_empty() {
            evidence.push(format!("copied {}", first(&copied_keys)));
        }
        if !deleted.is_empty() {
            deleted.sort();
            evidence.push(format!("deleted {}", first(&deleted)));
        }
        if !copied.vanished.is_empty() {
            evidence.push(format!(
                "{} objects disappeared from the source between listing and copying: {}",
                copied.vanished.len(),
                first(&copied.vanished)
            ));
        }
        let untried = plan
            .copy
            .len()
            .saturating_sub(copied.keys.len() + copied.vanished.len() + copied.failures.len());
        if untried > 0 {
            evidence.push(format!(
                "after {MAX_FAILURES} failures no new transfer was started: {untried} objects were not tried"
            ));
        }
        if copied.fresh > 0 {
            evidence.push(format!(
                "{} objects were modified less than {} s before they were copied: the next sync compares them again (a later change in the same second could keep their time and size)",
                copied.fresh,
                TIME_GRAIN.as_secs()
            ));
        }
        evidence.push(report_line);

        let mut outputs = BTreeMap::new();
        outputs.insert("copied".into(), copied.keys.len().into());
        outputs.insert("deleted".into(), deleted.len().into());
        outputs.insert("unchanged".into(), plan.unchanged.into());
        outputs.insert("bytes".into(), copied.bytes.into());
        outputs.insert("objects".into(), source_objects.len().into());
        outputs.insert("report".into(), REPORT_KEY.into());
        let message = match (failures.first(), report_error) {
            (None, None) => return Ok(Done { outputs, evidence }),
            (Some((key, error)), _) => format!(
                "{} of {} objects could not be synced{} (a re-run copies only what is missing); the first, {key}: {error}",
                failures.len(),
                plan.copy.len() + plan.extra.len(),
                if untried > 0 {
                    format!(", {untried} were not tried")
                } else {
                    String::new()
                },
            ),
            (None, Some(report_error)) => report_error,
        };
        let mut failure = StepFailure::new(message);
        // Only damaged objects failed: another attempt would read the same bytes.
        failure.permanent = copied.damaged > 0
            && copied.damaged == copied.failures.len()
            && copied.failures.len() == failures.len();
        if failure.permanent {
            evidence.push(format!(
                "not tried again: the {} damaged object(s) would read the same; repair them in {} (or remove them from its checksum report) first",
                copied.damaged,
                self.source.url()
            ));
        }
        evidence.extend(
            failures
                .iter()
                .take(SHOWN)
                .map(|(key, error)| format!("failed: {key}: {error}")),
        );
        failure.evidence = evidence;
        failure.outputs = outputs;
        Err(failure)
    }

    /// The destination's report, or an empty one (with a note when it was unreadable).
    async fn previous_report(&mut self) -> Result<(ChecksumReport, bool), StepFailure> {
        let empty = ChecksumReport::new(self.source.url());
        let bytes = match self.destination.get_bytes(REPORT_KEY).await {
            Ok(bytes) => bytes,
            Err(error) if error.is_not_found() => {
                self.evidence.push(format!(
                    "no checksum report in {} yet: every object is copied",
                    self.destination.url()
                ));
                return Ok((empty, false));
            }
            Err(error) => {
                self.evidence.push(format!(
                    "the previous checksum report could not be read ({error}): every object is copied and a new report written"
                ));
                return Ok((empty, false));
            }
        };
        match ChecksumReport::parse(&bytes) {
            Ok(report) => Ok((report, true)),
            Err(error) => {
                self.evidence.push(format!(
                    "the previous checksum report {REPORT_KEY} is unreadable ({error}): every object is copied and a new report written"
                ));
                Ok((empty, false))
            }
        }
    }

    /// What the source's own checksum report (when the source is itself a mirror) vouches
    /// for among `objects`.
    async fn vouched(&mut self, objects: &[ObjectInfo]) -> Result<Vouched, StepFailure> {
        if objects.is_empty() {
            return Ok(Vouched::new());
        }
        let report = match self.source.get_bytes(REPORT_KEY).await {
            Ok(bytes) => match ChecksumReport::parse(&bytes) {
                Ok(report) => report,
                Err(error) => {
                    self.evidence.push(format!(
                        "the source's checksum report {REPORT_KEY} is unreadable ({error}): copies are not checked against it"
                    ));
                    return Ok(Vouched::new());
                }
            },
            Err(error) if error.is_not_found() => return Ok(Vouched::new()),
            Err(error) => return Err(StepFailure::of(error)),
        };
        let vouched: Vouched = objects
            .iter()
            .filter_map(|object| {
                report
                    .vouches(&object.key, object.size, object.modified)
                    .map(|sha256| (object.key.clone(), sha256.to_owned()))
            })
            .collect();
        self.evidence.push(format!(
            "the source's checksum report vouches for {} of the {} objects to copy: each is checked against it as it is read, and one that differs is not written",
            vouched.len(),
            objects.len()
        ));
        Ok(vouched)
    }

    /// Takes out of `plan.copy` the objects the destination already holds with the bytes the
    /// source's report vouches for (hashed in the destination): a bucket restored from its
    /// mirror has no report of its own, and reading it is cheaper than copying everything
    /// back. Returns how many.
    async fn confirm(
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

    /// Copies `objects` with `concurrency` transfers in flight, recording each copy in
    /// `report` and writing it to the destination now and then.
    async fn copy(
        &mut self,
        objects: &[ObjectInfo],
        vouched: Vouched,
        report: &mut ChecksumReport,
    ) -> Result<Copied, StepFailure> {
        let mut copied = Copied::default();
        let started = Instant::now();
        let total: u64 = objects.iter().map(|o| o.size).sum();
        let concurrency = self.step.concurrency.unwrap_or(DEFAULT_CONCURRENCY).max(1) as usize;
        let server_side = self.step.server_side_copy && self.destination.same_server(&self.source);
        let transfers = Arc::new(Transfers {
            source: self.source.clone(),
            destination: self.destination.clone(),
            options: PutOptions {
                part_size: Some(
                    self.step
                        .part_size
                        .map_or(DEFAULT_PART_SIZE, |size| size.0)
                        .clamp(MIN_PART_SIZE, MAX_PART_SIZE),
                ),
                storage_class: self.storage_class.clone(),
                size_hint: None,
                multipart_threshold: self.step.multipart_threshold.map(|size| size.0),
            },
            objects: objects.to_vec(),
            vouched,
            server_side,
            server_hashes: AtomicBool::new(false),
            probed: AtomicBool::new(false),
            next: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            stored: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            memory: Semaphore::new((MEMORY_BUDGET / MEMORY_UNIT) as usize),
            cancel: self.ctx.cancel.clone(),
        });
        let (sender, mut outcomes) = mpsc::unbounded_channel();
        let mut workers = JoinSet::new();
        for _ in 0..concurrency.min(objects.len()) {
            workers.spawn(transfer_worker(transfers.clone(), sender.clone()));
        }
        drop(sender);

        let progress = || {
            (self.ctx.progress)(Progress {
                done: transfers.stored.load(Ordering::Relaxed),
                total: Some(total),
                unit: Unit::Bytes,
                objects: Some((
                    transfers.finished.load(Ordering::Relaxed),
                    transfers.objects.len() as u64,
                )),
            })
        };
        progress();
        let mut ticks = tokio::time::interval(PROGRESS_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut checkpoint = Checkpoint::new();
        let cancel = self.ctx.cancel.clone();
        loop {
            tokio::select! {
                outcome = outcomes.recv() => {
                    let Some(outcome) = outcome else { break };
                    let before = copied.keys.len();
                    copied.record(&transfers.objects, outcome, report);
                    checkpoint.copied += copied.keys.len() - before;
                    if copied.failures.len() >= MAX_FAILURES {
                        transfers.stop.store(true, Ordering::Relaxed);
                    }
                },
                _ = ticks.tick() => progress(),
                _ = cancel.cancelled() => {
                    // No new transfers. Those in flight see the cancellation as a failed read
                    // of their source: an S3 upload then waits for its parts in flight and
                    // aborts (dropped instead, a part the server was still receiving could
                    // land after the abort). Past the grace period they are dropped anyway.
                    // What finished is saved for the next run.
                    transfers.stop.store(true, Ordering::Relaxed);
                    let grace = tokio::time::Instant::now() + CANCEL_GRACE;
                    let finish = async {
                        while let Some(outcome) = outcomes.recv().await {
                            copied.record(&transfers.objects, outcome, report);
                        }
                    };
                    let finished = tokio::time::timeout_at(grace, finish).await.is_ok();
                    workers.abort_all();
                    while workers.join_next().await.is_some() {}
                    let destination = &self.destination;
                    let save = async {
                        let _ = write_report(destination, report).await;
                        if !finished {
                            // The uploads dropped above are aborted by tasks of their own:
                            // see them through before the process ends.
                            let _ = destination.remove_own_incomplete("").await;
                        }
                    };
                    let _ = tokio::time::timeout(CANCEL_GRACE, save).await;
                    return Err(StepFailure::cancelled());
                },
            }
            if checkpoint.due() {
                // A failed checkpoint only costs a re-run some copying; the final write
                // decides the step.
                match write_report(&self.destination, report).await {
                    Ok(took) => checkpoint.written(took),
                    Err(error) => {
                        if !checkpoint.failed {
                            self.evidence.push(format!(
                                "the checksum report could not be saved during the copy: {error}"
                            ));
                        }
                        checkpoint.failed = true;
                        checkpoint.written(Duration::ZERO);
                    }
                }
            }
        }
        while let Some(joined) = workers.join_next().await {
            if let Err(error) = joined {
                copied
                    .failures
                    .push((String::new(), format!("a transfer stopped: {error}")));
            }
        }
        progress();
        copied.elapsed = started.elapsed();
        Ok(copied)
    }

    /// Deletes `keys` from the destination, `concurrency` at a time. Returns the keys deleted
    /// and the failures.
    async fn delete(
        &self,
        keys: &[String],
    ) -> Result<(Vec<String>, Vec<(String, String)>), StepFailure> {
        let concurrency = self.step.concurrency.unwrap_or(DEFAULT_CONCURRENCY).max(1) as usize;
        let work = async {
            let mut deleted = Vec::new();
            let mut failed = Vec::new();
            let mut running = JoinSet::new();
            let mut pending = keys.iter();
            loop {
                while running.len() < concurrency
                    && let Some(key) = pending.next()
                {
                    let destination = self.destination.clone();
                    let key = key.clone();
                    running.spawn(async move {
                        let result = destination.delete(&key).await;
                        (key, result)
                    });
                }
                match running.join_next().await {
                    Some(Ok((key, Ok(())))) => deleted.push(key),
                    Some(Ok((key, Err(error)))) => failed.push((key, error.to_string())),
                    Some(Err(error)) => {
                        failed.push((String::new(), format!("a deletion stopped: {error}")))
                    }
                    None => break,
                }
            }
            Ok((deleted, failed))
        };
        cancellable(&self.ctx.cancel, work).await
    }
}

/// "3 of 5: a, b, c" or the first [`SHOWN`] of many.
fn first(keys: &[String]) -> String {
    let shown = keys[..keys.len().min(SHOWN)].join(", ");
    if keys.len() > SHOWN {
        format!("(first {SHOWN} of {}): {shown}", keys.len())
    } else {
        format!("({}): {shown}", keys.len())
    }
}

/// Writes `report` to the destination; returns how long that took.
async fn write_report(
    destination: &Store,
    report: &mut ChecksumReport,
) -> Result<Duration, crate::connect::store::StoreError> {
    let started = Instant::now();
    report.updated_at = Some(Timestamp::now());
    destination.put_bytes(REPORT_KEY, report.to_bytes()).await?;
    Ok(started.elapsed())
}

/// When to save the report during the copy.
struct Checkpoint {
    copied: usize,
    last: Instant,
    /// How long the last write took.
    took: Duration,
    failed: bool,
}

impl Checkpoint {
    fn new() -> Checkpoint {
        Checkpoint {
            copied: 0,
            last: Instant::now(),
            took: Duration::ZERO,
            failed: false,
        }
    }

    fn due(&self) -> bool {
        let since = self.last.elapsed();
        self.copied > 0
            && (self.copied >= CHECKPOINT_OBJECTS || since >= CHECKPOINT_INTERVAL)
            && since >= self.took * CHECKPOINT_SPACING
    }

    fn written(&mut self, took: Duration) {
        self.copied = 0;
        self.last = Instant::now();
        self.took = took;
    }
}

impl Copied {
    fn record(&mut self, objects: &[ObjectInfo], outcome: Outcome, report: &mut ChecksumReport) {
        match outcome {
            Outcome::Copied {
                index,
                entry,
                server_side,
            } => {
                let key = objects[index].key.clone();
                self.server_side += usize::from(server_side);
                self.bytes += entry.size;
                if entry.source_modified.is_none() {
                    self.fresh += 1;
                }
                report.objects.insert(key.clone(), entry);
                self.keys.push(key);
            }
            Outcome::Vanished { index } => self.vanished.push(objects[index].key.clone()),
            Outcome::Failed { index, error } => {
                self.failures.push((objects[index].key.clone(), error));
            }
            Outcome::Damaged { index, error } => {
                self.damaged += 1;
                self.failures.push((objects[index].key.clone(), error));
            }
        }
    }
}

/// The copy work shared by the transfer tasks.
struct Transfers {
    source: Store,
    destination: Store,
    options: PutOptions,
    objects: Vec<ObjectInfo>,
    vouched: Vouched,
    /// Source and destination are on the same S3 server: copy there, not through here.
    server_side: bool,
    /// The server gave a SHA-256 for a copy (AWS does): it will for the others too.
    server_hashes: AtomicBool,
    /// A small object was copied server-side to learn whether the server gives SHA-256s.
    probed: AtomicBool,
    /// The next object to take.
    next: AtomicUsize,
    /// Set on cancellation or too many failures: no new transfers.
    stop: AtomicBool,
    /// Bytes stored so far, over all objects.
    stored: AtomicU64,
    /// Objects done with (copied, failed or gone).
    finished: AtomicU64,
    /// [`MEMORY_BUDGET`] in [`MEMORY_UNIT`]s.
    memory: Semaphore,
    /// The step's: stops the transfers in flight.
    cancel: CancellationToken,
}

enum Outcome {
    Copied {
        index: usize,
        entry: Entry,
        /// Copied by the server (CopyObject), not read through.
        server_side: bool,
    },
    Vanished {
        index: usize,
    },
    Failed {
        index: usize,
        error: String,
    },
    /// Not what the source's checksum report records: not retried.
    Damaged {
        index: usize,
        error: String,
    },
}

/// Takes objects from the shared list until none is left (or the sync stops).
async fn transfer_worker(transfers: Arc<Transfers>, outcomes: mpsc::UnboundedSender<Outcome>) {
    while !transfers.stop.load(Ordering::Relaxed) {
        let index = transfers.next.fetch_add(1, Ordering::Relaxed);
        if index >= transfers.objects.len() {
            break;
        }
        let outcome = transfers.copy(index).await;
        transfers.finished.fetch_add(1, Ordering::Relaxed);
        if outcomes.send(outcome).is_err() {
            break;
        }
    }
}

impl Transfers {
    /// Copies one object, trying again after a failure: a streamed upload cannot be resent by
    /// the S3 client, so a transient error would otherwise fail the object.
    async fn copy(&self, index: usize) -> Outcome {
        let mut attempt = 1;
        loop {
            let outcome = self.copy_once(index).await;
            if !matches!(outcome, Outcome::Failed { .. })
                || attempt == COPY_ATTEMPTS
                || self.cancel.is_cancelled()
            {
                return outcome;
            }
            tokio::time::sleep(COPY_BACKOFF * attempt).await;
            attempt += 1;
        }
    }

    async fn copy_once(&self, index: usize) -> Outcome {
        let object = &self.objects[index];
        // A copy the source's report vouches for is read through, to check it on the way.
        if self.server_side
            && object.size <= Store::MAX_SERVER_SIDE_COPY
            && !self.vouched.contains_key(&object.key)
            && (object.size > SMALL_OBJECT
                || self.server_hashes.load(Ordering::Relaxed)
                || !self.probed.swap(true, Ordering::Relaxed))
        {
            return self.copy_server_side(index).await;
        }
        let options = PutOptions {
            size_hint: Some(object.size),
            ..self.options.clone()
        };
        let need = self
            .destination
            .upload_memory(object.size, &options)
            .min(MEMORY_BUDGET);
        let permits = u32::try_from(need.div_ceil(MEMORY_UNIT)).unwrap_or(u32::MAX);
        let Ok(_memory) = self.memory.acquire_many(permits).await else {
            return Outcome::Failed {
                index,
                error: "the transfers were stopped".to_owned(),
            };
        };
        let read_at = Timestamp::now();
        let reader = match self.source.get(&object.key, None).await {
            Ok(reader) => reader,
            Err(error) if error.is_not_found() => return Outcome::Vanished { index },
            Err(error) => {
                return Outcome::Failed {
                    index,
                    error: error.to_string(),
                };
            }
        };
        let mut hashing = Hashing {
            inner: reader,
            hasher: Sha256::new(),
            expected: self.vouched.get(&object.key).map(String::as_str),
            mismatched: false,
            cancelled: Box::pin(self.cancel.clone().cancelled_owned()),
        };
        let reported = AtomicU64::new(0);
        let progress = |stored: u64| {
            let before = reported.swap(stored, Ordering::Relaxed);
            self.stored
                .fetch_add(stored.saturating_sub(before), Ordering::Relaxed);
        };
        let stored = self
            .destination
            .put_stream_with(&object.key, &mut hashing, &options, &progress)
            .await;
        if stored.is_err() {
            // Counted again by the next attempt.
            self.stored
                .fetch_sub(reported.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        match stored {
            Ok(size) => Outcome::Copied {
                index,
                server_side: false,
                entry: Entry {
                    size,
                    sha256: crate::format::hex(&hashing.hasher.finalize()),
                    source_modified: object
                        .modified
                        .filter(|&modified| settled(modified, read_at)),
                },
            },
            // Damaged at the source: reading it again gives the same bytes.
            Err(error) if hashing.mismatched => Outcome::Damaged {
                index,
                error: error.to_string(),
            },
            Err(error) => Outcome::Failed {
                index,
                error: error.to_string(),
            },
        }
    }
}

impl Transfers {
    /// Copies one object server-side; its SHA-256 is the server's, or read back from the copy.
    async fn copy_server_side(&self, index: usize) -> Outcome {
        let object = &self.objects[index];
        let read_at = Timestamp::now();
        let failed = |error: String| Outcome::Failed { index, error };
        let computed = match self
            .destination
            .copy_from(&self.source, &object.key, &self.options)
            .await
        {
            Ok(computed) => computed,
            Err(error) if error.is_not_found() => return Outcome::Vanished { index },
            Err(error) => return failed(error.to_string()),
        };
        if computed.is_some() {
            self.server_hashes.store(true, Ordering::Relaxed);
        }
        let sha256 = match computed {
            Some(sha256) => sha256,
            None => match sha256_of(&self.destination, &object.key, object.size).await {
                Ok(sha256) => sha256,
                Err(error) => return failed(format!("copied server-side, then {error}")),
            },
        };
        self.stored.fetch_add(object.size, Ordering::Relaxed);
        Outcome::Copied {
            index,
            server_side: true,
            entry: Entry {
                size: object.size,
                sha256,
                source_modified: object
                    .modified
                    .filter(|&modified| settled(modified, read_at)),
            },
        }
    }
}

/// Whether an object modified at `modified` and read at `read_at` could not have been
/// replaced since with the same listed time (see [`TIME_GRAIN`]).
fn settled(modified: Timestamp, read_at: Timestamp) -> bool {
    modified
        .checked_add(TIME_GRAIN)
        .is_ok_and(|end| end <= read_at)
}

/// Hashes what passes through it; fails once `cancelled` completes, so that the upload
/// reading it stops the way it does on any failed read, and fails at the end when the bytes
/// are not those `expected` (an upload sees that before its last byte is sent).
struct Hashing<'a, R> {
    inner: R,
    hasher: Sha256,
    expected: Option<&'a str>,
    /// Set when the bytes turned out not to be the expected ones.
    mismatched: bool,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Hashing<'_, R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.cancelled.as_mut().poll(cx).is_ready() {
            // Not `Interrupted`, which read loops retry.
            return Poll::Ready(Err(io::Error::other("the sync was cancelled")));
        }
        let before = buf.filled().len();
        let room = buf.remaining() > 0;
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            let read = &buf.filled()[before..];
            this.hasher.update(read);
            if read.is_empty()
                && room
                && let Some(expected) = this.expected
            {
                let actual = crate::format::hex(&this.hasher.clone().finalize());
                if actual != expected {
                    this.mismatched = true;
                    return Poll::Ready(Err(io::Error::other(format!(
                        "its bytes (SHA-256 {actual}) are not those the source's checksum report records ({expected}): damaged in the source, or changed there since the report; not copied"
                    ))));
                }
            }
        }
        poll
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

    #[test]
    fn only_settled_times_are_recorded() {
        let at = |text: &str| -> Timestamp { text.parse().expect("time") };
        assert!(settled(
            at("2026-01-01T00:00:00Z"),
            at("2026-01-01T00:00:01Z")
        ));
        assert!(!settled(
            at("2026-01-01T00:00:00.5Z"),
            at("2026-01-01T00:00:01Z")
        ));
        assert!(!settled(
            at("2026-01-01T00:00:02Z"),
            at("2026-01-01T00:00:01Z")
        ));
    }

    #[test]
    fn lists_the_first_keys() {
        let keys: Vec<String> = (0..12).map(|i| format!("k{i:02}")).collect();
        assert_eq!(first(&keys[..2]), "(2): k00, k01");
        assert!(first(&keys).starts_with("(first 10 of 12): k00, "));
        assert!(first(&keys).ends_with("k09"));
    }

    #[test]
    fn checkpoints_by_count_or_time_spaced_by_their_cost() {
        let mut checkpoint = Checkpoint::new();
        assert!(!checkpoint.due());
        checkpoint.copied = CHECKPOINT_OBJECTS;
        assert!(checkpoint.due());
        checkpoint.written(Duration::from_secs(3600));
        checkpoint.copied = CHECKPOINT_OBJECTS;
        assert!(!checkpoint.due(), "a slow write spaces the next one");
        checkpoint.took = Duration::ZERO;
        checkpoint.last = Instant::now() - CHECKPOINT_INTERVAL;
        checkpoint.copied = 1;
        assert!(checkpoint.due());
    }

    #[tokio::test]
    async fn overlapping_stores_are_found() {
        let base = tempfile::tempdir().expect("tempdir");
        let path = |sub: &str| base.path().join(sub).display().to_string();
        std::fs::create_dir_all(base.path().join("data/mirror")).expect("mkdir");
        std::fs::create_dir_all(base.path().join("database")).expect("mkdir");
        let open = async |text: &str| Store::open(text).await.expect("open");
        let data = open(&path("data")).await;
        let inner = open(&format!("file://{}", path("data/mirror"))).await;
        let sibling = open(&path("database")).await;
        assert!(overlap(&data, "", &inner, ""));
        assert!(overlap(&inner, "", &data, ""));
        assert!(overlap(&data, "", &data, ""));
        assert!(!overlap(&data, "", &sibling, ""));
    }
}
