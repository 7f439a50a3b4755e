//! `verify`: checksum parity between stores, backups against manifests, freshness.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

use super::{Done, StepContext, StepFailure, read_hashed};
use crate::connect::store::Store;
use crate::manifest::{self, Manifest};
use crate::report::format_duration;

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
    /// Fail when the newest object (or backup manifest) is older than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
}

pub const OUTPUTS: &[&str] = &["objects", "missing", "extra", "mismatched", "newest", "age"];
pub const IDEMPOTENT: bool = true;

impl Verify {
    pub fn summary(&self) -> String {
        match &self.destination {
            Some(destination) => format!("parity of {} and {destination}", self.source),
            None => format!("verify {}", self.source),
        }
    }
}

impl Verify {
    pub(crate) async fn run(&self, ctx: &StepContext<'_>) -> Result<Done, StepFailure> {
        if self.destination.is_some() || (self.backup.is_none() && self.max_age.is_none()) {
            return Err(StepFailure::new(
                "parity between stores and checksum reports is not implemented yet in this version of drillbook; `verify` checks a `backup:` against its manifest and backup freshness (`max_age:`)",
            ));
        }
        let render = |text: &str| (ctx.render)(text).map_err(StepFailure::new);
        let store = Store::open(&render(&self.source)?)
            .await
            .map_err(StepFailure::of)?;
        let mut done = Done::default();
        let mut problems = Vec::new();
        if let Some(backup) = &self.backup {
            let key = render(backup)?;
            match check_backup(&store, &key, self.deep, ctx).await? {
                Ok(line) => done.evidence.push(line),
                Err(problem) => problems.push(problem),
            }
            done.outputs.insert("objects".into(), 1.into());
            done.outputs
                .insert("mismatched".into(), problems.len().into());
        }
        if let Some(limit) = self.max_age {
            let listing = store.list("").await.map_err(StepFailure::of)?;
            let newest = manifest::candidates(&listing)
                .into_iter()
                .find(|c| c.manifest.is_some());
            match newest.and_then(|c| manifest::time_of(&c.key).map(|at| (c.key, at))) {
                None => problems.push(format!("no complete backup in {}", store.url())),
                Some((key, at)) => {
                    let age = ctx.clock_start.duration_since(at);
                    let line = format!(
                        "the newest backup, {key}, is {} old (at most {limit})",
                        format_duration(age)
                    );
                    done.outputs.insert("newest".into(), key.into());
                    done.outputs
                        .insert("age".into(), format_duration(age).into());
                    if age.unsigned_abs() > limit.0 && !age.is_negative() {
                        problems.push(format!("too old: {line}"));
                    } else {
                        done.evidence.push(line);
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
            })
        }
    }
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
