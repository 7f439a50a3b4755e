//! Secrets kept in a secrets manager (AWS Secrets Manager): where the playbook says each one
//! lives, and what looking one up can answer. The client is a connector
//! (`connect::secrets_manager`); resolving picks the source of each name (`super::Secrets`).
//!
//! A reference is a secret id — its name or ARN — optionally followed by `#field` to read one
//! field of a JSON secret (`production/app#DATABASE_URL`). Secrets Manager allows no `#` in a
//! name, and an ARN has none, so the split is unambiguous.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// The playbook's `secrets_manager:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ManagerConfig {
    /// A declared secret set neither in `--secrets-file` nor in the environment is read from
    /// the manager as `<prefix><NAME>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Secrets always read from the manager (unless `--secrets-file` sets them), by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ids: BTreeMap<String, SecretRef>,
}

impl ManagerConfig {
    /// Where the manager keeps `name` when the environment does not set it: its own id, else
    /// the prefix's; `None` when the manager is not a source for it.
    pub fn reference(&self, name: &str) -> Option<SecretRef> {
        if let Some(reference) = self.ids.get(name) {
            return Some(reference.clone());
        }
        self.prefix.as_ref().map(|prefix| SecretRef {
            id: format!("{prefix}{name}"),
            field: None,
        })
    }

    /// Whether `name` is read from the manager before the environment.
    pub fn pinned(&self, name: &str) -> bool {
        self.ids.contains_key(name)
    }
}

/// A secret in the manager: its id (name or ARN) and, for a JSON secret, the field to read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SecretRef {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl SecretRef {
    /// Reads `id` or `id#field`, saying what is wrong with anything else.
    pub fn parse(text: &str) -> Result<SecretRef, String> {
        let text = text.trim();
        let (id, field) = match text.split_once('#') {
            Some((id, field)) => (id, Some(field)),
            None => (text, None),
        };
        if id.is_empty() {
            return Err("the secret id is empty".into());
        }
        if id.len() > 2048 {
            return Err("a secret id is at most 2048 characters".into());
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || "/_+=.@-:".contains(c);
        if let Some(bad) = id.chars().find(|c| !allowed(*c)) {
            return Err(format!(
                "`{bad}` cannot be in a secret id (names use letters, digits and /_+=.@-; an ARN also :)"
            ));
        }
        if let Some(field) = field
            && field.is_empty()
        {
            return Err("nothing after `#`: name the JSON field to read, or drop the `#`".into());
        }
        Ok(SecretRef {
            id: id.to_string(),
            field: field.map(str::to_string),
        })
    }

    /// The secret's name: the id, or the name inside an ARN without the six characters
    /// Secrets Manager appends (`…:secret:production/app-AbCdEf` → `production/app`).
    pub fn name(&self) -> &str {
        match self.arn() {
            Some(arn) => arn.name,
            None => &self.id,
        }
    }

    /// The region an ARN names.
    pub fn region(&self) -> Option<&str> {
        self.arn().map(|arn| arn.region)
    }

    fn arn(&self) -> Option<Arn<'_>> {
        let rest = self.id.strip_prefix("arn:")?;
        let mut parts = rest.splitn(6, ':');
        let (_partition, service, region, _account, kind, resource) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if service != "secretsmanager" || kind != "secret" {
            return None;
        }
        let name = match resource.rsplit_once('-') {
            Some((name, suffix))
                if suffix.len() == 6 && suffix.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                name
            }
            _ => resource,
        };
        Some(Arn { region, name })
    }
}

struct Arn<'a> {
    region: &'a str,
    name: &'a str,
}

impl fmt::Display for SecretRef {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(formatter, "{}#{field}", self.id),
            None => formatter.write_str(&self.id),
        }
    }
}

/// What asking the manager for one secret answered. Never holds anything but the value itself
/// in `Found`; the other answers say where and why, never a value.
pub enum Lookup {
    Found(String),
    /// The manager has no such secret (or no such field in it): a missing secret.
    Absent(String),
    /// It could not be asked, or refused (access denied, unreachable).
    Failed(String),
}

/// Takes a value from a JSON secret's field, or the whole string when no field is asked for.
/// The error never quotes the secret.
pub fn pick_field(value: String, reference: &SecretRef) -> Lookup {
    let Some(field) = &reference.field else {
        return Lookup::Found(value);
    };
    let Ok(serde_json::Value::Object(mut object)) = serde_json::from_str(&value) else {
        return Lookup::Failed(format!(
            "{} is not a JSON object, so it has no field `{field}`",
            reference.id
        ));
    };
    match object.remove(field) {
        Some(serde_json::Value::String(text)) => Lookup::Found(text),
        Some(serde_json::Value::Number(number)) => Lookup::Found(number.to_string()),
        Some(serde_json::Value::Bool(flag)) => Lookup::Found(flag.to_string()),
        Some(_) => Lookup::Failed(format!(
            "the field `{field}` of {} is not a string, number or boolean",
            reference.id
        )),
        None => Lookup::Absent(format!("{} has no field `{field}`", reference.id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_fields_and_arns() {
        let plain = SecretRef::parse("production/app").expect("ok");
        assert_eq!(
            (plain.id.as_str(), plain.field.as_deref()),
            ("production/app", None)
        );
        let field = SecretRef::parse(" production/app#DATABASE_URL ").expect("ok");
        assert_eq!(field.field.as_deref(), Some("DATABASE_URL"));
        assert_eq!(field.to_string(), "production/app#DATABASE_URL");
        let arn = SecretRef::parse(
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:production/app-AbC123",
        )
        .expect("ok");
        assert_eq!(arn.name(), "production/app");
        assert_eq!(arn.region(), Some("eu-west-1"));
        assert_eq!(plain.region(), None);
    }

    #[test]
    fn refuses_what_no_secret_is_called() {
        for (text, expected) in [
            ("", "empty"),
            ("#field", "empty"),
            ("prod app", "` ` cannot"),
            ("prod/app#", "nothing after"),
        ] {
            let error = SecretRef::parse(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn pinned_ids_win_over_the_prefix() {
        let config = ManagerConfig {
            prefix: Some("production/".into()),
            ids: [("DB".to_string(), SecretRef::parse("app#url").expect("ok"))].into(),
        };
        assert_eq!(config.reference("DB").expect("db").to_string(), "app#url");
        assert_eq!(
            config.reference("OTHER").expect("other").to_string(),
            "production/OTHER"
        );
        assert!(config.pinned("DB") && !config.pinned("OTHER"));
        assert!(ManagerConfig::default().reference("DB").is_none());
    }

    #[test]
    fn fields_of_json_secrets() {
        let reference = SecretRef::parse("app#url").expect("ok");
        let found = pick_field(r#"{"url":"postgres://x","port":5432}"#.into(), &reference);
        assert!(matches!(found, Lookup::Found(value) if value == "postgres://x"));
        let absent = pick_field(r#"{"other":"hunter2-secret"}"#.into(), &reference);
        assert!(matches!(absent, Lookup::Absent(why) if why.contains("no field `url`")));
        let not_json = pick_field("hunter2-secret".into(), &reference);
        let Lookup::Failed(why) = not_json else {
            panic!("not JSON must fail")
        };
        assert!(!why.contains("hunter2"), "{why}");
    }
}
