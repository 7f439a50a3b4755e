//! `assess`: find the newest complete backup in a store and measure the RPO against it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Lists the backups in `store`, skips incomplete ones (no manifest, size mismatch) and picks
/// the newest good one — or the one named by `key`, or the newest taken before `before`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Assess {
    /// Where the backups are: `s3://bucket/prefix`, `file:///path` or a plain directory.
    pub store: String,
    /// Use this backup key instead of the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Point in time (RFC 3339): the newest backup taken before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// What a missed RPO does: `record` it (the run goes on and exits 3) or `fail` the step.
    #[serde(default)]
    pub on_rpo_miss: OnRpoMiss,
    /// A streaming standby (PostgreSQL URL) whose replication lag is measured too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnRpoMiss {
    #[default]
    Record,
    Fail,
}

impl Assess {
    pub(crate) fn check(
        &self,
        node: &crate::loader::node::Node,
        out: &mut Vec<crate::diagnostic::Diagnostic>,
    ) {
        if self.key.is_some() && self.before.is_some() {
            out.push(super::at_key(
                node,
                "before",
                "give `key` or `before`, not both: `key` names one backup",
            ));
        }
    }
}

pub const OUTPUTS: &[&str] = &[
    "backup",
    "taken_at",
    "age",
    "size",
    "sha256",
    "replication_lag",
];
pub const IDEMPOTENT: bool = true;

impl Assess {
    pub fn summary(&self) -> String {
        format!("find the newest good backup in {}", self.store)
    }
}
