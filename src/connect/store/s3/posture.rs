//! A bucket's posture: its versioning state and its lifecycle rules, as S3 reports them.

use aws_sdk_s3::error::ProvideErrorMetadata;

use super::S3Store;
use crate::connect::store::StoreError;
use crate::connect::store::posture::{Posture, Rule, Transition};

impl S3Store {
    pub(crate) async fn posture(&self) -> Result<Posture, StoreError> {
        let versioning = self
            .client
            .get_bucket_versioning()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| self.sdk_error("read the versioning of", "", &e))?;
        let lifecycle = self
            .client
            .get_bucket_lifecycle_configuration()
            .bucket(&self.bucket)
            .send()
            .await;
        let rules = match lifecycle {
            Ok(output) => output.rules.unwrap_or_default(),
            // A bucket with no lifecycle configuration answers with this error.
            Err(error) if error.code() == Some("NoSuchLifecycleConfiguration") => Vec::new(),
            Err(error) => return Err(self.sdk_error("read the lifecycle rules of", "", &error)),
        };
        Ok(Posture {
            versioning: versioning.status.map(|status| status.as_str().to_string()),
            prefix: self.prefix.clone(),
            rules: rules.iter().map(rule).collect(),
        })
    }
}

fn rule(rule: &aws_sdk_s3::types::LifecycleRule) -> Rule {
    use aws_sdk_s3::types::ExpirationStatus;
    // The rule's prefix: its filter's (alone or in an `and`), else the deprecated top-level one.
    let filter = rule.filter.as_ref();
    #[allow(deprecated)]
    let prefix = filter
        .and_then(|f| {
            f.prefix
                .clone()
                .or_else(|| f.and.as_ref().and_then(|a| a.prefix.clone()))
        })
        .or_else(|| rule.prefix.clone())
        .unwrap_or_default();
    let filtered_by_tags = filter
        .is_some_and(|f| f.tag.is_some() || f.and.as_ref().is_some_and(|a| !a.tags().is_empty()));
    Rule {
        id: rule.id.clone().unwrap_or_default(),
        enabled: rule.status == ExpirationStatus::Enabled,
        prefix,
        filtered_by_tags,
        transitions: rule
            .transitions()
            .iter()
            .filter_map(|t| {
                Some(Transition {
                    days: u32::try_from(t.days?).ok()?,
                    class: t.storage_class.as_ref()?.as_str().to_string(),
                })
            })
            .collect(),
        noncurrent_expiration_days: rule
            .noncurrent_version_expiration
            .as_ref()
            .and_then(|e| e.noncurrent_days)
            .and_then(|days| u32::try_from(days).ok()),
        expiration_days: rule
            .expiration
            .as_ref()
            .and_then(|e| e.days)
            .and_then(|days| u32::try_from(days).ok()),
    }
}
