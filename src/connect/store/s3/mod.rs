//! An S3-compatible bucket, optionally under a prefix, through aws-sdk-s3.
//!
//! Uploads are multipart with bounded memory and never leave a half-written object: the
//! upload is aborted on error and when the future is dropped. Because not every S3-compatible
//! server implements ListMultipartUploads (s3s-fs does not), each multipart upload also writes
//! a small marker object `.drillbook-incomplete/<key>.upload-<random>` at the bucket's root
//! holding its upload id, deleted when the upload completes or is aborted; `remove_incomplete`
//! uses both, so it finds what a crashed process left behind on any server.
//!
//! The store's operations are split by idea: `client` opens the bucket, `objects` reads
//! and writes objects, `multipart` uploads large ones in parts, `incomplete` removes what
//! interrupted uploads left, `posture` reads versioning and lifecycle rules, and `errors`
//! words the SDK's errors.

mod client;
mod conditional;
mod errors;
mod incomplete;
mod listing;
mod multipart;
mod objects;
mod posture;

pub use client::S3Settings;
pub(crate) use multipart::upload_memory;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::DateTime;

use super::StoreError;

/// S3's limit on a single PutObject, and on a CopyObject.
pub(crate) const MAX_SINGLE_REQUEST: u64 = 5 << 30;

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
    /// Named in upload markers: see `Store::owned_by`.
    pub(in crate::connect::store) owner: String,
    /// `sync` and `verify` list a level at a time (`?listing=walk`).
    walk: bool,
}

impl S3Store {
    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn no_such_bucket(&self) -> StoreError {
        StoreError::NoSuchBucket {
            url: self.url.clone(),
            bucket: self.bucket.clone(),
        }
    }

    fn not_found(&self, key: &str) -> StoreError {
        StoreError::NotFound {
            url: self.url.clone(),
            key: key.to_owned(),
        }
    }

    /// Whether `other` is on the same server, reached with the same identity.
    pub(crate) fn same_server(&self, other: &S3Store) -> bool {
        self.server == other.server
    }
}

fn timestamp(time: &DateTime) -> Option<jiff::Timestamp> {
    jiff::Timestamp::new(time.secs(), time.subsec_nanos() as i32).ok()
}
