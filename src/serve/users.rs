//! The web view's accounts: `<state-dir>/users.json`, each a name, a role and an argon2 hash of
//! the password (`drillbook user add NAME`). The file is written whole (a temporary file
//! renamed), readable by its owner only; its owner is the OS account the server runs as.

use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};

/// What a signed-in person may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees runs, reports and drill health.
    Viewer,
    /// Also approves and rejects.
    Approver,
}

impl Role {
    pub fn parse(text: &str) -> Result<Role, String> {
        match text {
            "viewer" => Ok(Role::Viewer),
            "approver" => Ok(Role::Approver),
            other => Err(format!("`{other}` is not a role: use viewer or approver")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Approver => "approver",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// argon2id, in the PHC string format.
    pub hash: String,
}

#[derive(Debug, Default)]
pub struct Users {
    users: Vec<User>,
}

/// The users file of a state directory.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(crate::inbox::USERS_FILE)
}

/// A hash that matches no password, checked when the name is unknown so that a wrong name
/// takes as long as a wrong password.
const NOBODY: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$bm9ib2R5bm9ib2R5$C9Ug3Xl1K6Nr1mGkKQ3u2zX8u7b2T1dJmUoQ9yQ4C3Y";

impl Users {
    /// The accounts in `path`; none when there is no file.
    pub fn load(path: &Path) -> Result<Users, String> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(|users| Users { users })
                .map_err(|e| format!("{}: not a users file: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Users::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The account whose password this is.
    pub fn check(&self, name: &str, password: &str) -> Option<&User> {
        let user = self.users.iter().find(|u| u.name == name);
        let hash = user.map_or(NOBODY, |u| u.hash.as_str());
        let matches = PasswordHash::new(hash).is_ok_and(|parsed| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        });
        user.filter(|_| matches)
    }

    /// The role of a person known by name (a trusted proxy's sign-in).
    pub fn role_of(&self, name: &str) -> Option<Role> {
        self.users.iter().find(|u| u.name == name).map(|u| u.role)
    }
}

/// Adds (or replaces) an account in the users file at `path`.
pub fn add(path: &Path, name: &str, role: Role, password: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control() || c == ':') {
        return Err(format!(
            "`{name}` cannot be a user name: 1 to 64 characters, no control characters or `:`"
        ));
    }
    if password.chars().count() < 12 {
        return Err("a password has at least 12 characters".into());
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness for a salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| e.to_string())?
        .to_string();
    let mut users = Users::load(path)?.users;
    users.retain(|u| u.name != name);
    users.push(User {
        name: name.to_owned(),
        role,
        hash,
    });
    let bytes = serde_json::to_vec_pretty(&users).map_err(|e| e.to_string())?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let partial = path.with_extension("partial");
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(&partial);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(|e| format!("{}: {e}", partial.display()))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_checked_against_its_hash_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path());
        add(&file, "alice", Role::Approver, "correct horse battery").unwrap();
        add(&file, "victor", Role::Viewer, "another long password").unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("correct horse"), "{text}");
        let users = Users::load(&file).unwrap();
        assert_eq!(
            users
                .check("alice", "correct horse battery")
                .map(|u| u.role),
            Some(Role::Approver)
        );
        assert!(users.check("alice", "correct horse batterY").is_none());
        assert!(users.check("mallory", "correct horse battery").is_none());
        // An unknown name is checked against a real hash, so it costs as long as a wrong password.
        assert!(PasswordHash::new(NOBODY).is_ok());
        assert_eq!(users.role_of("victor"), Some(Role::Viewer));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(add(&file, "bob", Role::Viewer, "short").is_err());
    }
}
