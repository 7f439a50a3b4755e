//! Multipart uploads: parts of a size that grows with the object, a few in flight with their
//! buffers reused, never leaving a half-written object (aborted on error and when dropped).

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, StorageClass};
use tokio::io::AsyncRead;
use tokio::task::JoinSet;

use super::errors::describe;
use super::incomplete::{MARKER_DIR, MARKER_SUFFIX};
use super::{MAX_SINGLE_REQUEST, S3Store};
use crate::connect::store::{PutOptions, StoreError, location, streamed};

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
/// S3's limit on the number of parts of one upload.
const MAX_PARTS: i32 = 10_000;

/// A part uploaded: the part for CompleteMultipartUpload, its size, and its buffer back for
/// the next part when the request let go of it.
type PartDone = (CompletedPart, u64, Option<Vec<u8>>);

/// One multipart upload in progress. Dropping it unfinished (the `put_stream` future was
/// cancelled) stops its part uploads and aborts it in a spawned task.
pub(super) struct MultipartUpload {
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
    pub(super) async fn start(
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
        let owner = match self.store.owner.as_str() {
            "" => String::new(),
            owner => format!("{owner}-"),
        };
        let marker = format!(
            "{MARKER_DIR}{}{MARKER_SUFFIX}{owner}{:016x}",
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
    pub(super) async fn send_parts<R: AsyncRead + Unpin + Send>(
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
            body = crate::connect::store::read_part(
                reader,
                part_size(self.base, number + 1),
                self.spare.pop(),
            )
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

    pub(super) async fn complete(&mut self, parts: Vec<CompletedPart>) -> Result<(), StoreError> {
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
    pub(super) async fn abort(&mut self) {
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
pub(super) fn base_part_size(options: &PutOptions) -> usize {
    options.part_size.map_or(PART_SIZE, |size| {
        usize::try_from(size.clamp(MIN_PART_SIZE, MAX_PART_SIZE)).unwrap_or(PART_SIZE)
    })
}

/// Whether an object of a known `size` goes up as one streamed request: at least a part, and
/// below the multipart threshold.
pub(super) fn streams(size: u64, base: usize, options: &PutOptions) -> bool {
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
}
