//! Writes that happen only if the object is as the writer last saw it: absent, or unchanged
//! since it was read (its [`Tag`]). What leases and fenced logs are built on.
//!
//! S3 gives the guarantee itself (PutObject with `If-None-Match` / `If-Match`; atomic on AWS
//! S3 — s3s-fs, the tests' server, checks before it writes, so two racing writers there can
//! both pass). A local directory gives it to processes on one machine: "absent" is a hard link
//! that fails when the name exists; "unchanged" holds an exclusive lock on the object while it
//! compares its SHA-256 and renames the new bytes over it.

use super::{Backend, Store, StoreError, check_key};

/// What a conditional write requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// No object under the key.
    Absent,
    /// The object as it was when read with this tag.
    Unchanged(Tag),
}

/// An object's version as the store names it: S3's ETag, a local file's SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag(pub String);

/// How a conditional write ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Put {
    /// Written; the new object's tag.
    Written(Tag),
    /// The condition did not hold: nothing was written.
    Refused,
}

impl Store {
    /// Writes `bytes` under `key` only if `condition` holds.
    pub async fn put_if(
        &self,
        key: &str,
        bytes: Vec<u8>,
        condition: &Condition,
    ) -> Result<Put, StoreError> {
        check_key(&self.url, key)?;
        match &self.backend {
            Backend::Local(store) => store.put_if(key, bytes, condition).await,
            Backend::S3(store) => store.put_if(key, bytes, condition).await,
        }
    }

    /// The object's bytes and tag; `None` when there is none.
    pub async fn get_tagged(&self, key: &str) -> Result<Option<(Vec<u8>, Tag)>, StoreError> {
        check_key(&self.url, key)?;
        match &self.backend {
            Backend::Local(store) => store.get_tagged(key).await,
            Backend::S3(store) => store.get_tagged(key).await,
        }
    }
}
