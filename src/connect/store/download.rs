//! Downloading an object into a file with its SHA-256, fast: large objects are fetched as
//! byte ranges by several requests at once (one stream from an S3 server is far slower than
//! the disk or the hash), written in place, and read back in order right behind the download
//! — a piece as soon as it is written, not a whole range — so memory stays at a few buffers
//! whatever the object's size. The in-order reader hashes each piece and passes it on
//! (`through`: a decompressor writing the dump pg_restore reads) to a thread of its own, so
//! hashing, decompressing and downloading overlap rather than follow one another.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::{Store, StoreError};

/// The size of one ranged request.
const CHUNK: u64 = 8 << 20;
/// Requests in flight.
const PARALLEL: usize = 4;
const BUFFER: usize = 1 << 20;
/// Pieces read in order but not yet taken by `through`.
const QUEUED: usize = 4;

impl Store {
    /// Downloads `key` into `path`, reporting bytes done to `progress`, and writes the bytes
    /// in order into `through` too (`std::io::sink()` for none). Returns the object's size,
    /// the SHA-256 (hex) of the bytes written, and `through` with its first error if any
    /// (after which it was given nothing more: the download and the hash go on, since a
    /// mismatch with a manifest is the first thing to say).
    pub async fn download<W: Write + Send + 'static>(
        &self,
        key: &str,
        path: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
        through: W,
    ) -> Result<Downloaded<W>, StoreError> {
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
        // Read back too: the in-order reader reads what the workers wrote.
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
        let arrived = Arc::new(Arrived::new(chunks));
        let next = Arc::new(AtomicUsize::new(0));
        let written = Arc::new(AtomicU64::new(0));

        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..PARALLEL.min(chunks) {
            let (store, key) = (self.clone(), key.to_owned());
            let (file, arrived, next, written) =
                (file.clone(), arrived.clone(), next.clone(), written.clone());
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
                        arrived.set(index, offset - start);
                    }
                    // Short read: the object changed under us; the reader goes on over what
                    // is not there, and the hash says so.
                    arrived.set(index, end - start);
                }
            });
        }

        let reading = {
            let (file, arrived) = (file.clone(), arrived.clone());
            tokio::task::spawn_blocking(move || read_in_order(&file, &arrived, actual, through))
        };
        // However this ends (an error, or the caller giving up), the reader stops waiting.
        let _stop = Stop(arrived.clone());
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
        let result = tokio::select! {
            result = downloading => result,
            _ = report => unreachable!("reporting never ends"),
        };
        if let Err(error) = result {
            arrived.stop();
            let _ = reading.await;
            return Err(error);
        }
        let (hashed, sha256, through, through_error) = reading
            .await
            .map_err(|e| failed("read", std::io::Error::other(e)))?
            .map_err(|e| failed("read", e))?;
        progress(written.load(Ordering::Relaxed));
        if hashed != actual {
            return Err(failed(
                "read",
                std::io::Error::other(format!("{hashed} of {actual} bytes arrived")),
            ));
        }
        Ok(Downloaded {
            size: actual,
            sha256,
            through,
            through_error,
        })
    }
}

/// A finished download.
pub struct Downloaded<W> {
    pub size: u64,
    /// The SHA-256 (hex) of the bytes downloaded.
    pub sha256: String,
    /// What the bytes were also written into.
    pub through: W,
    /// The first error `through` returned; it was given nothing after it.
    pub through_error: Option<std::io::Error>,
}

/// How far each range has been written from its start, for the in-order reader to follow.
struct Arrived {
    bytes: Mutex<(Vec<u64>, bool)>,
    changed: Condvar,
}

impl Arrived {
    fn new(chunks: usize) -> Arrived {
        Arrived {
            bytes: Mutex::new((vec![0; chunks], false)),
            changed: Condvar::new(),
        }
    }

    fn set(&self, index: usize, bytes: u64) {
        self.bytes.lock().unwrap_or_else(|e| e.into_inner()).0[index] = bytes;
        self.changed.notify_all();
    }

    /// The reader waits no more: the download failed or was given up.
    fn stop(&self) {
        self.bytes.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.changed.notify_all();
    }

    /// Waits until range `index` holds more than `have` bytes; how many it holds, or `None`
    /// once stopped.
    fn wait(&self, index: usize, have: u64) -> Option<u64> {
        let mut state = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if state.1 {
                return None;
            }
            if state.0[index] > have {
                return Some(state.0[index]);
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Stops the reader when the download is over, whichever way.
struct Stop(Arc<Arrived>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Reads the file in order as its ranges arrive, hashing each piece and handing it to
/// `through` on a thread of its own. Returns the bytes hashed, the SHA-256 (hex), `through`
/// and its first error.
#[allow(clippy::type_complexity)]
fn read_in_order<W: Write + Send>(
    file: &std::fs::File,
    arrived: &Arrived,
    size: u64,
    mut through: W,
) -> std::io::Result<(u64, String, W, Option<std::io::Error>)> {
    let (pieces, taken) = std::sync::mpsc::sync_channel::<Vec<u8>>(QUEUED);
    // Emptied buffers come back for the next pieces.
    let (returned, reuse) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || {
            let mut error = None;
            for piece in taken {
                if error.is_none()
                    && let Err(e) = through.write_all(&piece)
                {
                    error = Some(e);
                }
                let _ = returned.send(piece);
            }
            (through, error)
        });
        let mut hasher = Sha256::new();
        let mut hashed = 0u64;
        let reading = (|| {
            for (index, start) in (0..size).step_by(CHUNK as usize).enumerate() {
                let length = CHUNK.min(size - start);
                let mut have = 0;
                while have < length {
                    let Some(ready) = arrived.wait(index, have) else {
                        return Err(std::io::Error::other("the download stopped"));
                    };
                    while have < ready {
                        let want = ((ready - have) as usize).min(BUFFER);
                        let mut piece = reuse.try_recv().unwrap_or_default();
                        piece.resize(want, 0);
                        file.read_exact_at(&mut piece, start + have)?;
                        hasher.update(&piece);
                        have += want as u64;
                        hashed += want as u64;
                        if pieces.send(piece).is_err() {
                            return Err(std::io::Error::other("the writer stopped"));
                        }
                    }
                }
            }
            Ok(())
        })();
        drop(pieces);
        let (through, error) = writer
            .join()
            .map_err(|_| std::io::Error::other("the writer panicked"))?;
        reading?;
        Ok((
            hashed,
            crate::format::hex(&hasher.finalize()),
            through,
            error,
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails once it has taken `limit` bytes.
    struct Refuses {
        taken: Vec<u8>,
        limit: usize,
    }

    impl Write for Refuses {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.taken.len() + buf.len() > self.limit {
                return Err(std::io::Error::other("full"));
            }
            self.taken.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn several_ranges_arrive_whole_hashed_and_passed_on_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store").display().to_string())
            .await
            .unwrap();
        let mut rng = fastrand::Rng::with_seed(3);
        let bytes: Vec<u8> = (0..2 * CHUNK as usize + 12_345)
            .map(|_| rng.u8(..))
            .collect();
        store.put_bytes("k/object", bytes.clone()).await.unwrap();
        let into = dir.path().join("downloaded");
        let done = store
            .download("k/object", &into, &|_| {}, Vec::new())
            .await
            .unwrap();
        assert_eq!(done.size, bytes.len() as u64);
        assert_eq!(done.sha256, crate::format::hex(&Sha256::digest(&bytes)));
        assert!(done.through == bytes, "the pieces came through in order");
        assert!(done.through_error.is_none());
        assert!(std::fs::read(&into).unwrap() == bytes);

        // `through` failing does not stop the download or the hash.
        let done = store
            .download(
                "k/object",
                &into,
                &|_| {},
                Refuses {
                    taken: Vec::new(),
                    limit: 3 << 20,
                },
            )
            .await
            .unwrap();
        assert_eq!(done.sha256, crate::format::hex(&Sha256::digest(&bytes)));
        assert!(done.through.taken.len() <= 3 << 20);
        assert_eq!(done.through.taken[..], bytes[..done.through.taken.len()]);
        assert_eq!(done.through_error.unwrap().to_string(), "full");

        let empty = dir.path().join("empty");
        store.put_bytes("k/empty", Vec::new()).await.unwrap();
        let done = store
            .download("k/empty", &empty, &|_| {}, Vec::new())
            .await
            .unwrap();
        assert_eq!(done.size, 0);
        assert_eq!(done.sha256, crate::format::hex(&Sha256::digest(b"")));

        let missing = store
            .download("k/missing", &empty, &|_| {}, std::io::sink())
            .await;
        assert!(matches!(missing, Err(StoreError::NotFound { .. })));
    }
}
