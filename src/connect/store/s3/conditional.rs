//! Conditional writes on S3: PutObject with `If-None-Match: *` (only if absent) or
//! `If-Match: ETAG` (only if unchanged). AWS S3 applies the condition atomically with the
//! write; a refused write answers 412 (or 409 when a concurrent conditional write won).

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;

use super::S3Store;
use crate::connect::store::StoreError;
use crate::connect::store::conditional::{Condition, Put, Tag};

impl S3Store {
    pub(crate) async fn put_if(
        &self,
        key: &str,
        bytes: Vec<u8>,
        condition: &Condition,
    ) -> Result<Put, StoreError> {
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .content_length(bytes.len() as i64)
            .body(ByteStream::from(bytes));
        request = match condition {
            Condition::Absent => request.if_none_match("*"),
            Condition::Unchanged(tag) => request.if_match(&tag.0),
        };
        match request.send().await {
            Ok(output) => Ok(Put::Written(Tag(output
                .e_tag()
                .unwrap_or_default()
                .to_owned()))),
            Err(error) => {
                let status = error.raw_response().map(|r| r.status().as_u16());
                let refused = matches!(
                    error.code(),
                    Some("PreconditionFailed" | "ConditionalRequestConflict")
                ) || matches!(status, Some(409 | 412));
                if refused {
                    Ok(Put::Refused)
                } else {
                    Err(self.sdk_error("write", key, &error))
                }
            }
        }
    }

    pub(crate) async fn get_tagged(&self, key: &str) -> Result<Option<(Vec<u8>, Tag)>, StoreError> {
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(output) => output,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None);
            }
            Err(error) => return Err(self.sdk_error("read", key, &error)),
        };
        let tag = Tag(output.e_tag().unwrap_or_default().to_owned());
        let bytes = output
            .body
            .collect()
            .await
            .map_err(|error| StoreError::Failed {
                action: "read",
                url: self.url.clone(),
                key: key.to_owned(),
                message: error.to_string(),
            })?
            .into_bytes()
            .to_vec();
        Ok(Some((bytes, tag)))
    }
}
