//! An object store: the server (the URL's `?endpoint=`, else `AWS_ENDPOINT_URL_S3`, else
//! `AWS_ENDPOINT_URL`, else AWS itself), the bucket and the prefix by segments. Read with the
//! store connector's own URL parser, so both agree on what a URL means; a local directory
//! store is a file.

use std::fmt;

use super::file::File;
use super::host::Endpoint;
use super::http::{parse, web_endpoint};
use super::{Env, allow_schemes};
use crate::connect::store::{Location, S3Settings, StoreError, locate};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Store {
    server: Server,
    /// Lowercase: S3 bucket names are.
    bucket: String,
    /// Without a leading or trailing `/`; "" for the whole bucket.
    prefix: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Server {
    /// AWS S3, any region: bucket names are global there.
    Aws,
    /// An S3-compatible server.
    At { scheme: String, endpoint: Endpoint },
}

/// What a store value names.
pub(crate) enum Located {
    Bucket(Store),
    Directory(File),
}

impl Store {
    pub(crate) fn of(value: &str, env: &Env) -> Result<Located, String> {
        allow_schemes(value, &["s3", "file"], "an object store")?;
        let (location, _, settings) = locate(value, &S3Settings::default()).map_err(reason)?;
        let (bucket, prefix) = match location {
            Location::Local(path) => return File::of_path(&path, env).map(Located::Directory),
            Location::S3 { bucket, prefix } => (bucket, prefix),
        };
        let endpoint = settings
            .endpoint
            .filter(|endpoint| !endpoint.is_empty())
            .or_else(|| env.var("AWS_ENDPOINT_URL_S3").map(str::to_string))
            .or_else(|| env.var("AWS_ENDPOINT_URL").map(str::to_string));
        Ok(Located::Bucket(Store {
            server: match endpoint {
                Some(endpoint) => server(&endpoint, "the S3 endpoint", "an S3 endpoint")?,
                None => Server::Aws,
            },
            bucket: bucket.to_ascii_lowercase(),
            prefix: prefix.trim_matches('/').to_string(),
        }))
    }

    pub(crate) fn endpoint(&self) -> Option<&Endpoint> {
        self.server.endpoint()
    }

    /// The same server and bucket, and one prefix holds the other.
    pub(crate) fn overlaps(&self, other: &Store) -> bool {
        self.server.overlaps(&other.server)
            && self.bucket == other.bucket
            && super::nested(&self.prefix, &other.prefix)
    }
}

impl Server {
    pub(super) fn overlaps(&self, other: &Server) -> bool {
        match (self, other) {
            (Server::Aws, Server::Aws) => true,
            // http and https to one host and port reach one server.
            (Server::At { endpoint: a, .. }, Server::At { endpoint: b, .. }) => a.overlaps(b),
            _ => false,
        }
    }

    pub(super) fn endpoint(&self) -> Option<&Endpoint> {
        match self {
            Server::Aws => None,
            Server::At { endpoint, .. } => Some(endpoint),
        }
    }
}

/// ` on AWS`, ` at http://127.0.0.1:9000 (this host)`.
impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Server::Aws => write!(f, " on AWS"),
            Server::At { scheme, endpoint } => write!(
                f,
                " at {scheme}://{}{}",
                endpoint.shown(),
                endpoint.remarks()
            ),
        }
    }
}

/// `s3://bucket/prefix at http://127.0.0.1:9000 (this host)`, `s3://bucket on AWS`.
impl fmt::Display for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}", self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        self.server.fmt(f)
    }
}

/// An endpoint URL's server (`the`/`a` name it in messages: "the S3 endpoint", "an S3
/// endpoint"); AWS's own endpoints (any region) are AWS.
pub(super) fn server(endpoint: &str, the: &str, a: &str) -> Result<Server, String> {
    let url = parse(endpoint).map_err(|problem| format!("{the}: {problem}"))?;
    let host = super::host::host_name(url.host_str().unwrap_or_default());
    if host == "amazonaws.com"
        || host.ends_with(".amazonaws.com")
        || host.ends_with(".amazonaws.com.cn")
    {
        return Ok(Server::Aws);
    }
    let (scheme, endpoint) = web_endpoint(&url, a)?;
    Ok(Server::At { scheme, endpoint })
}

/// What is wrong with a store URL, without the URL (the identity's error says what was
/// expected).
pub(crate) fn reason(error: StoreError) -> String {
    match error {
        StoreError::InvalidUrl { reason, .. } => reason,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(value: &str, env: &Env) -> Store {
        match Store::of(value, env) {
            Ok(Located::Bucket(store)) => store,
            Ok(Located::Directory(_)) => panic!("{value}: a directory"),
            Err(error) => panic!("{value}: {error}"),
        }
    }

    fn overlaps(a: &str, b: &str) -> bool {
        let env = Env::new("/", "alice");
        store(a, &env).overlaps(&store(b, &env))
    }

    #[test]
    fn prefixes_nest_by_whole_segments() {
        assert!(overlaps("s3://data/prod", "s3://data/prod/uploads"));
        assert!(overlaps("s3://data/a/", "s3://data/a/b"));
        assert!(overlaps("s3://data", "s3://data/staging"));
        assert!(overlaps("s3://data/prod/", "s3://DATA/prod"));
        assert!(!overlaps("s3://data/a", "s3://data/ab"));
        assert!(!overlaps("s3://data/prod", "s3://data/production"));
        assert!(!overlaps("s3://data/prod", "s3://mirror/prod"));
    }

    #[test]
    fn the_endpoint_is_part_of_the_identity() {
        let local = "?endpoint=http://127.0.0.1:9000";
        assert!(overlaps(
            &format!("s3://b/p{local}"),
            "s3://b/p/q?endpoint=http%3A%2F%2Flocalhost%3A9000%2F"
        ));
        assert!(!overlaps(
            &format!("s3://b/p{local}"),
            "s3://b/p?endpoint=http://127.0.0.1:9001"
        ));
        assert!(!overlaps(&format!("s3://b/p{local}"), "s3://b/p"));
        assert!(overlaps(
            "s3://b/p",
            "s3://b/p?endpoint=https://s3.eu-west-1.amazonaws.com"
        ));
        assert!(overlaps(
            "s3://b?endpoint=http://127.0.0.1:80",
            "s3://b?endpoint=http://[::1]"
        ));
    }

    #[test]
    fn the_environment_names_the_endpoint_when_the_url_does_not() {
        let local = Env::new("/", "alice").with_var("AWS_ENDPOINT_URL", "http://127.0.0.1:9000");
        let s3_only = Env::new("/", "alice")
            .with_var("AWS_ENDPOINT_URL", "http://192.0.2.200:9000")
            .with_var("AWS_ENDPOINT_URL_S3", "http://localhost:9000");
        let explicit = store(
            "s3://b/p?endpoint=http://localhost:9000",
            &Env::new("/", "a"),
        );
        assert!(store("s3://b/p", &local).overlaps(&explicit));
        assert!(store("s3://b/p", &s3_only).overlaps(&explicit));
        assert!(!store("s3://b/p", &Env::new("/", "a")).overlaps(&explicit));
        assert_eq!(
            store("s3://b/p/", &local).to_string(),
            "s3://b/p at http://127.0.0.1:9000 (this host)"
        );
        assert_eq!(
            store("s3://b", &Env::new("/", "a")).to_string(),
            "s3://b on AWS"
        );
    }

    #[test]
    fn bad_store_urls_say_why() {
        let env = Env::new("/", "alice");
        for (value, problem) in [
            ("s3://", "no bucket"),
            ("s3://b/a//c", "empty segment"),
            ("s3://b?secret_key=x", "unknown option `secret_key`"),
            ("s3://b?endpoint=not a url", "not a URL"),
            ("s3://b?endpoint=ftp://h", "not an S3 endpoint"),
            ("gs://b", "not an object store"),
        ] {
            let error = Store::of(value, &env)
                .err()
                .unwrap_or_else(|| panic!("{value}"));
            assert!(error.contains(problem), "{value}: {error}");
            assert!(!error.contains("=x"), "{error}");
        }
        assert!(matches!(
            Store::of("backups/prod", &env),
            Ok(Located::Directory(_))
        ));
    }
}
