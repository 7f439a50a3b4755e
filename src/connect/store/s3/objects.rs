//! Reading and writing whole objects: put (one request, streamed, or handed to a multipart
//! upload), server-side copy, get, head, list and delete.

use std::ops::Range;
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, StorageClass};
use tokio::io::AsyncRead;

use super::multipart::{MultipartUpload, base_part_size, streams};
use super::{MAX_SINGLE_REQUEST, S3Store, timestamp};
use crate::connect::store::{ObjectInfo, PutOptions, StoreError, streamed};

/// What a CopySource key keeps unescaped: unreserved characters and `/`.
const COPY_SOURCE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

impl S3Store {
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
        let mut first = crate::connect::store::read_part(
            &mut reader,
            expected.map_or(base, |size| size + 1),
            None,
        )
        .await
        .map_err(source_error)?;
        if expected.is_some_and(|size| first.len() > size) {
            // Larger than the hint: read on to a whole part.
            let more = crate::connect::store::read_part(&mut reader, base - first.len(), None)
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
            .and_then(full_object_sha256);
        Ok(sha256)
    }

    /// The object's full-object SHA-256 (hex) as the server records it, when it records one
    /// (multipart uploads and many S3-compatible servers have none).
    pub(crate) async fn stored_sha256(&self, key: &str) -> Result<Option<String>, StoreError> {
        let output = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|error| self.sdk_error("inspect", key, &error))?;
        Ok(output.checksum_sha256().and_then(full_object_sha256))
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

    /// Every object under `full_prefix` (bucket keys, not relative ones), all pages.
    /// `prefix` is only for messages.
    pub(super) async fn list_full(
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
}

/// A full-object SHA-256 checksum (plain base64) as hex; a composite one (ending in `-N`,
/// a checksum of the parts' checksums) is no checksum of the content.
fn full_object_sha256(checksum: &str) -> Option<String> {
    use base64::Engine as _;
    if checksum.contains('-') {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(checksum)
        .ok()
        .filter(|digest| digest.len() == 32)
        .map(|digest| crate::format::hex(&digest))
}
