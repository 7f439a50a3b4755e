//! Store URLs: `s3://bucket/prefix` (with `?endpoint=…&region=…`), `file:///path` or a
//! directory path, read into a location and settings before any I/O; keys and prefixes
//! checked before they reach a server or the file system.

use std::path::PathBuf;

use super::{S3Settings, StoreError};

/// Where a store URL points, before any I/O.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Location {
    /// `prefix` is "" or ends with `/`.
    S3 {
        bucket: String,
        prefix: String,
    },
    Local(PathBuf),
}

/// Where `url` points, the form used in messages, and `settings` with what its query adds:
/// what [`Store::open_with`] opens, before any I/O (a drill's target check reads it too).
pub(crate) fn locate(
    url: &str,
    settings: &S3Settings,
) -> Result<(Location, String, S3Settings), StoreError> {
    let (url, options) = match url.split_once('?') {
        Some((url, query)) if url.starts_with("s3://") => (url, Some(query)),
        _ => (url, None),
    };
    let mut settings = settings.clone();
    if let Some(query) = options {
        apply_query(url, query, &mut settings)?;
    }
    let (location, display) = parse_url(url)?;
    Ok((location, display, settings))
}

/// `s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=eu-west-1`: where the store's
/// server is, when it is not the one the environment names (a mirror on another provider);
/// `listing=walk` for a server that keeps objects as files (see `s3/listing.rs`).
/// Credentials never go in a URL: they come from the environment or a profile.
fn apply_query(url: &str, query: &str, settings: &mut S3Settings) -> Result<(), StoreError> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value).ok_or_else(|| StoreError::InvalidUrl {
            url: url.to_owned(),
            reason: format!("bad %-escape in `{name}`"),
        })?;
        match name {
            "endpoint" => settings.endpoint = Some(value),
            "region" => settings.region = Some(value),
            "listing" if value == "walk" || value == "flat" => settings.walk = value == "walk",
            "listing" => {
                return Err(StoreError::InvalidUrl {
                    url: url.to_owned(),
                    reason: format!(
                        "`listing` is `flat` (the default: a request per 1,000 keys) or `walk` (a level at a time, for servers that keep objects as files), not `{value}`"
                    ),
                });
            }
            _ => {
                return Err(StoreError::InvalidUrl {
                    url: url.to_owned(),
                    reason: format!(
                        "unknown option `{name}`; an S3 store takes `endpoint`, `region` and `listing` (credentials come from the environment)"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Parses a store URL into its location and the form used in messages.
fn parse_url(url: &str) -> Result<(Location, String), StoreError> {
    let invalid = |reason: &str| StoreError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    if url.trim().is_empty() {
        return Err(invalid("it is empty"));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        let display = trim_trailing_slashes(url);
        return Ok((Location::Local(PathBuf::from(url)), display.to_owned()));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "s3" => {
            let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid("no bucket name after `s3://`"));
            }
            if !bucket
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            {
                return Err(invalid(
                    "a bucket name has only letters, digits, `.`, `-` and `_`",
                ));
            }
            let path = path.trim_end_matches('/');
            if path.is_empty() {
                return Ok((
                    Location::S3 {
                        bucket: bucket.to_owned(),
                        prefix: String::new(),
                    },
                    format!("s3://{bucket}"),
                ));
            }
            if let Some(reason) = bad_segment(path) {
                return Err(invalid(&format!("the prefix {reason}")));
            }
            Ok((
                Location::S3 {
                    bucket: bucket.to_owned(),
                    prefix: format!("{path}/"),
                },
                format!("s3://{bucket}/{path}"),
            ))
        }
        "file" => {
            // `file:///abs` (empty host) or `file://localhost/abs`; other hosts are not local.
            let path = rest.strip_prefix("localhost").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(invalid(
                    "a file URL needs an absolute path, like file:///var/backups",
                ));
            }
            let path = percent_decode(path).ok_or_else(|| invalid("bad %-escape in the path"))?;
            let display = format!("file://{}", trim_trailing_slashes(&path));
            Ok((Location::Local(PathBuf::from(path)), display))
        }
        other => Err(invalid(&format!(
            "unsupported scheme `{other}://`; expected s3://bucket/prefix, file:///path or a directory path"
        ))),
    }
}

fn trim_trailing_slashes(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() && !path.is_empty() {
        "/"
    } else {
        trimmed
    }
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result is not UTF-8.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Why a `/`-separated path is unusable as (part of) a key, if it is. Keys must mean the same
/// on S3 and on disk, so empty, `.` and `..` segments are refused: on disk they would
/// collapse or escape the store's directory.
fn bad_segment(path: &str) -> Option<&'static str> {
    if path.starts_with('/') {
        return Some("must not start with `/`");
    }
    if path.contains('\0') {
        return Some("must not contain a NUL byte");
    }
    for segment in path.split('/') {
        match segment {
            "" => return Some("must not contain an empty segment (`//` or a trailing `/`)"),
            "." | ".." => return Some("must not contain `.` or `..` segments"),
            _ => {}
        }
    }
    None
}

pub(super) fn check_key(url: &str, key: &str) -> Result<(), StoreError> {
    let reason = if key.is_empty() {
        Some("it is empty")
    } else {
        bad_segment(key)
    };
    match reason {
        Some(reason) => Err(StoreError::InvalidKey {
            url: url.to_owned(),
            key: key.to_owned(),
            reason: reason.to_owned(),
        }),
        None => Ok(()),
    }
}

/// A listing prefix may be empty, partial ("prod/2024-") or end with `/`.
pub(super) fn check_prefix(url: &str, prefix: &str) -> Result<(), StoreError> {
    let path = prefix.strip_suffix('/').unwrap_or(prefix);
    if path.is_empty() && prefix.is_empty() {
        return Ok(());
    }
    match bad_segment(path) {
        Some(reason) => Err(StoreError::InvalidKey {
            url: url.to_owned(),
            key: prefix.to_owned(),
            reason: format!("a prefix {reason}"),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::store::Store;

    #[tokio::test]
    async fn an_s3_url_may_name_its_endpoint_and_region() {
        let mut settings = S3Settings::default();
        apply_query(
            "s3://b/p",
            "endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=eu-west-1",
            &mut settings,
        )
        .expect("options");
        assert_eq!(settings.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(settings.region.as_deref(), Some("eu-west-1"));
        assert!(!settings.walk, "flat by default");
        apply_query("s3://b/p", "listing=walk", &mut settings).expect("walk");
        assert!(settings.walk);
        let error = apply_query("s3://b/p", "listing=deep", &mut settings).expect_err("refused");
        assert!(error.to_string().contains("not `deep`"), "{error}");
        let error = Store::open("s3://b/p?secret_key=x")
            .await
            .expect_err("refused");
        assert!(
            error.to_string().contains("unknown option `secret_key`"),
            "{error}"
        );
        assert!(!error.to_string().contains("=x"), "{error}");
    }

    fn s3(bucket: &str, prefix: &str) -> Location {
        Location::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        }
    }

    #[test]
    fn parses_s3_urls() {
        assert_eq!(
            parse_url("s3://bucket").unwrap(),
            (s3("bucket", ""), "s3://bucket".to_owned())
        );
        assert_eq!(
            parse_url("s3://bucket/").unwrap(),
            (s3("bucket", ""), "s3://bucket".to_owned())
        );
        assert_eq!(
            parse_url("s3://bucket/a/b/").unwrap(),
            (s3("bucket", "a/b/"), "s3://bucket/a/b".to_owned())
        );
        assert_eq!(
            parse_url("S3://my.bucket-1/prod").unwrap(),
            (
                s3("my.bucket-1", "prod/"),
                "s3://my.bucket-1/prod".to_owned()
            )
        );
    }

    #[test]
    fn rejects_bad_s3_urls() {
        for (url, reason) in [
            ("s3://", "no bucket name"),
            ("s3:///prefix", "no bucket name"),
            ("s3://bucket//a", "must not start with `/`"),
            ("s3://bucket/a//b", "empty segment"),
            ("s3://bucket/a/../b", "`..`"),
            ("s3://bu cket", "bucket name"),
        ] {
            let error = parse_url(url).unwrap_err().to_string();
            assert!(error.contains(reason), "{url}: {error}");
            assert!(error.contains(url), "{url}: {error}");
        }
    }

    #[test]
    fn parses_file_urls_and_paths() {
        assert_eq!(
            parse_url("file:///x").unwrap(),
            (Location::Local("/x".into()), "file:///x".to_owned())
        );
        assert_eq!(
            parse_url("file://localhost/var/my%20backups/").unwrap(),
            (
                Location::Local("/var/my backups".into()),
                "file:///var/my backups".to_owned()
            )
        );
        assert_eq!(
            parse_url("backups/prod/").unwrap(),
            (
                Location::Local("backups/prod/".into()),
                "backups/prod".to_owned()
            )
        );
        assert_eq!(
            parse_url("/").unwrap(),
            (Location::Local("/".into()), "/".to_owned())
        );
        assert!(parse_url("file://host/x").is_err());
        assert!(parse_url("file:///bad%zz").is_err());
        assert!(parse_url("").is_err());
        let error = parse_url("gs://bucket").unwrap_err().to_string();
        assert!(error.contains("unsupported scheme `gs://`"), "{error}");
    }

    #[test]
    fn checks_keys_and_prefixes() {
        assert!(check_key("s3://b", "prod/2024-01-01.dump").is_ok());
        for key in ["", "/abs", "a//b", "a/", "../x", "a/./b"] {
            assert!(check_key("s3://b", key).is_err(), "{key:?}");
        }
        for prefix in ["", "prod/", "prod/2024-", "a"] {
            assert!(check_prefix("s3://b", prefix).is_ok(), "{prefix:?}");
        }
        for prefix in ["/", "../", "a//", "/a"] {
            assert!(check_prefix("s3://b", prefix).is_err(), "{prefix:?}");
        }
    }
}
