//! `sync`: mirror a store/prefix to another, with a checksum report.
//!
//! Both sides are listed; a source object is copied unless the destination has it with the
//! same size and the checksum report says it came from the source object of this very size
//! and modification time. Copies stream from the source through SHA-256 into the
//! destination, many at once, with the memory of all uploads in flight bounded. The report is
//! written into the destination as the copy goes, so a sync killed halfway and run again
//! copies only what it had not finished.
//!
//! This file holds the step's parameters; the work is in its phases: `mirror` drives them,
//! `plan` decides what to copy and delete, `transfer` copies it with a pool of transfers
//! and saves `checkpoint`s, each read passes through a `hashing_reader`, and `summary`
//! words the result.

mod checkpoint;
mod hashing_reader;
mod mirror;
mod plan;
mod summary;
mod transfer;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::connect::store::Store;
use crate::duration::ByteSize;
use crate::steps::{Done, StepContext, StepFailure};
use mirror::Mirror;

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
    /// Objects of this size and larger go to S3 as multipart uploads, smaller ones as one
    /// request each (default 200MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipart_threshold: Option<ByteSize>,
    /// Copy server-side (CopyObject) when both stores are on the same S3 server (default);
    /// `false` reads every object through drillbook (servers without a working CopyObject).
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub server_side_copy: bool,
    /// S3 storage class for the copies, e.g. `GLACIER_IR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

fn yes() -> bool {
    true
}

fn is_yes(value: &bool) -> bool {
    *value
}

/// Transfers in flight by default: small objects are bound by request latency, not bandwidth,
/// so many at once.
const DEFAULT_CONCURRENCY: u32 = 32;
const DEFAULT_PART_SIZE: u64 = 16 << 20;
/// S3's limits on a part's size.
const MIN_PART_SIZE: u64 = 5 << 20;
const MAX_PART_SIZE: u64 = 5 << 30;

impl crate::steps::StepKind for Sync {
    const NAME: &'static str = "sync";
    const OUTPUTS: &'static [&'static str] = &[
        "copied",
        "deleted",
        "unchanged",
        "bytes",
        "objects",
        "report",
    ];
    const IDEMPOTENT: bool = true;
    const SCALES_WITH_SIZE: bool = true;

    /// Reads the source; lists, reads (its checksum report), writes and cleans up the
    /// destination, and deletes there only with `delete: true`.
    fn access(&self) -> Vec<crate::steps::Access<'_>> {
        use crate::steps::{Access, Need};
        let destination: &'static [Need] = if self.delete {
            &[
                Need::List,
                Need::Read,
                Need::Write,
                Need::Delete,
                Need::CleanUp,
            ]
        } else {
            &[Need::List, Need::Read, Need::Write, Need::CleanUp]
        };
        vec![
            Access::of("source", &self.source, &[Need::List, Need::Read]),
            Access::of("destination", &self.destination, destination),
        ]
    }

    fn summary(&self) -> String {
        format!("mirror {} to {}", self.source, self.destination)
    }

    fn writes(&self) -> Vec<crate::steps::Write<'_>> {
        vec![crate::steps::Write::of(
            "destination",
            &self.destination,
            crate::target::Expect::Store,
        )]
    }

    fn check(
        &self,
        node: &crate::loader::node::Node,
        out: &mut Vec<crate::diagnostic::Diagnostic>,
    ) {
        if self.concurrency == Some(0) {
            out.push(crate::steps::at_key(
                node,
                "concurrency",
                "`concurrency` is at least 1",
            ));
        }
        if let Some(size) = self.part_size
            && !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&size.0)
        {
            out.push(crate::steps::at_key(
                node,
                "part_size",
                format!("`part_size` is from 5MiB to 5GiB (S3's limits on a part), not {size}"),
            ));
        }
        if let Some(size) = self.multipart_threshold
            && !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&size.0)
        {
            out.push(crate::steps::at_key(
                node,
                "multipart_threshold",
                format!(
                    "`multipart_threshold` is from 5MiB to 5GiB (S3's limits on a part and on one request), not {size}"
                ),
            ));
        }
    }

    async fn run(&self, ctx: &StepContext<'_>) -> Result<Done, StepFailure> {
        let render = |text: &str| (ctx.render)(text).map_err(StepFailure::new);
        let source_text = render(&self.source)?;
        let destination_text = render(&self.destination)?;
        let storage_class = match &self.storage_class {
            Some(class) => Some(render(class)?.trim().to_owned()).filter(|c| !c.is_empty()),
            None => None,
        };
        // The copy phase watches the token itself, to save its checkpoint before stopping.
        let (source, destination) = cancellable(&ctx.cancel, async {
            tokio::try_join!(Store::open(&source_text), Store::open(&destination_text))
                .map_err(StepFailure::of)
        })
        .await?;
        if overlap(&source, &source_text, &destination, &destination_text) {
            return Err(StepFailure::new(format!(
                "the source {} and the destination {} overlap: a mirror inside its source (or a source inside its mirror) would copy itself",
                source.url(),
                destination.url()
            )));
        }
        let mirror = Mirror {
            step: self,
            ctx,
            source,
            destination,
            storage_class,
            evidence: Vec::new(),
            writer: crate::checksums::Writer::new(),
        };
        mirror.run().await
    }
}

/// Runs `work` unless the step is cancelled first (the work is then dropped).
async fn cancellable<T>(
    cancel: &CancellationToken,
    work: impl Future<Output = Result<T, StepFailure>>,
) -> Result<T, StepFailure> {
    tokio::select! {
        result = work => result,
        _ = cancel.cancelled() => Err(StepFailure::cancelled()),
    }
}

/// Whether one store lies inside the other: the same bucket (and server) or directory, and
/// one prefix within the other.
fn overlap(a: &Store, a_text: &str, b: &Store, b_text: &str) -> bool {
    let place = |store: &Store, text: &str| -> String {
        let mut place = if store.is_local() {
            let path = store.url().strip_prefix("file://").unwrap_or(store.url());
            std::path::absolute(path)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| path.to_owned())
        } else {
            // The same bucket name on another server is another bucket.
            let query = text.split_once('?').map_or("", |(_, query)| query);
            format!("{query} {}", store.url())
        };
        if !place.ends_with('/') {
            place.push('/');
        }
        place
    };
    if a.is_local() != b.is_local() {
        return false;
    }
    let (a, b) = (place(a, a_text), place(b, b_text));
    a.starts_with(&b) || b.starts_with(&a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overlapping_stores_are_found() {
        let base = tempfile::tempdir().expect("tempdir");
        let path = |sub: &str| base.path().join(sub).display().to_string();
        std::fs::create_dir_all(base.path().join("data/mirror")).expect("mkdir");
        std::fs::create_dir_all(base.path().join("database")).expect("mkdir");
        let open = async |text: &str| Store::open(text).await.expect("open");
        let data = open(&path("data")).await;
        let inner = open(&format!("file://{}", path("data/mirror"))).await;
        let sibling = open(&path("database")).await;
        assert!(overlap(&data, "", &inner, ""));
        assert!(overlap(&inner, "", &data, ""));
        assert!(overlap(&data, "", &data, ""));
        assert!(!overlap(&data, "", &sibling, ""));
    }
}
