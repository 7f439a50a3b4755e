//! `flush`: invalidate caches in Redis.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `FLUSHDB` (or `FLUSHALL ASYNC`), or SCAN + UNLINK of the keys matching `pattern`, in
/// batches. Records the key count before and after.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Flush {
    /// Redis URL (`redis://` or `rediss://`), usually `{{ secrets.REDIS_URL }}`.
    pub redis: String,
    /// `db` (FLUSHDB, the default) or `all` (FLUSHALL ASYNC).
    #[serde(default)]
    pub scope: FlushScope,
    /// Only delete keys matching this glob (SCAN + UNLINK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Keys per SCAN/UNLINK batch (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
    /// Refuse to run unless the Redis host is this one: a drill can never flush production.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_host: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FlushScope {
    #[default]
    Db,
    All,
}

impl super::StepKind for Flush {
    const NAME: &'static str = "flush";
    const OUTPUTS: &'static [&'static str] = &["keys_before", "keys_after", "deleted"];
    const IDEMPOTENT: bool = true;

    fn summary(&self) -> String {
        // Which Redis, never its password: a template is shown as written (rendered, or a
        // named placeholder, where the summary is shown).
        let redis = if crate::template::is_template(&self.redis) {
            self.redis.clone()
        } else {
            crate::connect::redis::describe(&self.redis)
        };
        match (&self.pattern, self.scope) {
            (Some(pattern), _) => format!("delete keys matching {pattern} on {redis}"),
            (None, FlushScope::Db) => format!("FLUSHDB on {redis}"),
            (None, FlushScope::All) => format!("FLUSHALL ASYNC on {redis}"),
        }
    }

    /// FLUSHALL empties every database of the server.
    fn writes(&self) -> Vec<crate::steps::Write<'_>> {
        let write = crate::steps::Write::of("redis", &self.redis, crate::target::Expect::Redis);
        vec![match self.scope {
            FlushScope::Db => write,
            FlushScope::All => write.server(),
        }]
    }

    async fn run(&self, ctx: &super::StepContext<'_>) -> Result<super::Done, super::StepFailure> {
        use super::StepFailure;
        use crate::connect::redis::Target;
        let url = (ctx.render)(&self.redis).map_err(StepFailure::new)?;
        let target = Target::parse(&url).map_err(StepFailure::of)?;
        if let Some(expected) = &self.expect_host {
            let expected = (ctx.render)(expected).map_err(StepFailure::new)?;
            // Host names are case-insensitive; anything else must match exactly, so that a
            // drill pointed at the wrong server refuses before it has connected.
            if !target.host().eq_ignore_ascii_case(expected.trim()) {
                return Err(StepFailure::new(format!(
                    "refusing to flush Redis at {}: this step expects host {}",
                    target.address(),
                    expected.trim()
                )));
            }
        }
        let batch = self.batch.unwrap_or(DEFAULT_BATCH);
        if batch == 0 {
            return Err(StepFailure::new("`batch` must be at least 1"));
        }
        let pattern = match &self.pattern {
            Some(pattern) => Some((ctx.render)(pattern).map_err(StepFailure::new)?),
            None => None,
        };

        let mut connection = tokio::select! {
            connection = target.connect(CONNECT_LIMIT) => connection.map_err(StepFailure::of)?,
            _ = ctx.cancel.cancelled() => return Err(StepFailure::cancelled()),
        };
        // FLUSHALL empties every database, so its count is the whole keyspace; otherwise the
        // step works in the URL's database only.
        let whole_server = pattern.is_none() && self.scope == FlushScope::All;
        let count = async |connection: &mut redis::aio::MultiplexedConnection| {
            if whole_server {
                let info: String = redis::cmd("INFO")
                    .arg("keyspace")
                    .query_async(connection)
                    .await
                    .map_err(|e| StepFailure::of(target.error(&e)))?;
                Ok::<u64, StepFailure>(crate::connect::redis::keys_in_keyspace(&info))
            } else {
                redis::cmd("DBSIZE")
                    .query_async(connection)
                    .await
                    .map_err(|e| StepFailure::of(target.error(&e)))
            }
        };

        let keys_before = count(&mut connection).await?;
        let mut evidence = Vec::new();
        let unlinked = match &pattern {
            Some(pattern) => {
                let (unlinked, batches) =
                    unlink_matching(ctx, &target, &mut connection, pattern, batch, keys_before)
                        .await?;
                evidence.push(format!(
                    "deleted {unlinked} keys matching `{pattern}` in {target} with SCAN + UNLINK ({batches} batches of up to {batch})"
                ));
                Some(unlinked)
            }
            None => {
                let command = match self.scope {
                    FlushScope::Db => redis::cmd("FLUSHDB"),
                    FlushScope::All => {
                        let mut command = redis::cmd("FLUSHALL");
                        // The server frees the memory in the background; the keys are gone
                        // from view at once, so the count after is still true.
                        command.arg("ASYNC");
                        command
                    }
                };
                let () = command
                    .query_async(&mut connection)
                    .await
                    .map_err(|e| StepFailure::of(target.error(&e)))?;
                evidence.push(match self.scope {
                    FlushScope::Db => format!("FLUSHDB on {target}"),
                    FlushScope::All => {
                        format!("FLUSHALL ASYNC on {} (every database)", target.address())
                    }
                });
                None
            }
        };
        let keys_after = count(&mut connection).await?;
        // Other clients may write meanwhile: UNLINK's own count is exact, the difference of
        // two counts is the best there is for a flush.
        let deleted = unlinked.unwrap_or(keys_before.saturating_sub(keys_after));
        let counted = if whole_server {
            "keys in all databases"
        } else {
            "DBSIZE"
        };
        evidence.push(format!(
            "{counted} {keys_before} before, {keys_after} after"
        ));

        let mut done = super::Done::default();
        done.outputs
            .insert("keys_before".into(), keys_before.into());
        done.outputs.insert("keys_after".into(), keys_after.into());
        done.outputs.insert("deleted".into(), deleted.into());
        done.evidence = evidence;
        Ok(done)
    }
}

/// How long connecting to Redis may take before the step fails with a clear message.
const CONNECT_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);
const DEFAULT_BATCH: u32 = 1000;

/// SCAN MATCH + UNLINK, batch by batch, until the cursor comes back to 0. Returns the keys
/// unlinked and the number of SCAN calls.
async fn unlink_matching(
    ctx: &super::StepContext<'_>,
    target: &crate::connect::redis::Target,
    connection: &mut redis::aio::MultiplexedConnection,
    pattern: &str,
    batch: u32,
    keys_before: u64,
) -> Result<(u64, u64), super::StepFailure> {
    use super::{Progress, StepFailure, Unit};

    let (mut cursor, mut unlinked, mut batches) = (0u64, 0u64, 0u64);
    loop {
        if ctx.cancel.is_cancelled() {
            let mut failure = StepFailure::cancelled();
            failure
                .evidence
                .push(format!("cancelled after unlinking {unlinked} keys"));
            return Err(failure);
        }
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(batch)
            .query_async(connection)
            .await
            .map_err(|e| StepFailure::of(target.error(&e)))?;
        batches += 1;
        if !keys.is_empty() {
            let removed: u64 = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(connection)
                .await
                .map_err(|e| StepFailure::of(target.error(&e)))?;
            unlinked += removed;
        }
        (ctx.progress)(Progress {
            done: unlinked,
            total: Some(keys_before),
            unit: Unit::Objects,
            objects: None,
        });
        cursor = next;
        if cursor == 0 {
            return Ok((unlinked, batches));
        }
    }
}
