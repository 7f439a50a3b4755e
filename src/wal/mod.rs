//! The WAL archive: PostgreSQL's `archive_command` and `restore_command` (`drillbook wal push
//! %p`, `drillbook wal fetch %f %p`) over any store drillbook knows (a directory, S3).
//!
//! Layout, under the store's URL (docs/backups.md, "WAL archive"):
//!
//! ```text
//! wal/<timeline><log>/<segment>.zst   a segment, its .partial or its .backup file: 000000010000000A/000000010000000A00000042.zst
//! wal/<timeline>.history.zst          a timeline's history file: wal/00000002.history.zst
//! ```
//!
//! Each object is one zstd stream that `zstd -d` reads as it is: a skippable frame holding
//! the metadata as JSON ([`header`]: the file's name, size and SHA-256 before compression, the
//! compression), then the compressed file. One object per file, so it is stored completely or
//! not at all by the store's own guarantee (a directory: temporary name, fsync, rename, fsync of
//! the directory; S3: one PUT or a completed multipart upload). The archive is write-once:
//! pushing a file already archived with the same bytes succeeds, with other bytes fails, for
//! history files and segments alike.
//!
//! Here: names, the archive and the errors. Reading the settings is in `config`, the metadata
//! frame in `header`, the two commands in `push` and `fetch`; base backups' keys and manifest
//! in `base`, what a base backup's tar says about itself in `label`, LSNs and segment names
//! in `lsn`.

pub mod base;
mod config;
pub mod continuity;
mod fetch;
mod header;
pub mod label;
pub mod last_commit;
pub mod lsn;
mod push;
pub mod recovery_target;
pub mod retention;
pub mod verified;

pub use config::{CONFIG_VARIABLE, LEVEL_VARIABLE, STORE_VARIABLE, WalConfig};
pub use fetch::{Fetched, fetch};
pub use header::Metadata;
pub use push::{Pushed, push};

use std::path::PathBuf;

use crate::compress::Compression;
use crate::connect::store::{Store, StoreError};

/// Where the archive's objects live under the store's URL.
const ROOT: &str = "wal/";
/// The suffix of every object: each is a zstd stream.
const SUFFIX: &str = ".zst";

/// A file name PostgreSQL archives: a segment (`000000010000000000000001`), a partial segment
/// (`….partial`), a backup history file (`….00000028.backup`) or a timeline history file
/// (`00000002.history`). Anything else is refused, so a typo or a wrong `%p` cannot put a
/// stray object in the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalName(String);

impl WalName {
    pub fn parse(name: &str) -> Result<WalName, WalError> {
        let hex = |text: &str, length: usize| {
            text.len() == length
                && text
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        };
        let segment = |text: &str| hex(text, 24);
        let valid = match name.split_once('.') {
            None => segment(name),
            Some((head, "partial")) => segment(head),
            Some((head, "history")) => hex(head, 8),
            Some((head, rest)) => {
                segment(head) && rest.strip_suffix(".backup").is_some_and(|lsn| hex(lsn, 8))
            }
        };
        if valid {
            Ok(WalName(name.to_owned()))
        } else {
            Err(WalError::BadName(name.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A timeline history file: never overwritten (nor is anything else; see the module).
    pub fn is_history(&self) -> bool {
        self.0.ends_with(".history")
    }

    /// The object's key in the store.
    pub fn key(&self) -> String {
        if self.is_history() {
            format!("{ROOT}{}{SUFFIX}", self.0)
        } else {
            format!("{ROOT}{}/{}{SUFFIX}", &self.0[..16], self.0)
        }
    }
}

impl std::fmt::Display for WalName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An opened archive: the store and how new files are compressed.
#[derive(Clone, Debug)]
pub struct Archive {
    pub store: Store,
    pub compression: Compression,
}

impl Archive {
    /// Opens the store the configuration names (for S3: checks that the bucket answers).
    pub async fn open(config: &WalConfig) -> Result<Archive, WalError> {
        let store = Store::open_with(&config.store, &config.s3)
            .await
            .map_err(WalError::Store)?;
        Ok(Archive {
            store,
            compression: config.compression,
        })
    }

    /// `<store>/<key>`, as people write it.
    fn location(&self, key: &str) -> String {
        format!("{}/{key}", self.store.url().trim_end_matches('/'))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error(
        "no WAL store is configured: set {STORE_VARIABLE} (s3://bucket/prefix or a directory) in the environment or in a config file (--config FILE or {CONFIG_VARIABLE})"
    )]
    NoStore,
    #[error("{path}:{line}: {reason}")]
    Config {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("cannot read the config file {path}: {source}")]
    ConfigFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    BadSetting(String),
    #[error(
        "`{0}` is not a WAL file name: expected a segment (24 hex digits, like 000000010000000000000001, optionally .partial or .XXXXXXXX.backup) or a timeline history file (like 00000002.history)"
    )]
    BadName(String),
    #[error("{0}")]
    Store(StoreError),
    /// Not an error worth a word: PostgreSQL asks for files that may not exist.
    #[error("{name} is not in the archive ({location})")]
    NotArchived { name: WalName, location: String },
    #[error("{0}")]
    Differs(Box<Conflict>),
    #[error("{name} in the archive is damaged, nothing was written: {location}: {reason}")]
    Corrupt {
        name: WalName,
        location: String,
        reason: String,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A file already archived with other bytes.
#[derive(Debug, thiserror::Error)]
#[error(
    "{name} is already archived with different content, and the archive is never overwritten: {location} holds {archived_size} bytes with SHA-256 {archived_sha256}, {path} has {size} bytes with SHA-256 {sha256}. Two clusters may be archiving into the same store: give each its own prefix"
)]
pub struct Conflict {
    pub name: WalName,
    pub location: String,
    pub path: PathBuf,
    pub archived_sha256: String,
    pub archived_size: u64,
    pub sha256: String,
    pub size: u64,
}

impl WalError {
    /// 2 for what a person must fix in the command or its settings, 1 for everything else.
    /// Never 128 or more: PostgreSQL's archiver stops on those.
    pub fn exit_code(&self) -> u8 {
        match self {
            WalError::NoStore
            | WalError::Config { .. }
            | WalError::ConfigFile { .. }
            | WalError::BadSetting(_)
            | WalError::BadName(_)
            | WalError::Store(StoreError::InvalidUrl { .. }) => 2,
            _ => 1,
        }
    }

    /// Whether the message is better left unsaid: a missing file on fetch is an answer,
    /// and PostgreSQL asks for history files that do not exist all the time.
    pub fn is_quiet(&self) -> bool {
        matches!(self, WalError::NotArchived { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_postgresql_archives_and_nothing_else() {
        for name in [
            "000000010000000000000001",
            "00000001000000A0000000FF",
            "000000010000000000000001.partial",
            "000000010000000000000002.00000028.backup",
            "00000002.history",
        ] {
            assert!(WalName::parse(name).is_ok(), "{name}");
        }
        for name in [
            "",
            "00000001000000000000001",
            "00000001000000000000000g",
            "000000010000000000000001.zst",
            "00000002.History",
            "0000002.history",
            "../000000010000000000000001",
            "000000010000000000000001.0000028.backup",
            "RECOVERYXLOG",
        ] {
            let error = WalName::parse(name).unwrap_err();
            assert_eq!(error.exit_code(), 2);
            assert!(error.to_string().contains(name), "{error}");
        }
    }

    #[test]
    fn keys_group_segments_by_timeline_and_log() {
        let key = |name: &str| WalName::parse(name).unwrap().key();
        assert_eq!(
            key("000000010000000A00000042"),
            "wal/000000010000000A/000000010000000A00000042.zst"
        );
        assert_eq!(
            key("000000010000000A00000042.00000028.backup"),
            "wal/000000010000000A/000000010000000A00000042.00000028.backup.zst"
        );
        assert_eq!(key("00000002.history"), "wal/00000002.history.zst");
        assert!(WalName::parse("00000002.history").unwrap().is_history());
    }
}
