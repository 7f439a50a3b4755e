//! Opening a bucket: the client and its settings (the standard AWS chain unless given), and an
//! early check that the bucket is there.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};

use super::S3Store;
use crate::connect::store::StoreError;

/// With fewer attempts a short burst of 500/503 answers would fail a long upload.
const MIN_ATTEMPTS: u32 = 5;
/// Used when neither the settings nor the environment name a region (S3-compatible servers
/// usually ignore it, but requests must be signed for some region).
const DEFAULT_REGION: &str = "us-east-1";

/// Explicit S3 client settings; each `None` falls back to the standard AWS chain
/// (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`,
/// `AWS_PROFILE`, ...).
#[derive(Clone, Default)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Used only together with `secret_key`.
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// `sync` and `verify` list the bucket a level at a time (`?listing=walk`) rather than
    /// flat: for servers that keep objects as files (see `s3/listing.rs`).
    pub walk: bool,
}

impl std::fmt::Debug for S3Settings {
    // The secret must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "***"))
            .finish()
    }
}

async fn build_client(settings: &S3Settings) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(endpoint) = &settings.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let (Some(access_key), Some(secret_key)) = (&settings.access_key, &settings.secret_key) {
        loader = loader.credentials_provider(Credentials::new(
            access_key,
            secret_key,
            None,
            None,
            "drillbook",
        ));
    }
    let shared = loader.load().await;

    let mut config = aws_sdk_s3::config::Builder::from(&shared)
        // The SDK's newer default (a checksum on every request) breaks uploads to several
        // S3-compatible servers; drillbook checks integrity with its own SHA-256 manifests.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if shared.region().is_none() {
        config = config.region(Region::new(DEFAULT_REGION));
    }
    // A custom endpoint (MinIO, s3s, Ceph, ...) rarely has wildcard DNS for virtual-hosted
    // buckets. `AWS_ENDPOINT_URL` is read by aws-config; the S3-only variable is not visible
    // in `shared`, so look at it directly.
    let custom_endpoint = shared.endpoint_url().is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some_and(|value| !value.is_empty());
    if custom_endpoint {
        config = config.force_path_style(true);
    }
    let retry = shared
        .retry_config()
        .cloned()
        .unwrap_or_else(RetryConfig::standard);
    let retry = if retry.max_attempts() < MIN_ATTEMPTS {
        retry.with_max_attempts(MIN_ATTEMPTS)
    } else {
        retry
    };
    Client::from_conf(config.retry_config(retry).build())
}

impl S3Store {
    pub(crate) async fn open(
        bucket: String,
        prefix: String,
        url: String,
        settings: &S3Settings,
    ) -> Result<S3Store, StoreError> {
        let from_env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let endpoint = settings
            .endpoint
            .clone()
            .or_else(|| from_env("AWS_ENDPOINT_URL_S3"))
            .or_else(|| from_env("AWS_ENDPOINT_URL"))
            .unwrap_or_default();
        let identity = match (&settings.access_key, &settings.secret_key) {
            (Some(access_key), Some(_)) => access_key.clone(),
            _ => from_env("AWS_ACCESS_KEY_ID")
                .or_else(|| from_env("AWS_PROFILE"))
                .unwrap_or_default(),
        };
        let store = S3Store {
            client: build_client(settings).await,
            bucket,
            prefix,
            url,
            server: format!("{endpoint} {identity}"),
            owner: String::new(),
            walk: settings.walk,
        };
        store.check_bucket().await?;
        Ok(store)
    }

    /// Fails early, with a clear message, when the bucket is missing or unreachable.
    async fn check_bucket(&self) -> Result<(), StoreError> {
        let error = match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        let response = error.raw_response();
        match response.map(|response| response.status().as_u16()) {
            Some(404) => Err(self.no_such_bucket()),
            // HeadBucket needs the ListBucket permission, which a write-only backup role may
            // lack; such a role can still do its job, so this is not an error.
            Some(403) => {
                tracing::debug!(
                    "{}: HeadBucket denied, assuming the bucket exists",
                    self.url
                );
                Ok(())
            }
            Some(301) => {
                let message = match response
                    .and_then(|response| response.headers().get("x-amz-bucket-region"))
                {
                    Some(region) => format!("the bucket is in {region}; set AWS_REGION={region}"),
                    None => "the bucket is in another region; set AWS_REGION to it".to_owned(),
                };
                Err(StoreError::Failed {
                    action: "open",
                    url: self.url.clone(),
                    key: String::new(),
                    message,
                })
            }
            _ => Err(self.sdk_error("open", "", &error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_do_not_show_the_secret() {
        let settings = S3Settings {
            secret_key: Some("hunter2".to_owned()),
            ..S3Settings::default()
        };
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
