//! Signed decisions: an approval, rejection or attestation signed with the decider's SSH key,
//! in OpenSSH's `sshsig` format (what `ssh-keygen -Y sign` writes and `ssh-keygen -Y verify`
//! checks), over a text that names the run, the step, the question and the answer — so a
//! signature can never be moved to another decision. Keys are read with the `ssh-key` crate;
//! passphrase-protected keys are refused with a clear message rather than prompted for.

use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

/// The `sshsig` namespace of drillbook's decisions: `ssh-keygen -Y verify -n drillbook-decision`.
pub const NAMESPACE: &str = "drillbook-decision";

/// What a signature is over: every field of the decision, and when the question was asked
/// (a signature for one question is worthless for the next).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision<'a> {
    pub run_id: &'a str,
    pub step: &'a str,
    pub ask: &'a str,
    pub asked_at: &'a str,
    pub approved: bool,
    pub by: &'a str,
    pub reason: Option<&'a str>,
}

impl Decision<'_> {
    /// The signed text, one field per line.
    pub fn text(&self) -> String {
        format!(
            "drillbook decision v1\nrun: {}\nstep: {}\nask: {}\nasked at: {}\ndecision: {}\nby: {}\nreason: {}\n",
            self.run_id,
            self.step,
            self.ask,
            self.asked_at,
            if self.approved { "approve" } else { "reject" },
            self.by,
            self.reason.unwrap_or("")
        )
    }
}

/// Signs a decision with the OpenSSH private key in `key_file`: the armored signature.
pub fn sign(key_file: &std::path::Path, decision: &Decision) -> Result<String, String> {
    let key = PrivateKey::read_openssh_file(key_file)
        .map_err(|e| format!("cannot read the SSH key {}: {e}", key_file.display()))?;
    if key.is_encrypted() {
        return Err(format!(
            "the SSH key {} has a passphrase; drillbook does not ask for it: sign with a key without one, kept where only you can read it",
            key_file.display()
        ));
    }
    let signature = key
        .sign(NAMESPACE, HashAlg::Sha512, decision.text().as_bytes())
        .map_err(|e| format!("cannot sign with {}: {e}", key_file.display()))?;
    signature
        .to_pem(LineEnding::LF)
        .map_err(|e| format!("cannot encode the signature: {e}"))
}

/// Checks `armored` over `decision` against `public_key` (an OpenSSH public key line, the
/// decider's on record): the key's fingerprint when it verifies, else why not.
pub fn verify(public_key: &str, decision: &Decision, armored: &str) -> Result<String, String> {
    let key = PublicKey::from_openssh(public_key.trim())
        .map_err(|e| format!("the key on record is not an OpenSSH public key: {e}"))?;
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    let signature =
        SshSig::from_pem(armored).map_err(|e| format!("the signature does not parse: {e}"))?;
    key.verify(NAMESPACE, decision.text().as_bytes(), &signature)
        .map_err(|_| {
            format!(
                "the signature does not verify against {}'s key {fingerprint}",
                decision.by
            )
        })?;
    Ok(fingerprint)
}

/// Checks that `public_key` reads as an OpenSSH public key.
pub fn check_public_key(public_key: &str) -> Result<(), String> {
    PublicKey::from_openssh(public_key.trim())
        .map(drop)
        .map_err(|e| format!("not an OpenSSH public key (`ssh-ed25519 AAAA…`): {e}"))
}

/// Checks `armored` over `decision` against the key the signature carries: its SHA-256
/// fingerprint when the signature is sound, for whoever keeps the team's keys to match to a
/// person (`ssh-keygen -Y check-novalidate` does the same).
pub fn verify_embedded(decision: &Decision, armored: &str) -> Result<String, String> {
    let signature =
        SshSig::from_pem(armored).map_err(|e| format!("the signature does not parse: {e}"))?;
    let key = PublicKey::from(signature.public_key().clone());
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    key.verify(NAMESPACE, decision.text().as_bytes(), &signature)
        .map_err(|_| format!("the signature by key {fingerprint} does not match this decision"))?;
    Ok(fingerprint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
        let key = dir.join(name);
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen");
        assert!(made.success());
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        (key, public)
    }

    fn decision(approved: bool) -> Decision<'static> {
        Decision {
            run_id: "r1",
            step: "promote",
            ask: "gate",
            asked_at: "2026-12-06T05:00:00Z",
            approved,
            by: "bob",
            reason: None,
        }
    }

    #[test]
    fn a_signature_verifies_for_its_decision_only_and_ssh_keygen_agrees() {
        let dir = tempfile::tempdir().unwrap();
        let (bob, bob_public) = keypair(dir.path(), "bob");
        let signed = sign(&bob, &decision(true)).unwrap();
        assert!(signed.starts_with("-----BEGIN SSH SIGNATURE-----"));
        // The key it carries is bob's, and it vouches for this decision only.
        let fingerprint = verify_embedded(&decision(true), &signed).unwrap();
        let bob_key = PublicKey::from_openssh(bob_public.trim()).unwrap();
        assert_eq!(
            fingerprint,
            bob_key.fingerprint(HashAlg::Sha256).to_string()
        );
        let error = verify_embedded(&decision(false), &signed).unwrap_err();
        assert!(error.contains("does not match this decision"), "{error}");
        // OpenSSH reads it as its own.
        std::fs::write(dir.path().join("sig"), &signed).unwrap();
        let mut check = std::process::Command::new("ssh-keygen")
            .args(["-Y", "check-novalidate", "-n", NAMESPACE, "-s"])
            .arg(dir.path().join("sig"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        check
            .stdin
            .take()
            .unwrap()
            .write_all(decision(true).text().as_bytes())
            .unwrap();
        assert!(check.wait().unwrap().success(), "ssh-keygen accepts it");
    }

    #[test]
    fn a_key_with_a_passphrase_is_refused_not_prompted_for() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("locked");
        assert!(
            std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "secret", "-f"])
                .arg(&key)
                .status()
                .unwrap()
                .success()
        );
        let error = sign(&key, &decision(true)).unwrap_err();
        assert!(error.contains("has a passphrase"), "{error}");
    }
}
