//! `verify`: checksum parity between stores, backups against manifests, freshness.
//!
//! Parity is decided on drillbook's own SHA-256, never on ETags (the same bytes get different
//! multipart ETags from different tools). Without `deep`, the checksum report `sync` writes
//! spares re-reading what it vouches for; anything it cannot vouch for is hashed.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

use super::hashing::{Job, Side, hash_all};
use super::{Done, StepContext, StepFailure, read_hashed};
use crate::checksums::{ChecksumReport, REPORT_KEY, is_own};
use crate::connect::store::{ObjectInfo, Store};
use crate::duration::human_bytes;
use crate::format::format_duration;
use crate::manifest::{self, Manifest};

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

/// Findings listed one by one in the evidence; the counts cover all of them.
const FINDINGS_SHOWN: usize = 50;
/// Listings may give modification times truncated to the second: an object listed within a
/// second before the report's `updated_at` may have been written after it.
const TIME_GRAIN: SignedDuration = SignedDuration::from_secs(1);

impl super::StepKind for Verify {
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
            Err(StepFailure {
                message: problems.join("; "),
                evidence: done.evidence,
                outputs: done.outputs,
                cancelled: false,
                permanent: false,
            })
        }
    }

    /// The age of the newest complete backup when the store holds backups (or a `backup:` is
    /// being checked), else of the last sync into it (its checksum report), else of the newest
    /// object.
    fn freshness(
        &self,
        store: &Store,
        listing: &[ObjectInfo],
        refreshed: Option<Timestamp>,
        limit: Duration,
        now: Timestamp,
    ) -> Freshness {
        let backups = manifest::candidates(listing);
        let (newest, at, what) = if self.backup.is_some()
            || backups.iter().any(|c| c.manifest.is_some())
        {
            let newest = backups.into_iter().find(|c| c.manifest.is_some());
            match newest.and_then(|c| manifest::time_of(&c.key).map(|at| (c.key, at))) {
                None => {
                    return Freshness::Unknown(format!("no complete backup in {}", store.url()));
                }
                Some((key, at)) => (key, at, "backup"),
            }
        } else if let Some(at) = refreshed {
            (REPORT_KEY.to_string(), at, "sync (its checksum report)")
        } else {
            let data = listing.iter().filter(|o| !is_own(&o.key));
            let newest = data
                .clone()
                .filter_map(|o| o.modified.map(|at| (o, at)))
                .max_by_key(|(_, at)| *at);
            match newest {
                Some((object, at)) => (object.key.clone(), at, "object"),
                None if data.count() == 0 => {
                    return Freshness::Unknown(format!(
                        "{} holds no objects, so nothing in it is fresh",
                        store.url()
                    ));
                }
                None => {
                    return Freshness::Unknown(format!(
                        "{} gives no modification times, so `max_age` cannot be checked",
                        store.url()
                    ));
                }
            }
        };
        let age = now.duration_since(at);
        let fresh = age.is_negative() || age.unsigned_abs() <= limit.0;
        let line = format!(
            "the newest {what}, {newest}, is {} old (at most {limit})",
            format_duration(age)
        );
        Freshness::Measured {
            newest,
            age,
            line,
            fresh,
        }
    }
}

enum Freshness {
    /// Why no age could be measured: a failure.
    Unknown(String),
    Measured {
        newest: String,
        age: SignedDuration,
        line: String,
        fresh: bool,
    },
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

/// What a comparison found. `sides` name the two things compared, for the evidence.
#[derive(Debug, Default)]
struct Findings {
    /// Distinct keys on either side.
    compared: usize,
    /// What `compared` counted, after the number ("objects compared").
    against: &'static str,
    sides: (&'static str, &'static str),
    missing: Vec<String>,
    extra: Vec<String>,
    /// Key, size on the first side, size on the second.
    sizes: Vec<(String, u64, u64)>,
    /// Key, SHA-256 on the first side, on the second.
    contents: Vec<(String, String, String)>,
    /// How the content was checked, for the evidence.
    hashing: Vec<String>,
}

impl Findings {
    fn total(&self) -> usize {
        self.missing.len() + self.extra.len() + self.sizes.len() + self.contents.len()
    }

    /// "2,000 objects compared: 1 missing, 1 extra, 0 size mismatches, 1 content mismatch"
    fn counts(&self) -> String {
        format!(
            "{} {} compared{}: {} missing, {} extra, {}, {}",
            thousands(self.compared as u64),
            plural(self.compared, "object", "objects"),
            self.against,
            thousands(self.missing.len() as u64),
            thousands(self.extra.len() as u64),
            counted(self.sizes.len(), "size mismatch", "size mismatches"),
            counted(
                self.contents.len(),
                "content mismatch",
                "content mismatches"
            ),
        )
    }

    /// One line per finding, the first [`FINDINGS_SHOWN`] of them.
    fn lines(&self) -> Vec<String> {
        let (first, second) = self.sides;
        let all = self
            .missing
            .iter()
            .map(|key| format!("missing: {key}"))
            .chain(self.extra.iter().map(|key| format!("extra: {key}")))
            .chain(
                self.sizes
                    .iter()
                    .map(|(key, a, b)| format!("size mismatch: {key} ({first} {a}, {second} {b})")),
            )
            .chain(
                self.contents
                    .iter()
                    .map(|(key, a, b)| format!("content mismatch: {key} (sha256 {a} vs {b})")),
            );
        let mut lines: Vec<String> = all.take(FINDINGS_SHOWN).collect();
        let more = self.total().saturating_sub(FINDINGS_SHOWN);
        if more > 0 {
            lines.push(format!(
                "… and {} more {}",
                thousands(more as u64),
                plural(more, "finding", "findings")
            ));
        }
        lines
    }
}

/// `source` against `destination`: keys on one side only, sizes, and content (see the module
/// comment for when content is hashed).
async fn parity(
    (source, source_objects): (&Store, &[ObjectInfo]),
    (destination, destination_objects): (&Store, &[ObjectInfo]),
    report: Option<&ChecksumReport>,
    deep: bool,
    ctx: &StepContext<'_>,
) -> Result<Findings, StepFailure> {
    let mut findings = Findings {
        sides: ("source", "destination"),
        ..Findings::default()
    };
    let sources: BTreeMap<&str, &ObjectInfo> = data(source_objects);
    let destinations: BTreeMap<&str, &ObjectInfo> = data(destination_objects);
    findings.extra = destinations
        .keys()
        .filter(|key| !sources.contains_key(*key))
        .map(|key| key.to_string())
        .collect();
    findings.compared = sources.len() + findings.extra.len();
    // The report's source times describe the store it was synced from: only trusted when
    // that is this source.
    let same_source = report.is_some_and(|r| r.source == source.url());
    let updated_at = report.and_then(|r| r.updated_at);
    let mut jobs = Vec::new();
    let mut trusted = 0usize;
    for (key, object) in &sources {
        let Some(copy) = destinations.get(key) else {
            findings.missing.push(key.to_string());
            continue;
        };
        if object.size != copy.size {
            findings
                .sizes
                .push((key.to_string(), object.size, copy.size));
            continue;
        }
        // What the report vouches for the destination's bytes, if it can.
        let vouched = (!deep)
            .then_some(report)
            .flatten()
            .and_then(|r| r.objects.get(*key))
            .filter(|entry| entry.size == copy.size && written_before(copy.modified, updated_at));
        let source_unchanged = vouched.is_some()
            && same_source
            && report.is_some_and(|r| r.unchanged(key, object.size, object.modified).is_some());
        if source_unchanged {
            trusted += 1;
            continue;
        }
        jobs.push(Job {
            key: key.to_string(),
            first: Side::Read {
                store: source.clone(),
                size: object.size,
            },
            second: match vouched {
                Some(entry) => Side::Known(entry.sha256.clone()),
                None => Side::Read {
                    store: destination.clone(),
                    size: copy.size,
                },
            },
        });
    }
    let hashed = jobs.len();
    let (contents, bytes) = hash_all(jobs, ctx).await?;
    findings.contents = contents;
    findings.hashing.push(if deep {
        format!(
            "sha256 of both sides compared for {} {} ({} read)",
            thousands(hashed as u64),
            plural(hashed, "object", "objects"),
            human_bytes(bytes)
        )
    } else {
        let source_of_trust = match (report, same_source) {
            (None, _) => format!("{} has no checksum report", destination.url()),
            (Some(_), false) => format!(
                "the checksum report of {} was made from another source ({}), so only its checksums of untouched destination objects are used",
                destination.url(),
                report.map_or("", |r| r.source.as_str())
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
/// cannot vouch for (everything with `deep`).
async fn against_report(
    store: &Store,
    stored: &[ObjectInfo],
    report: &ChecksumReport,
    deep: bool,
    ctx: &StepContext<'_>,
) -> Result<Findings, StepFailure> {
    let mut findings = Findings {
        against: " with the checksum report",
        sides: ("report", "store"),
        ..Findings::default()
    };
    let objects = data(stored);
    let entries: BTreeMap<&str, _> = report
        .objects
        .iter()
        .filter(|(key, _)| !is_own(key))
        .map(|(key, entry)| (key.as_str(), entry))
        .collect();
    findings.extra = objects
        .keys()
        .filter(|key| !entries.contains_key(*key))
        .map(|key| key.to_string())
        .collect();
    findings.compared = entries.len() + findings.extra.len();
    let mut jobs = Vec::new();
    for (key, entry) in &entries {
        let Some(object) = objects.get(key) else {
            findings.missing.push(key.to_string());
            continue;
        };
        if entry.size != object.size {
            findings
                .sizes
                .push((key.to_string(), entry.size, object.size));
            continue;
        }
        if deep || !written_before(object.modified, report.updated_at) {
            jobs.push(Job {
                key: key.to_string(),
                first: Side::Known(entry.sha256.clone()),
                second: Side::Read {
                    store: store.clone(),
                    size: object.size,
                },
            });
        }
    }
    let hashed = jobs.len();
    let (contents, bytes) = hash_all(jobs, ctx).await?;
    findings.contents = contents;
    let same_size = entries.len() - findings.missing.len() - findings.sizes.len();
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

/// The data objects of a listing by key: drillbook's own keys are never compared.
fn data(objects: &[ObjectInfo]) -> BTreeMap<&str, &ObjectInfo> {
    objects
        .iter()
        .filter(|o| !is_own(&o.key))
        .map(|o| (o.key.as_str(), o))
        .collect()
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

/// `2,000`
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

/// `1 content mismatch`, `0 size mismatches`
fn counted(n: usize, one: &'static str, many: &'static str) -> String {
    format!("{} {}", thousands(n as u64), plural(n, one, many))
}

/// A backup against its manifest: the size the store reports, and with `deep` the SHA-256 of
/// the bytes read back. `Err` inside says what is wrong with the backup.
async fn check_backup(
    store: &Store,
    key: &str,
    deep: bool,
    ctx: &StepContext<'_>,
) -> Result<Result<String, String>, StepFailure> {
    let manifest = match store.get_bytes(&manifest::manifest_key(key)).await {
        Ok(bytes) => Manifest::parse(&bytes).map_err(StepFailure::new)?,
        Err(e) if e.is_not_found() => return Ok(Err(format!("{key} has no manifest"))),
        Err(e) => return Err(StepFailure::of(e)),
    };
    let Some(object) = store.head(key).await.map_err(StepFailure::of)? else {
        return Ok(Err(format!("{key} is missing (its manifest is there)")));
    };
    if object.size != manifest.size {
        return Ok(Err(format!(
            "{key} holds {} bytes, its manifest says {}",
            object.size, manifest.size
        )));
    }
    if !deep {
        return Ok(Ok(format!(
            "{key}: {} bytes as in its manifest (size checked; `deep: true` re-hashes)",
            object.size
        )));
    }
    let reader = store.get(key, None).await.map_err(StepFailure::of)?;
    let (_, sha256) = read_hashed(reader, None, manifest.size, ctx)
        .await
        .map_err(|e| StepFailure::new(format!("reading {key}: {e}")))?;
    Ok(if sha256 == manifest.sha256 {
        Ok(format!(
            "{key}: {} bytes, sha256 {sha256}, as in its manifest",
            object.size
        ))
    } else {
        Err(format!(
            "{key}: sha256 {sha256}, its manifest says {}",
            manifest.sha256
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_english() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(2_000), "2,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        let findings = Findings {
            compared: 2_000,
            sides: ("source", "destination"),
            missing: vec!["a".into()],
            extra: vec!["b".into()],
            contents: vec![("c".into(), "01".into(), "02".into())],
            ..Findings::default()
        };
        assert_eq!(
            findings.counts(),
            "2,000 objects compared: 1 missing, 1 extra, 0 size mismatches, 1 content mismatch"
        );
        assert_eq!(
            findings.lines(),
            [
                "missing: a",
                "extra: b",
                "content mismatch: c (sha256 01 vs 02)"
            ]
        );
    }

    #[test]
    fn only_the_first_findings_are_listed() {
        let findings = Findings {
            compared: 120,
            sides: ("report", "store"),
            missing: (0..60).map(|i| format!("m{i}")).collect(),
            sizes: vec![("s".into(), 1, 2)],
            ..Findings::default()
        };
        let lines = findings.lines();
        assert_eq!(lines.len(), FINDINGS_SHOWN + 1);
        assert_eq!(lines[FINDINGS_SHOWN], "… and 11 more findings");
        let findings = Findings {
            sizes: vec![("s".into(), 1, 2)],
            sides: ("report", "store"),
            ..Findings::default()
        };
        assert_eq!(findings.lines(), ["size mismatch: s (report 1, store 2)"]);
    }

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
