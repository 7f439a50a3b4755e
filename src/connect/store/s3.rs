//! An S3-compatible bucket, optionally under a prefix, through aws-sdk-s3.
//!
//! Uploads are multipart with bounded memory and never leave a half-written object: the
//! upload is aborted on error and when the future is dropped. Because not every S3-compatible
//! server implements ListMultipartUploads (s3s-fs does not), each multipart upload also writes
//! a small marker object `.drillbook-incomplete/<key>.upload-<random>` at the bucket's root
//! holding its upload id, deleted when the upload completes or is aborted; `remove_incomplete`
//! uses both, so it finds what a crashed process left behind on any server.

use std::ops::Range;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, StorageClass};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinSet;

use super::{ObjectInfo, PutOptions, StoreError, location, streamed};

/// S3 allows parts of 5 MiB and more (except the last); 8 MiB keeps requests few and memory
/// small: at most `MAX_IN_FLIGHT` parts are uploading while the next one is read, and their
/// buffers are reused (fresh 8 MiB buffers freed on other threads are kept by the allocator
/// per thread: memory grew with the size of the upload before, 88 MiB for a 1 GB dump).
const PART_SIZE: usize = 8 << 20;
/// S3's limits on the size of a part (but the last).
const MIN_PART_SIZE: u64 = 5 << 20;
const MAX_PART_SIZE: u64 = 5 << 30;
const MAX_IN_FLIGHT: usize = 3;
/// An object of a known size below this is sent as one streamed request rather than as parts
/// (rclone's default cutoff too): the server writes it once, where a multipart upload is
/// written as parts and then again as the object. A failed request is sent again whole.
const MULTIPART_THRESHOLD: u64 = 200 << 20;
/// S3's limit on a single PutObject, and on a CopyObject.
pub(crate) const MAX_SINGLE_REQUEST: u64 = 5 << 30;
/// What a CopySource key keeps unescaped: unreserved characters and `/`.
const COPY_SOURCE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');
/// S3's limit on the number of parts of one upload.
const MAX_PARTS: i32 = 10_000;
/// With fewer attempts a short burst of 500/503 answers would fail a long upload.
const MIN_ATTEMPTS: u32 = 5;
/// Used when neither the settings nor the environment name a region (S3-compatible servers
/// usually ignore it, but requests must be signed for some region).
const DEFAULT_REGION: &str = "us-east-1";

const MARKER_DIR: &str = ".drillbook-incomplete/";
const MARKER_SUFFIX: &str = ".upload-";

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

#[derive(Clone)]
pub(crate) struct S3Store {
    client: Client,
    bucket: String,
    /// "" or ends with `/`.
    prefix: String,
    url: String,
    /// The server and the identity used there (endpoint and access key id, never the
    /// secret): two stores with the same one can copy between them server-side.
    server: String,
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

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn no_such_bucket(&self) -> StoreError {
        StoreError::NoSuchBucket {
            url: self.url.clone(),
            bucket: self.bucket.clone(),
        }
    }

    fn sdk_error<E>(
        &self,
        action: &'static str,
        key: &str,
        error: &SdkError<E, HttpResponse>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        if error.code() == Some("NoSuchBucket") {
            return self.no_such_bucket();
        }
        StoreError::Failed {
            action,
            url: self.url.clone(),
            key: key.to_owned(),
            message: describe(error),
        }
    }

    pub(crate) async fn put_stream<R: AsyncRead + Unpin + Send>(
        &self,
        key: &str,
        mut reader: R,
        options: &PutOptions,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<u64, StoreError> {
        let source_error = |source| StoreError::Source {
            url: self.url.clone(),
            key: key.to_owned(),
            source,
        };
        let base = base_part_size(options);
        let storage_class = options.storage_class.as_deref().map(StorageClass::from);
        if let Some(size) = options.size_hint
            && streams(size, base, options)
        {
            return self
                .put_streamed(key, &mut reader, size, storage_class, progress)
                .await;
        }
        // An object said to be small gets a buffer of its size (and one byte more, to see
        // its end), not a whole part's.
        let expected = options
            .size_hint
            .and_then(|size| usize::try_from(size).ok())
            .filter(|&size| size < base);
        let mut first = super::read_part(&mut reader, expected.map_or(base, |size| size + 1), None)
            .await
            .map_err(source_error)?;
        if expected.is_some_and(|size| first.len() > size) {
            // Larger than the hint: read on to a whole part.
            let more = super::read_part(&mut reader, base - first.len(), None)
                .await
                .map_err(source_error)?;
            first.extend_from_slice(&more);
        }
        if first.len() < base {
            // Small enough for one request, which S3 applies atomically.
            let size = first.len() as u64;
            self.put_object(key, size, storage_class, ByteStream::from(first))
                .await
                .map_err(|error| self.sdk_error("write", key, &error))?;
            progress(size);
            return Ok(size);
        }

        let mut upload = MultipartUpload::start(self, key, base, storage_class).await?;
        let result = match upload.send_parts(first, &mut reader, progress).await {
            Ok((parts, size)) => upload.complete(parts).await.map(|()| size),
            Err(error) => Err(error),
        };
        if result.is_err() {
            upload.abort().await;
        }
        result
    }

    /// Bytes in memory: one request (which the client can resend after a transient error),
    /// or a multipart upload beyond S3's limit on one.
    pub(crate) async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let size = bytes.len() as u64;
        if size >= MAX_SINGLE_REQUEST {
            self.put_stream(key, bytes.as_slice(), &PutOptions::default(), &|_| {})
                .await?;
            return Ok(());
        }
        self.put_object(key, size, None, ByteStream::from(bytes))
            .await
            .map_err(|error| self.sdk_error("write", key, &error))?;
        Ok(())
    }

    /// Whether `other` is on the same server, reached with the same identity.
    pub(crate) fn same_server(&self, other: &S3Store) -> bool {
        self.server == other.server
    }

    /// Copies `key` of `source` to the same key here, server-side (CopyObject, up to 5 GiB),
    /// asking the server for the copy's SHA-256. Returns it (hex) when the server computed one.
    pub(crate) async fn copy_from(
        &self,
        source: &S3Store,
        key: &str,
        options: &PutOptions,
    ) -> Result<Option<String>, StoreError> {
        let copy_source = format!(
            "{}/{}",
            source.bucket,
            percent_encoding::utf8_percent_encode(&source.full_key(key), COPY_SOURCE)
        );
        let output = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .copy_source(copy_source)
            .set_storage_class(options.storage_class.as_deref().map(StorageClass::from))
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send()
            .await
            .map_err(|error| {
                if error
                    .as_service_error()
                    .and_then(ProvideErrorMetadata::code)
                    == Some("NoSuchKey")
                {
                    source.not_found(key)
                } else {
                    self.sdk_error("copy", key, &error)
                }
            })?;
        let sha256 = output
            .copy_object_result()
            .and_then(|result| result.checksum_sha256())
            // A full-object checksum is plain base64; a composite one ends in `-N`.
            .filter(|checksum| !checksum.contains('-'))
            .and_then(|checksum| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(checksum)
                    .ok()
            })
            .filter(|digest| digest.len() == 32)
            .map(|digest| crate::format::hex(&digest));
        Ok(sha256)
    }

    /// One PutObject of `size` bytes. The payload is not hashed a second time for the
    /// signature (a streamed body could not be): the request is checked by its Content-Length,
    /// and TLS protects its bytes on the way.
    async fn put_object(
        &self,
        key: &str,
        size: u64,
        storage_class: Option<StorageClass>,
        body: ByteStream,
    ) -> Result<
        aws_sdk_s3::operation::put_object::PutObjectOutput,
        SdkError<aws_sdk_s3::operation::put_object::PutObjectError, HttpResponse>,
    > {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .content_length(size as i64)
            .set_storage_class(storage_class)
            .body(body)
            .customize()
            .disable_payload_signing()
            .send()
            .await
    }

    /// One PutObject whose body is read from `reader` while it is sent: exactly `size` bytes,
    /// or the request fails and nothing is stored.
    async fn put_streamed<R: AsyncRead + Unpin + Send>(
        &self,
        key: &str,
        reader: &mut R,
        size: u64,
        storage_class: Option<StorageClass>,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<u64, StoreError> {
        let (body, feeder) = streamed::channel(size);
        let request = self.put_object(key, size, storage_class, ByteStream::from_body_1_x(body));
        let (fed, sent) = tokio::join!(feeder.run(reader, progress), request);
        match (fed, sent) {
            (Err(streamed::Stopped::Source(source)), _) => Err(StoreError::Source {
                url: self.url.clone(),
                key: key.to_owned(),
                source,
            }),
            (_, Err(error)) => Err(self.sdk_error("write", key, &error)),
            (Ok(()), Ok(_)) => Ok(size),
            (Err(streamed::Stopped::Request), Ok(_)) => Err(StoreError::Failed {
                action: "write",
                url: self.url.clone(),
                key: key.to_owned(),
                message: "the server answered before the whole object was sent".to_owned(),
            }),
        }
    }

    pub(crate) async fn get(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<Box<dyn AsyncRead + Send + Unpin>, StoreError> {
        let mut request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key));
        if let Some(range) = &range {
            if range.is_empty() {
                // HTTP cannot ask for zero bytes; only the object's existence matters then.
                return match self.head(key).await? {
                    Some(_) => Ok(Box::new(tokio::io::empty())),
                    None => Err(self.not_found(key)),
                };
            }
            request = request.range(format!("bytes={}-{}", range.start, range.end - 1));
        }
        match request.send().await {
            Ok(output) => Ok(Box::new(output.body.into_async_read())),
            Err(error) => Err(match error.as_service_error() {
                Some(GetObjectError::NoSuchKey(_)) => self.not_found(key),
                _ if error.code() == Some("InvalidRange") => StoreError::Failed {
                    action: "read",
                    url: self.url.clone(),
                    key: key.to_owned(),
                    message: format!(
                        "byte range {}..{} starts beyond the end of the object",
                        range.as_ref().map_or(0, |range| range.start),
                        range.as_ref().map_or(0, |range| range.end),
                    ),
                },
                _ => self.sdk_error("read", key, &error),
            }),
        }
    }

    fn not_found(&self, key: &str) -> StoreError {
        StoreError::NotFound {
            url: self.url.clone(),
            key: key.to_owned(),
        }
    }

    pub(crate) async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        // Few, quick attempts: a server error falls back to a listing below, which has the
        // full retry budget. This keeps s3s-fs's 500 on "directory" keys from costing seconds.
        let quick_retry = aws_sdk_s3::config::Builder::default().retry_config(
            RetryConfig::standard()
                .with_max_attempts(2)
                .with_initial_backoff(Duration::from_millis(100)),
        );
        let result = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .customize()
            .config_override(quick_retry)
            .send()
            .await;
        let error = match result {
            Ok(output) => {
                return Ok(Some(ObjectInfo {
                    key: key.to_owned(),
                    size: output.content_length().unwrap_or(0).max(0) as u64,
                    modified: output.last_modified().and_then(timestamp),
                }));
            }
            Err(error) => error,
        };
        let status = error
            .raw_response()
            .map(|response| response.status().as_u16());
        match (error.as_service_error(), status) {
            (Some(HeadObjectError::NotFound(_)), _) | (_, Some(404)) => Ok(None),
            (_, Some(500..=599)) => self.head_by_listing(key).await,
            _ => Err(self.sdk_error("inspect", key, &error)),
        }
    }

    /// The object named exactly `key`, from a listing: `key` sorts before every other key it
    /// prefixes, so the first entry decides.
    async fn head_by_listing(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        let full_key = self.full_key(key);
        let output = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full_key)
            .max_keys(1)
            .send()
            .await
            .map_err(|error| self.sdk_error("inspect", key, &error))?;
        Ok(output
            .contents()
            .first()
            .filter(|object| object.key() == Some(full_key.as_str()))
            .map(|object| ObjectInfo {
                key: key.to_owned(),
                size: object.size().unwrap_or(0).max(0) as u64,
                modified: object.last_modified().and_then(timestamp),
            }))
    }

    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let objects = self.list_full(&self.full_key(prefix), prefix).await?;
        Ok(objects
            .into_iter()
            .filter_map(|mut object| {
                // Zero-byte "folder" placeholders (made by web consoles) are not objects a
                // key can name; our markers are bookkeeping, not data.
                if object.key.ends_with('/') || object.key.starts_with(MARKER_DIR) {
                    return None;
                }
                object.key = object.key.strip_prefix(&self.prefix)?.to_owned();
                Some(object)
            })
            .collect())
    }

    /// Every object under `full_prefix` (bucket keys, not relative ones), all pages.
    /// `prefix` is only for messages.
    async fn list_full(
        &self,
        full_prefix: &str,
        prefix: &str,
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut objects = Vec::new();
        let mut continuation = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(full_prefix)
                .set_continuation_token(continuation.take())
                .send()
                .await
                .map_err(|error| self.sdk_error("list", prefix, &error))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                objects.push(ObjectInfo {
                    key: key.to_owned(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                    modified: object.last_modified().and_then(timestamp),
                });
            }
            match page.next_continuation_token() {
                Some(token) if page.is_truncated() == Some(true) => {
                    continuation = Some(token.to_owned());
                }
                _ => break,
            }
        }
        Ok(objects)
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), StoreError> {
        // S3 answers a delete of an absent key with success.
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|error| self.sdk_error("delete", key, &error))?;
        Ok(())
    }

    /// With `any_writer`, also the uploads other programs started (from the server's list
    /// of unfinished uploads, where it has one); otherwise only drillbook's (its markers).
    pub(crate) async fn remove_incomplete(
        &self,
        prefix: &str,
        any_writer: bool,
    ) -> Result<Vec<String>, StoreError> {
        let full_prefix = self.full_key(prefix);
        let mut removed = Vec::new();

        // The authoritative way, where the server implements it: it also finds uploads whose
        // process died before writing a marker, or that another tool started.
        let uploads = if any_writer {
            self.list_uploads(&full_prefix, prefix).await?
        } else {
            None
        };
        let listed = match uploads {
            Some(uploads) => {
                for (full_key, upload_id, started) in uploads {
                    self.abort_upload(&full_key, &upload_id).await?;
                    removed.push(self.describe_abort(&full_key, &upload_id, started));
                }
                true
            }
            None => false,
        };

        let markers = self
            .list_full(&format!("{MARKER_DIR}{full_prefix}"), prefix)
            .await?;
        for marker in markers {
            let Some(full_key) = marker
                .key
                .strip_prefix(MARKER_DIR)
                .and_then(|rest| rest.rsplit_once(MARKER_SUFFIX))
                .map(|(full_key, _)| full_key.to_owned())
            else {
                continue;
            };
            // With a server listing, the upload was aborted above or is already gone: the
            // marker is stale either way.
            if !listed {
                let upload_id = self.read_marker(&marker.key, prefix).await?;
                if self.abort_upload(&full_key, &upload_id).await? {
                    removed.push(self.describe_abort(&full_key, &upload_id, marker.modified));
                }
            }
            self.delete_marker(&marker.key).await;
        }
        Ok(removed)
    }

    fn describe_abort(
        &self,
        full_key: &str,
        upload_id: &str,
        started: Option<jiff::Timestamp>,
    ) -> String {
        let key = full_key.strip_prefix(&self.prefix).unwrap_or(full_key);
        let started = started.map_or(String::new(), |time| format!(", started {time}"));
        format!(
            "aborted the unfinished upload to {} (upload id {upload_id}{started})",
            location(&self.url, key)
        )
    }

    /// Unfinished uploads under `full_prefix`, or `None` when the server does not implement
    /// ListMultipartUploads.
    #[allow(clippy::type_complexity)]
    async fn list_uploads(
        &self,
        full_prefix: &str,
        prefix: &str,
    ) -> Result<Option<Vec<(String, String, Option<jiff::Timestamp>)>>, StoreError> {
        let mut uploads = Vec::new();
        let mut key_marker = None;
        let mut upload_id_marker = None;
        loop {
            let result = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(full_prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(upload_id_marker.take())
                .send()
                .await;
            let page = match result {
                Ok(page) => page,
                Err(error)
                    if error.code() == Some("NotImplemented")
                        || error
                            .raw_response()
                            .is_some_and(|response| response.status().as_u16() == 501) =>
                {
                    return Ok(None);
                }
                Err(error) => return Err(self.sdk_error("list uploads under", prefix, &error)),
            };
            for upload in page.uploads() {
                if let (Some(key), Some(upload_id)) = (upload.key(), upload.upload_id()) {
                    let started = upload.initiated().and_then(timestamp);
                    uploads.push((key.to_owned(), upload_id.to_owned(), started));
                }
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            upload_id_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() {
                break;
            }
        }
        Ok(Some(uploads))
    }

    async fn read_marker(&self, marker_key: &str, prefix: &str) -> Result<String, StoreError> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(marker_key)
            .send()
            .await
            .map_err(|error| self.sdk_error("read the upload marker under", prefix, &error))?;
        let mut upload_id = String::new();
        output
            .body
            .into_async_read()
            .read_to_string(&mut upload_id)
            .await
            .map_err(|error| StoreError::Failed {
                action: "read the upload marker under",
                url: self.url.clone(),
                key: prefix.to_owned(),
                message: error.to_string(),
            })?;
        Ok(upload_id.trim().to_owned())
    }

    /// Aborts one multipart upload; `Ok(false)` when it no longer exists.
    async fn abort_upload(&self, full_key: &str, upload_id: &str) -> Result<bool, StoreError> {
        let result = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(full_key)
            .upload_id(upload_id)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) if error.code() == Some("NoSuchUpload") => Ok(false),
            Err(error) => {
                let key = full_key.strip_prefix(&self.prefix).unwrap_or(full_key);
                Err(self.sdk_error("abort the upload to", key, &error))
            }
        }
    }

    /// Best effort: a leftover marker only costs `remove_incomplete` one more request.
    async fn delete_marker(&self, marker_key: &str) {
        let result = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(marker_key)
            .send()
            .await;
        if let Err(error) = result {
            tracing::debug!(
                "cannot delete the upload marker {marker_key} in {}: {}",
                self.url,
                describe(&error)
            );
        }
    }
}

/// A part uploaded: the part for CompleteMultipartUpload, its size, and its buffer back for
/// the next part when the request let go of it.
type PartDone = (CompletedPart, u64, Option<Vec<u8>>);

/// One multipart upload in progress. Dropping it unfinished (the `put_stream` future was
/// cancelled) stops its part uploads and aborts it in a spawned task.
struct MultipartUpload {
    store: S3Store,
    /// Relative to the store's prefix, for messages.
    key: String,
    full_key: String,
    upload_id: String,
    marker: Option<String>,
    /// The size of the first parts (later ones grow, see [`part_size`]).
    base: usize,
    parts: JoinSet<Result<PartDone, StoreError>>,
    /// Buffers of finished parts, for the next ones.
    spare: Vec<Vec<u8>>,
    finished: bool,
}

impl MultipartUpload {
    async fn start(
        store: &S3Store,
        key: &str,
        base: usize,
        storage_class: Option<StorageClass>,
    ) -> Result<MultipartUpload, StoreError> {
        let full_key = store.full_key(key);
        let output = store
            .client
            .create_multipart_upload()
            .bucket(&store.bucket)
            .key(&full_key)
            .set_storage_class(storage_class)
            .send()
            .await
            .map_err(|error| store.sdk_error("write", key, &error))?;
        let Some(upload_id) = output.upload_id().map(str::to_owned) else {
            return Err(StoreError::Failed {
                action: "write",
                url: store.url.clone(),
                key: key.to_owned(),
                message: "the server started a multipart upload without an upload id".to_owned(),
            });
        };
        let mut upload = MultipartUpload {
            store: store.clone(),
            key: key.to_owned(),
            full_key,
            upload_id,
            marker: None,
            base,
            parts: JoinSet::new(),
            spare: Vec::new(),
            finished: false,
        };
        upload.write_marker().await;
        Ok(upload)
    }

    /// Records the upload id where `remove_incomplete` can find it if this process dies.
    /// Best effort: credentials limited to a prefix may not write at the bucket's root, and
    /// that must not stop a backup.
    async fn write_marker(&mut self) {
        let marker = format!(
            "{MARKER_DIR}{}{MARKER_SUFFIX}{:016x}",
            self.full_key,
            fastrand::u64(..)
        );
        let result = self
            .store
            .client
            .put_object()
            .bucket(&self.store.bucket)
            .key(&marker)
            .body(ByteStream::from(self.upload_id.clone().into_bytes()))
            .send()
            .await;
        match result {
            Ok(_) => self.marker = Some(marker),
            Err(error) => tracing::debug!(
                "cannot write the upload marker {marker} in {}: {}",
                self.store.url,
                describe(&error)
            ),
        }
    }

    /// Uploads `first` and the rest of `reader` as parts; returns them in order with the
    /// total size. On error, parts may still be in flight: the caller aborts.
    async fn send_parts<R: AsyncRead + Unpin + Send>(
        &mut self,
        first: Vec<u8>,
        reader: &mut R,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(Vec<CompletedPart>, u64), StoreError> {
        let mut completed = Vec::new();
        let mut uploaded = 0u64;
        let mut number = 1;
        let mut body = first;
        loop {
            while self.parts.len() >= MAX_IN_FLIGHT {
                if let Some(result) = self.parts.join_next().await {
                    self.collect(result, &mut completed, &mut uploaded, progress)?;
                }
            }
            self.spawn_part(number, body);
            // Report parts that finished meanwhile, and fail fast on a failed one.
            while let Some(result) = self.parts.try_join_next() {
                self.collect(result, &mut completed, &mut uploaded, progress)?;
            }
            body = super::read_part(reader, part_size(self.base, number + 1), self.spare.pop())
                .await
                .map_err(|source| StoreError::Source {
                    url: self.store.url.clone(),
                    key: self.key.clone(),
                    source,
                })?;
            if body.is_empty() {
                break;
            }
            if number == MAX_PARTS {
                return Err(self.failed(
                    "write",
                    format!("the object is larger than S3's limit of {MAX_PARTS} parts"),
                ));
            }
            number += 1;
        }
        while let Some(result) = self.parts.join_next().await {
            self.collect(result, &mut completed, &mut uploaded, progress)?;
        }
        completed.sort_by_key(|part| part.part_number());
        Ok((completed, uploaded))
    }

    fn spawn_part(&mut self, number: i32, body: Vec<u8>) {
        let body = bytes::Bytes::from(body);
        let store = self.store.clone();
        let key = self.key.clone();
        let full_key = self.full_key.clone();
        let upload_id = self.upload_id.clone();
        self.parts.spawn(async move {
            let size = body.len() as u64;
            // A body built from memory can be resent, so the SDK retries a failed part.
            let output = store
                .client
                .upload_part()
                .bucket(&store.bucket)
                .key(full_key)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(size as i64)
                .body(ByteStream::from(body.clone()))
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .map_err(|error| store.sdk_error("write", &key, &error))?;
            let part = CompletedPart::builder()
                .part_number(number)
                .set_e_tag(output.e_tag().map(str::to_owned))
                .build();
            // The request is done with the bytes: the buffer goes back for another part.
            let spare = body.try_into_mut().ok().map(Vec::from);
            Ok((part, size, spare))
        });
    }

    fn collect(
        &mut self,
        result: Result<Result<PartDone, StoreError>, tokio::task::JoinError>,
        completed: &mut Vec<CompletedPart>,
        uploaded: &mut u64,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), StoreError> {
        let (part, size, spare) = result
            .map_err(|error| self.failed("write", format!("a part upload stopped: {error}")))??;
        self.spare.extend(spare);
        completed.push(part);
        *uploaded += size;
        progress(*uploaded);
        Ok(())
    }

    fn failed(&self, action: &'static str, message: String) -> StoreError {
        StoreError::Failed {
            action,
            url: self.store.url.clone(),
            key: self.key.clone(),
            message,
        }
    }

    async fn complete(&mut self, parts: Vec<CompletedPart>) -> Result<(), StoreError> {
        self.store
            .client
            .complete_multipart_upload()
            .bucket(&self.store.bucket)
            .key(&self.full_key)
            .upload_id(&self.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|error| self.store.sdk_error("write", &self.key, &error))?;
        self.finished = true;
        if let Some(marker) = &self.marker {
            self.store.delete_marker(marker).await;
        }
        Ok(())
    }

    /// Waits for the parts still in flight (so none can land after the abort), then aborts.
    /// Failures are logged: the caller is already returning the error that matters. If this
    /// future is dropped halfway, `Drop` still aborts.
    async fn abort(&mut self) {
        while self.parts.join_next().await.is_some() {}
        abort_and_forget(
            self.store.clone(),
            self.full_key.clone(),
            self.upload_id.clone(),
            self.marker.clone(),
        )
        .await;
        self.finished = true;
    }
}

async fn abort_and_forget(
    store: S3Store,
    full_key: String,
    upload_id: String,
    marker: Option<String>,
) {
    match store.abort_upload(&full_key, &upload_id).await {
        Ok(_) => {
            if let Some(marker) = marker {
                store.delete_marker(&marker).await;
            }
        }
        Err(error) => tracing::warn!(
            "{error}; the unfinished upload remains until `remove_incomplete` (or a bucket \
             lifecycle rule) removes it"
        ),
    }
}

impl Drop for MultipartUpload {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                "cannot abort the unfinished upload to {} outside a runtime",
                location(&self.store.url, &self.key)
            );
            return;
        };
        // Cancelled: stop sending parts now rather than finishing them.
        let mut parts = std::mem::take(&mut self.parts);
        parts.abort_all();
        let store = self.store.clone();
        let full_key = std::mem::take(&mut self.full_key);
        let upload_id = std::mem::take(&mut self.upload_id);
        let marker = self.marker.take();
        runtime.spawn(async move {
            while parts.join_next().await.is_some() {}
            abort_and_forget(store, full_key, upload_id, marker).await;
        });
    }
}

/// Part sizes grow past the first 2,000 parts so one upload can reach about 480 GiB within
/// S3's 10,000-part limit, while ordinary dumps keep 8 MiB parts (and small memory).
fn part_size(base: usize, number: i32) -> usize {
    let doublings = ((number.max(1) - 1) / 2_000).min(4) as u32;
    base << doublings
}

/// The size of the first parts of an upload: the caller's, within S3's limits.
fn base_part_size(options: &PutOptions) -> usize {
    options.part_size.map_or(PART_SIZE, |size| {
        usize::try_from(size.clamp(MIN_PART_SIZE, MAX_PART_SIZE)).unwrap_or(PART_SIZE)
    })
}

/// Whether an object of a known `size` goes up as one streamed request: at least a part, and
/// below the multipart threshold.
fn streams(size: u64, base: usize, options: &PutOptions) -> bool {
    let threshold = options
        .multipart_threshold
        .unwrap_or(MULTIPART_THRESHOLD)
        .min(MAX_SINGLE_REQUEST);
    size >= base as u64 && size < threshold
}

/// The most memory `put_stream` holds for an object of `size` bytes: the whole object when it
/// is smaller than a part, a few chunks when it is streamed in one request, else the parts in
/// flight and the one being read, at the largest part size the object reaches.
pub(crate) fn upload_memory(size: u64, options: &PutOptions) -> u64 {
    let base = base_part_size(options);
    if size < base as u64 {
        return size + 1;
    }
    if options.size_hint == Some(size) && streams(size, base, options) {
        return streamed::MEMORY;
    }
    let mut covered = 0u64;
    let mut number = 1;
    let mut largest = base as u64;
    while covered < size && number <= MAX_PARTS {
        largest = part_size(base, number) as u64;
        covered += largest;
        number += 1;
    }
    largest * (MAX_IN_FLIGHT as u64 + 1)
}

fn timestamp(time: &DateTime) -> Option<jiff::Timestamp> {
    jiff::Timestamp::new(time.secs(), time.subsec_nanos() as i32).ok()
}

/// A one-line reason for an SDK error, from the server's error code where there is one and
/// from the chain of causes otherwise (connection refused, timeout, no credentials, ...).
/// Neither includes credentials: the SDK never puts them in errors.
fn describe<E>(error: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match error {
        SdkError::ServiceError(service) => match (error.code(), error.message()) {
            (Some(code), message) => explain_code(code, message),
            // HEAD answers carry no body, hence no code.
            (None, _) => match service.raw().status().as_u16() {
                403 => "access denied (HTTP 403)".to_owned(),
                404 => "not found (HTTP 404)".to_owned(),
                status => format!("the server answered HTTP {status}"),
            },
        },
        _ => {
            let chain = error_chain(error);
            // The chain alone ("dispatch failure: other: ... IMDS session token ...") does not
            // tell an operator what to do.
            if chain.contains("loading credentials") {
                format!(
                    "no usable AWS credentials (set AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY, or AWS_PROFILE): {chain}"
                )
            } else {
                chain
            }
        }
    }
}

fn explain_code(code: &str, message: Option<&str>) -> String {
    let explained = match code {
        "AccessDenied" => "access denied",
        "InvalidAccessKeyId" => "the server does not know the access key",
        "SignatureDoesNotMatch" => "the secret key does not match the access key",
        "NoSuchBucket" => "the bucket does not exist",
        "ExpiredToken" | "TokenRefreshRequired" => "the credentials have expired",
        _ => {
            return match message {
                Some(message) if !message.is_empty() => format!("{code}: {message}"),
                _ => code.to_owned(),
            };
        }
    };
    format!("{explained} ({code})")
}

/// `error: cause: cause ...`, skipping causes whose text the previous one already shows.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut last = text.clone();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !last.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        last = cause_text;
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_fit_the_part_limit() {
        assert_eq!(part_size(PART_SIZE, 1), 8 << 20);
        assert_eq!(part_size(PART_SIZE, 2_000), 8 << 20);
        assert_eq!(part_size(PART_SIZE, 2_001), 16 << 20);
        assert_eq!(part_size(PART_SIZE, MAX_PARTS), 128 << 20);
        let total: u64 = (1..=MAX_PARTS)
            .map(|n| part_size(PART_SIZE, n) as u64)
            .sum();
        assert!(total > 450 << 30, "{total}");
        assert_eq!(part_size(16 << 20, 1), 16 << 20);
    }

    #[test]
    fn part_size_options_stay_within_s3_limits() {
        let options = |size| PutOptions {
            part_size: Some(size),
            ..PutOptions::default()
        };
        assert_eq!(base_part_size(&PutOptions::default()), PART_SIZE);
        assert_eq!(base_part_size(&options(1 << 20)), 5 << 20);
        assert_eq!(base_part_size(&options(16 << 20)), 16 << 20);
        assert_eq!(base_part_size(&options(1 << 40)), 5 << 30);
    }

    #[test]
    fn upload_memory_is_the_object_or_the_parts_in_flight() {
        let options = PutOptions {
            part_size: Some(16 << 20),
            ..PutOptions::default()
        };
        let parts = MAX_IN_FLIGHT as u64 + 1;
        assert_eq!(upload_memory(1_000, &options), 1_001);
        assert_eq!(upload_memory(16 << 20, &options), parts * (16 << 20));
        assert_eq!(upload_memory(1 << 30, &options), parts * (16 << 20));
        // Past 2,000 parts they double.
        assert_eq!(upload_memory(32_001 << 20, &options), parts * (32 << 20));
    }

    #[test]
    fn settings_do_not_show_the_secret() {
        let settings = S3Settings {
            secret_key: Some("hunter2".to_owned()),
            ..S3Settings::default()
        };
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn explains_common_codes() {
        assert_eq!(
            explain_code("AccessDenied", Some("Access Denied")),
            "access denied (AccessDenied)"
        );
        assert_eq!(
            explain_code("SlowDown", Some("Please reduce your request rate.")),
            "SlowDown: Please reduce your request rate."
        );
    }
}
