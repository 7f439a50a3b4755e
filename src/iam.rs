//! The least AWS IAM policy a set of playbooks needs: what each step does with each store and
//! secret (`steps::Need`), turned into S3 and Secrets Manager actions on the buckets,
//! prefixes and secrets it names. One statement per action (per bucket for `s3:ListBucket`,
//! which is limited to the prefixes by condition), so removing an action is removing one
//! statement.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::connect::store::{Location, S3Settings, locate};
use crate::secrets::SecretRef;
use crate::steps::Need;

/// Where drillbook's multipart uploads keep their markers, at the bucket's root (see
/// `connect::store::s3`).
const MARKERS: &str = ".drillbook-incomplete/";

/// What the playbooks reach, rendered: store URLs with what is done there, secrets read and
/// written.
#[derive(Default)]
pub struct Reach {
    stores: BTreeMap<(String, String), BTreeSet<Need>>,
    read_secrets: BTreeSet<String>,
    written_secrets: BTreeSet<String>,
    /// Stores that are local directories: no AWS permission, said in the notes.
    local: BTreeSet<String>,
}

/// Where the policy's secret ARNs are (`*` when not given), and whether it lets drillbook
/// abort multipart uploads.
pub struct Scope {
    pub region: Option<String>,
    pub account: Option<String>,
    /// `s3:AbortMultipartUpload`: lets drillbook abort the multipart uploads a crashed or
    /// failed attempt left. Without it, a run goes on (it says it could not abort them) and
    /// the bucket's `AbortIncompleteMultipartUpload` lifecycle rule removes them: a run that
    /// succeeds never needs it.
    pub abort_uploads: bool,
}

impl Reach {
    /// Records that `url` (a rendered store URL) is used for `needs`.
    pub fn store(&mut self, url: &str, needs: &[Need]) -> Result<(), String> {
        let (location, shown, _) =
            locate(url, &S3Settings::default()).map_err(|e| e.to_string())?;
        match location {
            Location::Local(_) => {
                self.local.insert(shown);
            }
            Location::S3 { bucket, prefix } => {
                self.stores
                    .entry((bucket, prefix))
                    .or_default()
                    .extend(needs.iter().copied());
            }
        }
        Ok(())
    }

    pub fn read_secret(&mut self, reference: &SecretRef) {
        self.read_secrets.insert(reference.id.clone());
    }

    pub fn write_secret(&mut self, reference: &SecretRef) {
        self.written_secrets.insert(reference.id.clone());
    }

    /// The local directories among the stores.
    pub fn local(&self) -> impl Iterator<Item = &str> {
        self.local.iter().map(String::as_str)
    }

    /// The policy document.
    pub fn policy(&self, scope: &Scope) -> Value {
        // action -> resources
        let mut actions: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        // bucket -> listed prefixes ("" = the whole bucket)
        let mut listed: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        let mut bucket_actions: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for ((bucket, prefix), needs) in &self.stores {
            let objects = format!("arn:aws:s3:::{bucket}/{prefix}*");
            let markers = format!("arn:aws:s3:::{bucket}/{MARKERS}{prefix}*");
            let mut allow = |action: &'static str, resource: &String| {
                actions.entry(action).or_default().insert(resource.clone());
            };
            for need in needs {
                match need {
                    Need::List => {
                        listed.entry(bucket).or_default().insert(prefix.clone());
                    }
                    Need::Read => allow("s3:GetObject", &objects),
                    Need::Write => {
                        allow("s3:PutObject", &objects);
                        // A multipart upload writes its marker first and deletes it at the end.
                        allow("s3:PutObject", &markers);
                        allow("s3:DeleteObject", &markers);
                    }
                    Need::Delete => allow("s3:DeleteObject", &objects),
                    Need::CleanUp => {
                        listed
                            .entry(bucket)
                            .or_default()
                            .insert(format!("{MARKERS}{prefix}"));
                        allow("s3:GetObject", &markers);
                        allow("s3:DeleteObject", &markers);
                        if scope.abort_uploads {
                            allow("s3:AbortMultipartUpload", &objects);
                        }
                    }
                    Need::ListUploads => {
                        bucket_actions
                            .entry("s3:ListBucketMultipartUploads")
                            .or_default()
                            .insert(format!("arn:aws:s3:::{bucket}"));
                    }
                    Need::Posture => {
                        for action in ["s3:GetBucketVersioning", "s3:GetLifecycleConfiguration"] {
                            bucket_actions
                                .entry(action)
                                .or_default()
                                .insert(format!("arn:aws:s3:::{bucket}"));
                        }
                    }
                    Need::WriteSecret => {}
                }
            }
        }
        let secret_arn = |id: &str| -> String {
            if id.starts_with("arn:") {
                return id.to_string();
            }
            let region = scope.region.as_deref().unwrap_or("*");
            let account = scope.account.as_deref().unwrap_or("*");
            // Secrets Manager appends six random characters to a secret's name in its ARN.
            format!("arn:aws:secretsmanager:{region}:{account}:secret:{id}-??????")
        };
        for id in self.read_secrets.iter().chain(&self.written_secrets) {
            actions
                .entry("secretsmanager:GetSecretValue")
                .or_default()
                .insert(secret_arn(id));
        }
        for id in &self.written_secrets {
            actions
                .entry("secretsmanager:PutSecretValue")
                .or_default()
                .insert(secret_arn(id));
        }

        let mut statements = Vec::new();
        for (bucket, prefixes) in &listed {
            let mut statement = json!({
                "Sid": sid("s3:ListBucket", Some(bucket)),
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [format!("arn:aws:s3:::{bucket}")],
            });
            // Listing the whole bucket needs no condition; otherwise only these prefixes.
            if !prefixes.contains("") {
                let patterns: Vec<String> = prefixes.iter().map(|p| format!("{p}*")).collect();
                statement["Condition"] = json!({ "StringLike": { "s3:prefix": patterns } });
            }
            statements.push(statement);
        }
        for (action, resources) in bucket_actions.iter().chain(&actions) {
            statements.push(json!({
                "Sid": sid(action, None),
                "Effect": "Allow",
                "Action": [action],
                "Resource": resources,
            }));
        }
        json!({ "Version": "2012-10-17", "Statement": statements })
    }
}

/// A statement id (letters and digits only): `S3GetObject`, `S3ListBucketA1lifterBackups`.
fn sid(action: &str, bucket: Option<&str>) -> String {
    let mut words = String::new();
    let bucket_words = bucket.into_iter().flat_map(|b| b.split(['-', '.', '_']));
    for part in action.split([':', '-', '.', '_']).chain(bucket_words) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            words.extend(first.to_uppercase());
            words.extend(chars.filter(char::is_ascii_alphanumeric));
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement<'a>(policy: &'a Value, action: &str) -> Vec<&'a Value> {
        policy["Statement"]
            .as_array()
            .expect("statements")
            .iter()
            .filter(|s| s["Action"][0] == action)
            .collect()
    }

    #[test]
    fn a_backup_and_a_mirror_get_just_their_actions_on_their_prefixes() {
        let mut reach = Reach::default();
        reach
            .store(
                "s3://backups/production",
                &[
                    Need::List,
                    Need::Read,
                    Need::Write,
                    Need::Delete,
                    Need::CleanUp,
                ],
            )
            .expect("backups");
        reach
            .store("s3://storage/production/", &[Need::List, Need::Read])
            .expect("source");
        reach.store("/var/backups", &[Need::Write]).expect("local");
        reach.read_secret(&SecretRef::parse("production/app#url").expect("ref"));
        let policy = reach.policy(&Scope {
            region: Some("eu-west-1".into()),
            account: None,
            abort_uploads: false,
        });
        let list = statement(&policy, "s3:ListBucket");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["Resource"][0], "arn:aws:s3:::backups");
        assert_eq!(
            list[0]["Condition"]["StringLike"]["s3:prefix"],
            json!([".drillbook-incomplete/production/*", "production/*"])
        );
        assert_eq!(list[0]["Sid"], "S3ListBucketBackups");
        let get = statement(&policy, "s3:GetObject")[0];
        assert_eq!(
            get["Resource"],
            json!([
                "arn:aws:s3:::backups/.drillbook-incomplete/production/*",
                "arn:aws:s3:::backups/production/*",
                "arn:aws:s3:::storage/production/*"
            ])
        );
        let delete = statement(&policy, "s3:DeleteObject")[0];
        assert!(
            !delete["Resource"].to_string().contains("storage"),
            "{delete}"
        );
        assert!(statement(&policy, "s3:GetBucketVersioning").is_empty());
        assert!(statement(&policy, "s3:AbortMultipartUpload").is_empty());
        let aborting = reach.policy(&Scope {
            region: None,
            account: None,
            abort_uploads: true,
        });
        assert_eq!(
            statement(&aborting, "s3:AbortMultipartUpload")[0]["Resource"],
            json!(["arn:aws:s3:::backups/production/*"])
        );
        assert_eq!(
            statement(&policy, "secretsmanager:GetSecretValue")[0]["Resource"],
            json!(["arn:aws:secretsmanager:eu-west-1:*:secret:production/app-??????"])
        );
        assert!(statement(&policy, "secretsmanager:PutSecretValue").is_empty());
        assert_eq!(reach.local().collect::<Vec<_>>(), ["/var/backups"]);
    }
}
