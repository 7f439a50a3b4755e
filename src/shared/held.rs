//! A playbook's lease held by this process: for a run (renewed in the background until the run
//! ends, its inbox relayed) or for a moment (one decision written). A runner whose renewal is
//! refused lost the run: it says so and exits at once, leaving the run to its new holder.

use std::path::PathBuf;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

use super::{Shared, keys};
use crate::lease::{Holder, Lease, LeaseError};

/// Why a lease could not be had.
#[derive(Debug)]
pub enum Refused {
    /// Someone holds it and it has not expired.
    Held(Holder),
    /// The store could not be asked, or answered nonsense.
    Failed(String),
}

/// The lease, until dropped: then the renewal stops and the lease is given up.
pub struct Held {
    shared: Shared,
    lease: Arc<tokio::sync::Mutex<Lease>>,
    tasks: Vec<tokio::task::AbortHandle>,
    /// The run it is held for, if any: its inbox is relayed while it is held.
    pub run_id: String,
    /// Where the run's relayed letters are answered, for a run's hold.
    run_dir: Option<PathBuf>,
}

impl Shared {
    /// Takes the lease on `lock` (a playbook's lock name) for run `run_id`, renews it every
    /// third of its length, and relays the run's inbox into `run_dir`. `Refused::Held` while
    /// another runner's lease lasts.
    pub fn hold_for_run(
        &self,
        lock: &str,
        run_id: &str,
        run_dir: PathBuf,
    ) -> Result<Held, Refused> {
        let mut held = self.take_waiting(lock, run_id, "run")?;
        let renewing = {
            let (lease, length, run_id) =
                (held.lease.clone(), self.lease_length(), run_id.to_owned());
            self.spawn(move |store| renew(store, lease, length, run_id))
        };
        let relaying = {
            let (run_id, run_dir) = (run_id.to_owned(), run_dir.clone());
            self.spawn(move |store| super::relay::relay(store, run_id, run_dir))
        };
        held.tasks = vec![renewing, relaying];
        held.run_dir = Some(run_dir);
        Ok(held)
    }

    /// Takes the lease on `lock` for a moment (one decision written): waits for other
    /// moments' holders; `Refused::Held` while a run holds it.
    pub fn hold_briefly(&self, lock: &str) -> Result<Held, Refused> {
        self.take_waiting(lock, "", "approve")
    }

    /// Takes the lease, waiting (up to 30 s) while someone holds it for a moment only.
    fn take_waiting(&self, lock: &str, run_id: &str, what: &str) -> Result<Held, Refused> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match self.take(lock, run_id, what) {
                Err(Refused::Held(holder))
                    if holder.run_id.is_empty() && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    fn take(&self, lock: &str, run_id: &str, what: &str) -> Result<Held, Refused> {
        let key = keys::lock(lock);
        let holder = format!(
            "{what} on {} (pid {})",
            crate::account::host(),
            std::process::id()
        );
        let (length, run) = (self.lease_length(), run_id.to_owned());
        loop {
            let (asked, holder, run) = (key.clone(), holder.clone(), run.clone());
            let taken = self.call(move |store| async move {
                Lease::acquire_for(&store, &asked, &holder, &run, length, crate::clock::now()).await
            });
            return match taken.map_err(Refused::Failed)? {
                Ok(lease) => Ok(Held {
                    shared: self.clone(),
                    lease: Arc::new(tokio::sync::Mutex::new(lease)),
                    tasks: Vec::new(),
                    run_id: run_id.to_owned(),
                    run_dir: None,
                }),
                // Two takers at once: the loser reads again.
                Err(LeaseError::Raced) => continue,
                Err(LeaseError::Held(holder)) => Err(Refused::Held(holder)),
                Err(error) => Err(Refused::Failed(format!(
                    "the lease {key} in {}: {error}",
                    self.url()
                ))),
            };
        }
    }

    /// Who holds `lock` now, if a lease there has not expired.
    pub fn holder(&self, lock: &str) -> Result<Option<Holder>, String> {
        let key = keys::lock(lock);
        let held = self
            .call(move |store| async move { crate::lease::holder(&store, &key).await })?
            .map_err(|e| e.to_string())?;
        let now = crate::clock::now();
        Ok(held.filter(|held| held.expires_at + crate::lease::SKEW > now))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        let lease = self.lease.clone();
        let (run_id, run_dir) = (self.run_id.clone(), self.run_dir.clone());
        let _ = self.shared.call(move |store| async move {
            if let Some(run_dir) = run_dir {
                super::relay::send_answers(&store, &run_id, &run_dir).await;
            }
            let lease = lease.lock().await.clone();
            lease.release(&store).await
        });
    }
}

/// Renews the lease every third of its length. Refused: another runner took the run over,
/// and this one stops on the spot. Not renewed before it expires (the store unreachable):
/// this runner stops too, so that another may take over.
async fn renew(
    store: crate::connect::store::Store,
    lease: Arc<tokio::sync::Mutex<Lease>>,
    length: SignedDuration,
    run_id: String,
) {
    let every = (length / 3).unsigned_abs();
    loop {
        tokio::time::sleep(every).await;
        let mut lease = lease.lock().await;
        let now = crate::clock::now();
        match lease.renew(&store, length, now).await {
            Ok(()) => {}
            Err(LeaseError::Lost(holder)) => lost(
                &run_id,
                &format!("{} took it over (epoch {})", holder.holder, holder.epoch),
            ),
            Err(LeaseError::Raced) => lost(&run_id, "its lease was removed"),
            Err(error) if expired(&lease.held, now, every) => lost(
                &run_id,
                &format!("its lease could not be renewed before it expired ({error})"),
            ),
            Err(error) => {
                tracing::warn!("renewing the lease of run {run_id}: {error}; trying again")
            }
        }
    }
}

fn expired(held: &Holder, now: Timestamp, every: std::time::Duration) -> bool {
    let margin = SignedDuration::try_from(every).unwrap_or(SignedDuration::ZERO);
    held.expires_at - margin <= now
}

fn lost(run_id: &str, why: &str) -> ! {
    eprintln!(
        "error: run {run_id}: this runner lost the run: {why}; it stops here and writes nothing more"
    );
    // The guard stops the programs it started; the journal is the new holder's.
    std::process::exit(1)
}
