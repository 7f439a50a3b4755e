//! The object-store connector against a real S3 server (s3s-fs on loopback) and a local
//! directory. No mocks: every byte goes through HTTP or the filesystem.

mod common;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use common::s3::S3Server;
use drillbook::connect::store::{PutOptions, Store, StoreError};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

const MIB: usize = 1 << 20;

fn random_bytes(len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(len as u64);
    let mut bytes = vec![0; len];
    rng.fill(&mut bytes);
    bytes
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

async fn s3_store(server: &S3Server, url: &str) -> Store {
    Store::open_with(url, &server.settings()).await.unwrap()
}

/// A server with bucket `test` and a store on `s3://test/prod`.
async fn s3() -> (S3Server, Store) {
    let server = S3Server::start();
    server.create_bucket("test");
    let store = s3_store(&server, "s3://test/prod").await;
    (server, store)
}

async fn local() -> (tempfile::TempDir, Store) {
    let directory = tempfile::tempdir().unwrap();
    let store = Store::open(directory.path().to_str().unwrap())
        .await
        .unwrap();
    (directory, store)
}

async fn read_all(mut reader: Box<dyn AsyncRead + Send + Unpin>) -> Vec<u8> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).await.unwrap();
    bytes
}

/// Yields `data`, then either fails or never returns anything more.
struct Source {
    data: Vec<u8>,
    position: usize,
    then_fail: bool,
}

impl AsyncRead for Source {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.position < self.data.len() {
            let n = buf
                .remaining()
                .min(self.data.len() - self.position)
                .min(MIB);
            let start = self.position;
            buf.put_slice(&self.data[start..start + n]);
            self.position += n;
            Poll::Ready(Ok(()))
        } else if self.then_fail {
            Poll::Ready(Err(io::Error::other("pg_dump exited with status 1")))
        } else {
            // Like a producer that hangs: nothing more, and no wake-up.
            Poll::Pending
        }
    }
}

fn failing_after(len: usize) -> Source {
    Source {
        data: random_bytes(len),
        position: 0,
        then_fail: true,
    }
}

fn hanging_after(len: usize) -> Source {
    Source {
        data: random_bytes(len),
        position: 0,
        then_fail: false,
    }
}

/// Every file under `directory`, relative, sorted.
fn files_under(directory: &std::path::Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut pending = vec![directory.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(directory).unwrap();
                files.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    files
}

// ---------------------------------------------------------------------------------------
// Round trip: 20 MiB up (multipart on S3), down, compared by SHA-256; ranges; delete.

async fn round_trip(store: &Store, label: &str) {
    let data = random_bytes(20 * MIB);
    let calls = AtomicUsize::new(0);
    let last = AtomicU64::new(0);
    let progress = |bytes: u64| {
        calls.fetch_add(1, Ordering::SeqCst);
        assert!(
            bytes >= last.load(Ordering::SeqCst),
            "progress went backwards"
        );
        last.store(bytes, Ordering::SeqCst);
    };

    let started = Instant::now();
    let written = store
        .put_stream("db/2024-01-01.dump", data.as_slice(), &progress)
        .await
        .unwrap();
    let put_time = started.elapsed();
    assert_eq!(written, data.len() as u64);
    assert_eq!(last.load(Ordering::SeqCst), data.len() as u64);
    // S3: one call per 8 MiB part (3 parts); local: one per 1 MiB chunk.
    assert!(calls.load(Ordering::SeqCst) >= 3, "{calls:?}");

    let info = store.head("db/2024-01-01.dump").await.unwrap().unwrap();
    assert_eq!(info.key, "db/2024-01-01.dump");
    assert_eq!(info.size, data.len() as u64);
    assert!(info.modified.is_some());

    let started = Instant::now();
    let read = read_all(store.get("db/2024-01-01.dump", None).await.unwrap()).await;
    let get_time = started.elapsed();
    assert_eq!(read.len(), data.len());
    assert_eq!(sha256(&read), sha256(&data));
    let rate = |time: Duration| 20.0 / time.as_secs_f64();
    eprintln!(
        "{label}: put 20 MiB in {put_time:.2?} ({:.0} MiB/s), get in {get_time:.2?} ({:.0} MiB/s)",
        rate(put_time),
        rate(get_time)
    );

    // Across the first part boundary, at the start, and cut at the end.
    let boundary = (8 * MIB) as u64;
    for range in [
        boundary - 5..boundary + 7,
        0..1,
        20 * MIB as u64 - 3..20 * MIB as u64,
    ] {
        let bytes = read_all(
            store
                .get("db/2024-01-01.dump", Some(range.clone()))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            bytes,
            &data[range.start as usize..range.end as usize],
            "{range:?}"
        );
    }
    let past_end = read_all(
        store
            .get(
                "db/2024-01-01.dump",
                Some(20 * MIB as u64 - 2..20 * MIB as u64 + 100),
            )
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(past_end, &data[20 * MIB - 2..]);

    store
        .put_bytes("db/manifest.json", b"{\"size\":1}".to_vec())
        .await
        .unwrap();
    assert_eq!(
        store.get_bytes("db/manifest.json").await.unwrap(),
        b"{\"size\":1}"
    );
    store.put_bytes("db/empty", Vec::new()).await.unwrap();
    assert_eq!(store.head("db/empty").await.unwrap().unwrap().size, 0);
    assert!(store.get_bytes("db/empty").await.unwrap().is_empty());

    store.delete("db/2024-01-01.dump").await.unwrap();
    assert_eq!(store.head("db/2024-01-01.dump").await.unwrap(), None);
    store.delete("db/2024-01-01.dump").await.unwrap();
    let error = store.get_bytes("db/2024-01-01.dump").await.unwrap_err();
    assert!(error.is_not_found(), "{error}");
    assert_eq!(
        error.to_string(),
        format!("{}/db/2024-01-01.dump does not exist", store.url())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_round_trip() {
    let (_server, store) = s3().await;
    round_trip(&store, "s3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_round_trip() {
    let (_directory, store) = local().await;
    round_trip(&store, "local").await;
}

// ---------------------------------------------------------------------------------------
// Listing: nested keys, prefixes, sorted; more than one S3 page.

async fn listing(store: &Store) {
    for key in [
        "prod/2024-01-02.dump",
        "prod/2024-01-01.dump",
        "prod/sub/deeper/x",
        "staging/a",
        "prodx",
        // Listed in bytewise key order, as S3 does: `prod.txt` before `prod/…` ('.' < '/'),
        // `prod0` after.
        "prod.txt",
        "prod0",
    ] {
        store.put_bytes(key, key.as_bytes().to_vec()).await.unwrap();
    }
    let keys = |objects: Vec<drillbook::connect::store::ObjectInfo>| {
        objects
            .into_iter()
            .map(|object| object.key)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(store.list("prod/").await.unwrap()),
        [
            "prod/2024-01-01.dump",
            "prod/2024-01-02.dump",
            "prod/sub/deeper/x"
        ]
    );
    assert_eq!(
        keys(store.list("prod").await.unwrap()),
        [
            "prod.txt",
            "prod/2024-01-01.dump",
            "prod/2024-01-02.dump",
            "prod/sub/deeper/x",
            "prod0",
            "prodx"
        ]
    );
    assert_eq!(
        keys(store.list("prod/2024-01-0").await.unwrap()),
        ["prod/2024-01-01.dump", "prod/2024-01-02.dump"]
    );
    assert_eq!(keys(store.list("").await.unwrap()).len(), 7);
    assert!(store.list("nothing/").await.unwrap().is_empty());
    let info = &store.list("staging/").await.unwrap()[0];
    assert_eq!(info.size, "staging/a".len() as u64);
    assert!(info.modified.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_listing() {
    let (_server, store) = s3().await;
    listing(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_listing() {
    let (_directory, store) = local().await;
    listing(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_listing_follows_pages() {
    let (_server, store) = s3().await;
    let count = 1_100;
    let mut tasks = tokio::task::JoinSet::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(32));
    for n in 0..count {
        let store = store.clone();
        let limit = limit.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            store
                .put_bytes(&format!("many/{n:05}"), vec![b'x'; n % 7])
                .await
                .unwrap();
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
    // A "directory" and an object sorting just before it, in the middle of the pages.
    for key in ["many/00500a/x", "many/00500a.b"] {
        store.put_bytes(key, vec![b'y']).await.unwrap();
    }
    let objects = store.list("many/").await.unwrap();
    let mut expected: Vec<String> = (0..count).map(|n| format!("many/{n:05}")).collect();
    expected.splice(
        501..501,
        ["many/00500a.b".to_owned(), "many/00500a/x".to_owned()],
    );
    let keys: Vec<String> = objects.iter().map(|object| object.key.clone()).collect();
    assert_eq!(keys, expected);
    assert_eq!(objects[13].size, 13 % 7);
}

/// `?listing=walk` lists a level at a time: the same objects, in the same (bytewise) order,
/// as the flat listing, across pages and around prefixes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_walked_listing_matches_the_flat_one() {
    let (server, flat) = s3().await;
    let walked = s3_store(&server, "s3://test/prod?listing=walk").await;
    let mut keys: Vec<String> = (0..1_050).map(|n| format!("many/{n:05}")).collect();
    keys.extend(
        [
            "many/00500a/x",
            "many/00500a.b",
            "a.txt",
            "a/b",
            "a/c/d",
            "a/c.e",
            "a0",
            "B",
            "deep/1/2/3/4",
        ]
        .map(str::to_owned),
    );
    let mut tasks = tokio::task::JoinSet::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(32));
    for key in keys.clone() {
        let (store, limit) = (flat.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            store
                .put_bytes(&key, key.as_bytes().to_vec())
                .await
                .unwrap();
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
    keys.sort();
    let read = |mut listing: drillbook::connect::store::Listing| async move {
        let mut keys = Vec::new();
        while let Some(object) = listing.next().await.unwrap() {
            keys.push(object.key);
        }
        keys
    };
    assert_eq!(read(walked.list_sorted("").unwrap()).await, keys);
    assert_eq!(read(flat.list_sorted("").unwrap()).await, keys);
    let under_a: Vec<String> = keys
        .iter()
        .filter(|k| k.starts_with('a'))
        .cloned()
        .collect();
    assert_eq!(read(walked.list_sorted("a").unwrap()).await, under_a);
}

// ---------------------------------------------------------------------------------------
// Failed and cancelled uploads leave nothing behind.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_failed_upload_leaves_nothing() {
    let (server, store) = s3().await;
    let error = store
        .put_stream("db/broken.dump", failing_after(12 * MIB), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Source { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "cannot upload to s3://test/prod/db/broken.dump: reading the data failed: \
         pg_dump exited with status 1"
    );
    assert_eq!(store.head("db/broken.dump").await.unwrap(), None);
    assert!(store.list("").await.unwrap().is_empty());
    assert_eq!(server.upload_files(), Vec::<String>::new());
    // No object at all in the bucket, upload markers included.
    assert_eq!(files_under(&server.root.join("test")), Vec::<String>::new());
    assert_eq!(
        store.remove_incomplete("").await.unwrap(),
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_failed_upload_leaves_nothing() {
    let (directory, store) = local().await;
    let error = store
        .put_stream("db/broken.dump", failing_after(12 * MIB), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Source { .. }), "{error:?}");
    assert_eq!(store.head("db/broken.dump").await.unwrap(), None);
    assert!(store.list("").await.unwrap().is_empty());
    assert_eq!(files_under(directory.path()), Vec::<String>::new());
    assert_eq!(
        store.remove_incomplete("").await.unwrap(),
        Vec::<String>::new()
    );
}

/// Drives `upload` (which must not finish) until `condition` holds, for at most 20 s.
async fn drive_until<F>(upload: &mut Pin<Box<F>>, what: &str, condition: impl Fn() -> bool)
where
    F: std::future::Future<Output = Result<u64, StoreError>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        if let Ok(result) = tokio::time::timeout(Duration::from_millis(50), &mut *upload).await {
            panic!("the upload finished: {result:?}");
        }
    }
}

/// Polls until `condition` holds, for at most 10 s.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_cancelled_upload_is_aborted() {
    let (server, store) = s3().await;
    let mut upload =
        Box::pin(store.put_stream("db/cancelled.dump", hanging_after(12 * MIB), &|_| {}));
    // Drive it until the multipart upload exists and its first part landed.
    drive_until(&mut upload, "the first part to land", || {
        server
            .upload_files()
            .iter()
            .any(|name| name.contains(".part-1"))
    })
    .await;
    drop(upload);

    eventually("the upload to be aborted", || {
        server.upload_files().is_empty() && files_under(&server.root.join("test")).is_empty()
    })
    .await;
    assert_eq!(store.head("db/cancelled.dump").await.unwrap(), None);
    assert_eq!(
        store.remove_incomplete("").await.unwrap(),
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cancelled_upload_is_removed() {
    let (directory, store) = local().await;
    let mut upload =
        Box::pin(store.put_stream("db/cancelled.dump", hanging_after(3 * MIB), &|_| {}));
    drive_until(&mut upload, "the partial file", || {
        !files_under(directory.path()).is_empty()
    })
    .await;
    let in_progress = files_under(directory.path());
    assert_eq!(in_progress.len(), 1, "{in_progress:?}");
    assert!(in_progress[0].starts_with("db/cancelled.dump.partial-"));
    assert!(store.list("").await.unwrap().is_empty());
    drop(upload);
    assert_eq!(files_under(directory.path()), Vec::<String>::new());
}

/// A process that dies mid-upload runs no destructor: `mem::forget` the future to get the
/// same state, then `remove_incomplete` must find and remove what it left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_remove_incomplete_after_a_crash() {
    let (server, store) = s3().await;
    store
        .put_bytes("db/kept.dump", b"kept".to_vec())
        .await
        .unwrap();
    let mut upload =
        Box::pin(store.put_stream("db/crashed.dump", hanging_after(12 * MIB), &|_| {}));
    drive_until(&mut upload, "the first part to land", || {
        server
            .upload_files()
            .iter()
            .any(|name| name.contains(".part-1"))
    })
    .await;
    std::mem::forget(upload);

    // Another prefix does not touch it.
    assert_eq!(
        store.remove_incomplete("other/").await.unwrap(),
        Vec::<String>::new()
    );
    assert!(!server.upload_files().is_empty());

    let removed = store.remove_incomplete("db/").await.unwrap();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(
        removed[0].starts_with("aborted the unfinished upload to s3://test/prod/db/crashed.dump"),
        "{removed:?}"
    );
    assert_eq!(server.upload_files(), Vec::<String>::new());
    assert_eq!(
        files_under(&server.root.join("test")),
        ["prod/db/kept.dump"]
    );
    assert_eq!(
        store.remove_incomplete("").await.unwrap(),
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_remove_incomplete_after_a_crash() {
    let (directory, store) = local().await;
    store
        .put_bytes("db/kept.dump", b"kept".to_vec())
        .await
        .unwrap();
    let mut upload = Box::pin(store.put_stream("db/crashed.dump", hanging_after(3 * MIB), &|_| {}));
    drive_until(&mut upload, "the partial file", || {
        files_under(directory.path()).len() == 2
    })
    .await;
    std::mem::forget(upload);

    let keys: Vec<String> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|object| object.key)
        .collect();
    assert_eq!(keys, ["db/kept.dump"]);
    assert_eq!(
        store.remove_incomplete("other/").await.unwrap(),
        Vec::<String>::new()
    );
    let removed = store.remove_incomplete("db/").await.unwrap();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(
        removed[0].contains("db/crashed.dump.partial-"),
        "{removed:?}"
    );
    assert_eq!(files_under(directory.path()), ["db/kept.dump"]);
}

// ---------------------------------------------------------------------------------------
// Retries, errors, quirks.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_retries_server_errors() {
    let (server, store) = s3().await;
    server.fail_next("PUT", 3);
    store.put_bytes("small", b"small".to_vec()).await.unwrap();
    assert_eq!(server.failed(), 3);
    assert_eq!(store.get_bytes("small").await.unwrap(), b"small");

    // Parts of a multipart upload are retried too.
    let data = random_bytes(17 * MIB);
    server.fail_next("PUT", 2);
    store
        .put_stream("large", data.as_slice(), &|_| {})
        .await
        .unwrap();
    assert_eq!(server.failed(), 5);
    assert_eq!(
        sha256(&store.get_bytes("large").await.unwrap()),
        sha256(&data)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_streams_an_object_of_known_size_in_one_request() {
    let (server, store) = s3().await;
    let data = random_bytes(20 * MIB);
    let hinted = |size: usize| PutOptions {
        size_hint: Some(size as u64),
        ..PutOptions::default()
    };
    let progress = AtomicU64::new(0);
    let stored = store
        .put_stream_with("exact", data.as_slice(), &hinted(data.len()), &|n| {
            progress.store(n, Ordering::Relaxed)
        })
        .await
        .unwrap();
    assert_eq!(stored, data.len() as u64);
    assert_eq!(progress.load(Ordering::Relaxed), data.len() as u64);
    assert_eq!(
        sha256(&store.get_bytes("exact").await.unwrap()),
        sha256(&data)
    );
    // One request, not parts: s3s-fs keeps no multipart bookkeeping and gives a plain ETag.
    let info = std::fs::read_dir(&server.root)
        .unwrap()
        .flatten()
        .map(|entry| std::fs::read_to_string(entry.path()).unwrap_or_default())
        .find(|text| text.contains("e_tag"))
        .expect("the object's ETag");
    assert!(!info.contains('-'), "{info}");

    // A source that turns out shorter or longer than promised stores nothing.
    for (hint, key) in [(data.len() + 1, "shorter"), (data.len() - 1, "longer")] {
        let error = store
            .put_stream_with(key, data.as_slice(), &hinted(hint), &|_| {})
            .await
            .unwrap_err();
        assert!(error.to_string().contains("it was listed with"), "{error}");
        assert!(error.to_string().contains(key), "{error}");
        assert_eq!(store.head(key).await.unwrap(), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_copies_server_side_between_buckets_of_one_server() {
    let (server, source) = s3().await;
    server.create_bucket("other");
    let destination = s3_store(&server, "s3://other/copy").await;
    let (_directory, local) = local().await;
    assert!(destination.same_server(&source));
    assert!(!destination.same_server(&local) && !local.same_server(&source));
    let key = "dir/a key+with é & ?query=1.bin";
    let data = random_bytes(100_000);
    source.put_bytes(key, data.clone()).await.unwrap();
    // s3s-fs computes no SHA-256 on CopyObject: the caller reads the copy back.
    let computed = destination
        .copy_from(&source, key, &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(computed, None);
    assert_eq!(destination.get_bytes(key).await.unwrap(), data);
    let missing = destination
        .copy_from(&source, "no/such/key", &PutOptions::default())
        .await
        .unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    assert!(
        local
            .copy_from(&source, key, &PutOptions::default())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_missing_bucket_is_named() {
    let server = S3Server::start();
    let error = Store::open_with("s3://no-such-bucket/prod", &server.settings())
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::NoSuchBucket { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "bucket `no-such-bucket` does not exist (store s3://no-such-bucket/prod)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_wrong_secret_is_explained_without_showing_it() {
    let server = S3Server::start();
    server.create_bucket("test");
    let mut settings = server.settings();
    settings.secret_key = Some("not-the-secret".to_owned());
    let result = Store::open_with("s3://test", &settings).await;
    let error = match result {
        Err(error) => error,
        Ok(store) => store.list("").await.unwrap_err(),
    };
    let message = error.to_string();
    assert!(message.contains("s3://test"), "{message}");
    assert!(
        message.contains("the secret key does not match the access key"),
        "{message}"
    );
    assert!(!message.contains("not-the-secret"), "{message}");
}

/// s3s-fs answers 500 to a HEAD on a "directory"; that must read as absent, quickly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_head_of_a_directory_is_absent() {
    let (_server, store) = s3().await;
    store.put_bytes("dir/x", b"x".to_vec()).await.unwrap();
    let started = Instant::now();
    assert_eq!(store.head("dir").await.unwrap(), None);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(store.head("dir/x").await.unwrap().unwrap().size, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_keys_are_refused() {
    let (_directory, store) = local().await;
    let error = store.put_bytes("../escape", Vec::new()).await.unwrap_err();
    assert!(matches!(error, StoreError::InvalidKey { .. }), "{error:?}");
    assert!(error.to_string().contains("`../escape`"), "{error}");
}

/// `Store::open` takes everything from the standard AWS environment. Environment variables
/// are process-wide, so this runs the check in a child process (this same test binary).
#[test]
fn s3_open_reads_the_standard_environment() {
    let server = S3Server::start();
    server.create_bucket("envbucket");
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_open_from_environment",
            "--ignored",
            "--nocapture",
        ])
        .env_remove("AWS_PROFILE")
        .envs(server.env())
        .env("DRILLBOOK_TEST_STORE_URL", "s3://envbucket/from-env")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        std::fs::read(server.root.join("envbucket/from-env/hello")).unwrap(),
        b"hello"
    );
}

#[tokio::test]
#[ignore = "run by s3_open_reads_the_standard_environment in a child process"]
async fn child_open_from_environment() {
    let url = std::env::var("DRILLBOOK_TEST_STORE_URL").unwrap();
    let store = Store::open(&url).await.unwrap();
    store.put_bytes("hello", b"hello".to_vec()).await.unwrap();
    assert_eq!(store.get_bytes("hello").await.unwrap(), b"hello");
}

/// A store URL can name its own endpoint: a mirror on another server than the environment's.
#[tokio::test]
async fn an_s3_url_names_its_endpoint() {
    let server = S3Server::start();
    server.create_bucket("own-endpoint");
    let settings = drillbook::connect::store::S3Settings {
        endpoint: None,
        ..server.settings()
    };
    let url = format!("s3://own-endpoint/p?endpoint={}", server.endpoint);
    let store = Store::open_with(&url, &settings).await.expect("open");
    assert_eq!(store.url(), "s3://own-endpoint/p");
    store
        .put_bytes("hello.txt", b"hello".to_vec())
        .await
        .expect("put");
    assert!(server.root.join("own-endpoint/p/hello.txt").is_file());
}
