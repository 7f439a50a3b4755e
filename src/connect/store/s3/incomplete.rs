//! Removing what interrupted uploads left: from the server's list of unfinished uploads where
//! it has one, and from the markers drillbook's own multipart uploads write (see the module
//! documentation of `s3`).

use aws_sdk_s3::error::ProvideErrorMetadata;
use tokio::io::AsyncReadExt;

use super::errors::describe;
use super::{S3Store, timestamp};
use crate::connect::store::{StoreError, location};

/// Each multipart upload records its upload id in
/// `<MARKER_DIR><full key><MARKER_SUFFIX><random>`.
pub(super) const MARKER_DIR: &str = ".drillbook-incomplete/";
pub(super) const MARKER_SUFFIX: &str = ".upload-";

impl S3Store {
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
                // The server's list does not say who started an upload: only abandoned ones.
                for (full_key, upload_id, started) in uploads {
                    if !crate::connect::store::removable(&self.owner, None, started) {
                        continue;
                    }
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
            let Some((full_key, suffix)) = marker
                .key
                .strip_prefix(MARKER_DIR)
                .and_then(|rest| rest.rsplit_once(MARKER_SUFFIX))
                .map(|(full_key, suffix)| (full_key.to_owned(), suffix))
            else {
                continue;
            };
            let of = suffix.rsplit_once('-').map(|(owner, _)| owner);
            let own = !self.owner.is_empty() && of == Some(self.owner.as_str());
            if !crate::connect::store::removable(&self.owner, of, marker.modified) {
                // Another run's upload, maybe still in flight.
                continue;
            }
            // With a server listing, the upload was aborted above or is already gone: the
            // marker is stale either way.
            // Aborted above when the server listed it and it was stale; an own upload of
            // this run is aborted here.
            if !listed || own {
                let upload_id = self.read_marker(&marker.key, prefix).await?;
                // Cleaning up is not the backup: an upload that cannot be aborted (no
                // permission; or gone, which some servers answer with AccessDenied) is said
                // and left to the bucket's AbortIncompleteMultipartUpload rule.
                match self.abort_upload(&full_key, &upload_id).await {
                    Ok(true) => {
                        removed.push(self.describe_abort(&full_key, &upload_id, marker.modified))
                    }
                    Ok(false) => {}
                    Err(error) => removed.push(format!(
                        "could not abort the unfinished upload {upload_id} ({error}); if it \
                         still exists, the bucket's AbortIncompleteMultipartUpload rule removes it"
                    )),
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
    pub(super) async fn abort_upload(
        &self,
        full_key: &str,
        upload_id: &str,
    ) -> Result<bool, StoreError> {
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
    pub(super) async fn delete_marker(&self, marker_key: &str) {
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
