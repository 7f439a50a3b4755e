//! Where the archive is and how to reach it. PostgreSQL's archiver runs `archive_command` with
//! the postmaster's environment, which is often minimal, so the settings can also come from a
//! small file of `NAME=value` lines (`--config FILE` or `DRILLBOOK_WAL_CONFIG`), with the same
//! names as the environment variables. A value in the file wins over the environment: naming
//! a file is the more deliberate choice.

use std::path::{Path, PathBuf};

use super::WalError;
use crate::compress::{self, Compression};
use crate::connect::store::S3Settings;

pub const STORE_VARIABLE: &str = "DRILLBOOK_WAL_STORE";
pub const CONFIG_VARIABLE: &str = "DRILLBOOK_WAL_CONFIG";
pub const LEVEL_VARIABLE: &str = "DRILLBOOK_WAL_COMPRESSION_LEVEL";

/// The names a config file may set.
const KNOWN: [&str; 6] = [
    STORE_VARIABLE,
    LEVEL_VARIABLE,
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
];

#[derive(Clone, Debug)]
pub struct WalConfig {
    /// `s3://bucket/prefix` or a directory.
    pub store: String,
    /// What the config file sets; the rest comes from the standard AWS chain.
    pub s3: S3Settings,
    pub compression: Compression,
}

impl WalConfig {
    /// From `store` (a command-line option, which wins), the config file (if any) and the
    /// environment as `env` reads it.
    pub fn load(
        store: Option<String>,
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<WalConfig, WalError> {
        let values = match file {
            Some(path) => read_file(path)?,
            None => Vec::new(),
        };
        let from_file = |name: &str| {
            values
                .iter()
                .rev()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let setting = |name: &str| {
            from_file(name).or_else(|| env(name).filter(|value| !value.trim().is_empty()))
        };
        let store = store
            .filter(|store| !store.trim().is_empty())
            .or_else(|| setting(STORE_VARIABLE))
            .ok_or(WalError::NoStore)?;
        let compression = match setting(LEVEL_VARIABLE) {
            None => Compression::Zstd {
                level: compress::DEFAULT_LEVEL,
            },
            Some(text) => text
                .trim()
                .parse()
                .map_err(|_| format!("{LEVEL_VARIABLE}=`{text}` is not a whole number"))
                .and_then(Compression::zstd)
                .map_err(WalError::BadSetting)?,
        };
        let s3 = S3Settings {
            endpoint: from_file("AWS_ENDPOINT_URL"),
            region: from_file("AWS_REGION"),
            access_key: from_file("AWS_ACCESS_KEY_ID"),
            secret_key: from_file("AWS_SECRET_ACCESS_KEY"),
            walk: false,
        };
        if s3.access_key.is_some() != s3.secret_key.is_some() {
            return Err(WalError::BadSetting(format!(
                "{}: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together: set both or neither",
                file.map(|path| path.display().to_string())
                    .unwrap_or_default()
            )));
        }
        Ok(WalConfig {
            store,
            s3,
            compression,
        })
    }
}

/// `NAME=value` lines; blank lines and `#` comments are skipped; quotes around a value are
/// removed. An unknown name is an error, so a typo cannot silently fall back to the default.
fn read_file(path: &Path) -> Result<Vec<(String, String)>, WalError> {
    let text = std::fs::read_to_string(path).map_err(|source| WalError::ConfigFile {
        path: path.to_path_buf(),
        source,
    })?;
    let mut values = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: String| WalError::Config {
            path: PathBuf::from(path),
            line: index + 1,
            reason,
        };
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            return Err(bad(format!(
                "expected NAME=value, got `{}`",
                // Never echo what may be a secret.
                line.chars().take(20).collect::<String>()
            )));
        };
        let name = name.trim();
        if !KNOWN.contains(&name) {
            return Err(bad(format!(
                "unknown setting `{name}`: expected one of {}",
                KNOWN.join(", ")
            )));
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        values.push((name.to_owned(), value.to_owned()));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_file_wins_over_the_environment_and_the_option_over_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.conf");
        std::fs::write(
            &path,
            "# archive\nDRILLBOOK_WAL_STORE=s3://bucket/prod\nexport AWS_REGION=\"eu-west-1\"\n\
             AWS_ACCESS_KEY_ID=AK\nAWS_SECRET_ACCESS_KEY='secret'\nDRILLBOOK_WAL_COMPRESSION_LEVEL=1\n",
        )
        .unwrap();
        let env = |name: &str| (name == STORE_VARIABLE).then(|| "/var/wal".to_owned());
        let config = WalConfig::load(None, Some(&path), env).unwrap();
        assert_eq!(config.store, "s3://bucket/prod");
        assert_eq!(config.s3.region.as_deref(), Some("eu-west-1"));
        assert_eq!(config.s3.secret_key.as_deref(), Some("secret"));
        assert_eq!(config.compression, Compression::Zstd { level: 1 });
        let config = WalConfig::load(None, None, env).unwrap();
        assert_eq!(config.store, "/var/wal");
        assert_eq!(config.compression, Compression::Zstd { level: 3 });
        let config = WalConfig::load(Some("/x".into()), Some(&path), env).unwrap();
        assert_eq!(config.store, "/x");
    }

    #[test]
    fn mistakes_are_named_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.conf");
        std::fs::write(&path, "\nDRILLBOOK_WAL_STOR=/x\n").unwrap();
        let error = WalConfig::load(None, Some(&path), no_env).unwrap_err();
        assert!(error.to_string().ends_with("wal.conf:2: unknown setting `DRILLBOOK_WAL_STOR`: expected one of DRILLBOOK_WAL_STORE, DRILLBOOK_WAL_COMPRESSION_LEVEL, AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY"), "{error}");
        assert_eq!(error.exit_code(), 2);
        std::fs::write(&path, "AWS_SECRET_ACCESS_KEY hunter2\n").unwrap();
        let error = WalConfig::load(None, Some(&path), no_env).unwrap_err();
        assert!(error.to_string().contains("expected NAME=value"), "{error}");
        std::fs::write(
            &path,
            "DRILLBOOK_WAL_STORE=/x\nDRILLBOOK_WAL_COMPRESSION_LEVEL=fast\n",
        )
        .unwrap();
        let error = WalConfig::load(None, Some(&path), no_env).unwrap_err();
        assert!(error.to_string().contains("not a whole number"), "{error}");
        let error = WalConfig::load(None, None, no_env).unwrap_err();
        assert!(error.to_string().contains(STORE_VARIABLE), "{error}");
        let error = WalConfig::load(None, Some(&dir.path().join("none")), no_env).unwrap_err();
        assert!(
            error.to_string().contains("cannot read the config file"),
            "{error}"
        );
    }
}
