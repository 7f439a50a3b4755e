//! `archive_command`: one file into the archive, compressed, hashed, complete or not at all.

use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::header::{MAX, Metadata};
use super::verified::Verified;
use super::{Archive, Conflict, WalError, WalName};
use crate::compress::{Compression, ZstdEncoder};
use crate::connect::store::{PutOptions, StoreError};

/// What `push` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Stored: the file's size and the object's.
    Archived {
        name: WalName,
        size: u64,
        stored: u64,
    },
    /// The archive already held these very bytes: nothing written.
    AlreadyArchived { name: WalName },
}

impl std::fmt::Display for Pushed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pushed::Archived { name, size, stored } => write!(
                f,
                "archived {name}: {size} bytes, {stored} stored ({:.1}x smaller)",
                *size as f64 / (*stored).max(1) as f64
            ),
            Pushed::AlreadyArchived { name } => {
                write!(f, "{name} was already archived with the same content")
            }
        }
    }
}

/// Archives the file at `path` under its own name. The file is read twice: once to hash it
/// (the metadata, which goes first, needs its SHA-256), once to compress it; if it changed in
/// between, the upload fails and nothing is stored.
pub async fn push(archive: &Archive, path: &Path) -> Result<Pushed, WalError> {
    let file_name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or_default();
    let name = WalName::parse(file_name)?;
    let key = name.key();
    let read_error = |action: &'static str| {
        move |source| WalError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(read_error("open"))?;
    let (size, sha256) = hash(&mut file).await.map_err(read_error("read"))?;

    if let Some(archived) = archived(archive, &name, &key).await? {
        if archived.sha256 == sha256 && archived.size == size {
            return Ok(Pushed::AlreadyArchived { name });
        }
        return Err(WalError::Differs(Box::new(Conflict {
            location: archive.location(&key),
            path: path.to_path_buf(),
            archived_sha256: archived.sha256,
            archived_size: archived.size,
            name,
            sha256,
            size,
        })));
    }
    // What an earlier push of this very file left when it was killed (a `.partial-` file, an
    // unfinished multipart upload): only the archiver pushes this name, so none is running.
    // Best effort: it is invisible garbage, never a reason not to archive.
    let _ = archive.store.remove_incomplete(&key).await;

    let level = match archive.compression {
        Compression::Zstd { level } => level,
        Compression::None => crate::compress::DEFAULT_LEVEL,
    };
    let header = Metadata::new(name.as_str(), size, sha256.clone(), level).encode();
    let file = tokio::fs::File::open(path)
        .await
        .map_err(read_error("open"))?;
    // The file is read twice: if it changed in between, the upload fails.
    let checked = Verified::new(
        file,
        &sha256,
        format!("{} changed while it was being archived", path.display()),
    );
    let compressed =
        ZstdEncoder::with_size(checked, level, size).map_err(read_error("compress"))?;
    let body = header.as_slice().chain(compressed);
    // No size hint: the compressed size is not known in advance, and S3 takes a hint of a
    // part or more as the exact length of one streamed request.
    let stored = archive
        .store
        .put_stream_with(&key, body, &PutOptions::default(), &|_| {})
        .await
        .map_err(|error| match error {
            StoreError::Source { source, .. } => WalError::Io {
                action: "archive",
                path: path.to_path_buf(),
                source,
            },
            other => WalError::Store(other),
        })?;
    Ok(Pushed::Archived { name, size, stored })
}

/// The metadata of `name` in the archive, if it is there.
async fn archived(
    archive: &Archive,
    name: &WalName,
    key: &str,
) -> Result<Option<Metadata>, WalError> {
    let mut reader = match archive.store.get(key, Some(0..MAX as u64)).await {
        Ok(reader) => reader,
        Err(error) if error.is_not_found() => return Ok(None),
        Err(error) => return Err(WalError::Store(error)),
    };
    let corrupt = |reason: String| WalError::Corrupt {
        name: name.clone(),
        location: archive.location(key),
        reason: format!(
            "{reason}; a new copy cannot be pushed over it: check it, then remove it by hand"
        ),
    };
    let metadata = Metadata::read(&mut reader).await.map_err(corrupt)?;
    if metadata.name != name.as_str() {
        return Err(corrupt(format!("it holds {}", metadata.name)));
    }
    Ok(Some(metadata))
}

/// The size and SHA-256 (hex) of what `reader` yields.
async fn hash<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    let mut size = 0u64;
    loop {
        let read = reader.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok((size, crate::format::hex(&hasher.finalize())))
}
