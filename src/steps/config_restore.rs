//! `config-restore`: a version stored by `config-backup`, checked against its manifest,
//! decrypted with an age identity file and written to a path atomically (a temporary file in
//! the same directory, synced, renamed over the path; mode 0600). A failure leaves the path as
//! it was. The plaintext exists only in memory and in the file written.

use std::io::Write;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::config_backup::layout::{self, ConfigManifest};
use super::{Done, StepContext, StepFailure};
use crate::connect::store::Store;
use crate::encryption::{self, Identities};

/// Decrypts a configuration backup from `store` (the version `key`, or the newest complete
/// one filed under `name`) with the age `identity` file, and writes it to `to`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigRestore {
    /// The store `config-backup` wrote to.
    pub store: String,
    /// The name the versions are filed under (`env.production`): its newest complete version
    /// is restored. Give this or `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// One version's key, e.g. `{{ steps.backup.outputs.key }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The age identity file (`AGE-SECRET-KEY-1…` lines, from `age-keygen`), readable by its
    /// owner only (mode 0600 or 0400).
    pub identity: String,
    /// Where to write the decrypted file (mode 0600), replacing what is there.
    pub to: String,
}

impl super::StepKind for ConfigRestore {
    const NAME: &'static str = "config-restore";
    const OUTPUTS: &'static [&'static str] = &["key", "sha256", "taken_at", "path"];
    /// Writing the same version again gives the same file.
    const IDEMPOTENT: bool = true;

    fn access(&self) -> Vec<crate::steps::Access<'_>> {
        use crate::steps::{Access, Need};
        vec![Access::of("store", &self.store, &[Need::List, Need::Read])]
    }

    fn summary(&self) -> String {
        let what = self
            .key
            .as_deref()
            .or(self.name.as_deref())
            .unwrap_or_default();
        format!("decrypt {what} from {} to {}", self.store, self.to)
    }

    fn writes(&self) -> Vec<super::Write<'_>> {
        vec![super::Write::of(
            "to",
            &self.to,
            crate::target::Expect::File,
        )]
    }

    fn check(
        &self,
        node: &crate::loader::node::Node,
        out: &mut Vec<crate::diagnostic::Diagnostic>,
    ) {
        use super::at_key;
        match (&self.name, &self.key) {
            (None, None) => out.push(at_key(
                node,
                "kind",
                "a config-restore step needs `name:` (its newest version) or `key:` (one version)",
            )),
            (Some(_), Some(_)) => out.push(at_key(
                node,
                "key",
                "give `name` or `key`, not both: `key` names one version",
            )),
            _ => {}
        }
        layout::check_name(self.name.as_deref(), node, out);
    }

    async fn run(&self, ctx: &StepContext<'_>) -> Result<Done, StepFailure> {
        tokio::select! {
            result = self.restore(ctx) => result,
            _ = ctx.cancel.cancelled() => Err(StepFailure::cancelled()),
        }
    }
}

impl ConfigRestore {
    async fn restore(&self, ctx: &StepContext<'_>) -> Result<Done, StepFailure> {
        let render = |text: &str| (ctx.render)(text).map_err(StepFailure::new);
        let to = PathBuf::from(render(&self.to)?);
        // The identity first: a key anyone could read is refused before anything is fetched.
        let identity = PathBuf::from(render(&self.identity)?);
        let identities = Identities::load(&identity).map_err(StepFailure::permanent)?;
        if to.is_dir() {
            return Err(StepFailure::permanent(format!(
                "{} is a directory: `to` is the file to write",
                to.display()
            )));
        }
        let store = Store::open(&render(&self.store)?)
            .await
            .map_err(StepFailure::of)?;
        let mut evidence = Vec::new();
        let manifest = match &self.key {
            Some(key) => named(&store, &render(key)?).await?,
            None => {
                let name = render(self.name.as_deref().unwrap_or_default())?;
                let (newest, passed) = layout::newest(&store, &name).await?;
                evidence.extend(passed);
                match newest {
                    Some((_, manifest)) => manifest,
                    None => {
                        return Err(StepFailure::permanent(format!(
                            "{} holds no complete configuration backup named `{name}`",
                            store.url()
                        )));
                    }
                }
            }
        };
        let key = manifest.key.clone();
        let sealed = store.get_bytes(&key).await.map_err(StepFailure::of)?;
        let sha256 = {
            use sha2::Digest;
            crate::format::hex(&sha2::Sha256::digest(&sealed))
        };
        if sealed.len() as u64 != manifest.size || sha256 != manifest.sha256 {
            return Err(StepFailure::permanent(format!(
                "{key} holds {} bytes with sha256 {sha256}, its manifest says {} bytes with \
                 sha256 {}: not decrypted, {} left as it was",
                sealed.len(),
                manifest.size,
                manifest.sha256,
                to.display()
            )));
        }
        let plaintext = encryption::decrypt(&sealed, &identities, &key).map_err(|why| {
            StepFailure::permanent(format!("{why}; {} left as it was", to.display()))
        })?;
        let written = to.clone();
        tokio::task::spawn_blocking(move || write_atomically(&written, plaintext.bytes()))
            .await
            .map_err(|e| StepFailure::new(e.to_string()))?
            .map_err(|e| StepFailure::new(format!("{}: {e} (left as it was)", to.display())))?;
        evidence.push(format!(
            "restored {key} ({} bytes of age ciphertext, sha256 {sha256} as in its manifest, \
             taken {}) to {} (mode 0600)",
            manifest.size,
            manifest.taken_at,
            to.display()
        ));
        let mut done = Done::default();
        done.outputs.insert("key".into(), key.into());
        done.outputs.insert("sha256".into(), sha256.into());
        done.outputs
            .insert("taken_at".into(), manifest.taken_at.to_string().into());
        done.outputs
            .insert("path".into(), to.display().to_string().into());
        done.evidence = evidence;
        Ok(done)
    }
}

/// The manifest of the version `key`, when it is complete.
async fn named(store: &Store, key: &str) -> Result<ConfigManifest, StepFailure> {
    let Some(at) = layout::time_of(key) else {
        return Err(StepFailure::permanent(format!(
            "{key} is not a configuration backup's key (`<name>/<time>-<sha256 prefix>.age`)"
        )));
    };
    let Some(object) = store.head(key).await.map_err(StepFailure::of)? else {
        return Err(StepFailure::permanent(format!(
            "{key} is not in {}",
            store.url()
        )));
    };
    let version = layout::Version {
        key: key.to_owned(),
        size: object.size,
        at,
        has_manifest: true,
    };
    layout::complete(store, &version)
        .await?
        .map_err(|why| StepFailure::permanent(format!("{key} cannot be restored: {why}")))
}

/// `bytes` into `path` as a whole or not at all: a temporary file beside it (mode 0600, never
/// readable by others even for a moment), synced, renamed over `path`, the directory synced.
/// On failure the temporary file goes and `path` is untouched.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file path"))?
        .to_string_lossy();
    let temporary = directory.join(format!(
        ".{file_name}.drillbook-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        std::fs::File::open(&directory)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_file_is_replaced_whole_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "OLD=1\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomically(&path, b"NEW=2\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"NEW=2\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file stays");
        // A directory that cannot be written: nothing changes, and the error says why.
        let missing = dir.path().join("no/such/dir/.env");
        assert!(write_atomically(&missing, b"X").is_err());
    }
}
