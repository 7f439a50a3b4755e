//! The copy phase: runs the transfer pool over the objects to copy, records each outcome in
//! the checksum report, saves it now and then, and on cancellation stops cleanly, keeping
//! what was copied for the next run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::checkpoint::{Checkpoint, write_report};
use super::mirror::{Mirror, Vouched};
use super::transfer::{MEMORY_BUDGET, MEMORY_UNIT, Outcome, Transfers, transfer_worker};
use super::{DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE};
use crate::checksums::ChecksumReport;
use crate::connect::store::{ObjectInfo, PutOptions};
use crate::progress::{Progress, Unit};
use crate::steps::StepFailure;

/// How long a cancelled sync may spend saving what it copied and aborting its uploads.
const CANCEL_GRACE: Duration = Duration::from_secs(5);
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// No new transfers start after this many failures: they usually share a cause.
pub(super) const MAX_FAILURES: usize = 10;

/// What the copy phase did.
#[derive(Default)]
pub(super) struct Copied {
    pub(super) keys: Vec<String>,
    pub(super) bytes: u64,
    /// Listed at the source but gone when read: not copied, not a failure.
    pub(super) vanished: Vec<String>,
    /// Copies whose time was too fresh to trust next time (see
    /// [`TIME_GRAIN`](super::transfer::TIME_GRAIN)).
    pub(super) fresh: usize,
    pub(super) failures: Vec<(String, String)>,
    /// Of the failures, those damaged at the source (see [`Outcome::Damaged`]).
    pub(super) damaged: usize,
    /// Of the copies, those made by the server.
    pub(super) server_side: usize,
    pub(super) elapsed: Duration,
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

impl Mirror<'_, '_> {
    /// Copies `objects` with `concurrency` transfers in flight, recording each copy in
    /// `report` and writing it to the destination now and then.
    pub(super) async fn copy(
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
}
