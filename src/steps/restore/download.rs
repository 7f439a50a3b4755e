//! The dump, downloaded into the run's directory and checked against its manifest before
//! pg_restore sees a byte; removed when the step is over.

use crate::connect::store::Store;
use crate::manifest::Manifest;
use crate::steps::{Progress, StepContext, StepFailure, Unit};

/// The downloaded dump (and the directory it unpacks into), removed when the step is over
/// whatever happened.
pub(super) struct Download {
    pub(super) path: std::path::PathBuf,
}

impl Download {
    pub(super) async fn new(
        run_dir: &std::path::Path,
        id: &str,
        attempt: u32,
    ) -> Result<Download, StepFailure> {
        let dir = run_dir.join("tmp");
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| StepFailure::new(format!("{}: {e}", dir.display())))?;
        Ok(Download {
            path: dir.join(format!("{id}.{attempt}.dump")),
        })
    }

    /// Downloads the dump, hashing as it goes; fails unless size and SHA-256 match.
    pub(super) async fn fetch(
        &self,
        store: &Store,
        key: &str,
        manifest: &Manifest,
        ctx: &StepContext<'_>,
    ) -> Result<(), StepFailure> {
        let total = manifest.size;
        let report = |done| {
            (ctx.progress)(Progress {
                done,
                total: Some(total),
                unit: Unit::Bytes,
                objects: None,
            })
        };
        let (size, sha256) = store
            .download(key, &self.path, &report)
            .await
            .map_err(StepFailure::of)?;
        if size != manifest.size || sha256 != manifest.sha256 {
            return Err(StepFailure::permanent(format!(
                "{key} does not match its manifest (size {size}, manifest {}; sha256 {sha256}, manifest {}): the backup is corrupt, and the target was not touched",
                manifest.size, manifest.sha256
            )));
        }
        Ok(())
    }

    /// What pg_restore reads: the dump, or for a directory-format backup (a tar of pg_dump's
    /// directory) the directory unpacked beside it (read in parallel with `jobs`).
    pub(super) async fn unpack(
        &self,
        key: &str,
        manifest: &Manifest,
    ) -> Result<std::path::PathBuf, StepFailure> {
        let archive = match manifest.compressed_with.as_deref() {
            None => self.path.clone(),
            Some("zstd") => self.decompress(key).await?,
            Some(other) => {
                return Err(StepFailure::permanent(format!(
                    "{key} is compressed with `{other}`, which this drillbook does not know; the target was not touched"
                )));
            }
        };
        if manifest.format != "directory" {
            return Ok(archive);
        }
        let dir = self.path.with_extension("dir");
        let _ = std::fs::remove_dir_all(&dir);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| StepFailure::new(format!("{}: {e}", dir.display())))?;
        let untar = crate::connect::child::output(
            tokio::process::Command::new("tar")
                .arg("-C")
                .arg(&dir)
                .arg("-xf")
                .arg(&archive)
                .stdin(std::process::Stdio::null()),
        )
        .await
        .map_err(|e| StepFailure::new(format!("cannot start tar: {e}")))?;
        if !untar.status.success() {
            return Err(StepFailure::new(format!(
                "unpacking {key} failed ({}): {}; the target was not touched",
                untar.status,
                String::from_utf8_lossy(&untar.stderr).trim()
            )));
        }
        Ok(dir)
    }
}

impl Download {
    /// The downloaded (and checked) zstd stream, decompressed beside it: what pg_dump wrote.
    async fn decompress(&self, key: &str) -> Result<std::path::PathBuf, StepFailure> {
        let raw = self.path.with_extension("raw");
        let failed = |e: std::io::Error| {
            StepFailure::permanent(format!(
                "{key} does not decompress ({e}); the target was not touched"
            ))
        };
        let input = tokio::fs::File::open(&self.path)
            .await
            .map_err(|e| StepFailure::new(format!("{}: {e}", self.path.display())))?;
        let mut decoder = crate::compress::ZstdDecoder::new(input).map_err(failed)?;
        let mut output = tokio::fs::File::create(&raw)
            .await
            .map_err(|e| StepFailure::new(format!("{}: {e}", raw.display())))?;
        tokio::io::copy(&mut decoder, &mut output)
            .await
            .map_err(failed)?;
        // The compressed copy has served: the disk holds one copy of the dump from here.
        let _ = tokio::fs::remove_file(&self.path).await;
        Ok(raw)
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(self.path.with_extension("raw"));
        let _ = std::fs::remove_dir_all(self.path.with_extension("dir"));
    }
}
