//! `verify`: checksum parity between stores, backups against manifests, freshness.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

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
