//! A real S3 server for tests: s3s-fs over a temporary directory, served by hyper on
//! loopback from a background thread with its own runtime (so it keeps serving whatever the
//! test's runtime does), with a fault injector in front of it for retry tests.
//!
//! Conditional writes (PUT with `If-None-Match` or `If-Match`) are applied one at a time, so
//! that each is atomic as on AWS S3: s3s-fs alone checks the condition before it writes, and
//! two racing writers could both pass.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drillbook::connect::store::S3Settings;
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};

pub const ACCESS_KEY: &str = "drillbook-test";
pub const SECRET_KEY: &str = "drillbook-test-secret";

pub struct S3Server {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    /// The directory s3s-fs serves: one subdirectory per bucket, plus its bookkeeping files
    /// (`.upload-<id>.json`, `.upload_id-<id>.part-<n>`) for multipart uploads.
    pub root: PathBuf,
    faults: Arc<Faults>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _directory: tempfile::TempDir,
}

/// Which requests to fail next; shared with the server thread.
#[derive(Default)]
struct Faults {
    method: Mutex<String>,
    remaining: AtomicUsize,
    failed: AtomicUsize,
    /// Every request received: (method, path).
    seen: Mutex<Vec<(String, String)>>,
}

impl Faults {
    fn take(&self, method: &str) -> bool {
        let wanted = self.method.lock().unwrap();
        if wanted.as_str() != "*" && !wanted.eq_ignore_ascii_case(method) {
            return false;
        }
        let taken = self
            .remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if taken {
            self.failed.fetch_add(1, Ordering::SeqCst);
        }
        taken
    }
}

impl S3Server {
    pub fn start() -> S3Server {
        let directory = tempfile::tempdir().unwrap();
        let root = directory.path().canonicalize().unwrap();
        let mut builder = S3ServiceBuilder::new(s3s_fs::FileSystem::new(&root).unwrap());
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();

        // Bound here so the port is known (and listening) before start() returns.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());

        let faults = Arc::new(Faults::default());
        let (shutdown, shutdown_received) = tokio::sync::oneshot::channel();
        let server_faults = faults.clone();
        let thread = std::thread::Builder::new()
            .name("s3-server".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(serve(listener, service, server_faults, shutdown_received));
                // Open connections are cut rather than waited for.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .unwrap();

        S3Server {
            endpoint,
            root,
            faults,
            shutdown: Some(shutdown),
            thread: Some(thread),
            _directory: directory,
        }
    }

    pub fn create_bucket(&self, name: &str) {
        std::fs::create_dir(self.root.join(name)).unwrap();
    }

    /// For a drillbook child process: the standard AWS variables, with profile files and the
    /// EC2 metadata service out of the way so the machine's own AWS setup cannot interfere.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", "us-east-1"),
            ("AWS_CONFIG_FILE", "/nonexistent/drillbook-test/aws-config"),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/drillbook-test/aws-credentials",
            ),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
    }

    /// For an in-process `Store::open_with`, without touching the process environment.
    pub fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".to_owned()),
            access_key: Some(ACCESS_KEY.to_owned()),
            secret_key: Some(SECRET_KEY.to_owned()),
            walk: false,
        }
    }

    /// The next `n` requests whose HTTP method is `method` ("PUT", ..., or "*" for any) get a
    /// 503 SlowDown instead of reaching s3s.
    pub fn fail_next(&self, method: &str, n: usize) {
        let mut wanted = self.faults.method.lock().unwrap();
        *wanted = method.to_owned();
        self.faults.remaining.store(n, Ordering::SeqCst);
    }

    /// How many requests have been failed on purpose so far.
    pub fn failed(&self) -> usize {
        self.faults.failed.load(Ordering::SeqCst)
    }

    /// How many requests with `method` to a path ending in `suffix` the server received,
    /// failed ones included: how often a client tried.
    pub fn requests(&self, method: &str, suffix: &str) -> usize {
        let seen = self.faults.seen.lock().unwrap();
        seen.iter()
            .filter(|(m, path)| m.eq_ignore_ascii_case(method) && path.ends_with(suffix))
            .count()
    }

    /// Names of s3s-fs's multipart bookkeeping files: an unfinished upload leaves
    /// `.upload-<id>.json` and `.upload_id-<id>.part-<n>` in the root.
    ///
    /// An upload exists while its `.upload-ID.json` does. Part files without it
    /// (`.upload_id-ID.part-N`) are s3s-fs's own debris, not an upload: its
    /// CompleteMultipartUpload deletes the upload before assembling the parts, and a client
    /// that disconnects then (drillbook killed) cancels the rest. No object appears and the
    /// upload is gone through the S3 API; on AWS completion is atomic.
    pub fn upload_files(&self) -> Vec<String> {
        let names: Vec<String> = std::fs::read_dir(&self.root)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(".upload"))
            .collect();
        let open = |part: &str| {
            part.strip_prefix(".upload_id-")
                .and_then(|rest| rest.split_once(".part-"))
                .is_some_and(|(id, _)| names.contains(&format!(".upload-{id}.json")))
        };
        let mut names: Vec<String> = names
            .iter()
            .filter(|name| !name.starts_with(".upload_id-") || open(name))
            .cloned()
            .collect();
        names.sort();
        names
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    service: S3Service,
    faults: Arc<Faults>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let conditional = Arc::new(tokio::sync::Mutex::new(()));
    loop {
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(_) => continue,
            },
            _ = &mut shutdown => return,
        };
        let service = service.clone();
        let faults = faults.clone();
        let conditional = conditional.clone();
        tokio::spawn(async move {
            let handler = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let service = service.clone();
                let faults = faults.clone();
                let conditional = conditional.clone();
                async move {
                    let _turn = match request.method() == hyper::Method::PUT
                        && (request.headers().contains_key("if-none-match")
                            || request.headers().contains_key("if-match"))
                    {
                        true => Some(conditional.lock_owned().await),
                        false => None,
                    };
                    faults.seen.lock().unwrap().push((
                        request.method().as_str().to_owned(),
                        request.uri().path().to_owned(),
                    ));
                    if faults.take(request.method().as_str()) {
                        return Ok(slow_down(request).await);
                    }
                    service.call(request.map(s3s::Body::from)).await
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(socket), handler)
                .await;
        });
    }
}

/// What S3 answers when throttling. The request body is read first so the client sees this
/// answer rather than a connection reset in the middle of its upload.
async fn slow_down(request: hyper::Request<Incoming>) -> s3s::HttpResponse {
    let mut body = request.into_body();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if frame.is_err() {
            break;
        }
    }
    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
               <Message>Please reduce your request rate.</Message></Error>";
    hyper::Response::builder()
        .status(503)
        .header("content-type", "application/xml")
        .body(s3s::Body::from(xml.to_owned()))
        .unwrap()
}
