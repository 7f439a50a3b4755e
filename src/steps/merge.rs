//! Reading stores side by side in key order, as `sync` plans and `verify` compares: two
//! listings merged key by key, and a checksum report's entries read alongside. Nothing is
//! held but the next object of each side.

use crate::checksums::{Entries, Entry, is_own};
use crate::connect::store::{Listing, ObjectInfo};
use crate::steps::StepFailure;

/// Two listings' data objects (drillbook's own keys left out), merged by key.
pub(crate) struct Merged {
    a: Option<Listing>,
    b: Option<Listing>,
    next_a: Option<ObjectInfo>,
    next_b: Option<ObjectInfo>,
}

/// One key of a merge: what each side holds under it.
pub(crate) struct Pair {
    pub(crate) key: String,
    pub(crate) a: Option<ObjectInfo>,
    pub(crate) b: Option<ObjectInfo>,
}

impl Merged {
    /// `b` is `None` for a side that does not exist (yet): it holds nothing.
    pub(crate) async fn new(a: Listing, b: Option<Listing>) -> Result<Merged, StepFailure> {
        let mut merged = Merged {
            a: Some(a),
            b,
            next_a: None,
            next_b: None,
        };
        merged.next_a = pull(&mut merged.a).await?;
        merged.next_b = pull(&mut merged.b).await?;
        Ok(merged)
    }

    pub(crate) async fn next(&mut self) -> Result<Option<Pair>, StepFailure> {
        let key = match (&self.next_a, &self.next_b) {
            (None, None) => return Ok(None),
            (Some(a), None) => a.key.clone(),
            (None, Some(b)) => b.key.clone(),
            (Some(a), Some(b)) => a.key.as_str().min(b.key.as_str()).to_owned(),
        };
        let a = match self.next_a.take_if(|a| a.key == key) {
            Some(a) => {
                self.next_a = pull(&mut self.a).await?;
                Some(a)
            }
            None => None,
        };
        let b = match self.next_b.take_if(|b| b.key == key) {
            Some(b) => {
                self.next_b = pull(&mut self.b).await?;
                Some(b)
            }
            None => None,
        };
        Ok(Some(Pair { key, a, b }))
    }
}

/// A listing's next data object; `None` at its end.
pub(crate) async fn pull(listing: &mut Option<Listing>) -> Result<Option<ObjectInfo>, StepFailure> {
    let Some(listing) = listing else {
        return Ok(None);
    };
    while let Some(object) = listing.next().await.map_err(StepFailure::of)? {
        if !is_own(&object.key) {
            return Ok(Some(object));
        }
    }
    Ok(None)
}

/// A checksum report's entries read alongside keys that ascend.
pub(crate) struct Alongside {
    entries: Option<Entries>,
    /// Names the report in errors: "the checksum report of s3://…".
    what: String,
}

impl Alongside {
    pub(crate) fn new(entries: Option<Entries>, what: String) -> Alongside {
        Alongside { entries, what }
    }

    /// The entry for `key`; the entries passed over on the way are handed to `passed`.
    pub(crate) async fn entry_for(
        &mut self,
        key: &str,
        mut passed: impl FnMut(String) -> Result<(), StepFailure>,
    ) -> Result<Option<Entry>, StepFailure> {
        let Some(entries) = &mut self.entries else {
            return Ok(None);
        };
        loop {
            let next = entries
                .peek()
                .await
                .map_err(|e| read_error(&self.what, e))?;
            let ordering = match next {
                Some((next, _)) => next.as_str().cmp(key),
                None => return Ok(None),
            };
            match ordering {
                std::cmp::Ordering::Greater => return Ok(None),
                ordering => {
                    let taken = entries
                        .next()
                        .await
                        .map_err(|e| read_error(&self.what, e))?;
                    if let Some((next, entry)) = taken {
                        if ordering.is_eq() {
                            return Ok(Some(entry));
                        }
                        passed(next)?;
                    }
                }
            }
        }
    }

    /// Hands the entries left to `passed`.
    pub(crate) async fn rest(
        &mut self,
        mut passed: impl FnMut(String) -> Result<(), StepFailure>,
    ) -> Result<(), StepFailure> {
        if let Some(entries) = &mut self.entries {
            while let Some((key, _)) = entries
                .next()
                .await
                .map_err(|e| read_error(&self.what, e))?
            {
                passed(key)?;
            }
        }
        Ok(())
    }
}

fn read_error(what: &str, error: crate::checksums::ReadError) -> StepFailure {
    StepFailure::new(format!("reading {what}: {error}"))
}
