//! `sync`: mirror a store/prefix to another, with a checksum report.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::ByteSize;

/// Copies what is missing or different from `source` to `destination` (S3 or directories,
/// either way), many transfers in flight, and writes a checksum report (SHA-256, size, key of
/// every object) into the destination. Resumable: a re-run copies only what is still missing.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sync {
    pub source: String,
    pub destination: String,
    /// Remove destination objects absent at the source. Never deletes at the source.
    #[serde(default)]
    pub delete: bool,
    /// Allow `delete` when the source lists empty (refused by default: an empty source during
    /// an incident is a reason to stop, not to wipe the mirror).
    #[serde(default)]
    pub allow_empty_source: bool,
    /// Transfers in flight (default sized for throughput).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Multipart part size for large objects (default 16MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_size: Option<ByteSize>,
    /// S3 storage class for the copies, e.g. `GLACIER_IR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

pub const OUTPUTS: &[&str] = &[
    "copied",
    "deleted",
    "unchanged",
    "bytes",
    "objects",
    "report",
];
pub const IDEMPOTENT: bool = true;

impl Sync {
    pub fn summary(&self) -> String {
        format!("mirror {} to {}", self.source, self.destination)
    }
}
