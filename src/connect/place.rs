//! What a target value points at, so that a drill can tell whether it would act on a live
//! target: a database server (resolved host, port, database), a bucket and prefix, a file.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// The thing a target value names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// A service on a host: `kind` (postgres, redis, http), the addresses its host resolves
    /// to (loopback addresses all count as this host), the port, and what on it (a database,
    /// a Redis database number, a URL path).
    Service {
        kind: &'static str,
        hosts: BTreeSet<String>,
        shown_host: String,
        port: u16,
        name: String,
    },
    /// A bucket and key prefix in object storage.
    Bucket { bucket: String, prefix: String },
    /// A local file or directory.
    File(PathBuf),
    /// Anything else, compared as written.
    Value(String),
}

const THIS_HOST: &str = "(this host)";

impl Place {
    /// Reads a target value. Resolves host names (DNS): call it off the async threads.
    pub fn of(value: &str) -> Place {
        let value = value.trim();
        let scheme = value.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("postgres" | "postgresql") => postgres(value),
            Some("redis" | "rediss") => redis(value),
            Some("http" | "https") => http(value),
            Some("s3") => {
                let rest = &value["s3://".len()..];
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                Place::Bucket {
                    bucket: bucket.to_string(),
                    prefix: prefix.trim_end_matches('/').to_string(),
                }
            }
            Some("file") => file(Path::new(&value["file://".len()..])),
            _ if value.starts_with('/') || value.starts_with("./") => file(Path::new(value)),
            _ if value.contains("host=") || value.contains("dbname=") => postgres(value),
            _ => Place::Value(value.to_string()),
        }
    }

    /// Whether acting on one may act on the other.
    pub fn overlaps(&self, other: &Place) -> bool {
        match (self, other) {
            (
                Place::Service {
                    kind,
                    hosts,
                    port,
                    name,
                    ..
                },
                Place::Service {
                    kind: other_kind,
                    hosts: other_hosts,
                    port: other_port,
                    name: other_name,
                    ..
                },
            ) => {
                kind == other_kind
                    && port == other_port
                    && name == other_name
                    && !hosts.is_disjoint(other_hosts)
            }
            (
                Place::Bucket { bucket, prefix },
                Place::Bucket {
                    bucket: other_bucket,
                    prefix: other_prefix,
                },
            ) => bucket == other_bucket && nested(prefix, other_prefix),
            (Place::File(a), Place::File(b)) => a.starts_with(b) || b.starts_with(a),
            (Place::Value(a), Place::Value(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Service {
                kind,
                shown_host,
                port,
                name,
                ..
            } => write!(f, "{kind} {shown_host}:{port} {name}"),
            Place::Bucket { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Place::File(path) => write!(f, "{}", path.display()),
            Place::Value(_) => write!(f, "the same value"),
        }
    }
}

/// One key prefix holds the other (`a/` and `a/b/` overlap; `a` and `ab` do not).
fn nested(a: &str, b: &str) -> bool {
    let within = |outer: &str, inner: &str| {
        outer.is_empty() || inner == outer || inner.starts_with(&format!("{outer}/"))
    };
    within(a, b) || within(b, a)
}

fn postgres(value: &str) -> Place {
    match super::postgres::Target::parse(value) {
        Ok(target) => service(
            "postgres",
            target.host(),
            target.port(),
            format!("database {}", target.database()),
        ),
        Err(_) => Place::Value(value.to_string()),
    }
}

fn redis(value: &str) -> Place {
    match reqwest::Url::parse(value) {
        Ok(url) => {
            let database = url.path().trim_matches('/');
            service(
                "redis",
                url.host_str().unwrap_or("localhost"),
                url.port().unwrap_or(6379),
                format!(
                    "database {}",
                    if database.is_empty() { "0" } else { database }
                ),
            )
        }
        Err(_) => Place::Value(value.to_string()),
    }
}

fn http(value: &str) -> Place {
    match reqwest::Url::parse(value) {
        Ok(url) => service(
            "http",
            url.host_str().unwrap_or("localhost"),
            url.port_or_known_default().unwrap_or(80),
            url.path().to_string(),
        ),
        Err(_) => Place::Value(value.to_string()),
    }
}

fn service(kind: &'static str, host: &str, port: u16, name: String) -> Place {
    Place::Service {
        kind,
        hosts: addresses(host, port),
        shown_host: host.to_string(),
        port,
        name,
    }
}

/// What a host name stands for: its addresses, with every loopback address (and a Unix
/// socket directory) as this host; the name itself when it does not resolve here.
fn addresses(host: &str, port: u16) -> BTreeSet<String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.starts_with('/') {
        return BTreeSet::from([THIS_HOST.to_string()]);
    }
    let resolved: BTreeSet<String> = (host, port)
        .to_socket_addrs()
        .map(|addrs| {
            addrs
                .map(|addr| match addr.ip() {
                    ip if is_loopback(ip) => THIS_HOST.to_string(),
                    ip => ip.to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    if resolved.is_empty() {
        BTreeSet::from([host.to_ascii_lowercase()])
    } else {
        resolved
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified(),
    }
}

/// A path as the file system knows it (symbolic links followed); for a file that does not
/// exist yet, its directory's real path.
fn file(path: &Path) -> Place {
    let real = path.canonicalize().ok().or_else(|| {
        let parent = path.parent()?.canonicalize().ok()?;
        Some(parent.join(path.file_name()?))
    });
    Place::File(real.unwrap_or_else(|| path.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlaps(a: &str, b: &str) -> bool {
        Place::of(a).overlaps(&Place::of(b))
    }

    #[test]
    fn the_same_database_through_another_name_of_this_host_overlaps() {
        assert!(overlaps(
            "postgres://app:pw@127.0.0.1:5432/app",
            "postgresql://other@localhost:5432/app"
        ));
        assert!(!overlaps(
            "postgres://app@127.0.0.1:5432/app",
            "postgres://app@127.0.0.1:5433/app"
        ));
        assert!(!overlaps(
            "postgres://app@127.0.0.1:5432/app",
            "postgres://app@127.0.0.1:5432/staging"
        ));
        assert!(!overlaps(
            "postgres://app@127.0.0.1:5432/app",
            "postgres://app@db-a.invalid:5432/app"
        ));
    }

    #[test]
    fn buckets_overlap_when_one_prefix_holds_the_other() {
        assert!(overlaps("s3://data/prod", "s3://data/prod/uploads"));
        assert!(overlaps("s3://data", "s3://data/staging"));
        assert!(!overlaps("s3://data/prod", "s3://data/production"));
        assert!(!overlaps("s3://data/prod", "s3://mirror/prod"));
    }

    #[test]
    fn redis_databases_and_files_are_told_apart() {
        assert!(overlaps("redis://127.0.0.1:6379/0", "redis://localhost"));
        assert!(!overlaps(
            "redis://127.0.0.1:6379/9",
            "redis://127.0.0.1:6379/0"
        ));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app.env");
        std::fs::write(&file, "").unwrap();
        let through_dot = format!("{}/./app.env", dir.path().display());
        assert!(overlaps(&file.display().to_string(), &through_dot));
        assert!(!overlaps(
            &file.display().to_string(),
            &format!("{}/other.env", dir.path().display())
        ));
    }

    #[test]
    fn http_services_compare_host_port_and_path() {
        assert!(overlaps(
            "http://127.0.0.1:8080/health",
            "http://localhost:8080/health"
        ));
        assert!(!overlaps(
            "http://127.0.0.1:8080/health",
            "http://127.0.0.1:8081/health"
        ));
    }
}
