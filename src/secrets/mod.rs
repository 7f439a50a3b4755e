//! Secrets: resolved from a dotenv-like `--secrets-file`, the environment or a secrets manager
//! (`secrets_manager:` in the playbook), readable in
//! templates as `{{ secrets.NAME }}`, and never written anywhere. Everything drillbook writes
//! (journal, logs, progress lines, captured command output, reports, error messages) passes
//! through a [`Masker`] first; output that arrives in chunks goes through a [`StreamMasker`].
//!
//! Resolving is here; the `dotenv` file syntax, the `mask`ing of values, the masking of
//! `url` passwords nobody declared, and where a secrets manager keeps each secret
//! (`managed`) have files of their own.

mod dotenv;
mod managed;
mod mask;
mod url;

pub use managed::{Lookup, ManagerConfig, SecretRef, pick_field};
pub use mask::{Masker, StreamMasker};
pub use url::{mask_url_passwords, mask_url_passwords_json};

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use dotenv::parse_file;

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// The shortest value masked in free text (program output, messages, errors). A shorter one —
/// `1`, `true`, `drill` — would mask ordinary words and numbers wherever they appear, and
/// protects little; it is masked where a template places it (rendered parameters, prompts,
/// variables), and the run starts with a warning naming it.
pub const SHORTEST_MASKED: usize = 6;

/// Resolved secret values, by name. `Debug` shows the names only.
#[derive(Clone, Default)]
pub struct Secrets {
    values: BTreeMap<String, String>,
    masker: Masker,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("missing secrets: {} — set them in the environment or in --secrets-file{}", .names.join(", "), looked_up(.looked))]
    Missing {
        names: Vec<String>,
        /// What the secrets manager answered for those it was asked for (never a value).
        looked: Vec<String>,
    },
    #[error("secret {name}: cannot read it from AWS Secrets Manager: {message}")]
    Manager { name: String, message: String },
    #[error("cannot read secrets file {}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    // The line itself is never part of the message: a malformed line is most often a value that
    // lost its `KEY=`, and this message ends up in terminals and CI logs.
    #[error("secrets file {}, line {line}: {reason} (the line is not shown, it may hold a secret)", .path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: &'static str,
    },
    #[error("the secret values are too large to build a masker for them")]
    TooLarge,
}

fn looked_up(looked: &[String]) -> String {
    if looked.is_empty() {
        return String::new();
    }
    format!(", or in AWS Secrets Manager ({})", looked.join("; "))
}

/// A secrets manager as a source: where it keeps each name, and how to ask it for several
/// secrets at once (one answer per reference, in order).
pub type Manager<'a> = (&'a ManagerConfig, &'a dyn Fn(&[SecretRef]) -> Vec<Lookup>);

impl Secrets {
    /// Resolves every name in `names`. A non-empty value in `file` wins over everything; then
    /// a secret the manager's `ids` name is read from the manager, any other from the
    /// environment, and, when the manager has a `prefix`, from the manager as `<prefix><NAME>`.
    /// An empty value is treated as not set in that source, so an empty `KEY=` line in the
    /// file falls back to the next source, and a secret empty in all is missing. All missing
    /// names are reported in one error. Keys in the file that are not in `names` are ignored.
    pub fn resolve(
        names: &[String],
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        manager: Option<Manager<'_>>,
    ) -> Result<Secrets, SecretsError> {
        let from_file = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| SecretsError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                parse_file(&text, path)?
            }
            None => BTreeMap::new(),
        };
        let mut values = BTreeMap::new();
        let mut missing = Vec::new();
        // Names the manager is asked for, with where it keeps them.
        let mut ask: Vec<(&String, SecretRef)> = Vec::new();
        for name in names {
            let from_manager = manager.and_then(|(config, _)| config.reference(name));
            let pinned = manager.is_some_and(|(config, _)| config.pinned(name));
            let value = from_file
                .get(name)
                .filter(|value| !value.is_empty())
                .cloned()
                .or_else(|| (!pinned).then(|| env(name)).flatten())
                .filter(|value| !value.is_empty());
            match (value, from_manager) {
                (Some(value), _) => {
                    values.insert(name.clone(), value);
                }
                (None, Some(reference)) => ask.push((name, reference)),
                (None, None) => missing.push(name.clone()),
            }
        }
        let mut looked = Vec::new();
        if let (Some((_, fetch)), false) = (manager, ask.is_empty()) {
            let references: Vec<SecretRef> = ask.iter().map(|(_, r)| r.clone()).collect();
            let answers = fetch(&references);
            for ((name, reference), answer) in ask.iter().zip(answers) {
                match answer {
                    Lookup::Found(value) if !value.is_empty() => {
                        values.insert((*name).clone(), value);
                    }
                    Lookup::Found(_) => {
                        missing.push((*name).clone());
                        looked.push(format!("{name}: {reference} is empty"));
                    }
                    Lookup::Absent(why) => {
                        missing.push((*name).clone());
                        looked.push(format!("{name}: {why}"));
                    }
                    Lookup::Failed(message) => {
                        return Err(SecretsError::Manager {
                            name: (*name).clone(),
                            message,
                        });
                    }
                }
            }
        }
        if !missing.is_empty() {
            missing.sort_by_key(|name| names.iter().position(|n| n == name));
            return Err(SecretsError::Missing {
                names: missing,
                looked,
            });
        }
        let masker = Masker::new(
            values
                .values()
                .map(String::as_str)
                .filter(|value| value.len() >= SHORTEST_MASKED),
        )?;
        Ok(Secrets { values, masker })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// Name → value, for the `secrets` root of the template context.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    /// The secrets too short to mask in free text ([`SHORTEST_MASKED`]), by name.
    pub fn too_short(&self) -> Vec<&str> {
        self.values
            .iter()
            .filter(|(_, value)| value.len() < SHORTEST_MASKED)
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// A masker for these values (cheap: the automaton is shared).
    pub fn masker(&self) -> Masker {
        self.masker.clone()
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Secrets")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Write;

    pub(super) fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    pub(super) fn no_env(_: &str) -> Option<String> {
        None
    }

    pub(super) fn secrets_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("write");
        file
    }

    #[test]
    fn file_wins_over_environment() {
        let file = secrets_file("A=from-file\n");
        let env = |name: &str| Some(format!("env-{name}"));
        let secrets =
            Secrets::resolve(&names(&["A", "B"]), Some(file.path()), env, None).expect("ok");
        assert_eq!(secrets.get("A"), Some("from-file"));
        assert_eq!(secrets.get("B"), Some("env-B"));
        assert_eq!(secrets.get("C"), None);
        assert_eq!(secrets.names().collect::<Vec<_>>(), ["A", "B"]);
        assert_eq!(secrets.as_map().len(), 2);
    }

    #[test]
    fn all_missing_names_are_reported_at_once() {
        let file = secrets_file("EMPTY_IN_FILE=\nPRESENT=x\n");
        let env = |name: &str| (name == "EMPTY_IN_ENV").then(String::new);
        let error = Secrets::resolve(
            &names(&["A", "PRESENT", "EMPTY_IN_FILE", "EMPTY_IN_ENV"]),
            Some(file.path()),
            env,
            None,
        )
        .expect_err("missing");
        assert_eq!(
            error.to_string(),
            "missing secrets: A, EMPTY_IN_FILE, EMPTY_IN_ENV — set them in the environment or in --secrets-file"
        );
    }

    #[test]
    fn empty_file_value_falls_back_to_environment() {
        let file = secrets_file("A=\n");
        let env = |_: &str| Some("from-env".to_string());
        let secrets = Secrets::resolve(&names(&["A"]), Some(file.path()), env, None).expect("ok");
        assert_eq!(secrets.get("A"), Some("from-env"));
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let directory = tempfile::tempdir().expect("dir");
        let path = directory.path().join("absent.env");
        let error =
            Secrets::resolve(&names(&["A"]), Some(&path), no_env, None).expect_err("absent");
        assert!(matches!(error, SecretsError::Read { .. }));
        assert!(error.to_string().contains("absent.env"), "{error}");
    }

    #[test]
    fn debug_shows_names_not_values() {
        let env = |_: &str| Some("hunter2".to_string());
        let secrets = Secrets::resolve(&names(&["DB_PASSWORD"]), None, env, None).expect("ok");
        let debug = format!("{secrets:?} {:?}", secrets.masker());
        assert!(debug.contains("DB_PASSWORD"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn masks_every_occurrence() {
        let env = |name: &str| Some(format!("{name}-value"));
        let secrets = Secrets::resolve(&names(&["TOKEN"]), None, env, None).expect("ok");
        let masker = secrets.masker();
        assert_eq!(
            masker.mask("a TOKEN-value and TOKEN-valueTOKEN-value."),
            "a *** and ******."
        );
        assert_eq!(masker.mask("nothing here"), "nothing here");
    }

    #[test]
    fn the_manager_is_asked_once_in_order_after_the_file() {
        let config = ManagerConfig {
            prefix: Some("prod/".into()),
            ids: [(
                "PINNED".to_string(),
                SecretRef::parse("app#url").expect("ok"),
            )]
            .into(),
        };
        let asked = std::cell::RefCell::new(Vec::new());
        let fetch = |references: &[SecretRef]| -> Vec<Lookup> {
            asked
                .borrow_mut()
                .push(references.iter().map(|r| r.to_string()).collect::<Vec<_>>());
            references
                .iter()
                .map(|r| Lookup::Found(format!("manager:{r}")))
                .collect()
        };
        let file = secrets_file("FILE_WINS=from-file\n");
        // The environment sets every name: it wins over the prefix, never over a pinned id.
        let env = |name: &str| Some(format!("env-{name}"));
        let all = names(&["PINNED", "FILE_WINS", "FROM_ENV"]);
        let secrets =
            Secrets::resolve(&all, Some(file.path()), env, Some((&config, &fetch))).expect("ok");
        assert_eq!(secrets.get("PINNED"), Some("manager:app#url"));
        assert_eq!(secrets.get("FILE_WINS"), Some("from-file"));
        assert_eq!(secrets.get("FROM_ENV"), Some("env-FROM_ENV"));
        let secrets = Secrets::resolve(&all, None, no_env, Some((&config, &fetch))).expect("ok");
        assert_eq!(secrets.get("FROM_ENV"), Some("manager:prod/FROM_ENV"));
        assert_eq!(
            asked.borrow().as_slice(),
            [
                vec!["app#url".to_string()],
                vec![
                    "app#url".to_string(),
                    "prod/FILE_WINS".to_string(),
                    "prod/FROM_ENV".to_string()
                ]
            ]
        );
    }

    #[test]
    fn what_the_manager_lacks_is_missing_by_name_and_a_refusal_fails() {
        let config = ManagerConfig {
            prefix: Some("prod/".into()),
            ids: Default::default(),
        };
        let absent = |references: &[SecretRef]| -> Vec<Lookup> {
            references
                .iter()
                .map(|r| Lookup::Absent(format!("no secret {}", r.id)))
                .collect()
        };
        let error = Secrets::resolve(&names(&["B", "A"]), None, no_env, Some((&config, &absent)))
            .expect_err("missing");
        assert_eq!(
            error.to_string(),
            "missing secrets: B, A — set them in the environment or in --secrets-file, or in AWS Secrets Manager (B: no secret prod/B; A: no secret prod/A)"
        );
        let denied = |references: &[SecretRef]| -> Vec<Lookup> {
            references
                .iter()
                .map(|_| Lookup::Failed("AccessDenied".into()))
                .collect()
        };
        let error = Secrets::resolve(&names(&["A"]), None, no_env, Some((&config, &denied)))
            .expect_err("denied");
        assert!(
            matches!(error, SecretsError::Manager { ref name, .. } if name == "A"),
            "{error}"
        );
    }
}
