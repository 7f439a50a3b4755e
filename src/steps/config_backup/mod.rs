//! `config-backup`: a configuration file (`.env.production`) stored encrypted to age
//! recipients, a new version only when its content changed, kept forever.
//!
//! Whether it changed is decided without decrypting anything: each version's manifest records
//! the plaintext's keyed fingerprint (HMAC-SHA256 under `fingerprint_key`, a secret), and the
//! file's fingerprint now is compared with the newest version's. A plain SHA-256 of the
//! plaintext would let anyone who reads the store confirm a guess of a low-entropy file (a
//! changed `DEBUG=false`, a short PIN); a hash of the ciphertext would differ on every run,
//! since age encrypts each time under a new random key. The plaintext itself goes nowhere but
//! into the encryptor: not to the store, the journal, a log or a report.
//!
//! `layout.rs` names the keys and the manifest; `config-restore` is the way back.

pub mod layout;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::pending::Pending;
use super::{Done, StepContext, StepFailure};
use crate::connect::store::Store;
use crate::encryption::{self, Recipient};
use layout::ConfigManifest;

/// Encrypts `file` to the age `recipients` and stores it in `store` as
/// `<name>/<UTC time>-<sha256 prefix>.age` with a manifest, unless the newest version there
/// already holds the same content. No retention ever removes a version.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigBackup {
    /// The file to back up, e.g. `/srv/app/.env.production`.
    pub file: String,
    /// Where the versions go: `s3://bucket/prefix`, `file:///path` or a plain directory.
    pub store: String,
    /// The name its versions are filed under in the store (default: the file's name without
    /// leading dots, `env.production`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// age public keys (`age1…`) to encrypt to; any one of their identities decrypts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// A file of age public keys, one a line (`#` comments), as `age -R` reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipients_file: Option<String>,
    /// The key of the content's fingerprint (HMAC-SHA256), from a secret, e.g.
    /// `{{ secrets.CONFIG_FINGERPRINT_KEY }}`: at least 16 bytes, the same on every run (a
    /// new key makes one new version).
    pub fingerprint_key: String,
}

impl super::StepKind for ConfigBackup {
    const NAME: &'static str = "config-backup";
    const OUTPUTS: &'static [&'static str] =
        &["key", "manifest", "sha256", "size", "taken_at", "changed"];
    /// A second run finds the content it stored and writes nothing.
    const IDEMPOTENT: bool = true;

    /// Lists the name's versions, reads the newest manifest, writes the new version.
    fn access(&self) -> Vec<crate::steps::Access<'_>> {
        use crate::steps::{Access, Need};
        vec![Access::of(
            "store",
            &self.store,
            &[Need::List, Need::Read, Need::Write],
        )]
    }

    fn summary(&self) -> String {
        format!("back up {} encrypted into {}", self.file, self.store)
    }

    fn writes(&self) -> Vec<super::Write<'_>> {
        vec![super::Write::of(
            "store",
            &self.store,
            crate::target::Expect::Store,
        )]
    }

    fn check(
        &self,
        node: &crate::loader::node::Node,
        out: &mut Vec<crate::diagnostic::Diagnostic>,
    ) {
        use super::at_key;
        if self.recipients.is_empty() && self.recipients_file.is_none() {
            out.push(at_key(
                node,
                "kind",
                "a config-backup step needs `recipients:` (age public keys, `age1…`) or \
                 `recipients_file:`: without them nobody could ever decrypt the backup",
            ));
        }
        for recipient in &self.recipients {
            if crate::template::is_template(recipient) {
                continue;
            }
            if let Err(why) = encryption::parse_recipient(recipient) {
                let mut listed = Vec::new();
                if let Some(list) = node.get("recipients") {
                    list.strings(&mut listed);
                }
                let place = listed
                    .into_iter()
                    .find(|item| item.as_str() == Some(recipient.as_str()))
                    .or_else(|| node.key("recipients"))
                    .unwrap_or(node);
                out.push(crate::diagnostic::Diagnostic::new(
                    place.pos,
                    place.len,
                    format!("this recipient {why}"),
                ));
            }
        }
        if !(crate::template::is_template(&self.fingerprint_key)
            && self.fingerprint_key.contains("secrets"))
        {
            out.push(at_key(
                node,
                "fingerprint_key",
                "`fingerprint_key` must come from a secret, like \
                 `{{ secrets.CONFIG_FINGERPRINT_KEY }}`: written in the playbook, anyone who \
                 reads it could test guesses of the file's content against the fingerprints",
            ));
        }
        layout::check_name(self.name.as_deref(), node, out);
    }

    async fn run(&self, ctx: &StepContext<'_>) -> Result<Done, StepFailure> {
        tokio::select! {
            result = self.back_up(ctx) => result,
            _ = ctx.cancel.cancelled() => Err(StepFailure::cancelled()),
        }
    }
}

impl ConfigBackup {
    async fn back_up(&self, ctx: &StepContext<'_>) -> Result<Done, StepFailure> {
        let render = |text: &str| (ctx.render)(text).map_err(StepFailure::new);
        let file = std::path::PathBuf::from(render(&self.file)?);
        let name = match &self.name {
            Some(name) => render(name)?,
            None => default_name(&file),
        };
        if !layout::valid_name(&name) {
            return Err(StepFailure::permanent(format!(
                "cannot file {} under the name `{name}`: give `name:`, one path segment of \
                 letters, digits, `.`, `_` and `-`",
                file.display()
            )));
        }
        let recipients = self.recipients(&render)?;
        let fingerprint_key = render(&self.fingerprint_key)?;
        if fingerprint_key.len() < encryption::MIN_FINGERPRINT_KEY {
            return Err(StepFailure::permanent(format!(
                "`fingerprint_key` is {} bytes; it needs at least {} random bytes (e.g. \
                 `openssl rand -base64 32`)",
                fingerprint_key.len(),
                encryption::MIN_FINGERPRINT_KEY
            )));
        }
        let plaintext = read_config(&file).await?;
        let fingerprint = encryption::fingerprint(fingerprint_key.as_bytes(), plaintext.bytes());

        let run_id = ctx
            .run_dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let store = Store::open(&render(&self.store)?)
            .await
            .map_err(StepFailure::of)?
            .owned_by(&run_id);
        let mut evidence = Vec::new();
        for removed in store
            .remove_incomplete(&format!("{name}/"))
            .await
            .map_err(StepFailure::of)?
        {
            evidence.push(format!(
                "removed what an interrupted upload left: {removed}"
            ));
        }
        evidence.extend(Pending::clear(ctx, &store).await?);
        let (newest, passed) = layout::newest(&store, &name).await?;
        evidence.extend(passed);
        if let Some((version, manifest)) = newest
            && manifest.fingerprint == fingerprint
        {
            evidence.push(format!(
                "{} is unchanged since {} (taken {}, the same fingerprint): nothing written",
                file.display(),
                version.key,
                manifest.taken_at
            ));
            evidence.push(described(&manifest));
            return Ok(done(manifest, false, evidence));
        }

        let sealed =
            encryption::encrypt(plaintext.bytes(), &recipients).map_err(StepFailure::permanent)?;
        drop(plaintext);
        let sha256 = {
            use sha2::Digest;
            crate::format::hex(&sha2::Sha256::digest(&sealed))
        };
        // To the millisecond, as the key says it: the key, the manifest and the outputs agree.
        let now = jiff::Timestamp::now();
        let taken_at = jiff::Timestamp::from_millisecond(now.as_millisecond()).unwrap_or(now);
        let key = layout::key(&name, taken_at, &sha256);
        let manifest_key = layout::manifest_key(&key);
        let manifest = ConfigManifest {
            manifest_version: 1,
            kind: layout::KIND.into(),
            name,
            key: key.clone(),
            size: sealed.len() as u64,
            sha256,
            fingerprint,
            fingerprint_algorithm: encryption::FINGERPRINT_ALGORITHM.into(),
            recipients: recipients.iter().map(|r| r.to_string()).collect(),
            taken_at,
            created_by: format!("drillbook {}", env!("CARGO_PKG_VERSION")),
        };
        let pending = Pending::record(ctx, &store, &key, &manifest_key).await?;
        let stored = async {
            store
                .put_bytes(&key, sealed)
                .await
                .map_err(StepFailure::of)?;
            match store.head(&key).await.map_err(StepFailure::of)? {
                Some(held) if held.size == manifest.size => {}
                held => {
                    return Err(StepFailure::permanent(format!(
                        "the store holds {} under {key}, but {} bytes were sent: no manifest \
                         was written",
                        held.map(|h| format!("{} bytes", h.size))
                            .unwrap_or_else(|| "nothing".into()),
                        manifest.size
                    )));
                }
            }
            store
                .put_bytes(&manifest_key, manifest.to_bytes())
                .await
                .map_err(StepFailure::of)
        }
        .await;
        pending.settle(&store, stored).await?;
        evidence.push(format!(
            "{} changed: stored a new version, encrypted to {} recipient(s)",
            file.display(),
            manifest.recipients.len()
        ));
        evidence.push(described(&manifest));
        Ok(done(manifest, true, evidence))
    }

    /// The recipients given in the playbook and in the recipients file.
    fn recipients(
        &self,
        render: &dyn Fn(&str) -> Result<String, StepFailure>,
    ) -> Result<Vec<Recipient>, StepFailure> {
        let mut recipients = Vec::new();
        for (index, recipient) in self.recipients.iter().enumerate() {
            recipients.push(
                encryption::parse_recipient(&render(recipient)?)
                    .map_err(|why| StepFailure::permanent(format!("recipients[{index}] {why}")))?,
            );
        }
        if let Some(path) = &self.recipients_file {
            let path = std::path::PathBuf::from(render(path)?);
            recipients
                .extend(encryption::read_recipients_file(&path).map_err(StepFailure::permanent)?);
        }
        if recipients.is_empty() {
            return Err(StepFailure::permanent(
                "no age recipient to encrypt to: give `recipients:` or `recipients_file:`",
            ));
        }
        Ok(recipients)
    }
}

/// The file's name without its leading dots: `.env.production` → `env.production`.
fn default_name(file: &std::path::Path) -> String {
    file.file_name()
        .map(|name| name.to_string_lossy().trim_start_matches('.').to_string())
        .unwrap_or_default()
}

/// The file's bytes, refused when it is not a regular file or too large for a configuration.
async fn read_config(file: &std::path::Path) -> Result<encryption::Plaintext, StepFailure> {
    let shown = file.display();
    let metadata = tokio::fs::metadata(file)
        .await
        .map_err(|e| StepFailure::new(format!("{shown}: {e}")))?;
    if !metadata.is_file() {
        return Err(StepFailure::permanent(format!(
            "{shown} is not a regular file"
        )));
    }
    if metadata.len() > encryption::MAX_PLAINTEXT {
        return Err(StepFailure::permanent(format!(
            "{shown} is {} bytes: config-backup stores configuration files of at most {} bytes",
            metadata.len(),
            encryption::MAX_PLAINTEXT
        )));
    }
    tokio::fs::read(file)
        .await
        .map(encryption::Plaintext::from)
        .map_err(|e| StepFailure::new(format!("{shown}: {e}")))
}

/// A version, for the evidence: its key, the ciphertext's SHA-256, size and time — never
/// anything of the content.
fn described(manifest: &ConfigManifest) -> String {
    format!(
        "{}: {} bytes of age ciphertext, sha256 {}, taken {}",
        manifest.key, manifest.size, manifest.sha256, manifest.taken_at
    )
}

fn done(manifest: ConfigManifest, changed: bool, evidence: Vec<String>) -> Done {
    let mut done = Done::default();
    let manifest_key = layout::manifest_key(&manifest.key);
    done.outputs.insert("key".into(), manifest.key.into());
    done.outputs.insert("manifest".into(), manifest_key.into());
    done.outputs.insert("sha256".into(), manifest.sha256.into());
    done.outputs.insert("size".into(), manifest.size.into());
    done.outputs
        .insert("taken_at".into(), manifest.taken_at.to_string().into());
    done.outputs.insert("changed".into(), changed.into());
    done.evidence = evidence;
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_name_drops_leading_dots() {
        assert_eq!(
            default_name(std::path::Path::new("/srv/app/.env.production")),
            "env.production"
        );
        assert_eq!(default_name(std::path::Path::new("app.conf")), "app.conf");
    }
}
