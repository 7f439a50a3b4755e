//! Downloading an object into a file with its SHA-256, fast: large objects are fetched as
//! byte ranges by several requests at once (one stream from an S3 server is far slower than
//! the disk or the hash), written in place, and hashed in order right behind the download,
//! so memory stays at a few buffers whatever the object's size.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::{Store, StoreError};

/// The size of one ranged request.
const CHUNK: u64 = 8 << 20;
/// Requests in flight.
const PARALLEL: usize = 4;
const BUFFER: usize = 1 << 20;

impl Store {
    /// Downloads `key` into `path`, reporting bytes done to `progress`. Returns the object's
    /// size and the SHA-256 (hex) of the bytes written.
    pub async fn download(
        &self,
        key: &str,
        path: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(u64, String), StoreError> {
        let failed = |action: &'static str, error: std::io::Error| StoreError::Failed {
            action,
            url: path.display().to_string(),
            key: key.to_owned(),
            message: error.to_string(),
        };
        let actual = match self.head(key).await? {
            Some(object) => object.size,
            None => {
                return Err(StoreError::NotFound {
                    url: self.url.clone(),
                    key: key.to_owned(),
                });
            }
        };
        // Read back too: the hasher reads what the workers wrote.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| failed("write", e))?;
        file.set_len(actual).map_err(|e| failed("write", e))?;
        let file = Arc::new(file);
        let chunks = actual.div_ceil(CHUNK) as usize;
        // Chunk i is written when done[i] holds its length; the hasher follows in order.
        let done: Arc<Vec<AtomicU64>> = Arc::new((0..chunks).map(|_| AtomicU64::new(0)).collect());
        let next = Arc::new(AtomicUsize::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let wake = Arc::new(tokio::sync::Notify::new());

        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..PARALLEL.min(chunks) {
            let (store, key) = (self.clone(), key.to_owned());
            let (file, done, next, written, wake) = (
                file.clone(),
                done.clone(),
                next.clone(),
                written.clone(),
                wake.clone(),
            );
            workers.spawn(async move {
                let mut buffer = vec![0u8; BUFFER];
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    if index >= chunks {
                        return Ok::<(), StoreError>(());
                    }
                    let start = index as u64 * CHUNK;
                    let end = (start + CHUNK).min(actual);
                    let mut reader = store.get(&key, Some(start..end)).await?;
                    let mut offset = start;
                    while offset < end {
                        let read =
                            reader
                                .read(&mut buffer)
                                .await
                                .map_err(|e| StoreError::Failed {
                                    action: "read",
                                    url: store.url.clone(),
                                    key: key.clone(),
                                    message: e.to_string(),
                                })?;
                        if read == 0 {
                            break;
                        }
                        let read = read.min((end - offset) as usize);
                        // A write into the page cache: short enough to do in place.
                        file.write_all_at(&buffer[..read], offset).map_err(|e| {
                            StoreError::Failed {
                                action: "write",
                                url: store.url.clone(),
                                key: key.clone(),
                                message: e.to_string(),
                            }
                        })?;
                        offset += read as u64;
                        written.fetch_add(read as u64, Ordering::Relaxed);
                    }
                    // Short read: the object changed under us; the hash will say so.
                    done[index].store((offset - start).max(1), Ordering::SeqCst);
                    wake.notify_one();
                }
            });
        }

        let hashing = {
            let (file, done, wake) = (file.clone(), done.clone(), wake.clone());
            async move {
                let mut hasher = Sha256::new();
                let mut buffer = vec![0u8; BUFFER];
                let mut hashed = 0u64;
                for (index, chunk) in done.iter().enumerate() {
                    loop {
                        // Register before checking, so a notification in between is not lost.
                        let notified = wake.notified();
                        if chunk.load(Ordering::SeqCst) != 0 {
                            break;
                        }
                        notified.await;
                    }
                    let start = index as u64 * CHUNK;
                    let end = (start + CHUNK).min(actual);
                    let mut offset = start;
                    while offset < end {
                        let want = ((end - offset) as usize).min(BUFFER);
                        let file = file.clone();
                        let mut piece = std::mem::take(&mut buffer);
                        let (piece, result) = tokio::task::spawn_blocking(move || {
                            let result = file.read_exact_at(&mut piece[..want], offset);
                            (piece, result)
                        })
                        .await
                        .map_err(std::io::Error::other)?;
                        result?;
                        hasher.update(&piece[..want]);
                        buffer = piece;
                        offset += want as u64;
                        hashed += want as u64;
                    }
                }
                Ok::<_, std::io::Error>((hashed, crate::format::hex(&hasher.finalize())))
            }
        };
        let report = async {
            loop {
                progress(written.load(Ordering::Relaxed));
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        };
        let downloading = async {
            while let Some(result) = workers.join_next().await {
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => return Err(error),
                    Err(error) => return Err(failed("read", std::io::Error::other(error))),
                }
            }
            Ok(())
        };
        // A failed download stops the hasher too (it would wait for chunks that never come).
        let result = tokio::select! {
            result = async { tokio::try_join!(downloading, async { hashing.await.map_err(|e| failed("read", e)) }) } => result,
            _ = report => unreachable!("reporting never ends"),
        };
        let ((), (hashed, sha256)) = result?;
        progress(written.load(Ordering::Relaxed));
        if hashed != actual {
            return Err(failed(
                "read",
                std::io::Error::other(format!("{hashed} of {actual} bytes arrived")),
            ));
        }
        Ok((actual, sha256))
    }
}
