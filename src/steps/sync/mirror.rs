//! The mirror driver: a sync's phases in order. It lists both sides, decides from the
//! previous checksum report what to copy, clears what an interrupted sync left, copies,
//! deletes the destination's extras and writes the final report; each phase adds to the
//! evidence.

use std::collections::HashMap;
use std::time::Instant;

use tokio::task::JoinSet;

use super::checkpoint::write_report;
use super::plan::plan;
use super::summary::{Summary, first};
use super::transfer::Copied;
use super::{DEFAULT_CONCURRENCY, Sync, cancellable};
use crate::checksums::{ChecksumReport, REPORT_KEY, is_own};
use crate::connect::store::{ObjectInfo, Store};
use crate::duration::human_bytes;
use crate::steps::{Done, StepContext, StepFailure};

pub(super) struct Mirror<'a, 'c> {
    pub(super) step: &'a Sync,
    pub(super) ctx: &'a StepContext<'c>,
    pub(super) source: Store,
    pub(super) destination: Store,
    pub(super) storage_class: Option<String>,
    pub(super) evidence: Vec<String>,
}

/// The SHA-256 the source's own checksum report vouches for, per object to copy (a mirror
/// being restored from): a copy whose bytes differ fails before its last byte is written.
pub(super) type Vouched = HashMap<String, String>;

/// Both sides' objects, drillbook's own keys left out.
struct Listing {
    destination_exists: bool,
    source: Vec<ObjectInfo>,
    destination: Vec<ObjectInfo>,
}

impl Mirror<'_, '_> {
    pub(super) async fn run(mut self) -> Result<Done, StepFailure> {
        let cancel = self.ctx.cancel.clone();
        let listing = self.list().await?;
        let (previous, had_report) = if listing.destination_exists {
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
        let mut plan = plan(&listing.source, &listing.destination, &previous, trusted);
        let mut report = ChecksumReport {
            objects: plan.report.clone(),
            ..ChecksumReport::new(self.source.url())
        };
        if listing.destination_exists && !plan.copy.is_empty() {
            self.remove_interrupted().await?;
        }
        self.note_storage_class();

        let vouched = cancellable(&cancel, self.vouched(&plan.copy)).await?;
        let confirmed = cancellable(
            &cancel,
            self.confirm(&mut plan, &listing.destination, &vouched, &mut report),
        )
        .await?;
        let copied = self.copy(&plan.copy, vouched, &mut report).await?;
        let (deleted, failures) = self
            .remove_extras(&plan.extra, &copied, &mut report)
            .await?;

        let changed =
            !had_report || report.objects != previous.objects || report.source != previous.source;
        // Written even when nothing changed: its time says when the mirror was last brought
        // up to date, which is what a freshness check of a quiet bucket's mirror must see.
        let (report_line, report_error) = self
            .save_report(&mut report, changed || failures.is_empty())
            .await?;
        self.finish(Summary {
            objects: listing.source.len(),
            plan,
            confirmed,
            copied,
            deleted,
            failures,
            report_line,
            report_error,
        })
    }

    /// Lists both sides; before anything is touched, refuses to let an empty source wipe the
    /// mirror.
    async fn list(&mut self) -> Result<Listing, StepFailure> {
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
        Ok(Listing {
            destination_exists,
            source: source_objects,
            destination: destination_objects,
        })
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
        extra: &[String],
        copied: &Copied,
        report: &mut ChecksumReport,
    ) -> Result<(Vec<String>, Vec<(String, String)>), StepFailure> {
        let mut deleted = Vec::new();
        let mut failures = copied.failures.clone();
        if !extra.is_empty() {
            if !self.step.delete {
                self.evidence.push(format!(
                    "kept, though absent at the source (delete: false) {}",
                    first(extra)
                ));
            } else if !copied.failures.is_empty() {
                // As rclone does: a sync that could not copy everything deletes nothing.
                self.evidence.push(format!(
                    "{} destination objects absent at the source were not deleted, because copies failed",
                    extra.len()
                ));
            } else {
                let (gone, failed) = self.delete(extra).await?;
                for key in &gone {
                    report.objects.remove(key);
                }
                deleted = gone;
                failures.extend(failed);
            }
        }
        Ok((deleted, failures))
    }

    /// Writes the final report when `write` says so; returns the evidence line saying what
    /// became of it, and the error when it could not be written.
    async fn save_report(
        &self,
        report: &mut ChecksumReport,
        write: bool,
    ) -> Result<(String, Option<String>), StepFailure> {
        let cancel = self.ctx.cancel.clone();
        let mut report_error = None;
        let report_line = if write {
            match cancellable(&cancel, async {
                Ok(write_report(&self.destination, report).await)
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
        Ok((report_line, report_error))
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
