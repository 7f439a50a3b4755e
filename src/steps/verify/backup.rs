//! A database backup against its manifest: its size, and with `deep` its SHA-256.

use crate::connect::store::Store;
use crate::manifest::{self, Manifest};
use crate::steps::{StepContext, StepFailure, read_hashed};

/// A backup against its manifest: the size the store reports, and with `deep` the SHA-256 of
/// the bytes read back. `Err` inside says what is wrong with the backup.
pub(super) async fn check_backup(
    store: &Store,
    key: &str,
    deep: bool,
    ctx: &StepContext<'_>,
) -> Result<Result<String, String>, StepFailure> {
    let manifest = match store.get_bytes(&manifest::manifest_key(key)).await {
        Ok(bytes) => Manifest::parse(&bytes).map_err(StepFailure::new)?,
        Err(e) if e.is_not_found() => return Ok(Err(format!("{key} has no manifest"))),
        Err(e) => return Err(StepFailure::of(e)),
    };
    let Some(object) = store.head(key).await.map_err(StepFailure::of)? else {
        return Ok(Err(format!("{key} is missing (its manifest is there)")));
    };
    if object.size != manifest.size {
        return Ok(Err(format!(
            "{key} holds {} bytes, its manifest says {}",
            object.size, manifest.size
        )));
    }
    if !deep {
        return Ok(Ok(format!(
            "{key}: {} bytes as in its manifest (size checked; `deep: true` re-hashes)",
            object.size
        )));
    }
    let reader = store.get(key, None).await.map_err(StepFailure::of)?;
    let (_, sha256) = read_hashed(reader, None, manifest.size, ctx)
        .await
        .map_err(|e| StepFailure::new(format!("reading {key}: {e}")))?;
    Ok(if sha256 == manifest.sha256 {
        Ok(format!(
            "{key}: {} bytes, sha256 {sha256}, as in its manifest",
            object.size
        ))
    } else {
        Err(format!(
            "{key}: sha256 {sha256}, its manifest says {}",
            manifest.sha256
        ))
    })
}
