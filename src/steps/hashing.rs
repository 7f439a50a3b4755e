//! Hashing objects in stores, many at once, with bounded memory: small objects in one
//! request, large ones as byte ranges read a few at once and hashed in order. `verify` compares
//! stores with it; `sync` uses it to find objects a destination already holds.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use super::{Progress, StepContext, StepFailure, Unit};
use crate::connect::store::Store;

/// Objects hashed at once (each on both sides when both are read). A small object costs a
/// request's round trip and almost no CPU: a deep verify of 10^5 64-byte objects in s3s-fs on
/// loopback took 134-159 s at 16 (drillbook using a quarter of a core), 32-39 s at 64 and
/// 20-26 s at 128 (BENCHMARKS.md); from a directory it is CPU-bound and the same at 16 and 128.
/// Memory: a small object's buffer is at most [`STREAM_BUFFER`] a side (16 MiB in all), large
/// objects' ranges are bounded by [`CHUNK_BUDGET`] whatever the count.
const IN_FLIGHT: usize = 128;
/// Objects larger than this are read as byte ranges, several at once: one stream from an S3
/// server is far slower than SHA-256.
const CHUNK: u64 = 4 << 20;
/// Ranges in flight for one object.
const CHUNKS_PER_OBJECT: usize = 4;
/// Range buffers in flight across all objects: the memory bound (16 × 4 MiB).
const CHUNK_BUDGET: usize = 16;
/// The read buffer of a small object's single stream.
const STREAM_BUFFER: usize = 64 << 10;

/// One side of a content comparison: bytes to hash, or a checksum already trusted.
pub(crate) enum Side {
    Read { store: Store, size: u64 },
    Known(String),
}

/// The SHA-256 of both sides of one key, compared.
pub(crate) struct Job {
    pub key: String,
    pub first: Side,
    pub second: Side,
}

/// What the hashing tasks share: the range-buffer budget and the bytes read so far.
struct Shared {
    budget: Arc<Semaphore>,
    bytes: AtomicU64,
}

/// Hashes every job's sides, [`IN_FLIGHT`] jobs at once, reporting bytes read (of `total`)
/// as progress; `each` is told of every content mismatch. Returns the bytes read.
pub(crate) async fn hash_all(
    jobs: impl Iterator<Item = Result<Job, StepFailure>>,
    total: u64,
    ctx: &StepContext<'_>,
    mut each: impl FnMut(String, String, String),
) -> Result<u64, StepFailure> {
    let shared = Arc::new(Shared {
        budget: Arc::new(Semaphore::new(CHUNK_BUDGET)),
        bytes: AtomicU64::new(0),
    });
    let report = || {
        (ctx.progress)(Progress {
            done: shared.bytes.load(Ordering::Relaxed),
            total: Some(total),
            unit: Unit::Bytes,
            objects: None,
        })
    };
    let mut pending = jobs;
    let mut running = JoinSet::new();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    loop {
        while running.len() < IN_FLIGHT {
            let Some(job) = pending.next() else { break };
            let job = job?;
            let shared = shared.clone();
            running.spawn(async move {
                let (first, second) = tokio::try_join!(
                    hash_side(&job.first, &job.key, &shared),
                    hash_side(&job.second, &job.key, &shared)
                )?;
                Ok::<_, String>((job.key, first, second))
            });
        }
        tokio::select! {
            finished = running.join_next() => match finished {
                None => break,
                Some(Err(e)) => return Err(StepFailure::new(format!("a hashing task failed: {e}"))),
                Some(Ok(Err(e))) => return Err(StepFailure::new(e)),
                Some(Ok(Ok((key, first, second)))) => {
                    if first != second {
                        each(key, first, second);
                    }
                }
            },
            _ = tick.tick() => report(),
        }
    }
    report();
    Ok(shared.bytes.load(Ordering::Relaxed))
}

async fn hash_side(side: &Side, key: &str, shared: &Shared) -> Result<String, String> {
    match side {
        Side::Known(sha256) => Ok(sha256.clone()),
        Side::Read { store, size } if *size > CHUNK => hash_ranges(store, key, *size, shared)
            .await
            .map_err(|e| format!("reading {}/{key}: {e}", store.url())),
        Side::Read { store, size } => hash_stream(store, key, *size, shared)
            .await
            .map_err(|e| format!("reading {}/{key}: {e}", store.url())),
    }
}

/// A small object, in one request.
async fn hash_stream(
    store: &Store,
    key: &str,
    size: u64,
    shared: &Shared,
) -> Result<String, String> {
    let mut reader = store.get(key, None).await.map_err(|e| e.to_string())?;
    let mut hasher = Sha256::new();
    // One more byte than the object so its end is seen without a second, larger buffer.
    let mut buffer = vec![0u8; (size as usize + 1).min(STREAM_BUFFER)];
    loop {
        let read = reader.read(&mut buffer).await.map_err(|e| e.to_string())?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        shared.bytes.fetch_add(read as u64, Ordering::Relaxed);
    }
    Ok(crate::format::hex(&hasher.finalize()))
}

/// A ranged read that is aborted when dropped (a cancelled or failed hash stops its reads).
struct Fetch(JoinHandle<(Result<Vec<u8>, String>, OwnedSemaphorePermit)>);

impl Drop for Fetch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A large object as byte ranges read a few at once and hashed in order. A range holds a
/// permit of the shared budget until it is hashed; a task waits for a permit only when it
/// holds none, so tasks can never all wait on each other.
async fn hash_ranges(
    store: &Store,
    key: &str,
    size: u64,
    shared: &Shared,
) -> Result<String, String> {
    let mut hasher = Sha256::new();
    let mut fetches: VecDeque<Fetch> = VecDeque::new();
    let mut next = 0u64;
    loop {
        while fetches.len() < CHUNKS_PER_OBJECT && next < size {
            let permit = if fetches.is_empty() {
                shared
                    .budget
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| e.to_string())?
            } else {
                match shared.budget.clone().try_acquire_owned() {
                    Ok(permit) => permit,
                    Err(_) => break,
                }
            };
            let range = next..(next + CHUNK).min(size);
            next = range.end;
            let store = store.clone();
            let key = key.to_owned();
            fetches.push_back(Fetch(tokio::spawn(async move {
                (read_range(&store, &key, range).await, permit)
            })));
        }
        let Some(mut fetch) = fetches.pop_front() else {
            break;
        };
        let (bytes, _permit) = (&mut fetch.0).await.map_err(|e| e.to_string())?;
        let bytes = bytes?;
        hasher.update(&bytes);
        shared
            .bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }
    Ok(crate::format::hex(&hasher.finalize()))
}

async fn read_range(
    store: &Store,
    key: &str,
    range: std::ops::Range<u64>,
) -> Result<Vec<u8>, String> {
    let length = range.end - range.start;
    let mut reader = store
        .get(key, Some(range))
        .await
        .map_err(|e| e.to_string())?;
    // Exactly the range's size: `read_to_end` would double a full buffer to look for the end.
    let mut bytes = vec![0u8; length as usize];
    let changed = || {
        format!(
            "a range of {length} bytes came back with another length (the object changed while being read?)"
        )
    };
    match reader.read_exact(&mut bytes).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(changed()),
        Err(e) => return Err(e.to_string()),
    }
    if reader
        .read(&mut [0u8; 1])
        .await
        .map_err(|e| e.to_string())?
        != 0
    {
        return Err(changed());
    }
    Ok(bytes)
}

/// The SHA-256 (hex) of one object of `size` bytes, read the way [`hash_all`] reads.
pub(crate) async fn sha256_of(store: &Store, key: &str, size: u64) -> Result<String, String> {
    let shared = Shared {
        budget: Arc::new(Semaphore::new(CHUNKS_PER_OBJECT)),
        bytes: AtomicU64::new(0),
    };
    hash_side(
        &Side::Read {
            store: store.clone(),
            size,
        },
        key,
        &shared,
    )
    .await
}
