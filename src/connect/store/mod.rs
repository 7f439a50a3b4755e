//! Object stores: an S3-compatible bucket (optionally under a prefix) or a local directory,
//! behind one [`Store`] type so steps never care which one they talk to.
//!
//! Keys are always relative to the store's prefix (or directory) and `/`-separated. Every
//! error names the store URL and the key, never a credential, so it can be shown as is.

mod conditional;
mod download;
mod error;
mod listing;
mod local;
mod ownership;
mod posture;
mod s3;
mod streamed;
mod url;

pub use conditional::{Condition, Put, Tag};
pub use download::Downloaded;
pub use error::StoreError;
use error::location;
pub use listing::Listing;
pub use ownership::STALE_UPLOAD;
use ownership::removable;
pub use posture::{Posture, Rule, Transition};
pub use s3::S3Settings;
pub(crate) use url::{Location, locate, percent_decode};
use url::{check_key, check_prefix};

use std::ops::Range;

use tokio::io::{AsyncRead, AsyncReadExt};

/// How [`Store::put_stream_with`] stores an object. The default is what `put_stream` does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// S3 multipart part size (default 8 MiB), kept within S3's limits (5 MiB to 5 GiB).
    /// A local store has no parts and ignores it.
    pub part_size: Option<u64>,
    /// S3 storage class for the object (`STANDARD_IA`, `GLACIER_IR`, ...). A local store has
    /// none and ignores it (see [`Store::is_local`]).
    pub storage_class: Option<String>,
    /// The size the object is expected to have, when the caller knows it: a small object then
    /// gets a buffer of its own size rather than one of a whole part. A wrong hint costs speed,
    /// never correctness.
    pub size_hint: Option<u64>,
    /// S3: an object whose size is known (`size_hint`) and below this goes up as one request
    /// (streamed when larger than a part), larger ones as multipart uploads. Default 200 MiB.
    pub multipart_threshold: Option<u64>,
}

/// One object as listed or inspected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Relative to the store's prefix, `/`-separated.
    pub key: String,
    pub size: u64,
    pub modified: Option<jiff::Timestamp>,
}

/// A connected object store. Cheap to clone (the S3 client is shared).
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    url: String,
}

#[derive(Clone)]
enum Backend {
    Local(local::LocalStore),
    S3(s3::S3Store),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url).finish()
    }
}

impl Store {
    /// `s3://bucket/optional/prefix`, `file:///abs/path`, or a plain (relative or absolute)
    /// directory path. S3 settings come from the standard AWS environment and profile chain.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, &S3Settings::default()).await
    }

    /// Like [`Store::open`], with explicit S3 settings overriding the environment (tests and
    /// callers that hold their own configuration use this instead of mutating process env).
    ///
    /// For S3 this checks that the bucket exists, so a typo fails here with a clear message
    /// rather than halfway through a run.
    pub async fn open_with(url: &str, settings: &S3Settings) -> Result<Store, StoreError> {
        let (parsed, display, settings) = locate(url, settings)?;
        let settings = &settings;
        let backend = match parsed {
            Location::Local(path) => {
                // Resolve now so a later change of working directory cannot move the store.
                let root = std::path::absolute(&path).map_err(|error| StoreError::InvalidUrl {
                    url: display.clone(),
                    reason: error.to_string(),
                })?;
                Backend::Local(local::LocalStore::new(root, display.clone()))
            }
            Location::S3 { bucket, prefix } => {
                Backend::S3(s3::S3Store::open(bucket, prefix, display.clone(), settings).await?)
            }
        };
        Ok(Store {
            backend,
            url: display,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Streams `reader` to `key` and returns the number of bytes written. Nothing is visible
    /// under `key` unless the whole body arrived: S3 uses a multipart upload that is aborted on
    /// any error or when this future is dropped; a local store writes a temporary sibling and
    /// renames it into place. `progress(bytes_so_far)` is called as bytes are stored.
    pub async fn put_stream<R: AsyncRead + Unpin + Send>(
        &self,
        key: &str,
        reader: R,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<u64, StoreError> {
        self.put_stream_with(key, reader, &PutOptions::default(), progress)
            .await
    }

    /// [`Store::put_stream`] with a part size, a storage class or a size hint.
    pub async fn put_stream_with<R: AsyncRead + Unpin + Send>(
        &self,
        key: &str,
        reader: R,
        options: &PutOptions,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<u64, StoreError> {
        check_key(&self.url, key)?;
        match &self.backend {
            Backend::Local(store) => store.put_stream(key, reader, options, progress).await,
            Backend::S3(store) => store.put_stream(key, reader, options, progress).await,
        }
    }

    /// The most memory `put_stream_with(.., options, ..)` holds at once for an object of
    /// `size` bytes, for callers that run many uploads and keep their total bounded.
    pub fn upload_memory(&self, size: u64, options: &PutOptions) -> u64 {
        match &self.backend {
            Backend::Local(_) => local::upload_memory(size),
            Backend::S3(_) => s3::upload_memory(size, options),
        }
    }

    /// Whether objects can be copied from `source` to this store server-side ([`Store::copy_from`]):
    /// both in S3 on the same server, reached with the same identity.
    pub fn same_server(&self, source: &Store) -> bool {
        match (&self.backend, &source.backend) {
            (Backend::S3(here), Backend::S3(there)) => here.same_server(there),
            _ => false,
        }
    }

    /// Copies `key` of `source` to the same key here without the bytes passing through this
    /// process (only between stores on the same server, and objects up to 5 GiB). Returns the
    /// SHA-256 (hex) of the copy when the server computed one (AWS does); otherwise the caller
    /// reads the copy back to hash it.
    pub async fn copy_from(
        &self,
        source: &Store,
        key: &str,
        options: &PutOptions,
    ) -> Result<Option<String>, StoreError> {
        check_key(&self.url, key)?;
        match (&self.backend, &source.backend) {
            (Backend::S3(here), Backend::S3(there)) if here.same_server(there) => {
                here.copy_from(there, key, options).await
            }
            _ => Err(StoreError::Failed {
                action: "copy",
                url: self.url.clone(),
                key: key.to_owned(),
                message: format!("{} is not on the same server", source.url),
            }),
        }
    }

    /// The largest object [`Store::copy_from`] copies.
    pub const MAX_SERVER_SIDE_COPY: u64 = s3::MAX_SINGLE_REQUEST;

    /// A local directory (no storage classes, no multipart), rather than S3.
    pub fn is_local(&self) -> bool {
        matches!(self.backend, Backend::Local(_))
    }

    /// The bucket's versioning and lifecycle rules; `None` for a local directory, which has
    /// neither.
    pub async fn posture(&self) -> Result<Option<Posture>, StoreError> {
        match &self.backend {
            Backend::Local(_) => Ok(None),
            Backend::S3(store) => store.posture().await.map(Some),
        }
    }

    /// Whether the store's directory exists (always true for S3: `open` checked the bucket).
    /// A missing directory lists as an error, since it is usually a typo; a caller about to
    /// fill a new directory checks this first (writing creates it).
    pub async fn exists(&self) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Local(store) => store.exists().await,
            Backend::S3(_) => Ok(true),
        }
    }

    pub async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        check_key(&self.url, key)?;
        if let Backend::S3(store) = &self.backend {
            return store.put_bytes(key, bytes).await;
        }
        let options = PutOptions {
            size_hint: Some(bytes.len() as u64),
            ..PutOptions::default()
        };
        self.put_stream_with(key, bytes.as_slice(), &options, &|_| {})
            .await?;
        Ok(())
    }

    /// Streaming read of the whole object, or of `range` (byte offsets, end exclusive).
    pub async fn get(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<Box<dyn AsyncRead + Send + Unpin>, StoreError> {
        check_key(&self.url, key)?;
        if let Some(range) = &range
            && range.start > range.end
        {
            return Err(StoreError::Failed {
                action: "read",
                url: self.url.clone(),
                key: key.to_owned(),
                message: format!("invalid byte range {}..{}", range.start, range.end),
            });
        }
        match &self.backend {
            Backend::Local(store) => store.get(key, range).await,
            Backend::S3(store) => store.get(key, range).await,
        }
    }

    pub async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let mut reader = self.get(key, None).await?;
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .await
            .map_err(|error| StoreError::Failed {
                action: "read",
                url: self.url.clone(),
                key: key.to_owned(),
                message: error.to_string(),
            })?;
        Ok(bytes)
    }

    /// The object's SHA-256 (hex) as the store itself records it, when it records one: an S3
    /// server's full-object checksum; `None` for local directories, multipart uploads and
    /// servers that keep none.
    pub async fn stored_sha256(&self, key: &str) -> Result<Option<String>, StoreError> {
        check_key(&self.url, key)?;
        match &self.backend {
            Backend::Local(_) => Ok(None),
            Backend::S3(store) => store.stored_sha256(key).await,
        }
    }

    /// `None` when the object does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        check_key(&self.url, key)?;
        match &self.backend {
            Backend::Local(store) => store.head(key).await,
            Backend::S3(store) => store.head(key).await,
        }
    }

    /// Every object whose key starts with `prefix` ("" = all), recursively, sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut listing = self.listing(prefix, false)?;
        let mut objects = Vec::new();
        while let Some(object) = listing.next().await? {
            objects.push(object);
        }
        Ok(objects)
    }

    /// Deleting an absent key is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(&self.url, key)?;
        match &self.backend {
            Backend::Local(store) => store.delete(key).await,
            Backend::S3(store) => store.delete(key).await,
        }
    }

    /// This store's uploads in flight carry `owner` (a run id) in their names — local
    /// `.partial-<owner>-…` files, S3 upload markers — so that only that run's cleanup removes
    /// them while they may still be running.
    pub fn owned_by(mut self, owner: &str) -> Store {
        let owner: String = owner
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        match &mut self.backend {
            Backend::Local(store) => store.owner = owner,
            Backend::S3(store) => store.owner = owner,
        }
        self
    }

    /// Removes what interrupted uploads left under `prefix` (unfinished S3 multipart uploads,
    /// local `.partial-` files) and describes each thing removed. A store with an owner (see
    /// [`Store::owned_by`]) removes its owner's, and anyone's older than [`STALE_UPLOAD`]: a
    /// younger one of another run may still be in flight (two backups into one store at
    /// once). A store without one removes them all: run it only when no upload to this prefix
    /// is in progress.
    pub async fn remove_incomplete(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        check_prefix(&self.url, prefix)?;
        match &self.backend {
            Backend::Local(store) => store.remove_incomplete(prefix).await,
            Backend::S3(store) => store.remove_incomplete(prefix, true).await,
        }
    }

    /// Like [`Store::remove_incomplete`], but only what drillbook's own uploads left (its
    /// markers, its `.partial-` files): safe in a bucket that other programs upload to, where
    /// the server's list of unfinished multipart uploads includes theirs, still running.
    pub async fn remove_own_incomplete(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        check_prefix(&self.url, prefix)?;
        match &self.backend {
            Backend::Local(store) => store.remove_incomplete(prefix).await,
            Backend::S3(store) => store.remove_incomplete(prefix, false).await,
        }
    }
}

/// Reads until `size` bytes or the end of `reader` into `buffer` (or a new one); short only at
/// the end.
pub(crate) async fn read_part<R: AsyncRead + Unpin>(
    reader: &mut R,
    size: usize,
    buffer: Option<Vec<u8>>,
) -> std::io::Result<Vec<u8>> {
    let mut buffer = buffer.unwrap_or_default();
    buffer.resize(size, 0);
    let mut filled = 0;
    while filled < size {
        let read = reader.read(&mut buffer[filled..]).await?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    buffer.truncate(filled);
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_url_and_key() {
        let error = StoreError::Failed {
            action: "read",
            url: "s3://bucket/prod".into(),
            key: "x.dump".into(),
            message: "access denied".into(),
        };
        assert_eq!(
            error.to_string(),
            "cannot read s3://bucket/prod/x.dump: access denied"
        );
        let error = StoreError::NotFound {
            url: "/var/backups/".into(),
            key: "x.dump".into(),
        };
        assert!(error.is_not_found());
        assert_eq!(error.to_string(), "/var/backups/x.dump does not exist");
    }
}
