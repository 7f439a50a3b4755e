//! Where configuration backups live in a store, and the manifest that vouches for each:
//!
//! ```text
//! <name>/<time>-<sha256 prefix>.age                 the age ciphertext, written first
//! <name>/<time>-<sha256 prefix>.age.manifest.json   written last: its size, its SHA-256, the
//!                                                   plaintext's keyed fingerprint, the recipients
//! ```
//!
//! The time is the UTC moment it was taken (keys sort oldest to newest); the SHA-256 is the
//! ciphertext's, so the key alone names the bytes it holds. A version without its manifest is
//! incomplete, whatever its content. No retention ever removes a version: the database
//! backups' pruning only looks at `.dump` keys and base backups' at `base/…​.tar.zst` and
//! WAL segment names, which these keys never match (tested below).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::connect::store::{ObjectInfo, Store};
use crate::steps::StepFailure;

pub const SUFFIX: &str = ".age";
pub const MANIFEST_SUFFIX: &str = ".manifest.json";
/// The manifest's `kind`: what tells a configuration backup's manifest from a dump's.
pub const KIND: &str = "config-backup";
/// How many hex digits of the ciphertext's SHA-256 a key carries.
const HASH_IN_KEY: usize = 12;

/// What a configuration backup's manifest says. Nothing in it is secret: the fingerprint is
/// keyed (HMAC), so it confirms no guess of the content without the key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigManifest {
    pub manifest_version: u32,
    /// Always [`KIND`].
    pub kind: String,
    /// The file's name in the store (`env.production`).
    pub name: String,
    /// The ciphertext's key, relative to the store.
    pub key: String,
    /// The ciphertext's size in bytes.
    pub size: u64,
    /// SHA-256 of the ciphertext, lowercase hex.
    pub sha256: String,
    /// The plaintext's keyed fingerprint: equal under one key means the file did not change.
    pub fingerprint: String,
    /// [`crate::encryption::FINGERPRINT_ALGORITHM`].
    pub fingerprint_algorithm: String,
    /// The age recipients (public keys) it is encrypted to.
    pub recipients: Vec<String>,
    pub taken_at: Timestamp,
    pub created_by: String,
}

impl ConfigManifest {
    pub fn parse(bytes: &[u8]) -> Result<ConfigManifest, String> {
        let manifest: ConfigManifest = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a configuration backup's manifest: {e}"))?;
        if manifest.kind != KIND {
            return Err(format!(
                "not a configuration backup's manifest (kind `{}`)",
                manifest.kind
            ));
        }
        Ok(manifest)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

/// `<name>/20261124T181500.123Z-<12 hex>.age`.
/// Validation of a step's `name:` (a template is checked when rendered).
pub(crate) fn check_name(
    name: Option<&str>,
    node: &crate::loader::node::Node,
    out: &mut Vec<crate::diagnostic::Diagnostic>,
) {
    if let Some(name) = name
        && !crate::template::is_template(name)
        && !valid_name(name)
    {
        out.push(crate::steps::at_key(
            node,
            "name",
            "`name` is one path segment of letters, digits, `.`, `_` and `-`, not starting \
             with `.` (e.g. `env.production`)",
        ));
    }
}

pub fn key(name: &str, at: Timestamp, sha256: &str) -> String {
    let hash = sha256.get(..HASH_IN_KEY).unwrap_or(sha256);
    format!("{name}/{}-{hash}{SUFFIX}", crate::format::key_time(at))
}

pub fn manifest_key(key: &str) -> String {
    format!("{key}{MANIFEST_SUFFIX}")
}

/// The time in a configuration backup's key, when it is one.
pub fn time_of(key: &str) -> Option<Timestamp> {
    let file = key.rsplit('/').next()?.strip_suffix(SUFFIX)?;
    let (time, hash) = file.rsplit_once('-')?;
    if hash.len() != HASH_IN_KEY || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    crate::format::time_in_key(time, "")
}

/// The name a key is filed under: its directory (`""` at the store's root).
pub fn name_of(key: &str) -> &str {
    key.rsplit_once('/').map(|(name, _)| name).unwrap_or("")
}

/// Whether `name` can name configuration backups: one plain path segment.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// One stored version, complete when its manifest is there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub key: String,
    pub size: u64,
    pub at: Timestamp,
    pub has_manifest: bool,
}

/// The configuration backups in a listing, newest first; only those filed under `name` when
/// it is given.
pub fn versions(listing: &[ObjectInfo], name: Option<&str>) -> Vec<Version> {
    let keys: std::collections::HashSet<&str> = listing.iter().map(|o| o.key.as_str()).collect();
    let mut found: Vec<Version> = listing
        .iter()
        .filter(|o| name.is_none_or(|name| name_of(&o.key) == name))
        .filter_map(|o| {
            Some(Version {
                at: time_of(&o.key)?,
                key: o.key.clone(),
                size: o.size,
                has_manifest: keys.contains(manifest_key(&o.key).as_str()),
            })
        })
        .collect();
    found.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.key.cmp(&a.key)));
    found
}

/// The newest complete version filed under `name` (a manifest that reads, and a size that
/// matches it), with its manifest, and what was passed over on the way.
pub async fn newest(
    store: &Store,
    name: &str,
) -> Result<(Option<(Version, ConfigManifest)>, Vec<String>), StepFailure> {
    // A local store not written yet holds no version (writing creates its directory).
    if !store.exists().await.map_err(StepFailure::of)? {
        return Ok((None, Vec::new()));
    }
    let listing = store
        .list(&format!("{name}/"))
        .await
        .map_err(StepFailure::of)?;
    let mut passed = Vec::new();
    for version in versions(&listing, Some(name)) {
        match complete(store, &version).await? {
            Ok(manifest) => return Ok((Some((version, manifest)), passed)),
            Err(why) => passed.push(format!("passed over {}: {why}", version.key)),
        }
    }
    Ok((None, passed))
}

/// A version's manifest, or why the version is incomplete.
pub async fn complete(
    store: &Store,
    version: &Version,
) -> Result<Result<ConfigManifest, String>, StepFailure> {
    if !version.has_manifest {
        return Ok(Err("no manifest (an interrupted backup)".into()));
    }
    let bytes = match store.get_bytes(&manifest_key(&version.key)).await {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => return Ok(Err("no manifest".into())),
        Err(e) => return Err(StepFailure::of(e)),
    };
    Ok(match ConfigManifest::parse(&bytes) {
        Err(e) => Err(format!("manifest unreadable: {e}")),
        Ok(manifest) if manifest.size != version.size || manifest.key != version.key => {
            Err(format!(
                "the manifest says {} bytes under {}, the store holds {} under {}",
                manifest.size, manifest.key, version.size, version.key
            ))
        }
        Ok(manifest) => Ok(manifest),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size: 10,
            modified: None,
        }
    }

    #[test]
    fn keys_carry_the_time_and_the_hash_and_sort_newest_first() {
        let at: Timestamp = "2026-12-05T10:15:00.123Z".parse().unwrap();
        let key = key("env.production", at, &"ab".repeat(32));
        assert_eq!(key, "env.production/20261205T101500.123Z-abababababab.age");
        assert_eq!(time_of(&key), Some(at));
        assert_eq!(name_of(&key), "env.production");
        let later = super::key(
            "env.production",
            "2026-12-06T00:00:00Z".parse().unwrap(),
            "cd",
        );
        assert_eq!(time_of(&later), None, "a short hash is not drillbook's");
        let later = super::key(
            "env.production",
            "2026-12-06T00:00:00Z".parse().unwrap(),
            &"cd".repeat(32),
        );
        let listing = [
            object(&key),
            object(&manifest_key(&key)),
            object(&later),
            object("other/20261207T000000.000Z-abababababab.age"),
            object("env.production/notes.txt"),
        ];
        let found = versions(&listing, Some("env.production"));
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].key, later);
        assert!(!found[0].has_manifest);
        assert!(found[1].has_manifest);
        assert_eq!(versions(&listing, None).len(), 3);
    }

    #[test]
    fn names_are_one_plain_segment() {
        assert!(valid_name("env.production"));
        for bad in ["", ".env", "a/b", "a b", "..", "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    /// Kept forever: no pruning drillbook does can select a configuration backup, whatever it
    /// is named — even `base` or `wal`, the folders of base backups and the WAL archive.
    #[test]
    fn no_pruning_matches_configuration_backups() {
        let old: Timestamp = "2020-01-01T00:00:00Z".parse().unwrap();
        let mut listing = Vec::new();
        for name in ["env.production", "base", "wal", "dump"] {
            let key = key(name, old, &"ab".repeat(32));
            listing.push(object(&manifest_key(&key)));
            listing.push(object(&key));
        }
        assert!(crate::manifest::candidates(&listing).is_empty());
        assert!(crate::wal::base::base_candidates(&listing).is_empty());
        let now = Timestamp::now();
        let pruning = crate::wal::retention::prune(&listing, &[], now);
        assert!(pruning.keys().is_empty(), "{:?}", pruning.keys());
        assert!(
            listing
                .iter()
                .all(|o| crate::manifest::time_of(&o.key).is_none())
        );
        assert!(
            listing
                .iter()
                .all(|o| crate::wal::base::time_of(&o.key).is_none())
        );
    }
}
