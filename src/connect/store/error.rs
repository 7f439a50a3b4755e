//! What can go wrong with a store, worded for people, and whether trying again can help.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store URL `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid object key `{key}` for {url}: {reason}")]
    InvalidKey {
        url: String,
        key: String,
        reason: String,
    },
    #[error("{} does not exist", location(.url, .key))]
    NotFound { url: String, key: String },
    #[error("bucket `{bucket}` does not exist (store {url})")]
    NoSuchBucket { url: String, bucket: String },
    /// The reader handed to `put_stream` failed: the upload was abandoned.
    #[error("cannot upload to {}: reading the data failed: {source}", location(.url, .key))]
    Source {
        url: String,
        key: String,
        source: std::io::Error,
    },
    /// Everything else: `action` is a verb ("read", "write", "list", ...) and `message` a
    /// one-line reason without credentials. Trying again may help (a 5xx, a reset, a timeout).
    #[error("cannot {action} {}: {message}", location(.url, .key))]
    Failed {
        action: &'static str,
        url: String,
        key: String,
        message: String,
    },
    /// The same, where trying again cannot help: the server refused the request itself (a
    /// 4xx other than 408 and 429: bad credentials, no permission, an invalid parameter such
    /// as a storage class or a bucket name), or what it holds is not what was sent.
    #[error("cannot {action} {}: {message}", location(.url, .key))]
    Refused {
        action: &'static str,
        url: String,
        key: String,
        message: String,
    },
}

impl StoreError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    /// Whether trying the same request again cannot help: a missing bucket or object, an
    /// invalid URL or key, a request the server refused. Server errors, throttling, resets,
    /// timeouts and a failing source are transient.
    pub fn is_permanent(&self) -> bool {
        match self {
            StoreError::InvalidUrl { .. }
            | StoreError::InvalidKey { .. }
            | StoreError::NotFound { .. }
            | StoreError::NoSuchBucket { .. }
            | StoreError::Refused { .. } => true,
            StoreError::Source { .. } | StoreError::Failed { .. } => false,
        }
    }
}

/// `url` joined with `key`, the way users would write the object's address.
pub(super) fn location(url: &str, key: &str) -> String {
    if key.is_empty() {
        url.to_owned()
    } else if url.ends_with('/') {
        format!("{url}{key}")
    } else {
        format!("{url}/{key}")
    }
}
