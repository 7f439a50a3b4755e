//! `verify`: checksum parity between stores, backups against manifests, freshness, and the
//! bucket's posture (versioning, lifecycle rules, retention).
//!
//! Parity is decided on drillbook's own SHA-256, never on ETags (the same bytes get different
//! multipart ETags from different tools). Without `deep`, the checksum report `sync` writes
//! spares re-reading what it vouches for; anything it cannot vouch for is hashed.
//!
//! This file runs the checks a step asks for and weighs their results; each check has its own
//! file: `parity` (two stores, or a store and its checksum report), `backup` (a backup
//! against its manifest), `config` (configuration backups against theirs), `freshness`
//! (`max_age`) and `posture`, with the `findings` of a comparison put into words.

mod backup;
mod config;
mod findings;
mod freshness;
mod parity;
mod posture;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

use crate::checksums::{Opened, REPORT_KEY};
use crate::connect::store::Store;
use crate::format::format_duration;
use crate::manifest;
use crate::steps::{Done, StepContext, StepFailure};
use backup::check_backup;
use freshness::Freshness;
use parity::{against_report, parity};
pub use posture::PostureSpec;

/// Compares `source` with `destination` (or with the checksum report in `source`), and/or a
/// database backup with its manifest; in a store of configuration backups (`config-backup`),
/// the newest version of each name with its manifest. Lists missing, extra, size and content
/// mismatches.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    pub source: String,
    /// A second store to compare with. Without it, `source` is checked against its own
    /// checksum report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// A backup key in `source` to check against its manifest (a database backup's, or a
    /// configuration backup's).
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
    /// Check the bucket itself: versioning, lifecycle rules (a cold class after N days,
    /// noncurrent versions kept M days) and the backups against their retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posture: Option<PostureSpec>,
}

impl crate::steps::StepKind for Verify {
    const NAME: &'static str = "verify";
    const OUTPUTS: &'static [&'static str] = &[
        "objects",
        "missing",
        "extra",
        "mismatched",
        "newest",
        "newest_at",
        "age",
        "sha256",
    ];
    const IDEMPOTENT: bool = true;

    fn access(&self) -> Vec<crate::steps::Access<'_>> {
        use crate::steps::{Access, Need};
        let source: &'static [Need] = match &self.posture {
            Some(posture) if posture.needs_bucket() => &[Need::List, Need::Read, Need::Posture],
            _ => &[Need::List, Need::Read],
        };
        let mut access = vec![Access::of("source", &self.source, source)];
        if let Some(destination) = &self.destination {
            access.push(Access::of(
                "destination",
                destination,
                &[Need::List, Need::Read],
            ));
        }
        access
    }

    fn summary(&self) -> String {
        match (&self.destination, &self.posture) {
            (Some(destination), _) => format!("parity of {} and {destination}", self.source),
            (None, Some(_)) => format!("posture of {}", self.source),
            (None, None) => format!("verify {}", self.source),
        }
    }

    fn check(
        &self,
        node: &crate::loader::node::Node,
        out: &mut Vec<crate::diagnostic::Diagnostic>,
    ) {
        if let Some(posture) = &self.posture {
            posture.check(node, out);
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
            // The listings start now, fetched while the report is opened.
            let listings = (
                store.list_sorted("").map_err(StepFailure::of)?,
                destination.list_sorted("").map_err(StepFailure::of)?,
            );
            let report = open_report(&destination).await?;
            let findings = parity(
                (&store, listings.0),
                (&destination, listings.1),
                report,
                self.deep,
                ctx,
            )
            .await?;
            Some(findings)
        } else if self.backup.is_none() {
            match open_report(&store).await? {
                Some(report) => {
                    refreshed = report.updated_at;
                    // The report's own hash names the mirror's state, for release notes.
                    done.outputs.insert("newest".into(), REPORT_KEY.into());
                    done.outputs
                        .insert("sha256".into(), report.sha256.clone().into());
                    if let Some(at) = report.updated_at {
                        done.outputs
                            .insert("newest_at".into(), at.to_string().into());
                    }
                    let listing = store.list_sorted("").map_err(StepFailure::of)?;
                    Some(against_report((&store, listing), report, self.deep, ctx).await?)
                }
                None => {
                    let stored = store.list("").await.map_err(StepFailure::of)?;
                    let mut tally = (&mut done, &mut problems, &mut objects, &mut mismatched);
                    self.without_report(&store, &stored, &mut tally, ctx)
                        .await?;
                    listing = Some(stored);
                    None
                }
            }
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

        if let Some(backup) = &self.backup
            && config::is_config_key(&render(backup)?)
        {
            let key = render(backup)?;
            let name = crate::steps::config_backup::layout::name_of(&key);
            let prefix = if name.is_empty() {
                String::new()
            } else {
                format!("{name}/")
            };
            let stored = store.list(&prefix).await.map_err(StepFailure::of)?;
            let checked =
                config::check_configs(&store, &stored, Some(&key), self.deep, ctx).await?;
            self.config_checked(
                checked,
                &mut done,
                &mut problems,
                &mut objects,
                &mut mismatched,
            );
        } else if let Some(backup) = &self.backup {
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
        if findings.is_some() || self.backup.is_some() || objects > 0 {
            done.outputs.insert("objects".into(), objects.into());
            done.outputs.insert("mismatched".into(), mismatched.into());
        }

        let needs_listing =
            self.max_age.is_some() || self.posture.as_ref().is_some_and(|p| p.retention.is_some());
        let listing = match listing {
            None if needs_listing => Some(store.list("").await.map_err(StepFailure::of)?),
            listing => listing,
        };
        let listing = listing.unwrap_or_default();
        if let Some(limit) = self.max_age {
            match self.freshness(&store, &listing, refreshed, limit, ctx.clock_start) {
                Freshness::Unknown(problem) => problems.push(problem),
                Freshness::Measured {
                    newest,
                    at,
                    age,
                    line,
                    fresh,
                } => {
                    if done.outputs.get("newest").and_then(|n| n.as_str()) != Some(&newest) {
                        // Not the artifact whose hash is known: no hash of another one.
                        done.outputs.remove("sha256");
                    }
                    done.outputs.insert("newest".into(), newest.into());
                    done.outputs
                        .insert("newest_at".into(), at.to_string().into());
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

        if let Some(posture) = &self.posture {
            if posture.needs_bucket() {
                match store.posture().await.map_err(StepFailure::of)? {
                    Some(bucket) => {
                        let (evidence, found) = posture.judge_bucket(&bucket, store.url());
                        done.evidence.extend(evidence);
                        problems.extend(found);
                    }
                    None => problems.push(format!(
                        "{} is a local directory, which has no versioning or lifecycle rules: `posture` checks them on an S3 bucket (`versioning: false` checks the retention alone)",
                        store.url()
                    )),
                }
            }
            if posture.retention.is_some() {
                let (evidence, found) =
                    posture.judge_backups(&listing, store.url(), ctx.clock_start);
                done.evidence.extend(evidence);
                problems.extend(found);
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

/// Where a check's results go: the step's evidence and outputs, its problems, the objects
/// checked and the mismatches.
type Tally<'a> = (
    &'a mut Done,
    &'a mut Vec<String>,
    &'a mut usize,
    &'a mut usize,
);

impl Verify {
    /// A store without a checksum report: configuration backups are checked against their
    /// manifests; database backups and posture need no report; anything else is an error.
    async fn without_report(
        &self,
        store: &Store,
        stored: &[crate::connect::store::ObjectInfo],
        tally: &mut Tally<'_>,
        ctx: &StepContext<'_>,
    ) -> Result<(), StepFailure> {
        if config::is_config_store(stored) {
            // A store of configuration backups: the newest version of each name.
            let checked = config::check_configs(store, stored, None, self.deep, ctx).await?;
            self.config_checked(checked, tally.0, tally.1, tally.2, tally.3);
        } else if self.max_age.is_some()
            && manifest::candidates(stored)
                .iter()
                .any(|c| c.manifest.is_some())
        {
            // A store of database backups has manifests, not a checksum report: its
            // freshness check stays what it always was.
            tally.0.evidence.push(format!(
                "{} holds database backups and no checksum report: its backups' freshness is checked",
                store.url()
            ));
        } else if self.posture.is_none() {
            // Posture alone needs no report.
            return Err(StepFailure::new(format!(
                "{} has no checksum report ({REPORT_KEY}): without `destination:`, `verify` checks a store against the report `sync` writes into its destination; to compare two stores give `destination:`, to check a database backup give `backup:`",
                store.url()
            )));
        }
        Ok(())
    }

    /// What checking configuration backups found, into the step's outputs and verdict.
    fn config_checked(
        &self,
        checked: config::Checked,
        done: &mut Done,
        problems: &mut Vec<String>,
        objects: &mut usize,
        mismatched: &mut usize,
    ) {
        *objects += checked.objects;
        *mismatched += checked.problems.len();
        done.evidence.extend(checked.lines);
        problems.extend(checked.problems);
        if let Some((key, at, sha256)) = checked.newest {
            done.outputs.insert("newest".into(), key.into());
            done.outputs
                .insert("newest_at".into(), at.to_string().into());
            done.outputs.insert("sha256".into(), sha256.into());
        }
    }
}

/// The checksum report in `store`, if it has one, opened to be read in key order.
async fn open_report(store: &Store) -> Result<Option<Opened>, StepFailure> {
    match crate::checksums::open(store).await {
        Ok(opened) => Ok(opened),
        Err(crate::checksums::ReadError::Store(e)) => Err(StepFailure::of(e)),
        Err(e) => Err(StepFailure::new(format!("{}/{e}", store.url()))),
    }
}
