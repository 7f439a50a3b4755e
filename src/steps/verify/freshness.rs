//! Freshness (`max_age`): the age of the newest backup, of the last sync, or of the newest
//! object, whichever the store is judged by.

use jiff::{SignedDuration, Timestamp};

use super::Verify;
use crate::checksums::{REPORT_KEY, is_own};
use crate::connect::store::{ObjectInfo, Store};
use crate::duration::Duration;
use crate::format::format_duration;
use crate::manifest;
use crate::steps::config_backup::layout;

impl Verify {
    /// The age of the newest complete backup when the store holds backups (or a `backup:` is
    /// being checked), else of the last sync into it (its checksum report), else of the newest
    /// object.
    pub(super) fn freshness(
        &self,
        store: &Store,
        listing: &[ObjectInfo],
        refreshed: Option<Timestamp>,
        limit: Duration,
        now: Timestamp,
    ) -> Freshness {
        let backups = manifest::candidates(listing);
        let configs = layout::versions(listing, None);
        let (newest, at, what) = if (self.backup.is_some() && configs.is_empty())
            || backups.iter().any(|c| c.manifest.is_some())
        {
            let newest = backups.into_iter().find(|c| c.manifest.is_some());
            match newest.and_then(|c| manifest::time_of(&c.key).map(|at| (c.key, at))) {
                None => {
                    return Freshness::Unknown(format!("no complete backup in {}", store.url()));
                }
                Some((key, at)) => (key, at, "backup"),
            }
        } else if !configs.is_empty() {
            // Versions are made when the file changes: the newest complete one is the
            // configuration's latest backup, however long ago that was.
            match configs.into_iter().find(|v| v.has_manifest) {
                Some(version) => (version.key, version.at, "configuration backup"),
                None => {
                    return Freshness::Unknown(format!(
                        "no complete configuration backup in {}",
                        store.url()
                    ));
                }
            }
        } else if let Some(at) = refreshed {
            (REPORT_KEY.to_string(), at, "sync (its checksum report)")
        } else {
            let data = listing.iter().filter(|o| !is_own(&o.key));
            let newest = data
                .clone()
                .filter_map(|o| o.modified.map(|at| (o, at)))
                .max_by_key(|(_, at)| *at);
            match newest {
                Some((object, at)) => (object.key.clone(), at, "object"),
                None if data.count() == 0 => {
                    return Freshness::Unknown(format!(
                        "{} holds no objects, so nothing in it is fresh",
                        store.url()
                    ));
                }
                None => {
                    return Freshness::Unknown(format!(
                        "{} gives no modification times, so `max_age` cannot be checked",
                        store.url()
                    ));
                }
            }
        };
        let age = now.duration_since(at);
        let fresh = age.is_negative() || age.unsigned_abs() <= limit.0;
        let line = format!(
            "the newest {what}, {newest}, is {} old (at most {limit})",
            format_duration(age)
        );
        Freshness::Measured {
            newest,
            at,
            age,
            line,
            fresh,
        }
    }
}

pub(super) enum Freshness {
    /// Why no age could be measured: a failure.
    Unknown(String),
    Measured {
        newest: String,
        at: Timestamp,
        age: SignedDuration,
        line: String,
        fresh: bool,
    },
}
