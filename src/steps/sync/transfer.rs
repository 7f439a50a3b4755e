//! The copy phase: a pool of transfer tasks takes the objects to copy one by one and copies
//! each, read through drillbook (hashed on the way) or made by the server, trying again after
//! a failure, with the memory of all uploads in flight bounded. Each outcome is recorded in
//! the checksum report, which is saved now and then; on cancellation the phase stops cleanly,
//! keeping what was copied for the next run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::checkpoint::{Checkpoint, save};
use super::hashing_reader::Hashing;
use super::mirror::Mirror;
use super::plan::{Plan, ToCopy};
use super::summary::Sample;
use super::{DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE};
use crate::checksums::{Changes, Entry};
use crate::connect::store::{PutOptions, Store};
use crate::progress::{Progress, Unit};
use crate::steps::StepFailure;
use crate::steps::hashing::sha256_of;
use crate::steps::spill::Items;

/// How long a cancelled sync may spend saving what it copied and aborting its uploads.
const CANCEL_GRACE: Duration = Duration::from_secs(5);
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// No new transfers start after this many failures: they usually share a cause.
pub(super) const MAX_FAILURES: usize = 10;
/// What all uploads in flight may buffer at once, whatever the concurrency and the objects'
/// sizes: a large object's parts in flight take most of it, small objects fill the rest.
const MEMORY_BUDGET: u64 = 96 << 20;
/// The memory budget's unit (a semaphore permit).
const MEMORY_UNIT: u64 = 1 << 10;
/// Up to this size a copy between stores on one server is read through (one GET, one PUT)
/// rather than made by the server, unless the server gives the copy's SHA-256: otherwise the
/// copy must be read back to hash it, a second request after the first, where reading through
/// overlaps the two. Larger objects are copied by the server and read back, so their bytes
/// cross the network once instead of twice.
const SMALL_OBJECT: u64 = 8 << 20;
/// Tries per object, the next one after `COPY_BACKOFF` times the tries so far.
const COPY_ATTEMPTS: u32 = 3;
const COPY_BACKOFF: Duration = Duration::from_millis(500);
/// Listings may give modification times truncated to the second: an object written within
/// a second after the one copied could show the same time (and size). Such a fresh copy is
/// recorded without its time, so the next sync compares it again instead of trusting it.
pub(super) const TIME_GRAIN: SignedDuration = SignedDuration::from_secs(1);

/// What the copy phase did.
#[derive(Default)]
pub(super) struct Copied {
    pub(super) keys: Sample,
    pub(super) bytes: u64,
    /// Found in the destination with the bytes the source's report vouches for (hashed
    /// there): not copied.
    pub(super) confirmed: usize,
    /// Listed at the source but gone when read: not copied, not a failure.
    pub(super) vanished: Sample,
    /// Copies whose time was too fresh to trust next time (see [`TIME_GRAIN`]).
    pub(super) fresh: usize,
    pub(super) failures: Vec<(String, String)>,
    /// Of the failures, those damaged at the source (see [`Outcome::Damaged`]).
    pub(super) damaged: usize,
    /// Of the failures, those a store refused for good (see [`Outcome::Refused`]).
    pub(super) refused: usize,
    /// Of the copies, those made by the server.
    pub(super) server_side: usize,
    pub(super) elapsed: Duration,
    /// Not tried: no new transfer starts after [`MAX_FAILURES`].
    pub(super) untried: usize,
}

impl Copied {
    fn record(&mut self, outcome: Outcome, changes: &mut Changes) {
        match outcome {
            Outcome::Copied {
                key,
                entry,
                server_side,
            } => {
                self.server_side += usize::from(server_side);
                self.bytes += entry.size;
                if entry.source_modified.is_none() {
                    self.fresh += 1;
                }
                self.keys.add(&key);
                changes.insert(key, Some(entry));
            }
            Outcome::Confirmed { key, entry } => {
                self.confirmed += 1;
                changes.insert(key, Some(entry));
            }
            Outcome::Vanished { key } => self.vanished.add(&key),
            Outcome::Failed { key, error } => self.failures.push((key, error)),
            Outcome::Damaged { key, error } => {
                self.damaged += 1;
                self.failures.push((key, error));
            }
            Outcome::Refused { key, error } => {
                self.refused += 1;
                self.failures.push((key, error));
            }
        }
    }

    /// Objects done with: copied, confirmed, vanished or failed.
    fn settled(&self) -> usize {
        self.keys.len() + self.confirmed + self.vanished.len() + self.failures.len()
    }
}

impl Mirror<'_, '_> {
    /// Copies the plan's objects with `concurrency` transfers in flight, recording each copy
    /// in `changes` and saving them to the destination's report now and then.
    pub(super) async fn copy(
        &mut self,
        plan: &mut Plan,
        changes: &mut Changes,
    ) -> Result<Copied, StepFailure> {
        let mut copied = Copied::default();
        let started = Instant::now();
        let (total, count) = (plan.copy_bytes, plan.copy_count);
        let queue = std::mem::replace(
            &mut plan.copy,
            crate::steps::spill::Spill::new().map_err(super::plan::spill_error)?,
        )
        .read()
        .map_err(super::plan::spill_error)?;
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
            queue: Mutex::new(queue),
            server_side,
            server_hashes: AtomicBool::new(false),
            probed: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            stored: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            memory: Semaphore::new((MEMORY_BUDGET / MEMORY_UNIT) as usize),
            cancel: self.ctx.cancel.clone(),
        });
        let (sender, mut outcomes) = mpsc::unbounded_channel();
        let mut workers = JoinSet::new();
        for _ in 0..concurrency.min(count) {
            workers.spawn(transfer_worker(transfers.clone(), sender.clone()));
        }
        drop(sender);

        let progress = || {
            (self.ctx.progress)(Progress {
                done: transfers.stored.load(Ordering::Relaxed),
                total: Some(total),
                unit: Unit::Bytes,
                objects: Some((transfers.finished.load(Ordering::Relaxed), count as u64)),
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
                    let before = copied.keys.len() + copied.confirmed;
                    copied.record(outcome, changes);
                    checkpoint.copied += copied.keys.len() + copied.confirmed - before;
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
                            copied.record(outcome, changes);
                        }
                    };
                    let finished = tokio::time::timeout_at(grace, finish).await.is_ok();
                    workers.abort_all();
                    while workers.join_next().await.is_some() {}
                    let (destination, source) = (&self.destination, self.source.url());
                    let writer = &mut self.writer;
                    let save = async {
                        let _ = save(writer, destination, source, changes).await;
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
                match save(
                    &mut self.writer,
                    &self.destination,
                    self.source.url(),
                    changes,
                )
                .await
                {
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
        copied.untried = count.saturating_sub(copied.settled());
        Ok(copied)
    }
}

/// The copy work shared by the transfer tasks.
struct Transfers {
    source: Store,
    destination: Store,
    options: PutOptions,
    /// The plan's objects to copy, taken one at a time.
    queue: Mutex<Items<ToCopy>>,
    /// Source and destination are on the same S3 server: copy there, not through here.
    server_side: bool,
    /// The server gave a SHA-256 for a copy (AWS does): it will for the others too.
    server_hashes: AtomicBool,
    /// A small object was copied server-side to learn whether the server gives SHA-256s.
    probed: AtomicBool,
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
        key: String,
        entry: Entry,
        /// Copied by the server (CopyObject), not read through.
        server_side: bool,
    },
    /// Already in the destination with the bytes the source's report vouches for.
    Confirmed {
        key: String,
        entry: Entry,
    },
    Vanished {
        key: String,
    },
    Failed {
        key: String,
        error: String,
    },
    /// Not what the source's checksum report records: not retried.
    Damaged {
        key: String,
        error: String,
    },
    /// A permanent error (a 4xx such as an invalid storage class): not retried.
    Refused {
        key: String,
        error: String,
    },
}

/// Takes objects from the shared plan until none is left (or the sync stops).
async fn transfer_worker(transfers: Arc<Transfers>, outcomes: mpsc::UnboundedSender<Outcome>) {
    while !transfers.stop.load(Ordering::Relaxed) {
        let next = match transfers.queue.lock() {
            Ok(mut queue) => queue.next(),
            Err(_) => None,
        };
        let outcome = match next {
            None => break,
            Some(Ok(object)) => transfers.copy(&object).await,
            Some(Err(error)) => {
                transfers.stop.store(true, Ordering::Relaxed);
                Outcome::Failed {
                    key: String::new(),
                    error: format!("reading the plan back from its temporary file: {error}"),
                }
            }
        };
        transfers.finished.fetch_add(1, Ordering::Relaxed);
        if outcomes.send(outcome).is_err() {
            break;
        }
    }
}

impl Transfers {
    /// Copies one object, trying again after a failure: a streamed upload cannot be resent by
    /// the S3 client, so a transient error would otherwise fail the object.
    async fn copy(&self, object: &ToCopy) -> Outcome {
        if object.present
            && let Some(vouched) = &object.vouched
            && let Some(entry) = self.confirm(object, vouched).await
        {
            return Outcome::Confirmed {
                key: object.key.clone(),
                entry,
            };
        }
        let mut attempt = 1;
        loop {
            let outcome = self.copy_once(object).await;
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

    /// The entry of a destination object that already has the bytes the source's report
    /// vouches for (hashed there: a bucket restored from its mirror has no report of its own,
    /// and reading it is cheaper than copying everything back); `None` when it differs or
    /// cannot be read.
    async fn confirm(&self, object: &ToCopy, vouched: &str) -> Option<Entry> {
        let read_at = Timestamp::now();
        let sha256 = sha256_of(&self.destination, &object.key, object.size)
            .await
            .ok()?;
        self.stored.fetch_add(object.size, Ordering::Relaxed);
        (sha256 == vouched).then(|| Entry {
            size: object.size,
            sha256,
            source_modified: object
                .modified
                .filter(|&modified| settled(modified, read_at)),
        })
    }

    async fn copy_once(&self, object: &ToCopy) -> Outcome {
        let key = object.key.clone();
        // A copy the source's report vouches for is read through, to check it on the way.
        if self.server_side
            && object.size <= Store::MAX_SERVER_SIDE_COPY
            && object.vouched.is_none()
            && (object.size > SMALL_OBJECT
                || self.server_hashes.load(Ordering::Relaxed)
                || !self.probed.swap(true, Ordering::Relaxed))
        {
            return self.copy_server_side(object).await;
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
                key,
                error: "the transfers were stopped".to_owned(),
            };
        };
        let read_at = Timestamp::now();
        let reader = match self.source.get(&object.key, None).await {
            Ok(reader) => reader,
            Err(error) if error.is_not_found() => return Outcome::Vanished { key },
            Err(error) => return failed(key, &error),
        };
        let mut hashing = Hashing {
            inner: reader,
            hasher: Sha256::new(),
            expected: object.vouched.as_deref(),
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
                key,
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
                key,
                error: error.to_string(),
            },
            Err(error) => failed(key, &error),
        }
    }
}

/// A failed transfer: refused for good when the store says trying again cannot help.
fn failed(key: String, error: &crate::connect::store::StoreError) -> Outcome {
    let error_text = error.to_string();
    if error.is_permanent() {
        Outcome::Refused {
            key,
            error: error_text,
        }
    } else {
        Outcome::Failed {
            key,
            error: error_text,
        }
    }
}

impl Transfers {
    /// Copies one object server-side; its SHA-256 is the server's, or read back from the copy.
    async fn copy_server_side(&self, object: &ToCopy) -> Outcome {
        let key = object.key.clone();
        let read_at = Timestamp::now();
        let failed = |error: String| Outcome::Failed {
            key: object.key.clone(),
            error,
        };
        let computed = match self
            .destination
            .copy_from(&self.source, &object.key, &self.options)
            .await
        {
            Ok(computed) => computed,
            Err(error) if error.is_not_found() => return Outcome::Vanished { key },
            Err(error) => return self::failed(key, &error),
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
            key,
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
pub(super) fn settled(modified: Timestamp, read_at: Timestamp) -> bool {
    modified
        .checked_add(TIME_GRAIN)
        .is_ok_and(|end| end <= read_at)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
