//! Configuration backups (`config-backup`) against their manifests: the newest version of each
//! name in a store, or one version named by `backup:`. The size always, and with `deep` the
//! SHA-256 of the ciphertext read back. Nothing is decrypted: that takes the identity, which
//! `config-restore` holds.

use jiff::Timestamp;

use crate::connect::store::{ObjectInfo, Store};
use crate::steps::config_backup::layout::{self, Version};
use crate::steps::{StepContext, StepFailure, read_hashed};

/// What checking a store's configuration backups found.
#[derive(Default)]
pub(super) struct Checked {
    pub lines: Vec<String>,
    pub problems: Vec<String>,
    pub objects: usize,
    /// The newest version checked and found good: its key, time and SHA-256.
    pub newest: Option<(String, Timestamp, String)>,
}

/// Whether `key` is a configuration backup's.
pub(super) fn is_config_key(key: &str) -> bool {
    layout::time_of(key).is_some()
}

/// Whether `listing` holds configuration backups (and no database backups, which decide).
pub(super) fn is_config_store(listing: &[ObjectInfo]) -> bool {
    !layout::versions(listing, None).is_empty()
        && !crate::manifest::candidates(listing)
            .iter()
            .any(|c| c.manifest.is_some())
}

/// The newest version of every name in `listing` (or only `key`), each against its manifest.
pub(super) async fn check_configs(
    store: &Store,
    listing: &[ObjectInfo],
    key: Option<&str>,
    deep: bool,
    ctx: &StepContext<'_>,
) -> Result<Checked, StepFailure> {
    let versions = layout::versions(listing, None);
    let mut chosen: Vec<&Version> = Vec::new();
    match key {
        Some(key) => match versions.iter().find(|v| v.key == key) {
            Some(version) => chosen.push(version),
            None => {
                return Ok(Checked {
                    problems: vec![format!("{key} is not in {}", store.url())],
                    objects: 1,
                    ..Checked::default()
                });
            }
        },
        None => {
            // Newest first: the first of each name is its newest.
            for version in &versions {
                if !chosen
                    .iter()
                    .any(|c| layout::name_of(&c.key) == layout::name_of(&version.key))
                {
                    chosen.push(version);
                }
            }
        }
    }
    let mut checked = Checked::default();
    for version in chosen {
        checked.objects += 1;
        match check_version(store, version, deep, ctx).await? {
            Ok((line, sha256)) => {
                checked.lines.push(line);
                if checked
                    .newest
                    .as_ref()
                    .is_none_or(|(_, at, _)| version.at > *at)
                {
                    checked.newest = Some((version.key.clone(), version.at, sha256));
                }
            }
            Err(problem) => checked.problems.push(problem),
        }
    }
    Ok(checked)
}

/// One version: `Ok((evidence, sha256))`, or what is wrong with it.
async fn check_version(
    store: &Store,
    version: &Version,
    deep: bool,
    ctx: &StepContext<'_>,
) -> Result<Result<(String, String), String>, StepFailure> {
    let key = &version.key;
    let manifest = match layout::complete(store, version).await? {
        Ok(manifest) => manifest,
        Err(why) => return Ok(Err(format!("configuration backup {key}: {why}"))),
    };
    if !deep {
        return Ok(Ok((
            format!(
                "configuration backup {key}: {} bytes as in its manifest, sha256 {} (size \
                 checked; `deep: true` re-hashes), taken {}",
                manifest.size, manifest.sha256, manifest.taken_at
            ),
            manifest.sha256,
        )));
    }
    let reader = store.get(key, None).await.map_err(StepFailure::of)?;
    let (size, sha256) = read_hashed(reader, None, manifest.size, ctx)
        .await
        .map_err(|e| StepFailure::new(format!("reading {key}: {e}")))?;
    Ok(if sha256 == manifest.sha256 && size == manifest.size {
        Ok((
            format!(
                "configuration backup {key}: {size} bytes, sha256 {sha256}, as in its manifest, \
                 taken {}",
                manifest.taken_at
            ),
            sha256,
        ))
    } else {
        Err(format!(
            "configuration backup {key}: {size} bytes with sha256 {sha256}, its manifest says \
             {} bytes with sha256 {}",
            manifest.size, manifest.sha256
        ))
    })
}
