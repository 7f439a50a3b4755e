//! Encryption to age recipients (the `age` crate, X25519 keys: `age1…` public keys,
//! `AGE-SECRET-KEY-1…` identities), for configuration backups; and the keyed fingerprint
//! (HMAC-SHA256) that says whether a file changed without storing a hash of its plaintext.
//!
//! Everything here works on bytes in memory: configuration files are small ([`MAX_PLAINTEXT`]),
//! and a plaintext that never reaches a temporary file cannot be left behind by a crash. Errors
//! name files and say what is wrong; they never quote a file's content.

use std::io::{Read, Write};
use std::path::Path;
use std::str::FromStr;

use age::x25519;

/// The largest file encrypted or decrypted: configuration, not data.
pub const MAX_PLAINTEXT: u64 = 16 << 20;

/// The fingerprint's algorithm, as manifests name it.
pub const FINGERPRINT_ALGORITHM: &str = "hmac-sha256";

/// The shortest fingerprint key accepted, in bytes.
pub const MIN_FINGERPRINT_KEY: usize = 16;

/// One recipient, parsed from its `age1…` form. What a backup is encrypted to.
pub type Recipient = x25519::Recipient;

/// Parses one recipient; the error says what the value is instead (a secret key, say) without
/// repeating it.
pub fn parse_recipient(text: &str) -> Result<Recipient, String> {
    let text = text.trim();
    if text.starts_with("AGE-SECRET-KEY-") {
        return Err(
            "is an age identity (a secret key), not a recipient: give its public key, \
                    `age1…` (`age-keygen -y IDENTITY_FILE` prints it), and keep the identity \
                    away from the host that makes backups"
                .into(),
        );
    }
    if text.starts_with("ssh-") || text.starts_with("age1pq") {
        return Err(
            "is not an X25519 age recipient: drillbook encrypts to `age1…` keys from \
                    `age-keygen`"
                .into(),
        );
    }
    Recipient::from_str(text).map_err(|_| {
        "is not an age recipient: expected a public key `age1…` (from `age-keygen`)".into()
    })
}

/// The recipients in a recipients file (one `age1…` key a line; blank lines and `#` comments
/// ignored), as `age -R` reads it.
pub fn read_recipients_file(path: &Path) -> Result<Vec<Recipient>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("recipients file {}: {e}", path.display()))?;
    let mut recipients = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        recipients.push(parse_recipient(line).map_err(|e| {
            format!(
                "recipients file {}, line {}: {e}",
                path.display(),
                number + 1
            )
        })?);
    }
    if recipients.is_empty() {
        return Err(format!(
            "recipients file {} holds no recipient (expected `age1…` public keys, one a line)",
            path.display()
        ));
    }
    Ok(recipients)
}

/// The identities of an identity file, which must be the running user's alone (no access for
/// group or others, as ssh demands of a private key): a backup's secrets are only as safe as
/// the key that opens them.
pub struct Identities {
    keys: Vec<Box<dyn age::Identity + Send + Sync>>,
    path: std::path::PathBuf,
}

impl Identities {
    pub fn load(path: &Path) -> Result<Identities, String> {
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display();
        let metadata = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("identity file {shown} does not exist"),
            _ => format!("identity file {shown}: {e}"),
        })?;
        if !metadata.is_file() {
            return Err(format!("identity file {shown} is not a regular file"));
        }
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "identity file {shown} is accessible to other users (mode {mode:04o}): a secret \
                 key must be its owner's alone; `chmod 600 {shown}`"
            ));
        }
        if metadata.len() > 1 << 20 {
            return Err(format!(
                "identity file {shown} is {} bytes: not an age identity file",
                metadata.len()
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| format!("identity file {shown}: {e}"))?;
        let not_identities = || {
            format!(
                "identity file {shown} is not an age identity file (expected lines \
                 `AGE-SECRET-KEY-1…`, as `age-keygen` writes them)"
            )
        };
        let file =
            age::IdentityFile::from_buffer(bytes.as_slice()).map_err(|_| not_identities())?;
        let keys = file.into_identities().map_err(|_| not_identities())?;
        if keys.is_empty() {
            return Err(not_identities());
        }
        Ok(Identities {
            keys,
            path: path.to_path_buf(),
        })
    }
}

/// `plaintext` encrypted to every recipient (any one of their identities decrypts it), in
/// age's binary format.
pub fn encrypt(plaintext: &[u8], recipients: &[Recipient]) -> Result<Vec<u8>, String> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| format!("cannot encrypt: {e}"))?;
    let mut out = Vec::with_capacity(plaintext.len() + 256);
    let mut writer = encryptor
        .wrap_output(&mut out)
        .map_err(|e| format!("cannot encrypt: {e}"))?;
    writer
        .write_all(plaintext)
        .and_then(|()| writer.finish().map(|_| ()))
        .map_err(|e| format!("cannot encrypt: {e}"))?;
    Ok(out)
}

/// Decrypts `ciphertext` (named `what` in errors) with `identities`. The plaintext is wiped
/// from memory when dropped.
pub fn decrypt(
    ciphertext: &[u8],
    identities: &Identities,
    what: &str,
) -> Result<Plaintext, String> {
    let decryptor = age::Decryptor::new_buffered(ciphertext)
        .map_err(|e| format!("{what} is not an age file drillbook can read: {e}"))?;
    let reader = decryptor
        .decrypt(
            identities
                .keys
                .iter()
                .map(|k| k.as_ref() as &dyn age::Identity),
        )
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => format!(
                "the identity file {} does not match the recipients {what} was encrypted to: \
                 none of its keys can decrypt it",
                identities.path.display()
            ),
            other => format!(
                "cannot decrypt {what} with the identity file {}: {other}",
                identities.path.display()
            ),
        })?;
    let mut plaintext = Plaintext(Vec::new());
    reader
        .take(MAX_PLAINTEXT + 1)
        .read_to_end(&mut plaintext.0)
        .map_err(|e| format!("cannot decrypt {what}: {e} (damaged or truncated)"))?;
    if plaintext.0.len() as u64 > MAX_PLAINTEXT {
        return Err(format!(
            "{what} decrypts to more than {MAX_PLAINTEXT} bytes: not a configuration file"
        ));
    }
    Ok(plaintext)
}

/// Decrypted bytes, overwritten with zeros when dropped.
pub struct Plaintext(Vec<u8>);

impl From<Vec<u8>> for Plaintext {
    fn from(bytes: Vec<u8>) -> Plaintext {
        Plaintext(bytes)
    }
}

impl Plaintext {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Plaintext {
    fn drop(&mut self) {
        for byte in self.0.iter_mut() {
            // A volatile write: the zeros are not optimised away.
            unsafe { std::ptr::write_volatile(byte, 0) };
        }
    }
}

/// The keyed fingerprint of `plaintext`: HMAC-SHA256 under `key`, lowercase hex. Equal files
/// give equal fingerprints under one key; without the key, a fingerprint confirms no guess of
/// the content (a plain SHA-256 of a low-entropy file would).
pub fn fingerprint(key: &[u8], plaintext: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
        .expect("HMAC takes a key of any length");
    mac.update(plaintext);
    crate::format::hex(&mac.finalize().into_bytes())
}

/// A new identity and its recipient: `(AGE-SECRET-KEY-1…, age1…)`.
pub fn generate() -> (String, String) {
    use age::secrecy::ExposeSecret;
    let identity = x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    (identity.to_string().expose_secret().to_string(), recipient)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn identity_file(dir: &Path, secret: &str, mode: u32) -> std::path::PathBuf {
        let path = dir.join("key.txt");
        std::fs::write(&path, format!("# created: now\n{secret}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_round_trip_and_a_stranger_s_key() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, public) = generate();
        let recipients = vec![parse_recipient(&public).unwrap()];
        let sealed = encrypt(b"API_KEY=hunter2\n", &recipients).unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        let mine = Identities::load(&identity_file(dir.path(), &secret, 0o600)).unwrap();
        assert_eq!(
            decrypt(&sealed, &mine, "x").unwrap().bytes(),
            b"API_KEY=hunter2\n"
        );
        let other = tempfile::tempdir().unwrap();
        let (stranger, _) = generate();
        let theirs = Identities::load(&identity_file(other.path(), &stranger, 0o400)).unwrap();
        let error = decrypt(&sealed, &theirs, "env/1.age").err().unwrap();
        assert!(
            error.contains("does not match the recipients env/1.age was encrypted to"),
            "{error}"
        );
    }

    #[test]
    fn identity_files_readable_by_others_or_not_identities_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, public) = generate();
        let open = identity_file(dir.path(), &secret, 0o644);
        let error = Identities::load(&open).err().unwrap();
        assert!(
            error.contains("mode 0644") && error.contains("chmod 600"),
            "{error}"
        );
        assert!(!error.contains(&secret));
        let wrong = identity_file(dir.path(), &public, 0o600);
        let error = Identities::load(&wrong).err().unwrap();
        assert!(error.contains("not an age identity file"), "{error}");
        let missing = Identities::load(&dir.path().join("none")).err().unwrap();
        assert!(missing.contains("does not exist"), "{missing}");
    }

    #[test]
    fn recipients_are_public_keys_and_files_of_them() {
        let (secret, public) = generate();
        let error = parse_recipient(&secret).unwrap_err();
        assert!(error.contains("not a recipient") && !error.contains(&secret));
        assert!(parse_recipient("age1nope").is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recipients");
        std::fs::write(&path, format!("# ops\n\n{public}\n")).unwrap();
        assert_eq!(read_recipients_file(&path).unwrap().len(), 1);
        std::fs::write(&path, "# nobody\n").unwrap();
        let error = read_recipients_file(&path).unwrap_err();
        assert!(error.contains("holds no recipient"), "{error}");
    }

    #[test]
    fn fingerprints_depend_on_the_key() {
        let a = fingerprint(b"0123456789abcdef", b"A=1\n");
        assert_eq!(a, fingerprint(b"0123456789abcdef", b"A=1\n"));
        assert_ne!(a, fingerprint(b"0123456789abcdeX", b"A=1\n"));
        assert_ne!(a, fingerprint(b"0123456789abcdef", b"A=2\n"));
        // Not the plain SHA-256 of the content.
        use sha2::Digest;
        assert_ne!(a, crate::format::hex(&sha2::Sha256::digest(b"A=1\n")));
        assert_eq!(a.len(), 64);
    }
}
