//! `restore_command`: one file out of the archive, checked before PostgreSQL can see it.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::header::Metadata;
use super::{Archive, WalError, WalName};
use crate::compress::{BUFFER, ZstdDecoder};

/// What `fetch` wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    pub name: WalName,
    pub size: u64,
    pub metadata: Metadata,
}

/// Writes the archived file `name` to `destination`: decompressed into a temporary file beside
/// it, its size and SHA-256 checked against the metadata, then renamed into place. A damaged
/// object leaves nothing at `destination`. A file that is not archived is
/// [`WalError::NotArchived`], which says nothing (PostgreSQL asks for files that do not exist).
pub async fn fetch(archive: &Archive, name: &str, destination: &Path) -> Result<Fetched, WalError> {
    let name = WalName::parse(name)?;
    let key = name.key();
    let location = archive.location(&key);
    let mut reader = match archive.store.get(&key, None).await {
        Ok(reader) => reader,
        Err(error) if error.is_not_found() => {
            return Err(WalError::NotArchived { name, location });
        }
        Err(error) => return Err(WalError::Store(error)),
    };
    let corrupt = |reason: String| WalError::Corrupt {
        name: name.clone(),
        location: location.clone(),
        reason,
    };
    let metadata = Metadata::read(&mut reader).await.map_err(corrupt)?;
    if metadata.name != name.as_str() {
        return Err(corrupt(format!("it holds {}", metadata.name)));
    }

    let temporary = Temporary::beside(destination);
    let write_error = |source| WalError::Io {
        action: "write",
        path: temporary.path.clone(),
        source,
    };
    let mut file = tokio::fs::File::create(&temporary.path)
        .await
        .map_err(write_error)?;
    let mut decoder = ZstdDecoder::new(reader).map_err(write_error)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; BUFFER];
    let mut size = 0u64;
    loop {
        let read = match decoder.read(&mut buffer).await {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                return Err(corrupt(error.to_string()));
            }
            Err(error) => {
                return Err(corrupt(format!("reading it failed: {error}")));
            }
        };
        size += read as u64;
        if size > metadata.size {
            return Err(corrupt(format!(
                "it holds more than the {} bytes its metadata says",
                metadata.size
            )));
        }
        hasher.update(&buffer[..read]);
        file.write_all(&buffer[..read]).await.map_err(write_error)?;
    }
    let sha256 = crate::format::hex(&hasher.finalize());
    if size != metadata.size || sha256 != metadata.sha256 {
        return Err(corrupt(format!(
            "it decompresses to {size} bytes with SHA-256 {sha256}, but was archived as {} bytes with SHA-256 {}",
            metadata.size, metadata.sha256
        )));
    }
    file.sync_all().await.map_err(write_error)?;
    drop(file);
    tokio::fs::rename(&temporary.path, destination)
        .await
        .map_err(|source| WalError::Io {
            action: "write",
            path: destination.to_path_buf(),
            source,
        })?;
    temporary.keep();
    Ok(Fetched {
        name,
        size,
        metadata,
    })
}

/// `<destination>.drillbook-<random>`, removed when dropped unless kept: on errors, and when
/// the fetch is stopped by a signal.
struct Temporary {
    path: PathBuf,
    keep: bool,
}

impl Temporary {
    fn beside(destination: &Path) -> Temporary {
        let mut path = destination.as_os_str().to_owned();
        path.push(format!(".drillbook-{:016x}", fastrand::u64(..)));
        Temporary {
            path: PathBuf::from(path),
            keep: false,
        }
    }

    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Temporary {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
