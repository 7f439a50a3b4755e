//! `verify`: checksum parity between stores, backups against manifests, freshness.
//!
//! Parity is decided on drillbook's own SHA-256, never on ETags (the same bytes get different
//! multipart ETags from different tools). Without `deep`, the checksum report `sync` writes
//! spares re-reading what it vouches for; anything it cannot vouch for is hashed.
//!
//! This file runs the checks a step asks for and weighs their results; each check has its own
//! file: `parity` (two stores, or a store and its checksum report), `backup` (a backup
//! against its manifest) and `freshness` (`max_age`), with the `findings` of a comparison
//! put into words.

mod backup;
mod findings;
mod freshness;
mod parity;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

use crate::checksums::{ChecksumReport, REPORT_KEY};
use crate::connect::store::Store;
use crate::format::format_duration;
use crate::manifest;
use crate::steps::{Done, StepContext, StepFailure};
use backup::check_backup;
use freshness::Freshness;
use parity::{against_report, parity};

/// Compares `source` with `destination` (or with the checksum report in `source`), and/or a
/// database backup with its manifest. Lists missing, extra, size and content mismatches.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    pub source: String,
    /// A second store to compare with. Without it, `source` is checked against its own
    /// checksum report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// A backup key in `source` to check against its manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// Re-read and re-hash the bytes instead of trusting stored checksums.
    #[serde(default)]
    pub deep: bool,
    /// Extra objects in the destination are listed but do not fail the step: a mirror that
    /// keeps what the source deleted (`sync` without `delete`).
    #[serde(default)]
    pub allow_extra: bool,
    /// Fail when the newest object (or backup manifest) is older than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
}

impl crate::steps::StepKind for Verify {
    const NAME: &'static str = "verify";
    const OUTPUTS: &'static [&'static str] =
        &["objects", "missing", "extra", "mismatched", "newest", "age"];
    const IDEMPOTENT: bool = true;

    fn summary(&self) -> String {
        match &self.destination {
            Some(destination) => format!("parity of {} and {destination}", self.source),
            None => format!("verify {}", self.source),
        }
    }

    async fn run(&self, ctx: &StepContext<'_>) -> Result<Done, StepFailure> {
        // Dropping the check aborts its hashing tasks.
        tokio::select! {
            result = self.check(ctx) => result,
            _ = ctx.cancel.cancelled() => Err(StepFailure::cancelled()),
        }
    }
}

impl Verify {
    async fn check(&self, ctx: &StepContext<'_>) -> Result<Done, StepFailure> {
        let render = |text: &str| (ctx.render)(text).map_err(StepFailure::new);
        let store = Store::open(&render(&self.source)?)
            .await
            .map_err(StepFailure::of)?;
        let mut done = Done::default();
        let mut problems = Vec::new();
        let mut objects = 0usize;
        let mut mismatched = 0usize;
        // The source's listing, when parity needed it, for `max_age`.
        let mut listing = None;
        // When the source's own checksum report was last written: a mirror is as fresh as
        // its last sync, even when nothing new arrived for days.
        let mut refreshed = None;

        let findings = if let Some(destination) = &self.destination {
            let destination = Store::open(&render(destination)?)
                .await
                .map_err(StepFailure::of)?;
            let (source_objects, destination_objects) =
                tokio::try_join!(store.list(""), destination.list("")).map_err(StepFailure::of)?;
            let report = read_report(&destination).await?;
            let findings = parity(
                (&store, &source_objects),
                (&destination, &destination_objects),
                report.as_ref(),
                self.deep,
                ctx,
            )
            .await?;
            listing = Some(source_objects);
            Some(findings)
        } else if self.backup.is_none() {
            let stored = store.list("").await.map_err(StepFailure::of)?;
            let findings = match read_report(&store).await? {
                Some(report) => {
                    refreshed = report.updated_at;
                    Some(against_report(&store, &stored, &report, self.deep, ctx).await?)
                }
                // A store of database backups has manifests, not a checksum report: its
                // freshness check stays what it always was.
                None if self.max_age.is_some()
                    && manifest::candidates(&stored)
                        .iter()
                        .any(|c| c.manifest.is_some()) =>
                {
                    done.evidence.push(format!(
                        "{} holds database backups and no checksum report: its backups' freshness is checked",
                        store.url()
                    ));
                    None
                }
                None => {
                    return Err(StepFailure::new(format!(
                        "{} has no checksum report ({REPORT_KEY}): without `destination:`, `verify` checks a store against the report `sync` writes into its destination; to compare two stores give `destination:`, to check a database backup give `backup:`",
                        store.url()
                    )));
                }
            };
            listing = Some(stored);
            findings
        } else {
            None
        };
        if let Some(findings) = &findings {
            let counts = findings.counts();
            done.evidence.push(counts.clone());
            done.evidence.extend(findings.lines());
            done.evidence.extend(findings.hashing.clone());
            objects += findings.compared;
            mismatched += findings.sizes.len() + findings.contents.len();
            done.outputs
                .insert("missing".into(), findings.missing.len().into());
            done.outputs
                .insert("extra".into(), findings.extra.len().into());
            let tolerated = if self.allow_extra {
                findings.extra.len()
            } else {
                0
            };
            if findings.total() > tolerated {
                problems.push(counts);
            } else if tolerated > 0 {
                done.evidence.push(format!(
                    "{tolerated} extra object(s) kept on purpose (allow_extra)"
                ));
            }
        }

        if let Some(backup) = &self.backup {
            let key = render(backup)?;
            objects += 1;
            match check_backup(&store, &key, self.deep, ctx).await? {
                Ok(line) => done.evidence.push(line),
                Err(problem) => {
                    mismatched += 1;
                    problems.push(problem);
                }
            }
        }
        if findings.is_some() || self.backup.is_some() {
            done.outputs.insert("objects".into(), objects.into());
            done.outputs.insert("mismatched".into(), mismatched.into());
        }

        if let Some(limit) = self.max_age {
            let listing = match listing {
                Some(listing) => listing,
                None => store.list("").await.map_err(StepFailure::of)?,
            };
            match self.freshness(&store, &listing, refreshed, limit, ctx.clock_start) {
                Freshness::Unknown(problem) => problems.push(problem),
                Freshness::Measured {
                    newest,
                    age,
                    line,
                    fresh,
                } => {
                    done.outputs.insert("newest".into(), newest.into());
                    done.outputs
                        .insert("age".into(), format_duration(age).into());
                    if fresh {
                        done.evidence.push(line);
                    } else {
                        problems.push(format!("too old: {line}"));
                    }
                }
            }
        }

        if problems.is_empty() {
            Ok(done)
        } else {
            // Verdicts on what the stores hold (a mismatch, a missing object, a stale copy):
            // reading the same bytes again gives the same verdict.
            Err(StepFailure {
                message: problems.join("; "),
                evidence: done.evidence,
                outputs: done.outputs,
                cancelled: false,
                permanent: true,
            })
        }
    }
}

/// The checksum report in `store`, if it has one.
async fn read_report(store: &Store) -> Result<Option<ChecksumReport>, StepFailure> {
    match store.get_bytes(REPORT_KEY).await {
        Ok(bytes) => ChecksumReport::parse(&bytes)
            .map(Some)
            .map_err(|e| StepFailure::new(format!("{}/{REPORT_KEY}: {e}", store.url()))),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(StepFailure::of(e)),
    }
}
