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
        if manifest.format != "directory" {
            return Ok(self.path.clone());
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
                .arg(&self.path)
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

impl Drop for Download {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir_all(self.path.with_extension("dir"));
    }
}
