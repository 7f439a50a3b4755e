//! Run state in a store (`--state s3://bucket/prefix`): journals, leases, captured output and
//! decisions kept where the disaster is not, so that a runner on any machine can list, watch,
//! approve, take over and finish a run.
//!
//! The store holds, under its prefix:
//! - `runs/<id>/journal/<seq>`: the journal, one object per record (the exact line), each
//!   written only if absent — the fence ([`crate::lease::FencedLog`]'s layout);
//! - `runs/<id>/files/<path>`: the run's log and captured output, uploaded as steps finish;
//! - `runs/<id>/inbox/<letter>`: decisions for a run in progress, and their answers;
//! - `locks/<playbook>`: the lease on a playbook's runs ([`crate::lease`]).
//!
//! A runner works in a local directory of its own (the run's clusters, downloads, the log) and
//! writes each journal record to the store before its own copy; commands that read take a
//! fresh copy of the store ([`pull`]) and read it like any state directory.

mod held;
mod mirror;
mod pull;
mod relay;

use std::future::Future;
use std::sync::Arc;

use jiff::SignedDuration;

use crate::connect::store::Store;

pub use held::{Held, Refused};
pub use mirror::StoreMirror;
pub use relay::{Posted, post_letter};

/// A shared state: the store and the runtime every request to it runs on. Cheap to clone.
#[derive(Clone)]
pub struct Shared {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    link: Link,
    lease: SignedDuration,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("url", &self.url()).finish()
    }
}

impl Shared {
    /// Connects to the store at `url`; runs hold their leases for `lease`.
    pub fn open(url: &str, lease: SignedDuration) -> Result<Shared, String> {
        let link = Link::new().map_err(|e| format!("cannot start the store's runtime: {e}"))?;
        let owned = url.to_owned();
        let store = link
            .call(async move { Store::open(&owned).await })?
            .map_err(|e| format!("--state {url}: {e}"))?;
        Ok(Shared {
            inner: Arc::new(Inner { store, link, lease }),
        })
    }

    pub fn url(&self) -> &str {
        self.inner.store.url()
    }

    pub fn lease_length(&self) -> SignedDuration {
        self.inner.lease
    }

    /// Runs `work` with the store on the store's own runtime, from any thread (a runtime's
    /// worker included), and waits for it.
    pub(crate) fn call<T, F>(&self, work: impl FnOnce(Store) -> F) -> Result<T, String>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.inner.link.call(work(self.inner.store.clone()))
    }

    fn spawn<F>(&self, work: impl FnOnce(Store) -> F) -> tokio::task::AbortHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.inner.link.spawn(work(self.inner.store.clone()))
    }

    /// Whether the store holds a run with this id.
    pub fn has_run(&self, run_id: &str) -> Result<bool, String> {
        let prefix = keys::journal_prefix(run_id);
        self.call(|store| async move { store.list(&prefix).await })?
            .map(|objects| !objects.is_empty())
            .map_err(|e| e.to_string())
    }

    /// Copies the store's runs into `root` (a state directory's layout): every run's journal,
    /// or only `run`'s, with its files.
    pub fn pull(&self, root: &std::path::Path, run: Option<&str>) -> Result<(), String> {
        let root = root.to_path_buf();
        let run = run.map(str::to_owned);
        self.call(|store| pull::pull(store, root, run))?
    }
}

/// Where things are in the store.
pub(crate) mod keys {
    pub fn journal_prefix(run_id: &str) -> String {
        format!("runs/{run_id}/journal/")
    }

    pub fn journal(run_id: &str, seq: u64) -> String {
        format!("runs/{run_id}/journal/{seq:016}")
    }

    pub fn files_prefix(run_id: &str) -> String {
        format!("runs/{run_id}/files/")
    }

    pub fn inbox_prefix(run_id: &str) -> String {
        format!("runs/{run_id}/inbox/")
    }

    pub fn lock(name: &str) -> String {
        format!("locks/{name}")
    }
}

/// A runtime of the store's own, on one thread: the S3 client's connections live in it,
/// whatever runtime (or none) the caller has.
struct Link {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Link {
    fn new() -> std::io::Result<Link> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("drillbook-state")
            .enable_all()
            .build()?;
        Ok(Link {
            runtime: Some(runtime),
        })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .map(tokio::runtime::Runtime::handle)
            .expect("the runtime lives as long as the link")
    }

    fn call<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, String> {
        let (done, answer) = std::sync::mpsc::sync_channel(1);
        self.handle().spawn(async move {
            let _ = done.send(work.await);
        });
        answer
            .recv()
            .map_err(|_| "the request to the shared state was cut short".to_string())
    }

    fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) -> tokio::task::AbortHandle {
        self.handle().spawn(work).abort_handle()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Dropped from inside another runtime too (the engine's): never block there.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
