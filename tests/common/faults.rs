//! An S3 fault proxy: a small hyper server on loopback in front of the in-process S3 server
//! (`S3Server`), forwarding each request over a connection of its own and, at a configured
//! rate, injecting one fault instead of (or on top of) the answer. The choice is made by a
//! seeded RNG, so a seed names one sequence of decisions (which request gets which fault
//! still depends on the order requests arrive in, which the client's concurrency decides).
//!
//! The faults, each counted:
//! - `slow_down`: a 503 SlowDown without forwarding, and a storm of them: the next 0–4
//!   requests get one too (counted as well);
//! - `reset_before`: the connection is dropped before the request reaches the server;
//! - `reset_after`: the request is forwarded, the server acts on it, and the connection is
//!   dropped instead of the answer;
//! - `truncated`: the answer's headers with its real Content-Length, then part of its body,
//!   then the connection is dropped;
//! - `slow`: the answer is held back for 100–1500 ms (bounded);
//! - `wrong_length`: the answer's Content-Length is not its body's length: bodies are sent
//!   whole under a larger length, then the connection is dropped; a HEAD (no body) reports a
//!   size that is not the object's.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONTENT_LENGTH, HeaderValue, TRANSFER_ENCODING};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// The kinds of fault, in the order they are reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    SlowDown,
    ResetBefore,
    ResetAfter,
    Truncated,
    Slow,
    WrongLength,
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::SlowDown,
        Fault::ResetBefore,
        Fault::ResetAfter,
        Fault::Truncated,
        Fault::Slow,
        Fault::WrongLength,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::SlowDown => "503 SlowDown",
            Fault::ResetBefore => "reset before forwarding",
            Fault::ResetAfter => "reset after the server acted",
            Fault::Truncated => "truncated body",
            Fault::Slow => "slow answer",
            Fault::WrongLength => "wrong Content-Length",
        }
    }
}

/// Requests seen and faults injected, per kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: usize,
    pub faults: BTreeMap<Fault, usize>,
}

impl Counts {
    pub fn total(&self) -> usize {
        self.faults.values().sum()
    }

    pub fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        for (fault, n) in &other.faults {
            *self.faults.entry(*fault).or_default() += n;
        }
    }

    pub fn of(&self, fault: Fault) -> usize {
        self.faults.get(&fault).copied().unwrap_or(0)
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} requests, {} faults (", self.requests, self.total())?;
        for (i, fault) in Fault::ALL.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{}: {}", fault.name(), self.of(*fault))?;
        }
        write!(f, ")")
    }
}

/// What the server thread shares with the test.
struct State {
    upstream: std::net::SocketAddr,
    /// Faults per million requests.
    rate: AtomicU32,
    rng: Mutex<fastrand::Rng>,
    /// 503s still owed to the current storm.
    storm: AtomicUsize,
    requests: AtomicUsize,
    counts: [AtomicUsize; 6],
    /// PUTs whose path ends with this are held, never answered (see `FaultProxy::hold_puts`).
    hold: Mutex<Option<String>>,
    held: AtomicUsize,
}

impl State {
    /// The fault for the next request, if any (and counts it).
    fn decide(&self) -> Option<Fault> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let owed = self
            .storm
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let fault = if owed {
            Some(Fault::SlowDown)
        } else {
            let mut rng = self.rng.lock().unwrap();
            let rate = self.rate.load(Ordering::SeqCst);
            if rng.u32(0..1_000_000) < rate {
                let fault = Fault::ALL[rng.usize(0..Fault::ALL.len())];
                if fault == Fault::SlowDown {
                    self.storm.store(rng.usize(0..=4), Ordering::SeqCst);
                }
                Some(fault)
            } else {
                None
            }
        };
        if let Some(fault) = fault {
            self.counts[fault as usize].fetch_add(1, Ordering::SeqCst);
        }
        fault
    }

    fn random(&self, range: std::ops::Range<u64>) -> u64 {
        self.rng.lock().unwrap().u64(range)
    }
}

/// The proxy; stops serving when dropped.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`: give this to drillbook as its S3 endpoint.
    pub endpoint: String,
    state: Arc<State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy in front of `upstream` (`http://127.0.0.1:PORT`) injecting faults into `rate`
    /// (0.0–1.0) of the requests, decided by an RNG seeded with `seed`.
    pub fn start(upstream: &str, rate: f64, seed: u64) -> FaultProxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .parse()
            .expect("upstream address");
        let state = Arc::new(State {
            upstream,
            rate: AtomicU32::new(per_million(rate)),
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            storm: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            counts: Default::default(),
            hold: Mutex::new(None),
            held: AtomicUsize::new(0),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, shutdown_received) = tokio::sync::oneshot::channel();
        let served = state.clone();
        let thread = std::thread::Builder::new()
            .name("s3-fault-proxy".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(serve(listener, served, shutdown_received));
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .unwrap();
        FaultProxy {
            endpoint,
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// Changes the fault rate from now on (0.0 stops injecting, storms included).
    pub fn set_rate(&self, rate: f64) {
        self.state.rate.store(per_million(rate), Ordering::SeqCst);
        if rate == 0.0 {
            self.state.storm.store(0, Ordering::SeqCst);
        }
    }

    /// From now on, a PUT whose path ends with `suffix` is held without an answer for as
    /// long as the proxy runs: a moment a test can kill drillbook in, after everything the
    /// upload did before that request. Counted by [`FaultProxy::held`].
    pub fn hold_puts(&self, suffix: &str) {
        *self.state.hold.lock().unwrap() = Some(suffix.to_owned());
    }

    pub fn held(&self) -> usize {
        self.state.held.load(Ordering::SeqCst)
    }

    pub fn counts(&self) -> Counts {
        Counts {
            requests: self.state.requests.load(Ordering::SeqCst),
            faults: Fault::ALL
                .iter()
                .map(|&f| (f, self.state.counts[f as usize].load(Ordering::SeqCst)))
                .filter(|&(_, n)| n > 0)
                .collect(),
        }
    }

    /// The AWS environment for a drillbook child, `server`'s credentials, this endpoint.
    pub fn env(&self, server: &super::s3::S3Server) -> Vec<(String, String)> {
        let mut env = server.env();
        for (name, value) in &mut env {
            if name == "AWS_ENDPOINT_URL" {
                *value = self.endpoint.clone();
            }
        }
        env
    }
}

fn per_million(rate: f64) -> u32 {
    assert!((0.0..=1.0).contains(&rate), "a rate is 0.0–1.0: {rate}");
    (rate * 1_000_000.0).round() as u32
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body held in memory, sent in one frame, optionally followed by an error (which makes
/// hyper drop the connection there).
struct Held {
    data: Option<Bytes>,
    then_fail: bool,
}

impl Held {
    fn new(data: Bytes, then_fail: bool) -> Held {
        Held {
            data: (!data.is_empty()).then_some(data),
            then_fail,
        }
    }
}

impl Body for Held {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if std::mem::take(&mut self.then_fail) {
            return Poll::Ready(Some(Err("fault proxy: connection cut".into())));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && !self.then_fail
    }

    fn size_hint(&self) -> SizeHint {
        if self.then_fail {
            SizeHint::default()
        } else {
            SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    state: Arc<State>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    loop {
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(_) => continue,
            },
            _ = &mut shutdown => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let handler = hyper::service::service_fn(move |request: Request<Incoming>| {
                handle(state.clone(), request)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(socket), handler)
                .await;
        });
    }
}

async fn collect(mut body: Incoming) -> Result<Bytes, BoxError> {
    let mut all = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(data) = frame?.into_data() {
            all.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(all))
}

/// One request: a fault, or the server's answer passed on.
async fn handle(state: Arc<State>, request: Request<Incoming>) -> Result<Response<Held>, BoxError> {
    let hold = state.hold.lock().unwrap().clone();
    if let Some(suffix) = hold
        && request.method() == hyper::Method::PUT
        && request.uri().path().ends_with(&suffix)
    {
        state.held.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<()>().await;
    }
    let fault = state.decide();
    match fault {
        Some(Fault::ResetBefore) => return Err("fault proxy: reset before forwarding".into()),
        Some(Fault::SlowDown) => {
            // Read the upload first, so the client sees this answer and not a reset.
            let _ = collect(request.into_body()).await;
            return Ok(slow_down());
        }
        _ => {}
    }
    let head = request.method() == hyper::Method::HEAD;
    let (parts, body) = request.into_parts();
    let body = collect(body).await?;
    let mut upstream = Request::from_parts(parts, Held::new(body.clone(), false));
    upstream.headers_mut().remove(TRANSFER_ENCODING);
    upstream
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    let response = forward(state.upstream, upstream).await?;
    let (mut parts, body) = response.into_parts();
    let body = collect(body).await?;
    parts.headers.remove(TRANSFER_ENCODING);
    let length = |parts: &mut hyper::http::response::Parts, n: u64| {
        parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
    };
    match fault {
        Some(Fault::ResetAfter) => Err("fault proxy: reset after the server acted".into()),
        Some(Fault::Truncated) if !body.is_empty() => {
            let keep = state.random(0..body.len() as u64) as usize;
            length(&mut parts, body.len() as u64);
            Ok(Response::from_parts(
                parts,
                Held::new(body.slice(..keep), true),
            ))
        }
        Some(Fault::WrongLength) if head => {
            // A HEAD's Content-Length is the object's size: lie about it.
            let real: u64 = parts
                .headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(0);
            let delta = state.random(1..4096);
            let wrong = if state.random(0..2) == 0 {
                real + delta
            } else {
                real.saturating_sub(delta)
            };
            length(&mut parts, wrong);
            Ok(Response::from_parts(parts, Held::new(Bytes::new(), false)))
        }
        Some(Fault::WrongLength) => {
            let delta = state.random(1..4096);
            length(&mut parts, body.len() as u64 + delta);
            Ok(Response::from_parts(parts, Held::new(body, true)))
        }
        Some(Fault::Slow) => {
            tokio::time::sleep(Duration::from_millis(state.random(100..1500))).await;
            pass_on(parts, body, head)
        }
        _ => pass_on(parts, body, head),
    }
}

fn pass_on(
    mut parts: hyper::http::response::Parts,
    body: Bytes,
    head: bool,
) -> Result<Response<Held>, BoxError> {
    if !head {
        parts
            .headers
            .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    Ok(Response::from_parts(parts, Held::new(body, false)))
}

/// Sends `request` to the S3 server over a new connection; its answer.
async fn forward(
    upstream: std::net::SocketAddr,
    request: Request<Held>,
) -> Result<Response<Incoming>, BoxError> {
    let stream = tokio::net::TcpStream::connect(upstream).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender.send_request(request).await?)
}

fn slow_down() -> Response<Held> {
    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
               <Message>Please reduce your request rate.</Message></Error>";
    Response::builder()
        .status(503)
        .header("content-type", "application/xml")
        .header(CONTENT_LENGTH, xml.len())
        .body(Held::new(Bytes::from_static(xml.as_bytes()), false))
        .unwrap()
}
