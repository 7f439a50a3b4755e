//! Redis: a connection from a `redis://` or `rediss://` URL, with a connect timeout.
//!
//! Every message names the server as `host:port` (or `host:port/db`): never the password, and
//! never the URL as written (it may hold one).

use std::fmt;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionInfo, IntoConnectionInfo};

/// How long one command may wait for its answer. The client's own default (half a second) is
/// far too short for a FLUSHDB of a big database; a step's `timeout` bounds the whole step.
const RESPONSE_LIMIT: Duration = Duration::from_secs(120);

/// Where a connection goes, parsed from a Redis URL.
#[derive(Clone)]
pub struct Target {
    info: ConnectionInfo,
    host: String,
    port: u16,
    db: i64,
    tls: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("not a Redis URL ({0}): expected redis://[:password@]host[:port][/db] or rediss://...")]
    Url(String),
    #[error("cannot connect to Redis at {server}: {cause}")]
    Connect { server: String, cause: String },
    #[error("Redis at {server}: {cause}")]
    Command { server: String, cause: String },
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.to_string())
    }
}

/// `host:port/db`: how the server is named in messages and evidence.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/{}", self.address(), self.db)
    }
}

/// `host:port/db` for a URL, for messages; never the password.
pub fn describe(url: &str) -> String {
    match Target::parse(url) {
        Ok(target) => target.to_string(),
        Err(_) => "(an unparsable Redis URL)".into(),
    }
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, RedisError> {
        let url = url.trim();
        // The parser below also takes unix sockets and valkey schemes: drillbook promises the
        // two schemes it documents, and a socket path would name no host to check.
        let tls = if url.starts_with("rediss://") {
            true
        } else if url.starts_with("redis://") {
            false
        } else {
            return Err(RedisError::Url(
                "it must start with redis:// or rediss://".into(),
            ));
        };
        // The client's messages say what is wrong ("Invalid database number") without echoing
        // the input.
        let info = url
            .into_connection_info()
            .map_err(|e| RedisError::Url(e.to_string()))?;
        let (host, port) = match info.addr() {
            redis::ConnectionAddr::Tcp(host, port)
            | redis::ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port),
            other => return Err(RedisError::Url(format!("unexpected address {other}"))),
        };
        let db = info.redis_settings().db();
        Ok(Target {
            info,
            host,
            port,
            db,
            tls,
        })
    }

    /// The host as written in the URL (an IPv6 address without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn db(&self) -> i64 {
        self.db
    }

    /// `host:port`, as messages about connecting name the server.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Connects (and authenticates, and selects the database), giving up after `limit`.
    pub async fn connect(&self, limit: Duration) -> Result<MultiplexedConnection, RedisError> {
        if self.tls {
            // The client builds its TLS configuration from rustls' process-wide provider;
            // without one installed, rustls cannot choose between the two it was built with.
            // Installing fails harmlessly when one is already there.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        let failed = |cause: String| RedisError::Connect {
            server: self.address(),
            cause,
        };
        let client = redis::Client::open(self.info.clone()).map_err(|e| failed(self.cause(&e)))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(limit))
            .set_response_timeout(Some(RESPONSE_LIMIT));
        // The client's timeout covers the TCP connection; this one also covers name lookup
        // and the handshake (AUTH, SELECT).
        let attempt = client.get_multiplexed_async_connection_with_config(&config);
        match tokio::time::timeout(limit, attempt).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(failed(self.cause(&error))),
            Err(_) => Err(failed(format!(
                "no answer within {} s",
                limit.as_secs_f64()
            ))),
        }
    }

    /// A command's error, named with this server.
    pub fn error(&self, error: &redis::RedisError) -> RedisError {
        RedisError::Command {
            server: self.to_string(),
            cause: self.cause(error),
        }
    }

    /// One line saying what went wrong, in lower case like the rest of drillbook's messages.
    fn cause(&self, error: &redis::RedisError) -> String {
        let text = if error.is_connection_refusal() {
            "connection refused".to_string()
        } else if error.is_timeout() {
            "timed out".to_string()
        } else if error.kind() == redis::ErrorKind::AuthenticationFailed {
            "authentication failed (check the password in the URL)".to_string()
        } else if matches!(
            error.kind(),
            redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType
        ) {
            // What a web server or a proxy answers on the Redis port, typically.
            "the answer is not Redis's (is this a Redis server?)".to_string()
        } else if let (redis::ErrorKind::Server(_), Some(code), Some(detail)) =
            (error.kind(), error.code(), error.detail())
        {
            // As redis-cli shows it: `ERR DB index is out of range`.
            format!("{code} {detail}")
        } else {
            error.to_string()
        };
        let text = text.lines().next().unwrap_or_default().to_string();
        // The client's messages do not quote the password; make sure of it all the same.
        match self.info.redis_settings().password() {
            Some(password) if !password.is_empty() => text.replace(password, "***"),
            _ => text,
        }
    }
}

/// Keys per database from `INFO keyspace` (`db0:keys=12,expires=0,avg_ttl=0`), summed: what
/// FLUSHALL is about to remove, where DBSIZE sees one database only.
pub fn keys_in_keyspace(info: &str) -> u64 {
    info.lines()
        .filter(|line| line.starts_with("db"))
        .filter_map(|line| line.split_once(':'))
        .filter_map(|(_, fields)| {
            fields
                .split(',')
                .find_map(|field| field.strip_prefix("keys="))
                .and_then(|keys| keys.trim().parse::<u64>().ok())
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_named_without_its_password() {
        let target = Target::parse("redis://:s3cret@cache.internal:6380/3").expect("url");
        assert_eq!(target.to_string(), "cache.internal:6380/3");
        assert_eq!(target.address(), "cache.internal:6380");
        assert_eq!(target.host(), "cache.internal");
        assert!(!format!("{target:?}").contains("s3cret"));
        assert_eq!(describe("redis://127.0.0.1"), "127.0.0.1:6379/0");
        assert_eq!(describe("rediss://user:pw@[::1]:7000/2"), "[::1]:7000/2");
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        for url in [
            "http://:s3cret@host/1",
            "redis://:s3cret@host/notanumber",
            "unix:///tmp/redis.sock",
            "s3cret",
        ] {
            let error = Target::parse(url).expect_err(url).to_string();
            assert!(error.starts_with("not a Redis URL ("), "{error}");
            assert!(!error.contains("s3cret"), "{error}");
        }
        assert_eq!(describe("s3cret"), "(an unparsable Redis URL)");
    }

    #[test]
    fn the_keyspace_is_summed_over_databases() {
        let info = "# Keyspace\r\ndb0:keys=12,expires=0,avg_ttl=0\r\ndb11:keys=1200,expires=3,avg_ttl=0\r\n";
        assert_eq!(keys_in_keyspace(info), 1212);
        assert_eq!(keys_in_keyspace("# Keyspace\r\n"), 0);
    }

    #[tokio::test]
    async fn connects_to_this_machines_server_and_names_it_when_it_cannot() {
        let target = Target::parse("redis://127.0.0.1:6379/14").expect("url");
        let mut connection = target
            .connect(Duration::from_secs(10))
            .await
            .expect("local server");
        let pong: String = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .expect("ping");
        assert_eq!(pong, "PONG");
        let error = Target::parse("redis://:pw-s3cret@127.0.0.1:1/14")
            .expect("url")
            .connect(Duration::from_secs(10))
            .await
            .expect_err("nothing listens on port 1")
            .to_string();
        assert_eq!(
            error,
            "cannot connect to Redis at 127.0.0.1:1: connection refused"
        );
    }
}
