//! PostgreSQL: SQL through tokio-postgres, and the environment that hands a connection to
//! `pg_dump`/`pg_restore` without putting the password on their command line.
//!
//! Every message names the server as `user@host:port/database`: never the password, and never
//! the URL as written (it may hold one).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config, NoTls};

use super::pg_tools::Version;

/// Where a connection goes, parsed from a `postgres://` URL or a `key=value` string.
#[derive(Clone)]
pub struct Target {
    config: Config,
    host: String,
    port: u16,
    user: String,
    database: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("not a PostgreSQL URL ({0}): expected postgres://user:password@host:port/database")]
    Url(String),
    #[error("cannot connect to PostgreSQL at {server}: {cause}")]
    Connect { server: String, cause: String },
    /// The server refused who we are (wrong password, no such role, pg_hba): trying again
    /// with the same credentials cannot help.
    #[error("cannot connect to PostgreSQL at {server}: {cause}")]
    Refused { server: String, cause: String },
    #[error("PostgreSQL at {server}: {cause}")]
    Query { server: String, cause: String },
}

impl PgError {
    /// Whether trying again cannot help: an invalid URL, an authentication refused.
    pub fn is_permanent(&self) -> bool {
        matches!(self, PgError::Url(_) | PgError::Refused { .. })
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.to_string())
    }
}

/// `user@host:port/database`: how the server is named in messages and outputs.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}@{}:{}/{}",
            self.user, self.host, self.port, self.database
        )
    }
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, PgError> {
        let mut config: Config = url.trim().parse().map_err(|error: tokio_postgres::Error| {
            // The parser's messages name the bad part, never echo the input.
            PgError::Url(error.to_string())
        })?;
        if config.get_user().is_none() {
            config.user(default_user());
        }
        if config.get_hosts().is_empty() {
            // libpq's default: the local socket when there is one.
            let socket = Path::new("/var/run/postgresql");
            if socket.is_dir() {
                config.host_path(socket);
            } else {
                config.host("localhost");
            }
        }
        let user = config.get_user().unwrap_or_default().to_string();
        if config.get_dbname().is_none() {
            config.dbname(&user);
        }
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(name)) => name.clone(),
            Some(Host::Unix(path)) => path.display().to_string(),
            None => "localhost".into(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let database = config.get_dbname().unwrap_or_default().to_string();
        Ok(Target {
            config,
            host,
            port,
            user,
            database,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Every (host, port) this client may connect to, in order: a multi-host list, each with
    /// its port (or the one port for all); where `hostaddr` is given, those addresses. A Unix
    /// socket's host is its directory.
    pub fn endpoints(&self) -> Vec<(String, u16)> {
        let ports = self.config.get_ports();
        let port = |i: usize| {
            ports
                .get(i)
                .or_else(|| ports.first())
                .copied()
                .unwrap_or(5432)
        };
        let addresses = self.config.get_hostaddrs();
        if !addresses.is_empty() {
            return addresses
                .iter()
                .enumerate()
                .map(|(i, address)| (address.to_string(), port(i)))
                .collect();
        }
        self.config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let name = match host {
                    Host::Tcp(name) => name.clone(),
                    Host::Unix(path) => path.display().to_string(),
                };
                (name, port(i))
            })
            .collect()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// The same server and credentials, another database (`postgres` to create one).
    pub fn with_database(&self, database: &str) -> Target {
        let mut config = self.config.clone();
        config.dbname(database);
        Target {
            config,
            database: database.to_string(),
            ..self.clone()
        }
    }

    pub fn has_password(&self) -> bool {
        self.config.get_password().is_some()
    }

    /// The URL with its password masked: `postgres://user:***@host:port/database`.
    pub fn shown_url(&self) -> String {
        let password = if self.config.get_password().is_some() {
            ":***"
        } else {
            ""
        };
        format!(
            "postgres://{}{password}@{}:{}/{}",
            self.user, self.host, self.port, self.database
        )
    }

    /// Connects, giving up after `limit`. The connection is driven by a task of its own.
    pub async fn connect(&self, limit: Duration) -> Result<Client, PgError> {
        let attempt = async {
            if self.config.get_ssl_mode() == SslMode::Require {
                self.open(tls()?).await
            } else {
                self.open(NoTls).await
            }
        };
        match tokio::time::timeout(limit, attempt).await {
            Ok(result) => result,
            Err(_) => Err(PgError::Connect {
                server: self.to_string(),
                cause: format!("no answer within {} s", limit.as_secs_f64()),
            }),
        }
    }

    async fn open<T>(&self, tls: T) -> Result<Client, PgError>
    where
        T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
        T::Stream: Send + 'static,
    {
        let (client, connection) = self.config.connect(tls).await.map_err(|e| {
            let (server, cause) = (self.to_string(), cause(&e));
            // SQLSTATE class 28: invalid authorization specification.
            if e.code().is_some_and(|state| state.code().starts_with("28")) {
                PgError::Refused { server, cause }
            } else {
                PgError::Connect { server, cause }
            }
        })?;
        // The connection does the I/O; it ends when the client is dropped.
        tokio::spawn(connection);
        Ok(client)
    }

    /// The variables libpq programs read, so the password never appears in their argv.
    pub fn program_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("PGHOST", self.host.clone()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", self.user.clone()),
            ("PGDATABASE", self.database.clone()),
            ("PGCONNECT_TIMEOUT", "10".into()),
            (
                "PGSSLMODE",
                match self.config.get_ssl_mode() {
                    SslMode::Require => "require",
                    SslMode::Disable => "disable",
                    _ => "prefer",
                }
                .into(),
            ),
        ];
        if let Some(password) = self.config.get_password() {
            env.push(("PGPASSWORD", String::from_utf8_lossy(password).into_owned()));
        }
        env
    }

    /// A query error, named with this server.
    pub fn error(&self, error: &tokio_postgres::Error) -> PgError {
        PgError::Query {
            server: self.to_string(),
            cause: cause(error),
        }
    }
}

/// The server's version (`SHOW server_version_num`: 150019 → 15.19).
pub async fn server_version(target: &Target, client: &Client) -> Result<Version, PgError> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| target.error(&e))?;
    let number: i32 = row.get(0);
    let number = number.max(0) as u32;
    Ok(Version {
        major: number / 10000,
        minor: number % 10000,
    })
}

/// `"name"` with embedded quotes doubled: an identifier safe to put in SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The most useful line of a tokio-postgres error: the server's message, or the I/O cause.
fn cause(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return db.message().to_string();
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text = inner.to_string();
        source = inner.source();
    }
    text
}

fn default_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "postgres".into())
}

/// `sslmode=require` as libpq means it: encrypted, the certificate not checked (a CA to check
/// against is what `verify-full` adds, which tokio-postgres does not parse).
fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, PgError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Url(format!("TLS setup failed: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_named_without_its_password() {
        let target = Target::parse("postgres://app:s3cret@db.internal:6432/orders").expect("url");
        assert_eq!(target.to_string(), "app@db.internal:6432/orders");
        assert_eq!(
            target.shown_url(),
            "postgres://app:***@db.internal:6432/orders"
        );
        assert!(
            target
                .program_env()
                .contains(&("PGPASSWORD", "s3cret".into()))
        );
        assert!(!format!("{target:?}").contains("s3cret"));
        assert_eq!(
            target.with_database("postgres").to_string(),
            "app@db.internal:6432/postgres"
        );
    }

    #[test]
    fn a_bad_url_is_refused_without_echoing_it() {
        let error = Target::parse("postgres://app:s3cret@host:notaport/db")
            .expect_err("bad port")
            .to_string();
        assert!(!error.contains("s3cret"), "{error}");
        assert!(error.starts_with("not a PostgreSQL URL"), "{error}");
    }

    #[tokio::test]
    async fn connects_to_this_machines_server_and_names_it_when_it_cannot() {
        let target = Target::parse("postgres://postgres@127.0.0.1:5432/postgres").expect("url");
        let client = target
            .connect(Duration::from_secs(10))
            .await
            .expect("local server");
        let version = server_version(&target, &client).await.expect("version");
        assert!(version.major >= 10);
        let error = Target::parse("postgres://nobody:pw@127.0.0.1:1/x")
            .expect("url")
            .connect(Duration::from_secs(10))
            .await
            .expect_err("nothing listens on port 1")
            .to_string();
        assert!(
            error.starts_with("cannot connect to PostgreSQL at nobody@127.0.0.1:1/x: "),
            "{error}"
        );
        assert!(!error.contains("pw"), "{error}");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("users"), "\"users\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
