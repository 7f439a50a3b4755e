//! `assess`: find the newest complete backup in a store and measure the RPO against it — a
//! dump's snapshot, or over a WAL archive (`archive`) the last commit it holds.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use jiff::Timestamp;

use super::{Done, StepContext, StepFailure};
use crate::connect::postgres::Target;
use crate::connect::store::Store;
use crate::duration::human_bytes;
use crate::format::format_duration;
use crate::manifest::{self, Manifest};

mod archive;
mod pgbackrest;

/// Lists the backups in `store`, skips incomplete ones (no manifest, size mismatch) and picks
/// the newest good one — or the one named by `key`, or the newest taken before `before`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Assess {
    /// Where the backups are: `s3://bucket/prefix`, `file:///path` or a plain directory
    /// (required unless `engine: pgbackrest`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub store: String,
    /// Use this backup key instead of the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Point in time: the newest backup taken before it (over a WAL archive, the newest base
    /// backup that ended before it). RFC 3339 (`2026-11-24T02:00:00Z`), a duration before the
    /// incident clock (`1h ago`), or `latest` for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// What a missed RPO does: `record` it (the run goes on and exits 3) or `fail` the step.
    #[serde(default)]
    pub on_rpo_miss: OnRpoMiss,
    /// A streaming standby (PostgreSQL URL) whose replication lag is measured too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby: Option<String>,
    /// `drillbook` (the default: drillbook's backups in `store`) or `pgbackrest`: a pgBackRest
    /// repository, named by `stanza` and `config`.
    #[serde(default, skip_serializing_if = "is_drillbook")]
    pub engine: super::engine::Engine,
    /// With `engine: pgbackrest`: the stanza.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stanza: Option<String>,
    /// With `engine: pgbackrest`: its configuration file (default: pgBackRest's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}
fn is_drillbook(engine: &super::engine::Engine) -> bool {
    *engine == super::engine::Engine::Drillbook
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnRpoMiss {
    #[default]
    Record,
    Fail,
}

impl super::StepKind for Assess {
    const NAME: &'static str = "assess";
    const OUTPUTS: &'static [&'static str] = &[
        "backup",
        "taken_at",
        "age",
        "size",
        "bytes",
        "sha256",
        "replication_lag",
    ];
    const IDEMPOTENT: bool = true;
    const RPO_EVIDENCE: bool = true;

    fn access(&self) -> Vec<crate::steps::Access<'_>> {
        use crate::steps::{Access, Need};
        match self.engine {
            // pgBackRest reads its repository itself, with its own credentials.
            super::engine::Engine::Pgbackrest => Vec::new(),
            super::engine::Engine::Drillbook => {
                vec![Access::of("store", &self.store, &[Need::List, Need::Read])]
            }
        }
    }

    fn summary(&self) -> String {
        match self.engine {
            super::engine::Engine::Pgbackrest => format!(
                "find the newest pgBackRest backup of stanza {}",
                self.stanza.as_deref().unwrap_or_default()
            ),
            super::engine::Engine::Drillbook => {
                format!("find the newest good backup in {}", self.store)
            }
        }
    }

    fn check(
        &self,
        node: &crate::loader::node::Node,
        out: &mut Vec<crate::diagnostic::Diagnostic>,
    ) {
        super::engine::check(
            self.engine,
            &self.store,
            &self.stanza,
            &self.config,
            node,
            out,
        );
        if self.key.is_some() && self.before.is_some() {
            out.push(super::at_key(
                node,
                "before",
                "give `key` or `before`, not both: `key` names one backup",
            ));
        }
    }

    async fn run(&self, ctx: &StepContext<'_>) -> Result<Done, StepFailure> {
        let render = |text: &str| (ctx.render)(text).map_err(StepFailure::new);
        if self.engine == super::engine::Engine::Pgbackrest {
            let repository = super::engine::repository(&self.stanza, &self.config, &render)?;
            let wanted = self.key.as_deref().map(render).transpose()?;
            let before = self.before(ctx, &render)?;
            return pgbackrest::assess(self, ctx, &repository, wanted, before).await;
        }
        let store = Store::open(&render(&self.store)?)
            .await
            .map_err(StepFailure::of)?;
        let wanted = self.key.as_deref().map(render).transpose()?;
        let before = self.before(ctx, &render)?;
        let listing = store.list("").await.map_err(StepFailure::of)?;
        if !crate::wal::base::base_candidates(&listing).is_empty() {
            return archive::assess(self, ctx, &store, &listing, wanted, before).await;
        }
        let mut candidates = manifest::candidates(&listing);
        if let Some(key) = &wanted {
            candidates.retain(|c| &c.key == key);
            if candidates.is_empty() {
                return Err(StepFailure::new(format!(
                    "there is no backup {key} in {}",
                    store.url()
                )));
            }
        }
        if let Some(before) = before {
            candidates.retain(|c| manifest::time_of(&c.key).is_some_and(|at| at < before));
        }

        let mut evidence = Vec::new();
        let mut chosen = None;
        for candidate in &candidates {
            let manifest = match &candidate.manifest {
                Some(key) => match store.get_bytes(key).await {
                    Ok(bytes) => Manifest::parse(&bytes),
                    Err(e) if e.is_not_found() => Err(e.to_string()),
                    // A manifest that could not be read this time says nothing about its
                    // backup: passing over it would silently pick an older backup (a worse
                    // RPO), so the step fails and its retry reads it again.
                    Err(e) => {
                        let mut failure = StepFailure::of(e);
                        failure.evidence = evidence;
                        return Err(failure);
                    }
                },
                None => Err(String::new()),
            };
            match manifest::incomplete(candidate, manifest.as_ref().map_err(String::as_str)) {
                Some(why) => evidence.push(format!("skipped {}: {why}", candidate.key)),
                None => {
                    chosen = manifest.ok();
                    break;
                }
            }
        }
        let Some(manifest) = chosen else {
            return Err(none_found("backup", &store, &wanted, before, evidence));
        };

        // RPO: the data in the backup is as of its snapshot; everything after is lost.
        // A backup taken after the clock started (in the same run) lost nothing.
        let age = ctx
            .clock_start
            .duration_since(manifest.snapshot_at)
            .max(jiff::SignedDuration::ZERO);
        let mut done = Done::default();
        evidence.push(format!(
            "chose {}: taken {}, {} old, {}, sha256 {}",
            manifest.key,
            manifest.snapshot_at,
            format_duration(age),
            human_bytes(manifest.size),
            manifest.sha256
        ));
        judge_rpo(self, ctx, age, "backup", &mut evidence)?;
        if let Some(standby) = &self.standby {
            let lag = replication_lag(&render(standby)?).await?;
            evidence.push(format!("standby replication lag: {lag}"));
            done.outputs.insert("replication_lag".into(), lag.into());
        }
        done.outputs
            .insert("backup".into(), manifest.key.clone().into());
        done.outputs
            .insert("taken_at".into(), manifest.snapshot_at.to_string().into());
        done.outputs
            .insert("age".into(), format_duration(age).into());
        done.outputs
            .insert("size".into(), human_bytes(manifest.size).into());
        done.outputs.insert("bytes".into(), manifest.size.into());
        done.outputs
            .insert("sha256".into(), manifest.sha256.clone().into());
        done.evidence = evidence;
        Ok(done)
    }
}

impl Assess {
    /// `before`, read: `latest` sets no limit; `1h ago` counts back from the incident clock.
    fn before(
        &self,
        ctx: &StepContext<'_>,
        render: &dyn Fn(&str) -> Result<String, StepFailure>,
    ) -> Result<Option<Timestamp>, StepFailure> {
        let Some(text) = &self.before else {
            return Ok(None);
        };
        let text = render(text)?;
        match crate::wal::recovery_target::parse_target(&text, ctx.clock_start) {
            Ok(crate::wal::recovery_target::Target::Latest) => Ok(None),
            Ok(crate::wal::recovery_target::Target::Time(at)) => Ok(Some(at)),
            _ => Err(StepFailure::new(format!(
                "`before: {text}` is not a point in time: expected one like 2026-11-24T02:00:00Z, `1h ago` or `latest`"
            ))),
        }
    }
}

/// Runs `read` with a scratch directory of the step's own for the WAL segments `pg_waldump`
/// reads (drillbook's archive and pgBackRest's alike), removed once `read` is done.
async fn with_scratch<T, F>(
    ctx: &StepContext<'_>,
    read: impl FnOnce(std::path::PathBuf) -> F,
) -> Result<T, StepFailure>
where
    F: std::future::Future<Output = T>,
{
    let scratch = ctx
        .run_dir
        .join("tmp")
        .join(format!("{}.{}.wal", ctx.id, ctx.attempt));
    tokio::fs::create_dir_all(&scratch)
        .await
        .map_err(|e| StepFailure::new(format!("{}: {e}", scratch.display())))?;
    let done = read(scratch.clone()).await;
    let _ = tokio::fs::remove_dir_all(&scratch).await;
    Ok(done)
}

/// The backup an archive assessment chose, for [`archived`].
struct Chosen<'a> {
    backup: &'a str,
    /// It restores to no earlier moment.
    ended: Timestamp,
    bytes: u64,
    sha256: &'a str,
}

/// The RPO of an archive (drillbook's or pgBackRest's): the data a restore to `latest` gets is
/// as of the last commit archived (`found`), or with none found, as of the backup's end.
fn archived(
    step: &Assess,
    ctx: &StepContext<'_>,
    found: Option<crate::wal::last_commit::LastCommit>,
    chosen: Chosen<'_>,
    mut evidence: Vec<String>,
) -> Result<Done, StepFailure> {
    let taken_at = match &found {
        Some(commit) => {
            evidence.push(format!(
                "the last commit archived: {} (in {})",
                commit.at, commit.segment
            ));
            commit.at
        }
        None => {
            evidence.push(format!(
                "no commit found in the archive's newest segments: the data is as of the backup's end, {}",
                chosen.ended
            ));
            chosen.ended
        }
    };
    let age = ctx
        .clock_start
        .duration_since(taken_at)
        .max(jiff::SignedDuration::ZERO);
    evidence.push(format!(
        "restorable to {taken_at}: {} before the incident clock",
        format_duration(age)
    ));
    judge_rpo(step, ctx, age, "archived commit", &mut evidence)?;
    let mut done = Done::default();
    done.outputs.insert("backup".into(), chosen.backup.into());
    done.outputs
        .insert("taken_at".into(), taken_at.to_string().into());
    done.outputs
        .insert("age".into(), format_duration(age).into());
    done.outputs
        .insert("size".into(), human_bytes(chosen.bytes).into());
    done.outputs.insert("bytes".into(), chosen.bytes.into());
    done.outputs.insert("sha256".into(), chosen.sha256.into());
    done.evidence = evidence;
    Ok(done)
}

/// No complete `what` in `store` (under `wanted`, or before `before`): the failure, with
/// what was skipped on the way.
fn none_found(
    what: &str,
    store: &Store,
    wanted: &Option<String>,
    before: Option<Timestamp>,
    evidence: Vec<String>,
) -> StepFailure {
    let mut failure = StepFailure::new(format!(
        "no complete {what} in {}{}",
        store.url(),
        match (wanted, before) {
            (Some(key), _) => format!(" under the key {key}"),
            (None, Some(before)) => format!(" taken before {before}"),
            (None, None) => String::new(),
        }
    ));
    failure.evidence = evidence;
    failure
}

/// Says how the RPO achieved (`age`, from what `newest` names) compares with the objective;
/// fails the step when it is missed and the step says `on_rpo_miss: fail`.
fn judge_rpo(
    step: &Assess,
    ctx: &StepContext<'_>,
    age: jiff::SignedDuration,
    newest: &str,
    evidence: &mut Vec<String>,
) -> Result<(), StepFailure> {
    let Some(rpo) = ctx.rpo else {
        return Ok(());
    };
    let within = age.unsigned_abs() <= rpo.0 || age.is_negative();
    let verdict = if within { "within" } else { "over" };
    let line = format!(
        "RPO: {} {verdict} the objective of {rpo}",
        format_duration(age)
    );
    evidence.push(line);
    if !within && step.on_rpo_miss == OnRpoMiss::Fail {
        let mut failure = StepFailure::new(format!(
            "the newest good {newest} is {} old, over the RPO of {rpo}",
            format_duration(age)
        ));
        failure.evidence = std::mem::take(evidence);
        return Err(failure);
    }
    Ok(())
}

/// How far a streaming standby's replay is behind: nothing when it is streaming and has
/// replayed all it received; otherwise the time since the last transaction it replayed
/// (`pg_last_xact_replay_timestamp()`), which on an idle primary keeps growing although
/// nothing is missing — hence the first case.
async fn replication_lag(url: &str) -> Result<String, StepFailure> {
    let target = Target::parse(url).map_err(StepFailure::of)?;
    let client = target
        .connect(std::time::Duration::from_secs(15))
        .await
        .map_err(StepFailure::of)?;
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(),
                    CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()
                          AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')
                         THEN 0
                         ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())
                    END::float8",
            &[],
        )
        .await
        .map_err(|e| StepFailure::new(target.error(&e).to_string()))?;
    let in_recovery: bool = row.get(0);
    let seconds: Option<f64> = row.get(1);
    Ok(match (in_recovery, seconds) {
        (false, _) => format!("{target} is not a standby"),
        (true, None) => "unknown (nothing replayed yet)".into(),
        (true, Some(seconds)) => {
            format_duration(jiff::SignedDuration::from_secs_f64(seconds.max(0.0)))
        }
    })
}
