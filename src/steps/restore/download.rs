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

    /// Downloads the dump, hashing as it goes and — for a zstd-compressed one — decompressing
    /// behind the download into the file pg_restore will read; fails unless size and SHA-256
    /// match the manifest and the stream decompresses. Returns the archive pg_dump wrote.
    pub(super) async fn fetch(
        &self,
        store: &Store,
        key: &str,
        manifest: &Manifest,
        ctx: &StepContext<'_>,
    ) -> Result<std::path::PathBuf, StepFailure> {
        let total = manifest.size;
        let report = |done| {
            (ctx.progress)(Progress {
                done,
                total: Some(total),
                unit: Unit::Bytes,
                objects: None,
            })
        };
        let raw = self.path.with_extension("raw");
        let through = match manifest.compressed_with.as_deref() {
            None => None,
            Some("zstd") => {
                let file = std::fs::File::create(&raw)
                    .map_err(|e| StepFailure::new(format!("{}: {e}", raw.display())))?;
                Some(crate::compress::UnzstdWriter::new(file).map_err(StepFailure::of)?)
            }
            Some(other) => {
                return Err(StepFailure::permanent(format!(
                    "{key} is compressed with `{other}`, which this drillbook does not know; the target was not touched"
                )));
            }
        };
        let downloaded = store
            .download(key, &self.path, &report, Through(through))
            .await
            .map_err(StepFailure::of)?;
        let (size, sha256) = (downloaded.size, &downloaded.sha256);
        if size != manifest.size || *sha256 != manifest.sha256 {
            return Err(StepFailure::permanent(format!(
                "{key} does not match its manifest (size {size}, manifest {}; sha256 {sha256}, manifest {}): the backup is corrupt, and the target was not touched",
                manifest.size, manifest.sha256
            )));
        }
        let Some(decompressing) = downloaded.through.0 else {
            return Ok(self.path.clone());
        };
        let decompressed = match downloaded.through_error {
            Some(error) => Err(error),
            None => decompressing.finish(),
        };
        decompressed.map_err(|e| {
            StepFailure::permanent(format!(
                "{key} does not decompress ({e}); the target was not touched"
            ))
        })?;
        // The compressed copy has served: the disk holds one copy of the dump from here.
        let _ = tokio::fs::remove_file(&self.path).await;
        Ok(raw)
    }

    /// What pg_restore reads: the dump, or for a directory-format backup (a tar of pg_dump's
    /// directory) the directory unpacked beside it (read in parallel with `jobs`).
    pub(super) async fn unpack(
        &self,
        key: &str,
        manifest: &Manifest,
        archive: std::path::PathBuf,
    ) -> Result<std::path::PathBuf, StepFailure> {
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

/// The decompressor the download writes through, if the dump is compressed.
struct Through(Option<crate::compress::UnzstdWriter<std::fs::File>>);

impl std::io::Write for Through {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.0 {
            Some(writer) => writer.write(buf),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.0 {
            Some(writer) => writer.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(self.path.with_extension("raw"));
        let _ = std::fs::remove_dir_all(self.path.with_extension("dir"));
    }
}
