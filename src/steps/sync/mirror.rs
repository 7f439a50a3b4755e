//! The mirror driver: a sync's phases in order. It opens the listings and the checksum
//! reports, plans in one pass what to copy, clears what an interrupted sync left, copies,
//! deletes the destination's extras and saves the report; each phase adds to the evidence.

use std::time::Instant;

use tokio::task::JoinSet;

use super::checkpoint::save;
use super::plan::{Inputs, Plan, plan, spill_error};
use super::summary::{Sample, Summary};
use super::transfer::Copied;
use super::{DEFAULT_CONCURRENCY, Sync, cancellable};
use crate::checksums::{Changes, Opened, REPORT_KEY, Writer};
use crate::connect::store::Store;
use crate::duration::human_bytes;
use crate::steps::{Done, StepContext, StepFailure};

/// Report changes held before they are saved outside the copy (entries dropped, objects
/// deleted).
const CHANGES_HELD: usize = 50_000;

pub(super) struct Mirror<'a, 'c> {
    pub(super) step: &'a Sync,
    pub(super) ctx: &'a StepContext<'c>,
    pub(super) source: Store,
    pub(super) destination: Store,
    pub(super) storage_class: Option<String>,
    pub(super) evidence: Vec<String>,
    /// Saves the destination's checksum report as the copy goes and at the end.
    pub(super) writer: Writer,
}

impl Mirror<'_, '_> {
    pub(super) async fn run(mut self) -> Result<Done, StepFailure> {
        let cancel = self.ctx.cancel.clone();
        let listed_at = Instant::now();
        let destination_exists = cancellable(&cancel, async {
            self.destination.exists().await.map_err(StepFailure::of)
        })
        .await?;
        // The listings start now, fetched while the reports are opened.
        let source_listing = self.source.list_sorted("").map_err(StepFailure::of)?;
        let destination_listing = if destination_exists {
            Some(self.destination.list_sorted("").map_err(StepFailure::of)?)
        } else {
            None
        };
        let previous = if destination_exists {
            cancellable(&cancel, self.previous_report()).await?
        } else {
            None
        };
        let had_report = previous.is_some();
        let first_format = previous.as_ref().is_some_and(Opened::first_format);
        let trusted = previous
            .as_ref()
            .is_some_and(|report| report.source == self.source.url());
        if let Some(report) = previous.as_ref().filter(|_| !trusted) {
            self.evidence.push(format!(
                "the destination's checksum report was written by a sync from {}, not {}: its entries are not trusted, every object is copied again",
                report.source,
                self.source.url()
            ));
        }
        let source_report = cancellable(&cancel, self.source_report()).await?;
        let inputs = Inputs {
            source: source_listing,
            destination: destination_listing,
            previous: previous.map(|report| report.entries),
            trusted,
            source_report,
        };
        let mut plan = cancellable(&cancel, plan(inputs)).await?;
        self.listed(&plan, destination_exists, listed_at)?;

        let mut changes = Changes::new();
        let dropped = plan.dropped.len();
        self.drop_entries(&mut plan, &mut changes).await?;
        if destination_exists && plan.copy_count > 0 {
            self.remove_interrupted().await?;
        }
        self.note_storage_class();
        let copied = self.copy(&mut plan, &mut changes).await?;
        let (deleted, failures) = self.remove_extras(&mut plan, &copied, &mut changes).await?;

        let changed = !had_report
            || first_format
            || !trusted
            || dropped > 0
            || self.writer.written > 0
            || !changes.is_empty();
        // Written even when nothing changed: its time says when the mirror was last brought
        // up to date, which is what a freshness check of a quiet bucket's mirror must see.
        let (report_line, report_error) = self
            .save_report(&mut changes, changed || failures.is_empty())
            .await?;
        self.finish(Summary {
            plan,
            copied,
            deleted,
            failures,
            report_line,
            report_error,
        })
    }

    /// Says what the listings held; before anything is touched, refuses to let an empty
    /// source wipe the mirror.
    fn listed(
        &mut self,
        plan: &Plan,
        destination_exists: bool,
        listed_at: Instant,
    ) -> Result<(), StepFailure> {
        if self.step.delete
            && plan.source_objects == 0
            && plan.destination_objects > 0
            && !self.step.allow_empty_source
        {
            return Err(StepFailure::new(format!(
                "the source {} lists no objects: refusing to delete the mirror's {} objects in {} (set allow_empty_source: true if the source is meant to be empty)",
                self.source.url(),
                plan.destination_objects,
                self.destination.url()
            )));
        }
        self.evidence.push(format!(
            "source {}: {} objects, {}; destination {}: {} objects before the sync{} (listed and compared in {:.1} s)",
            self.source.url(),
            plan.source_objects,
            human_bytes(plan.source_bytes),
            self.destination.url(),
            plan.destination_objects,
            if destination_exists { "" } else { " (a new directory)" },
            listed_at.elapsed().as_secs_f64()
        ));
        if plan.vouched > 0 {
            self.evidence.push(format!(
                "the source's checksum report vouches for {} of the {} objects to copy: each is checked against it as it is read (or hashed where the destination already holds it), and one that differs is not written",
                plan.vouched, plan.copy_count
            ));
        }
        Ok(())
    }

    /// Takes out of the report the entries whose destination object is gone or has another
    /// size.
    async fn drop_entries(
        &mut self,
        plan: &mut Plan,
        changes: &mut Changes,
    ) -> Result<(), StepFailure> {
        let dropped = std::mem::replace(
            &mut plan.dropped,
            crate::steps::spill::Spill::new().map_err(spill_error)?,
        );
        for key in dropped.read().map_err(spill_error)? {
            changes.insert(key.map_err(spill_error)?, None);
            self.hold(changes).await?;
        }
        Ok(())
    }

    /// Saves `changes` once they are many (a failed save only costs a later run some work).
    async fn hold(&mut self, changes: &mut Changes) -> Result<(), StepFailure> {
        if changes.len() >= CHANGES_HELD {
            let (writer, destination, source) =
                (&mut self.writer, &self.destination, self.source.url());
            cancellable(&self.ctx.cancel, async {
                let _ = save(writer, destination, source, changes).await;
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// Removes what an earlier, killed sync was uploading (only drillbook's own uploads: other
    /// programs may be writing to this bucket).
    async fn remove_interrupted(&mut self) -> Result<(), StepFailure> {
        let cancel = self.ctx.cancel.clone();
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
        Ok(())
    }

    /// Says what becomes of the storage class asked for.
    fn note_storage_class(&mut self) {
        if let Some(class) = &self.storage_class {
            self.evidence.push(if self.destination.is_local() {
                format!(
                    "storage_class {class} ignored: the destination is a local directory, which has no storage classes"
                )
            } else {
                format!("copies stored as storage class {class}")
            });
        }
    }

    /// Deletes the destination's objects absent at the source, when the step says so and every
    /// copy succeeded. Returns the keys deleted and all failures, the copies' first.
    async fn remove_extras(
        &mut self,
        plan: &mut Plan,
        copied: &Copied,
        changes: &mut Changes,
    ) -> Result<(Sample, Vec<(String, String)>), StepFailure> {
        let mut deleted = Sample::default();
        let mut failures = copied.failures.clone();
        if plan.extra.is_empty() {
            return Ok((deleted, failures));
        }
        if !self.step.delete {
            self.evidence.push(format!(
                "kept, though absent at the source (delete: false) {}",
                plan.extra_sample.describe()
            ));
        } else if !copied.failures.is_empty() || copied.untried > 0 {
            // As rclone does: a sync that could not copy everything deletes nothing.
            self.evidence.push(format!(
                "{} destination objects absent at the source were not deleted, because copies failed",
                plan.extra.len()
            ));
        } else {
            let extra = std::mem::replace(
                &mut plan.extra,
                crate::steps::spill::Spill::new().map_err(spill_error)?,
            );
            failures.extend(self.delete(extra, &mut deleted, changes).await?);
        }
        Ok((deleted, failures))
    }

    /// Writes the final report when `write` says so; returns the evidence line saying what
    /// became of it, and the error when it could not be written.
    async fn save_report(
        &mut self,
        changes: &mut Changes,
        write: bool,
    ) -> Result<(String, Option<String>), StepFailure> {
        let cancel = self.ctx.cancel.clone();
        if !write {
            return Ok((
                format!(
                    "checksum report {REPORT_KEY} in {}: unchanged",
                    self.destination.url()
                ),
                None,
            ));
        }
        let (writer, destination, source) =
            (&mut self.writer, &self.destination, self.source.url());
        let saved = cancellable(&cancel, async {
            Ok(writer.finish(destination, source, changes).await)
        })
        .await?;
        Ok(match saved {
            Ok(()) => (
                format!(
                    "checksum report {REPORT_KEY} in {} ({} written for it during this sync, checkpoints included)",
                    self.destination.url(),
                    human_bytes(self.writer.written)
                ),
                None,
            ),
            Err(error) => {
                let line = format!("the checksum report could not be written: {error}");
                (line.clone(), Some(line))
            }
        })
    }

    /// The destination's report, opened to be read in the plan (with a note when it was
    /// unreadable); the writer that will save the new one is set to extend it.
    async fn previous_report(&mut self) -> Result<Option<Opened>, StepFailure> {
        match crate::checksums::open(&self.destination).await {
            Ok(Some(opened)) => {
                if opened.first_format() {
                    self.evidence.push(format!(
                        "the checksum report {REPORT_KEY} was in drillbook's first format (one JSON document): read, and converted to the current one (a head and sorted JSON Lines) when saved"
                    ));
                }
                self.writer = opened.writer();
                Ok(Some(opened))
            }
            Ok(None) => {
                self.evidence.push(format!(
                    "no checksum report in {} yet: every object is copied",
                    self.destination.url()
                ));
                Ok(None)
            }
            Err(error) => {
                self.evidence.push(format!(
                    "the previous checksum report {REPORT_KEY} is unreadable ({error}): every object is copied and a new report written"
                ));
                Ok(None)
            }
        }
    }

    /// The source's own checksum report (when the source is itself a mirror), opened to be
    /// read in the plan, and its time.
    async fn source_report(
        &mut self,
    ) -> Result<Option<(crate::checksums::Entries, Option<jiff::Timestamp>)>, StepFailure> {
        match crate::checksums::open(&self.source).await {
            Ok(Some(opened)) => Ok(Some((opened.entries, opened.updated_at))),
            Ok(None) => Ok(None),
            Err(crate::checksums::ReadError::Store(error)) if !error.is_not_found() => {
                Err(StepFailure::of(error))
            }
            Err(error) => {
                self.evidence.push(format!(
                    "the source's checksum report {REPORT_KEY} is unreadable ({error}): copies are not checked against it"
                ));
                Ok(None)
            }
        }
    }

    /// Deletes the `extra` keys from the destination, `concurrency` at a time, recording each
    /// in `deleted` and `changes`. Returns the failures.
    async fn delete(
        &mut self,
        extra: crate::steps::spill::Spill<String>,
        deleted: &mut Sample,
        changes: &mut Changes,
    ) -> Result<Vec<(String, String)>, StepFailure> {
        let concurrency = self.step.concurrency.unwrap_or(DEFAULT_CONCURRENCY).max(1) as usize;
        let mut pending = extra.read().map_err(spill_error)?;
        let mut failed = Vec::new();
        let mut running = JoinSet::new();
        loop {
            while running.len() < concurrency
                && let Some(key) = pending.next()
            {
                let key = key.map_err(spill_error)?;
                let destination = self.destination.clone();
                running.spawn(async move {
                    let result = destination.delete(&key).await;
                    (key, result)
                });
            }
            let joined = tokio::select! {
                joined = running.join_next() => joined,
                _ = self.ctx.cancel.cancelled() => return Err(StepFailure::cancelled()),
            };
            match joined {
                Some(Ok((key, Ok(())))) => {
                    deleted.add(&key);
                    changes.insert(key, None);
                    self.hold(changes).await?;
                }
                Some(Ok((key, Err(error)))) => failed.push((key, error.to_string())),
                Some(Err(error)) => {
                    failed.push((String::new(), format!("a deletion stopped: {error}")))
                }
                None => break,
            }
        }
        Ok(failed)
    }
}
