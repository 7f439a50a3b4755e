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

pub const OUTPUTS: &[&str] = &["keys_before", "keys_after", "deleted"];
pub const IDEMPOTENT: bool = true;

impl Flush {
    pub fn summary(&self) -> String {
        match (&self.pattern, self.scope) {
            (Some(pattern), _) => format!("delete Redis keys matching {pattern}"),
            (None, FlushScope::Db) => "FLUSHDB".into(),
            (None, FlushScope::All) => "FLUSHALL ASYNC".into(),
        }
    }
}
