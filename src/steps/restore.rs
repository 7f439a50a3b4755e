//! `restore`: verify a backup against its manifest, then `pg_restore` it into a target.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Downloads `backup` from `store`, checking size and SHA-256 against its manifest before
/// `pg_restore` sees a byte, then restores it into `target` with
/// `pg_restore --clean --if-exists --no-owner`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Restore {
    /// The backup key, usually `{{ steps.assess.outputs.backup }}`.
    pub backup: String,
    /// The store holding the backup.
    pub store: String,
    /// PostgreSQL URL of the target database, or `ephemeral` for a throwaway local cluster
    /// that drillbook creates and removes at cleanup.
    pub target: String,
    /// pg_restore parallel jobs (the dump is downloaded to a temporary file for `-j`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<u32>,
    /// pg_restore flags. Default: `[--clean, --if-exists, --no-owner]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<Vec<String>>,
    /// Regular expressions for pg_restore errors that do not fail the step
    /// (e.g. `role "app" does not exist`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_errors: Vec<String>,
}

pub const OUTPUTS: &[&str] = &["target", "database", "backup", "errors_ignored"];
/// `--clean --if-exists` makes a second restore replace the first.
pub const IDEMPOTENT: bool = true;

impl Restore {
    pub fn summary(&self) -> String {
        format!("restore {} into {}", self.backup, self.target)
    }
}
