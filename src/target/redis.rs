//! A Redis database: the server (host resolved and port, or a unix socket of this machine)
//! and the database number however it is written (`/11`, `/011`, `/+11`, `?db=11`), or the
//! whole server for server-wide operations (FLUSHALL).

use std::fmt;
use std::path::Path;

use super::Env;
use super::file::real_path;
use super::host::Endpoint;
use super::http::parse;
use crate::connect::store::percent_decode;

/// The schemes Redis clients take (redis-rs also takes Valkey's).
pub(crate) const SCHEMES: &[&str] = &[
    "redis",
    "rediss",
    "redis+unix",
    "unix",
    "valkey",
    "valkeys",
    "valkey+unix",
];

const DEFAULT_PORT: u16 = 6379;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Redis {
    endpoint: Endpoint,
    /// `None`: the whole server.
    database: Option<Database>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Database {
    number: u64,
    /// Named by `?db=` alone on a TCP URL, which some clients (redis-rs, so drillbook's own)
    /// ignore: they use database 0.
    or_zero: bool,
}

impl Database {
    fn numbers(self) -> [u64; 2] {
        [self.number, if self.or_zero { 0 } else { self.number }]
    }
}

impl Redis {
    pub(crate) fn of(value: &str, env: &Env) -> Result<Redis, String> {
        let url = parse(value)?;
        let scheme = url.scheme();
        if !SCHEMES.contains(&scheme) {
            return Err(format!("a `{scheme}:` URL is not a Redis one"));
        }
        let from_query = url
            .query_pairs()
            .filter(|(name, _)| name == "db")
            .last()
            .map(|(_, number)| database(&number))
            .transpose()?;
        let (endpoint, from_path) = if scheme.ends_with("unix") {
            let path = url
                .to_file_path()
                .map_err(|()| "a unix socket URL needs the socket's absolute path".to_string())?;
            let path = real_path(&env.working_dir().join(path));
            // Clients read a socket's database from `?db=` only.
            (socket(&path), None)
        } else {
            let host = match url.host_str() {
                Some(host) if !host.is_empty() => host,
                _ => return Err("it names no host".to_string()),
            };
            let host = percent_decode(host).ok_or("bad %-escape in the host")?;
            let path = percent_decode(url.path()).ok_or("bad %-escape in the database number")?;
            let number = match path.trim_matches('/') {
                "" => None,
                number => Some(database(number)?),
            };
            // Resolved last: a value that is wrong anyway costs no lookup.
            let endpoint = Endpoint::tcp(&host, url.port().unwrap_or(DEFAULT_PORT));
            (endpoint, number)
        };
        // Clients disagree on which one wins (redis-rs: the path; redis-py: the query).
        let database = match (from_path, from_query) {
            (Some(path), Some(query)) if path != query => {
                return Err(format!(
                    "it names database {path} in its path and {query} in `?db=`"
                ));
            }
            (Some(number), _) => Database {
                number,
                or_zero: false,
            },
            (None, Some(number)) => Database {
                number,
                or_zero: !scheme.ends_with("unix"),
            },
            (None, None) => Database {
                number: 0,
                or_zero: false,
            },
        };
        Ok(Redis {
            endpoint,
            database: Some(database),
        })
    }

    pub(crate) fn server(&self) -> Redis {
        Redis {
            database: None,
            ..self.clone()
        }
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The same server, and the same database or the whole server.
    pub(crate) fn overlaps(&self, other: &Redis) -> bool {
        let same_database = match (self.database, other.database) {
            (Some(a), Some(b)) => a.numbers().iter().any(|n| b.numbers().contains(n)),
            _ => true,
        };
        same_database && self.endpoint.overlaps(&other.endpoint)
    }
}

/// `Redis database 11 on 127.0.0.1:6379 (this host)`, `Redis server on …`.
impl fmt::Display for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.database {
            Some(Database {
                number,
                or_zero: false,
            }) => write!(f, "Redis database {number} on {}", self.endpoint),
            Some(Database {
                number,
                or_zero: true,
            }) => write!(
                f,
                "Redis database {number} (or 0, for clients that ignore `?db=`) on {}",
                self.endpoint
            ),
            None => write!(f, "Redis server on {}", self.endpoint),
        }
    }
}

fn socket(path: &Path) -> Endpoint {
    Endpoint::socket(
        format!("socket {}", path.display()),
        path.to_path_buf(),
        None,
    )
}

/// A database number as clients read it: decimal, leading zeros and `+` allowed.
fn database(text: &str) -> Result<u64, String> {
    let shown: String = text.chars().take(20).collect();
    match text.parse::<i64>() {
        Ok(number) => {
            u64::try_from(number).map_err(|_| format!("the database number `{shown}` is negative"))
        }
        Err(_) => Err(format!(
            "the database `{shown}` is not a number (Redis databases are 0, 1, 2, …)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis(value: &str) -> Redis {
        Redis::of(value, &Env::new("/", "alice")).unwrap_or_else(|e| panic!("{value}: {e}"))
    }

    fn overlaps(a: &str, b: &str) -> bool {
        redis(a).overlaps(&redis(b))
    }

    #[test]
    fn a_database_number_however_written() {
        let live = "redis://127.0.0.1:6379/11";
        for spelling in [
            "redis://127.0.0.1:6379/011",
            "redis://127.0.0.1:6379/+11",
            "redis://127.0.0.1:6379/11/",
            "redis://127.0.0.1/11",
            "redis://LOCALHOST:6379/11",
            "redis://[::1]:6379/11",
            "rediss://:secret@localhost:6379/11",
            "redis://127.0.0.1:6379?db=11",
            "redis://127.0.0.1:6379/11?db=011",
            "redis://127.0.0.1:6379/%31%31",
            "valkey://127.0.0.1:6379/11",
        ] {
            assert!(overlaps(spelling, live), "{spelling}");
        }
        assert!(overlaps("redis://localhost", "redis://127.0.0.1:6379/0"));
        // drillbook's own client reads a TCP URL's database from its path only.
        assert!(overlaps(
            "redis://127.0.0.1:6379?db=11",
            "redis://127.0.0.1:6379/0"
        ));
        assert!(!overlaps(
            "redis://127.0.0.1:6379/11?db=11",
            "redis://127.0.0.1:6379/0"
        ));
        for other in [
            "redis://127.0.0.1:6379/1",
            "redis://127.0.0.1:6379/110",
            "redis://127.0.0.1:6380/11",
            "redis://127.0.0.1:6379",
            "redis://127.0.0.1:6379/1?db=1",
            "redis://127.0.0.1:6379?db=12",
            "redis://192.0.2.200:6379/11",
        ] {
            assert!(!overlaps(other, live), "{other}");
        }
    }

    #[test]
    fn a_server_wide_operation_is_on_every_database() {
        let flushall = redis("redis://localhost:6379/0").server();
        assert!(flushall.overlaps(&redis("redis://127.0.0.1:6379/11")));
        assert!(redis("redis://127.0.0.1:6379/11").overlaps(&flushall));
        assert!(!flushall.overlaps(&redis("redis://127.0.0.1:6380/11")));
        assert_eq!(
            flushall.to_string(),
            "Redis server on localhost:6379 (this host)"
        );
    }

    #[test]
    fn unix_sockets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().canonicalize().expect("real");
        let socket = real.join("redis.sock");
        std::fs::write(&socket, "").expect("a stand-in for the socket");
        std::os::unix::fs::symlink(&socket, real.join("link.sock")).expect("symlink");
        let url = |name: &str, scheme: &str, query: &str| {
            format!("{scheme}://{}/{name}{query}", real.display())
        };
        let live = redis(&url("redis.sock", "redis+unix", "?db=2"));
        assert_eq!(
            live.to_string(),
            format!(
                "Redis database 2 on socket {} (this host)",
                socket.display()
            )
        );
        assert!(redis(&url("link.sock", "unix", "?db=02")).overlaps(&live));
        assert!(!redis(&url("redis.sock", "unix", "?db=3")).overlaps(&live));
        assert!(!redis(&url("other.sock", "unix", "?db=2")).overlaps(&live));
        // The socket's server may also listen on any TCP port of this host.
        assert!(redis("redis://localhost:6390/2").overlaps(&live));
        assert!(!redis("redis://192.0.2.200:6379/2").overlaps(&live));
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        let env = Env::new("/", "alice");
        for (value, problem) in [
            ("redis://127.0.0.1/abc", "is not a number"),
            ("redis://127.0.0.1/-1", "negative"),
            ("redis://127.0.0.1/1/2", "is not a number"),
            ("redis://127.0.0.1/99999999999999999999", "is not a number"),
            ("redis://127.0.0.1/1?db=2", "database 1 in its path and 2"),
            ("redis://127.0.0.1?db=x", "is not a number"),
            ("redis://127.0.0.1:99999/1", "not a URL"),
            ("redis:///1", "no host"),
            ("redis://%zz/1", "%-escape"),
            ("http://127.0.0.1/1", "not a Redis one"),
            ("unix:relative.sock", "absolute path"),
        ] {
            let error = Redis::of(value, &env).expect_err(value);
            assert!(error.contains(problem), "{value}: {error}");
        }
    }
}
