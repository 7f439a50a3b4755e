//! What a target value points at, by canonical identity rather than by text, so that a drill
//! can tell whether it would act on a live target however either is spelled: a PostgreSQL
//! database (every endpoint a connection string can reach, libpq's defaults applied), a Redis
//! database, a file, a bucket and prefix, an HTTP resource, a secret in AWS Secrets Manager,
//! or the whole server of a database.
//!
//! Reading a value looks things up (DNS, the file system, service files): call
//! [`Identity::of`] off the async threads.

mod aws_secret;
mod env;
mod file;
mod host;
mod http;
mod postgres;
mod redis;
mod store;

use std::fmt;

pub use env::Env;

/// What a parameter is known to hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// `postgres://…`, `postgresql://…`, or libpq `key=value` settings.
    Postgres,
    /// `redis://`, `rediss://`, `redis+unix://`, `unix://`.
    Redis,
    /// A path (absolute, relative to the working directory, `~/…`) or a `file://` URL.
    File,
    /// An object store: `s3://bucket/prefix`, or a local directory (a file).
    Store,
    /// `http://` or `https://`.
    Http,
    /// A secret in AWS Secrets Manager: its name or ARN, optionally `#field`.
    AwsSecret,
    /// Whichever the value's form says: its URL scheme, libpq settings, else a file path.
    Any,
}

impl Expect {
    fn noun(self) -> &'static str {
        match self {
            Expect::Postgres => "PostgreSQL target",
            Expect::Redis => "Redis target",
            Expect::File => "file path",
            Expect::Store => "object store",
            Expect::Http => "HTTP URL",
            Expect::AwsSecret => "AWS Secrets Manager secret",
            Expect::Any => "target",
        }
    }

    fn forms(self) -> &'static str {
        match self {
            Expect::Postgres => {
                "postgres://user@host:port/database, or settings such as `host=… port=… dbname=…`"
            }
            Expect::Redis => {
                "redis://host:port/N, rediss://host:port/N, or redis+unix:///path/to/socket?db=N"
            }
            Expect::File => {
                "an absolute path, a path relative to the working directory, ~/path, or file:///path"
            }
            Expect::Store => {
                "s3://bucket/prefix (optionally ?endpoint=…&region=…), file:///path, or a directory path"
            }
            Expect::Http => "http://host:port/path or https://host:port/path",
            Expect::AwsSecret => {
                "a secret's name or ARN, optionally with #field for a field of a JSON secret"
            }
            Expect::Any => {
                "a URL (postgres://, redis://, s3://, http://, https://, file://), PostgreSQL settings such as `host=… dbname=…`, or a file path"
            }
        }
    }
}

/// Why a value names no target: what in it is wrong, and what was expected. Never the value
/// itself, which may hold a password.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a usable {}: {problem}; expected {}", .expected.noun(), .expected.forms())]
pub struct IdentityError {
    expected: Expect,
    problem: String,
}

impl IdentityError {
    pub(crate) fn new(expected: Expect, problem: impl Into<String>) -> IdentityError {
        IdentityError {
            expected,
            problem: problem.into(),
        }
    }
}

/// The canonical identity of a target value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity(Kind);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Postgres(postgres::Postgres),
    Redis(redis::Redis),
    File(file::File),
    Store(store::Store),
    Http(http::Http),
    AwsSecret(aws_secret::AwsSecret),
}

impl Identity {
    /// Reads `value`, known to hold what `expect` says, in the surroundings `env`.
    pub fn of(value: &str, expect: Expect, env: &Env) -> Result<Identity, IdentityError> {
        let value = value.trim();
        let kind = match expect {
            Expect::Any => infer(value)?,
            known => known,
        };
        let wrong = |problem: String| IdentityError::new(kind, problem);
        let found = match kind {
            Expect::Postgres => Kind::Postgres(postgres::Postgres::of(value, env).map_err(wrong)?),
            Expect::Redis => Kind::Redis(redis::Redis::of(value, env).map_err(wrong)?),
            // `infer` never answers `Any`.
            Expect::File | Expect::Any => {
                Kind::File(file::File::of_value(value, env).map_err(wrong)?)
            }
            Expect::Store => match store::Store::of(value, env).map_err(wrong)? {
                store::Located::Bucket(store) => Kind::Store(store),
                store::Located::Directory(directory) => Kind::File(directory),
            },
            Expect::Http => Kind::Http(http::Http::of(value).map_err(wrong)?),
            Expect::AwsSecret => {
                Kind::AwsSecret(aws_secret::AwsSecret::of(value, env).map_err(wrong)?)
            }
        };
        Ok(Identity(found))
    }

    /// Whether it names a secret in AWS Secrets Manager.
    pub fn is_aws_secret(&self) -> bool {
        matches!(self.0, Kind::AwsSecret(_))
    }

    /// Whether it names a PostgreSQL database (or server).
    pub fn is_postgres(&self) -> bool {
        matches!(self.0, Kind::Postgres(_))
    }

    /// The whole server a PostgreSQL or Redis identity is on (what a server-wide operation
    /// such as FLUSHALL acts on); any other identity itself.
    pub fn server(&self) -> Identity {
        match &self.0 {
            Kind::Postgres(database) => Identity(Kind::Postgres(database.server())),
            Kind::Redis(database) => Identity(Kind::Redis(database.server())),
            _ => self.clone(),
        }
    }

    /// Whether acting on one may act on the other: the same thing, or one holds the other.
    pub fn overlaps(&self, other: &Identity) -> bool {
        match (&self.0, &other.0) {
            (Kind::Postgres(a), Kind::Postgres(b)) => a.overlaps(b),
            (Kind::Redis(a), Kind::Redis(b)) => a.overlaps(b),
            (Kind::File(a), Kind::File(b)) => a.overlaps(b),
            (Kind::Store(a), Kind::Store(b)) => a.overlaps(b),
            (Kind::Http(a), Kind::Http(b)) => a.overlaps(b),
            (Kind::AwsSecret(a), Kind::AwsSecret(b)) => a.overlaps(b),
            _ => false,
        }
    }

    /// The host names in it that do not resolve here (compared by name only): a caller may
    /// refuse to trust such an identity.
    pub fn unresolved(&self) -> Vec<String> {
        let endpoints = match &self.0 {
            Kind::Postgres(database) => database.endpoints(),
            Kind::Redis(database) => vec![database.endpoint()],
            Kind::Store(store) => store.endpoint().into_iter().collect(),
            Kind::Http(http) => vec![http.endpoint()],
            Kind::AwsSecret(secret) => secret.server().endpoint().into_iter().collect(),
            Kind::File(_) => Vec::new(),
        };
        endpoints
            .iter()
            .filter_map(|endpoint| endpoint.unresolved().map(str::to_string))
            .collect()
    }
}

/// For people, never with a credential: `PostgreSQL database live_db on 127.0.0.1:5432 (this
/// host)`, `Redis database 11 on 127.0.0.1:6379 (this host)`, `file /etc/app/env`,
/// `s3://bucket/prefix at http://127.0.0.1:9000 (this host)`.
impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Postgres(database) => database.fmt(f),
            Kind::Redis(database) => database.fmt(f),
            Kind::File(file) => file.fmt(f),
            Kind::Store(store) => store.fmt(f),
            Kind::Http(http) => http.fmt(f),
            Kind::AwsSecret(secret) => secret.fmt(f),
        }
    }
}

/// What a value of unknown kind holds, from its form.
fn infer(value: &str) -> Result<Expect, IdentityError> {
    if value.is_empty() {
        return Err(IdentityError::new(Expect::Any, "it is empty"));
    }
    let (scheme, has_authority) = scheme(value).unzip();
    let has_authority = has_authority.unwrap_or(false);
    Ok(match scheme.as_deref() {
        Some("postgres" | "postgresql") if has_authority => Expect::Postgres,
        Some(scheme) if redis::SCHEMES.contains(&scheme) => Expect::Redis,
        Some("http" | "https") => Expect::Http,
        Some("s3") if has_authority => Expect::Store,
        Some("file") if has_authority => Expect::File,
        Some(scheme) if has_authority => {
            return Err(IdentityError::new(
                Expect::Any,
                format!("drillbook does not know the scheme `{scheme}://`"),
            ));
        }
        _ if postgres::is_settings(value) => Expect::Postgres,
        _ => Expect::File,
    })
}

/// A URL's scheme, lowercase (the letters before the first `:`, when they form one), and
/// whether `//` follows it.
fn scheme(value: &str) -> Option<(String, bool)> {
    let (scheme, rest) = value.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| (scheme.to_ascii_lowercase(), rest.starts_with("//")))
}

/// Refuses a URL whose scheme is not one of `allowed`: it names something other than `what`.
/// (A value without `scheme://` is a path.)
pub(crate) fn allow_schemes(value: &str, allowed: &[&str], what: &str) -> Result<(), String> {
    match scheme(value) {
        Some((scheme, true)) if !allowed.contains(&scheme.as_str()) => {
            Err(format!("a `{scheme}://` URL is not {what}"))
        }
        _ => Ok(()),
    }
}

/// One `/`-separated path holds the other, by whole segments (`a/` holds `a/b`; `a` does not
/// hold `ab`); empty segments do not count, so the empty path holds everything.
pub(crate) fn nested(a: &str, b: &str) -> bool {
    let segments = |path: &str| -> Vec<String> {
        path.split('/')
            .filter(|segment| !segment.is_empty())
            .map(str::to_string)
            .collect()
    };
    let (a, b) = (segments(a), segments(b));
    a.starts_with(&b) || b.starts_with(&a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env::new("/", "alice")
    }

    fn identity(value: &str) -> Identity {
        Identity::of(value, Expect::Any, &env()).unwrap_or_else(|e| panic!("{value}: {e}"))
    }

    fn overlaps(a: &str, b: &str) -> bool {
        identity(a).overlaps(&identity(b))
    }

    #[test]
    fn the_form_says_the_kind() {
        let shown = |value: &str| identity(value).to_string();
        assert!(shown("postgres://u@127.0.0.1/app").starts_with("PostgreSQL database app on"));
        assert!(shown("host=127.0.0.1 dbname=app").starts_with("PostgreSQL database app on"));
        assert!(shown("redis://127.0.0.1/2").starts_with("Redis database 2 on"));
        assert!(shown("unix:/run/redis.sock").starts_with("Redis database 0 on socket"));
        assert!(shown("https://127.0.0.1/x").starts_with("https://127.0.0.1:443/x"));
        assert!(shown("s3://bucket/prefix").starts_with("s3://bucket/prefix"));
        assert_eq!(shown("file:///etc/passwd"), "file /etc/passwd");
        assert_eq!(shown("/etc/passwd"), "file /etc/passwd");
        // Not a URL: a path relative to the working directory (here `/`).
        assert_eq!(shown("cache.internal"), "file /cache.internal");
        assert_eq!(shown("localhost:5432"), "file /localhost:5432");
    }

    /// The spellings reported in issue 14, each of which got a drill past the old check.
    #[test]
    fn the_bypasses_of_issue_14_are_caught() {
        let redis = identity("redis://127.0.0.1:6379/11");
        assert!(identity("redis://127.0.0.1:6379/011").overlaps(&redis));
        assert!(identity("redis://127.0.0.1:6379/+11").overlaps(&redis));
        let flushall = identity("redis://127.0.0.1:6379/3").server();
        assert!(flushall.overlaps(&redis));
        assert!(!identity("redis://127.0.0.1:6379/3").overlaps(&redis));

        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("real tempdir");
        std::fs::create_dir_all(root.join("x")).expect("mkdir");
        std::fs::write(root.join("x/live.env"), "").expect("write");
        let live = format!("{}/x/live.env", root.display());
        let live = Identity::of(&live, Expect::Any, &env()).expect("live");
        let in_x = Env::new(root.join("x"), "alice");
        let in_y = Env::new(root.join("y"), "alice");
        for (value, env) in [("live.env", &in_x), ("../x/live.env", &in_y)] {
            let drill = Identity::of(value, Expect::Any, env).expect(value);
            assert!(drill.overlaps(&live), "{value}");
        }
        assert!(
            !Identity::of("live.env", Expect::Any, &in_y)
                .expect("y")
                .overlaps(&live)
        );

        let database = identity("postgres://app@127.0.0.1:5432/live_db");
        for drill in [
            "postgresql://u@nothere.invalid,127.0.0.1:5432/live_db",
            "postgresql://u@nothere.invalid/live_db?hostaddr=127.0.0.1",
        ] {
            assert!(identity(drill).overlaps(&database), "{drill}");
        }
        if let Some(address) = host::interface_address() {
            let host = match address {
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                v4 => v4.to_string(),
            };
            let drill = identity(&format!("postgres://u@{host}:5432/live_db"));
            assert!(drill.overlaps(&database), "{drill}");
        }
    }

    #[test]
    fn kinds_never_overlap_one_another() {
        assert!(!overlaps(
            "postgres://127.0.0.1:6379/0",
            "redis://127.0.0.1:6379/0"
        ));
        assert!(!overlaps(
            "http://127.0.0.1:9000/b",
            "s3://b?endpoint=http://127.0.0.1:9000"
        ));
        assert!(!overlaps("/b", "s3://b"));
        // A local directory store is a directory.
        let store = Identity::of("file:///var/backups", Expect::Store, &env()).expect("store");
        assert!(store.overlaps(&identity("/var/backups/prod.dump")));
    }

    #[test]
    fn the_whole_server_holds_its_databases() {
        let flushall = identity("redis://127.0.0.1:6379/3").server();
        assert!(flushall.overlaps(&identity("redis://localhost/11")));
        assert!(!flushall.overlaps(&identity("redis://localhost:6380/11")));
        assert_eq!(
            flushall.to_string(),
            "Redis server on 127.0.0.1:6379 (this host)"
        );
        let cluster = identity("postgres://u@127.0.0.1/a").server();
        assert!(cluster.overlaps(&identity("postgres://u@localhost/b")));
        assert!(!cluster.overlaps(&identity("postgres://u@localhost:5433/b")));
        let file = identity("/etc/passwd");
        assert_eq!(file.server(), file);
    }

    #[test]
    fn unknown_or_empty_values_are_refused_with_what_was_expected() {
        for value in ["", "  ", "mysql://u:secret@db/app", "ftp://x/y"] {
            let error = Identity::of(value, Expect::Any, &env()).expect_err(value);
            let text = error.to_string();
            assert!(text.contains("expected a URL"), "{text}");
            assert!(!text.contains("secret"), "{text}");
        }
        let error =
            Identity::of("redis://h.invalid/x", Expect::Postgres, &env()).expect_err("redis");
        assert!(
            error
                .to_string()
                .starts_with("not a usable PostgreSQL target"),
            "{error}"
        );
    }

    #[test]
    fn no_input_panics() {
        let mut values: Vec<String> = [
            "",
            ":",
            "://",
            "?",
            "@",
            "%",
            "%zz",
            "%00",
            "[",
            "]",
            "[::1",
            "postgres://",
            "postgres://[",
            "postgres://%",
            "postgres://h.invalid:99999999999999999999/db",
            "postgres://h.invalid:-1/db",
            "postgres://,,,/db?port=1,2",
            "host='unterminated",
            "host=a\\",
            "host",
            "host =",
            "= =",
            "redis://",
            "redis://h.invalid:0/",
            "redis://h.invalid/%",
            "redis://h.invalid/99999999999999999999",
            "redis+unix://",
            "unix:",
            "s3://",
            "s3://b?%",
            "s3://b?endpoint=%zz",
            "s3://b?endpoint=::",
            "http://",
            "http://[::1",
            "file://",
            "file://%zz",
            "~",
            "~/",
            "\u{0}",
            "\u{fffd}\u{fffd}",
            "ö://ä",
            "/\u{0}/x",
        ]
        .iter()
        .map(|value| value.to_string())
        .collect();
        values.push("a".repeat(100_000));
        values.push(format!("postgres://{}", "h,".repeat(1000)));
        values.push(format!("host={}", "'".repeat(3)));
        for value in &values {
            for expect in [
                Expect::Any,
                Expect::Postgres,
                Expect::Redis,
                Expect::File,
                Expect::Store,
                Expect::Http,
            ] {
                if let Ok(identity) = Identity::of(value, expect, &env()) {
                    let _ = identity.to_string();
                    let _ = identity.overlaps(&identity.server());
                }
            }
        }
    }

    #[test]
    fn nesting_is_by_whole_segments() {
        assert!(nested("a/", "a/b"));
        assert!(nested("a", "a"));
        assert!(nested("", "a/b"));
        assert!(nested("/a/b/", "a"));
        assert!(!nested("a", "ab"));
        assert!(!nested("a/b", "a/c"));
    }
}
