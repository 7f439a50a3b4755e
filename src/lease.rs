//! Leases with fencing, on a store's conditional writes: the protocol that lets a run's state
//! live in object storage, where runners on several machines can see it and one of them at a
//! time drives it.
//!
//! - **The lease** is one object: who holds it, its epoch, until when. Taking a free or
//!   expired lease, and renewing one's own, are writes conditional on the object being as it
//!   was read (absent, or its tag unchanged): of two runners racing, one wins, the other is
//!   refused and reads again. A renewal refused means another runner took over.
//! - **The fence** is the log itself: record N is the object `…/N` written only if absent. A
//!   runner that takes over first reads the log to its end and writes its takeover record at
//!   the next position, so the runner it replaced — paused, partitioned, its lease long gone
//!   — finds that position taken on its next append and can never write again.
//! - **Clocks**: expiry is judged by the taker's clock. A holder renews at a third of the
//!   lease, and a taker waits [`SKEW`] past the expiry it read, so clocks apart by less than
//!   that never see two live holders; beyond it, the fence still keeps the log single-writer.
//!
//! The guarantee is the store's: AWS S3 applies `If-None-Match` / `If-Match` atomically with
//! the write; s3s-fs checks them before writing (not atomically), and a local directory
//! gives it to the processes of one machine.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::connect::store::{Condition, Put, Store, StoreError, Tag};

/// How far apart two runners' clocks may be before a takeover could come early.
pub const SKEW: SignedDuration = SignedDuration::from_secs(5);

/// What the lease object says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub holder: String,
    /// The run it is held for, when it is one run's (empty: a moment's, e.g. one decision).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    /// One more at every takeover.
    pub epoch: u64,
    pub expires_at: Timestamp,
}

/// A lease this runner holds.
#[derive(Clone, Debug)]
pub struct Lease {
    pub key: String,
    pub held: Holder,
    tag: Tag,
}

/// Why a lease could not be had or kept, or an append was refused.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("the run is held by {} until {} (epoch {})", .0.holder, .0.expires_at, .0.epoch)]
    Held(Holder),
    #[error("the lease was taken over: {} holds it now (epoch {})", .0.holder, .0.epoch)]
    Lost(Holder),
    #[error("record {0} of the log was written by another runner: this one lost the run")]
    Fenced(u64),
    #[error("another runner took the lease at the same moment; read it again")]
    Raced,
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the lease object {0} is not a lease: {1}")]
    Corrupt(String, String),
}

impl Lease {
    /// Takes the lease at `key` for `holder` for `length`, if it is free, expired (by more
    /// than [`SKEW`]) or already `holder`'s.
    pub async fn acquire(
        store: &Store,
        key: &str,
        holder: &str,
        length: SignedDuration,
        now: Timestamp,
    ) -> Result<Lease, LeaseError> {
        Self::acquire_for(store, key, holder, "", length, now).await
    }

    /// As [`Lease::acquire`], saying which run it is held for.
    pub async fn acquire_for(
        store: &Store,
        key: &str,
        holder: &str,
        run_id: &str,
        length: SignedDuration,
        now: Timestamp,
    ) -> Result<Lease, LeaseError> {
        let (condition, epoch) = match read(store, key).await? {
            None => (Condition::Absent, 1),
            Some((held, tag)) => {
                let free = held.holder == holder || held.expires_at + SKEW <= now;
                if !free {
                    return Err(LeaseError::Held(held));
                }
                let epoch = if held.holder == holder {
                    held.epoch
                } else {
                    held.epoch + 1
                };
                (Condition::Unchanged(tag), epoch)
            }
        };
        let held = Holder {
            holder: holder.to_owned(),
            run_id: run_id.to_owned(),
            epoch,
            expires_at: now + length,
        };
        match write(store, key, &held, &condition).await? {
            Put::Written(tag) => Ok(Lease {
                key: key.to_owned(),
                held,
                tag,
            }),
            Put::Refused => Err(LeaseError::Raced),
        }
    }

    /// Extends the lease by `length` from `now`; `Lost` when another runner took it.
    pub async fn renew(
        &mut self,
        store: &Store,
        length: SignedDuration,
        now: Timestamp,
    ) -> Result<(), LeaseError> {
        let held = Holder {
            expires_at: now + length,
            ..self.held.clone()
        };
        match write(
            store,
            &self.key,
            &held,
            &Condition::Unchanged(self.tag.clone()),
        )
        .await?
        {
            Put::Written(tag) => {
                self.held = held;
                self.tag = tag;
                Ok(())
            }
            Put::Refused => match read(store, &self.key).await? {
                Some((now_held, _)) => Err(LeaseError::Lost(now_held)),
                None => Err(LeaseError::Raced),
            },
        }
    }
}

impl Lease {
    /// Gives the lease up: it reads as expired from then on, so the next runner need not
    /// wait. Refused (someone took it over meanwhile) is as good as done.
    pub async fn release(self, store: &Store) -> Result<(), LeaseError> {
        let held = Holder {
            expires_at: Timestamp::UNIX_EPOCH,
            ..self.held
        };
        write(store, &self.key, &held, &Condition::Unchanged(self.tag)).await?;
        Ok(())
    }
}

/// Who holds the lease at `key`, if anyone ever did.
pub async fn holder(store: &Store, key: &str) -> Result<Option<Holder>, LeaseError> {
    Ok(read(store, key).await?.map(|(held, _)| held))
}

async fn read(store: &Store, key: &str) -> Result<Option<(Holder, Tag)>, LeaseError> {
    let Some((bytes, tag)) = store.get_tagged(key).await? else {
        return Ok(None);
    };
    let held = serde_json::from_slice(&bytes)
        .map_err(|e| LeaseError::Corrupt(key.to_owned(), e.to_string()))?;
    Ok(Some((held, tag)))
}

async fn write(
    store: &Store,
    key: &str,
    held: &Holder,
    condition: &Condition,
) -> Result<Put, LeaseError> {
    let bytes = serde_json::to_vec(held).map_err(|e| StoreError::Failed {
        action: "write",
        url: store.url().to_owned(),
        key: key.to_owned(),
        message: e.to_string(),
    })?;
    Ok(store.put_if(key, bytes, condition).await?)
}

/// A log of records under `prefix`, record N at `prefix/N` (zero-padded), each written only
/// if absent: the fence.
pub struct FencedLog<'a> {
    store: &'a Store,
    prefix: String,
}

impl<'a> FencedLog<'a> {
    pub fn new(store: &'a Store, prefix: &str) -> FencedLog<'a> {
        FencedLog {
            store,
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    fn key(&self, position: u64) -> String {
        format!("{}/{position:016}", self.prefix)
    }

    /// Writes record `position`; `Fenced` when another runner wrote it first.
    pub async fn append(&self, position: u64, bytes: Vec<u8>) -> Result<(), LeaseError> {
        match self
            .store
            .put_if(&self.key(position), bytes, &Condition::Absent)
            .await?
        {
            Put::Written(_) => Ok(()),
            Put::Refused => Err(LeaseError::Fenced(position)),
        }
    }

    /// Every record, in order, up to the first missing position.
    pub async fn read_all(&self) -> Result<Vec<Vec<u8>>, LeaseError> {
        let mut records = Vec::new();
        while let Some((bytes, _)) = self
            .store
            .get_tagged(&self.key(records.len() as u64))
            .await?
        {
            records.push(bytes);
        }
        Ok(records)
    }
}
