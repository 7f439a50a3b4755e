//! A PostgreSQL database as libpq finds it: every endpoint a connection string can reach (each
//! host of a multi-host list with its port, `hostaddr` where given, unix-socket directories),
//! with what the value leaves out filled in as libpq fills it — a service from the service
//! files, then `PG*` variables, then the compiled-in defaults (the local socket directory, port
//! 5432, the OS user, a database named after the user).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use super::Env;
use super::host::{Endpoint, numeric_address};
use crate::connect::store::percent_decode;

/// The settings that say where a connection goes, each with the variable libpq reads when
/// neither the value nor its service sets it. Other settings do not change the target.
const SETTINGS: [(&str, &str); 6] = [
    ("host", "PGHOST"),
    ("hostaddr", "PGHOSTADDR"),
    ("port", "PGPORT"),
    ("dbname", "PGDATABASE"),
    ("user", "PGUSER"),
    ("service", "PGSERVICE"),
];

const DEFAULT_PORT: u16 = 5432;

type Settings = BTreeMap<&'static str, String>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Postgres {
    endpoints: Vec<Endpoint>,
    /// `None`: the whole server.
    database: Option<String>,
}

impl Postgres {
    /// A `postgres://` or `postgresql://` URI, or libpq's `key=value` settings.
    pub(crate) fn of(value: &str, env: &Env) -> Result<Postgres, String> {
        let mut settings = match uri_rest(value) {
            Some(rest) => uri(rest)?,
            None => {
                super::allow_schemes(value, &[], "a PostgreSQL one")?;
                conninfo(value)?
            }
        };
        service(&mut settings, env)?;
        for (name, variable) in SETTINGS {
            if !settings.contains_key(name)
                && let Some(value) = env.var(variable)
            {
                settings.insert(name, value.to_string());
            }
        }
        let set = |name: &str| settings.get(name).filter(|value| !value.is_empty());
        let user = set("user").map_or(env.user(), String::as_str);
        let database = set("dbname").map_or(user, String::as_str).to_string();
        Ok(Postgres {
            endpoints: endpoints(&settings, env)?,
            database: Some(database),
        })
    }

    pub(crate) fn server(&self) -> Postgres {
        Postgres {
            database: None,
            ..self.clone()
        }
    }

    pub(crate) fn endpoints(&self) -> Vec<&Endpoint> {
        self.endpoints.iter().collect()
    }

    /// A shared endpoint, and the same database or the whole server.
    pub(crate) fn overlaps(&self, other: &Postgres) -> bool {
        let same_database = match (&self.database, &other.database) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        same_database
            && self
                .endpoints
                .iter()
                .any(|a| other.endpoints.iter().any(|b| a.overlaps(b)))
    }
}

/// `PostgreSQL database live_db on 127.0.0.1:5432 (this host)`.
impl fmt::Display for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoints: Vec<String> = self.endpoints.iter().map(ToString::to_string).collect();
        let endpoints = endpoints.join(", ");
        match &self.database {
            Some(database) => write!(f, "PostgreSQL database {database} on {endpoints}"),
            None => write!(f, "PostgreSQL server on {endpoints}"),
        }
    }
}

/// Whether a value without a URL scheme is libpq settings: it starts like one and sets
/// where to connect.
pub(crate) fn is_settings(value: &str) -> bool {
    if !value.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return false;
    }
    value.char_indices().any(|(at, _)| {
        let starts_word = at == 0 || value[..at].ends_with(|c: char| space(&c));
        starts_word
            && SETTINGS.iter().any(|(name, _)| {
                value[at..].strip_prefix(name).is_some_and(|rest| {
                    rest.trim_start_matches(|c: char| space(&c))
                        .starts_with('=')
                })
            })
    })
}

/// What follows `postgresql://` or `postgres://` (libpq's two prefixes), if one starts it.
fn uri_rest(value: &str) -> Option<&str> {
    ["postgresql://", "postgres://"].iter().find_map(|prefix| {
        let head = value.get(..prefix.len())?;
        head.eq_ignore_ascii_case(prefix)
            .then(|| &value[prefix.len()..])
    })
}

/// `[user[:password]@][host[:port][,…]][/dbname][?name=value&…]`, read as libpq reads it:
/// the hosts and ports become comma-separated lists, percent-escapes are decoded, and the
/// query's settings override the rest.
fn uri(rest: &str) -> Result<Settings, String> {
    let mut settings = Settings::new();
    let mut rest = rest;
    // Credentials end at the first `@` before any `/`; the password is not part of a target.
    if let Some(at) = rest
        .find(['@', '/'])
        .filter(|&at| rest[at..].starts_with('@'))
    {
        let user = rest[..at].split(':').next().unwrap_or_default();
        let user = decode(user, "the user name")?;
        if !user.is_empty() {
            settings.insert("user", user);
        }
        rest = &rest[at + 1..];
    }
    let (mut hosts, mut ports) = (Vec::new(), Vec::new());
    loop {
        let host;
        if let Some(inner) = rest.strip_prefix('[') {
            let end = inner
                .find(']')
                .ok_or("an IPv6 address has no closing `]`")?;
            host = &inner[..end];
            rest = &inner[end + 1..];
        } else {
            let end = rest.find([':', '/', '?', ',']).unwrap_or(rest.len());
            host = &rest[..end];
            rest = &rest[end..];
        }
        let mut port = "";
        if let Some(after) = rest.strip_prefix(':') {
            let end = after.find(['/', '?', ',']).unwrap_or(after.len());
            port = &after[..end];
            rest = &after[end..];
        }
        hosts.push(host);
        ports.push(port);
        match rest.strip_prefix(',') {
            Some(next) => rest = next,
            None => break,
        }
    }
    let (hosts, ports) = (hosts.join(","), ports.join(","));
    if !hosts.is_empty() {
        settings.insert("host", decode(&hosts, "a host")?);
    }
    if !ports.is_empty() {
        settings.insert("port", decode(&ports, "a port")?);
    }
    if let Some(after) = rest.strip_prefix('/') {
        let end = after.find('?').unwrap_or(after.len());
        let database = decode(&after[..end], "the database name")?;
        if !database.is_empty() {
            settings.insert("dbname", database);
        }
        rest = &after[end..];
    }
    match rest.strip_prefix('?') {
        Some(query) => {
            for pair in query.split('&').filter(|pair| !pair.is_empty()) {
                let (name, value) = pair.split_once('=').ok_or("a query parameter has no `=`")?;
                if let Some(name) = known(&decode(name, "a query parameter's name")?) {
                    settings.insert(name, decode(value, "a query parameter")?);
                }
            }
        }
        None if !rest.is_empty() => return Err("unexpected text after the hosts".to_string()),
        None => {}
    }
    Ok(settings)
}

/// `key = value` settings, a value in single quotes when it holds spaces, `\` escaping the
/// next character. Errors count settings rather than quote them: a value may be a password.
fn conninfo(value: &str) -> Result<Settings, String> {
    let mut settings = Settings::new();
    let mut chars = value.chars().peekable();
    let skip_spaces = |chars: &mut std::iter::Peekable<std::str::Chars>| {
        while chars.next_if(space).is_some() {}
    };
    for count in 1.. {
        skip_spaces(&mut chars);
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| !space(c) && *c != '=') {
            name.push(c);
        }
        skip_spaces(&mut chars);
        if chars.next() != Some('=') {
            return Err(format!(
                "setting {count} has no `=` (a value with spaces goes in quotes: password='a b')"
            ));
        }
        skip_spaces(&mut chars);
        let mut text = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(format!("the quoted value of setting {count} is not closed"));
                    }
                    Some('\\') => text.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => text.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !space(c)) {
                match c {
                    '\\' => text.extend(chars.next()),
                    c => text.push(c),
                }
            }
        }
        if let Some(name) = known(&name) {
            settings.insert(name, text);
        }
    }
    Ok(settings)
}

/// White space as libpq's parser knows it (C's `isspace`).
fn space(c: &char) -> bool {
    c.is_ascii_whitespace() || *c == '\x0b'
}

fn known(name: &str) -> Option<&'static str> {
    SETTINGS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(known, _)| *known)
}

fn decode(text: &str, what: &str) -> Result<String, String> {
    match percent_decode(text) {
        Some(decoded) if decoded.contains('\0') => Err(format!("{what} holds %00")),
        Some(decoded) => Ok(decoded),
        None => Err(format!("bad %-escape in {what}")),
    }
}

/// Fills in what a service (`service=`, else `PGSERVICE`) sets and the value does not: from
/// the user's service file (`PGSERVICEFILE`, else `~/.pg_service.conf`), else the system's
/// (`PGSYSCONFDIR`, else libpq's compiled-in directory, `/pg_service.conf`).
fn service(settings: &mut Settings, env: &Env) -> Result<(), String> {
    let name = match settings.get("service") {
        Some(name) => name.clone(),
        None => env.var("PGSERVICE").unwrap_or_default().to_string(),
    };
    if name.is_empty() {
        return Ok(());
    }
    let user_file = match env.var("PGSERVICEFILE") {
        Some(file) => Some(env.working_dir().join(file)),
        None => env.home().map(|home| home.join(".pg_service.conf")),
    };
    let system_dir = env
        .var("PGSYSCONFDIR")
        .map(|dir| env.working_dir().join(dir))
        .unwrap_or_else(|| env.sysconf_dir().to_path_buf());
    let files: Vec<PathBuf> = user_file
        .into_iter()
        .chain([system_dir.join("pg_service.conf")])
        .collect();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let shown = file.display();
        if let Some(found) =
            section(&text, &name).map_err(|problem| format!("{shown}: {problem}"))?
        {
            for (key, value) in found {
                settings.entry(key).or_insert(value);
            }
            return Ok(());
        }
    }
    let files: Vec<String> = files
        .iter()
        .map(|file| file.display().to_string())
        .collect();
    Err(format!(
        "the service `{name}` is not defined in {}",
        files.join(" or ")
    ))
}

/// The settings of `[name]` in a service file, if it has that section (the first of two
/// values for one setting counts, as in libpq).
fn section(text: &str, name: &str) -> Result<Option<Vec<(&'static str, String)>>, String> {
    let mut found: Option<Vec<(&'static str, String)>> = None;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            if found.is_some() {
                break;
            }
            if header
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(']'))
            {
                found = Some(Vec::new());
            }
            continue;
        }
        let Some(settings) = found.as_mut() else {
            continue;
        };
        let line_number = number + 1;
        let (key, value) = line
            .split_once('=')
            .ok_or(format!("line {line_number} has no `=`"))?;
        match key.trim() {
            "service" => return Err(format!("line {line_number} nests a service in a service")),
            key => settings.extend(known(key).map(|key| (key, value.trim().to_string()))),
        }
    }
    Ok(found)
}

/// Every endpoint, as libpq pairs hosts, `hostaddr`s and ports: one port for all hosts or one
/// each, an empty entry for the default; a `hostaddr` is where it connects, the host only
/// names it; no host at all is the local socket directory.
fn endpoints(settings: &Settings, env: &Env) -> Result<Vec<Endpoint>, String> {
    let list = |name: &str| -> Vec<&str> {
        match settings.get(name) {
            Some(value) if !value.is_empty() => value.split(',').collect(),
            _ => Vec::new(),
        }
    };
    let (hosts, addresses, ports) = (list("host"), list("hostaddr"), list("port"));
    let count = if addresses.is_empty() {
        hosts.len().max(1)
    } else {
        addresses.len()
    };
    if !hosts.is_empty() && hosts.len() != count {
        return Err(format!(
            "{} host names for {count} hostaddr values",
            hosts.len()
        ));
    }
    if ports.len() > 1 && ports.len() != count {
        return Err(format!("{} ports for {count} hosts", ports.len()));
    }
    let mut resolved: BTreeMap<(&str, u16), Endpoint> = BTreeMap::new();
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let port = port(ports.get(if ports.len() == 1 { 0 } else { i }).copied())?;
        let host = hosts.get(i).copied().filter(|host| !host.is_empty());
        let endpoint = match (addresses.get(i).copied().filter(|a| !a.is_empty()), host) {
            (Some(address), host) => {
                let address = numeric_address(address)
                    .ok_or("a hostaddr is not a numeric IP address")?
                    .to_string();
                let endpoint = Endpoint::tcp(&address, port);
                match host {
                    Some(host) => {
                        let shown = format!("{} at {}", host.to_lowercase(), endpoint.shown());
                        endpoint.shown_as(shown)
                    }
                    None => endpoint,
                }
            }
            (None, Some(host)) if host.starts_with(['/', '@']) => socket(host, port),
            // Most likely the rest of a password, which is not to be shown.
            (None, Some(host)) if host.contains('@') => {
                return Err("a host name holds `@` (in a password it is written %40)".to_string());
            }
            (None, Some(host)) => resolved
                .entry((host, port))
                .or_insert_with(|| Endpoint::tcp(host, port))
                .clone(),
            (None, None) => socket(&env.socket_dir().display().to_string(), port),
        };
        out.push(endpoint);
    }
    Ok(out)
}

/// A unix-socket directory (or an abstract socket, `@name`) and the port in the socket's name.
fn socket(directory: &str, port: u16) -> Endpoint {
    let shown = format!("socket {}/.s.PGSQL.{port}", directory.trim_end_matches('/'));
    Endpoint::socket(shown, PathBuf::from(directory), Some(port))
}

fn port(text: Option<&str>) -> Result<u16, String> {
    let text = text.unwrap_or_default().trim();
    if text.is_empty() {
        return Ok(DEFAULT_PORT);
    }
    let number = text.parse::<i64>().ok().and_then(|n| u16::try_from(n).ok());
    match number {
        Some(port) if port > 0 => Ok(port),
        // Quote it only when it is a number: a misplaced password is not.
        _ if text.len() <= 20
            && text
                .chars()
                .all(|c| c.is_ascii_digit() || c == '-' || c == '+') =>
        {
            Err(format!("the port `{text}` is not a number from 1 to 65535"))
        }
        _ => Err("a port is not a number from 1 to 65535".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env::new("/", "alice")
    }

    fn postgres(value: &str, env: &Env) -> Postgres {
        Postgres::of(value, env).unwrap_or_else(|e| panic!("{value}: {e}"))
    }

    fn overlaps(a: &str, b: &str) -> bool {
        postgres(a, &env()).overlaps(&postgres(b, &env()))
    }

    const LIVE: &str = "postgres://app:secret@127.0.0.1:5432/live_db";

    #[test]
    fn spellings_of_one_database() {
        for spelling in [
            "postgresql://other@localhost/live_db",
            "postgres://LOCALHOST:5432/live_db",
            "postgres://[::1]:5432/live_db",
            "POSTGRES://127.0.0.1/live_db",
            "postgres://127.0.0.1/live%5Fdb",
            "postgres://127.0.0.1/other?dbname=live_db",
            "postgres:///live_db?host=127.0.0.1&port=5432",
            "host=localhost dbname=live_db",
            "host = localhost port = 5432 dbname = live_db user=x password='a b'",
            "dbname='live_db' host='127.0.0.1' password='it\\'s secret'",
            "host=127.0.0.1 dbname=live\\_db",
        ] {
            assert!(overlaps(spelling, LIVE), "{spelling}");
        }
        for other in [
            "postgres://127.0.0.1:5433/live_db",
            "postgres://127.0.0.1/live_db2",
            "postgres://127.0.0.1/Live_db",
            "postgres://192.0.2.200/live_db",
            "postgres://db-a.invalid/live_db",
            "host=localhost dbname=staging",
        ] {
            assert!(!overlaps(other, LIVE), "{other}");
        }
    }

    #[test]
    fn every_host_of_a_multi_host_value_counts() {
        let multi = "postgresql://u@nothere.invalid,127.0.0.1:5432/live_db";
        assert!(overlaps(multi, LIVE));
        let shown = postgres(multi, &env()).to_string();
        assert_eq!(
            shown,
            "PostgreSQL database live_db on nothere.invalid:5432 (not resolved), 127.0.0.1:5432 (this host)"
        );
        assert_eq!(postgres(multi, &env()).endpoints.len(), 2);
        // Ports one per host, or one for all.
        let per_host = "postgres://a.invalid:5433,localhost:5434/live_db";
        assert!(overlaps(per_host, "postgres://127.0.0.1:5434/live_db"));
        assert!(!overlaps(per_host, "postgres://127.0.0.1:5433/live_db"));
        assert!(overlaps(per_host, "postgres://a.invalid:5433/live_db"));
        let settings = "host=a.invalid,localhost port=5433,5434 dbname=live_db";
        assert!(overlaps(settings, "postgres://127.0.0.1:5434/live_db"));
        assert!(!overlaps(settings, "postgres://127.0.0.1:5433/live_db"));
        let one_port = "host=a.invalid,localhost port=5434 dbname=live_db";
        assert!(overlaps(one_port, "postgres://127.0.0.1:5434/live_db"));
        // An empty entry is the default port.
        assert!(overlaps(
            "host=a.invalid,localhost port=5433, dbname=live_db",
            LIVE
        ));
        assert!(overlaps("postgres://[::1]:5433,[::1]/live_db", LIVE));
    }

    #[test]
    fn hostaddr_is_where_the_connection_goes() {
        assert!(overlaps(
            "postgresql://u@db.invalid/live_db?hostaddr=127.0.0.1",
            LIVE
        ));
        assert!(overlaps(
            "host=db.invalid hostaddr=::1 dbname=live_db",
            LIVE
        ));
        assert!(overlaps("hostaddr=127.0.0.1 dbname=live_db", LIVE));
        assert!(!overlaps(
            "host=localhost hostaddr=192.0.2.200 dbname=live_db",
            LIVE
        ));
        let shown = postgres("host=DB.invalid hostaddr=127.0.0.1 dbname=x", &env()).to_string();
        assert_eq!(
            shown,
            "PostgreSQL database x on db.invalid at 127.0.0.1:5432 (this host)"
        );
        assert!(overlaps(
            "host=a.invalid,b.invalid hostaddr=192.0.2.200,127.0.0.1 dbname=live_db",
            LIVE
        ));
    }

    #[test]
    fn a_local_socket_is_this_hosts_server_on_its_port() {
        for socket in [
            "postgresql://%2Fvar%2Frun%2Fpostgresql/live_db",
            "postgresql:///live_db?host=/tmp",
            "host=/tmp/ port=5432 dbname=live_db",
            "host=@abstract dbname=live_db",
            "dbname=live_db",
            "postgres:///live_db",
        ] {
            assert!(overlaps(socket, LIVE), "{socket}");
            assert!(
                !overlaps(socket, "postgres://127.0.0.1:5433/live_db"),
                "{socket}"
            );
        }
        assert!(!overlaps("host=/tmp port=5433 dbname=live_db", LIVE));
        assert_eq!(
            postgres("dbname=live_db", &env()).to_string(),
            "PostgreSQL database live_db on socket /var/run/postgresql/.s.PGSQL.5432 (this host)"
        );
        let elsewhere = env().with_libpq_defaults("/run/pg", "/etc/pg");
        assert!(
            postgres("", &elsewhere)
                .to_string()
                .contains("/run/pg/.s.PGSQL.5432")
        );
    }

    #[test]
    fn the_environment_fills_in_what_the_value_leaves_out() {
        let env = env()
            .with_var("PGHOST", "127.0.0.1")
            .with_var("PGPORT", "5433")
            .with_var("PGDATABASE", "live_db");
        let live = postgres("postgres://localhost:5433/live_db", &env);
        assert!(postgres("", &env).overlaps(&live));
        assert!(postgres("postgres://", &env).overlaps(&live));
        assert!(postgres("user=bob", &env).overlaps(&live));
        // What the value says wins.
        assert!(!postgres("port=5432", &env).overlaps(&live));
        assert!(!postgres("dbname=other", &env).overlaps(&live));
        assert!(!postgres("host=192.0.2.200", &env).overlaps(&live));
        // A socket directory with PGPORT is this host's server on that port.
        assert!(postgres("host=/tmp", &env).overlaps(&live));
        let hostaddr = env.clone().with_var("PGHOSTADDR", "192.0.2.200");
        assert!(!postgres("", &hostaddr).overlaps(&live));
        // The default database is the user's name: the value's, PGUSER, then the OS user.
        let alice = postgres("host=localhost", &Env::new("/", "alice"));
        assert_eq!(alice.database.as_deref(), Some("alice"));
        let bob = Env::new("/", "alice").with_var("PGUSER", "bob");
        assert_eq!(
            postgres("host=localhost", &bob).database.as_deref(),
            Some("bob")
        );
        let carol = postgres("postgres://carol:pw@localhost", &bob);
        assert_eq!(carol.database.as_deref(), Some("carol"));
        assert_eq!(
            postgres("user=dave dbname=''", &bob).database.as_deref(),
            Some("dave")
        );
    }

    #[test]
    fn a_service_file_names_the_server() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("services.conf");
        std::fs::write(
            &file,
            "# services\n[other]\nhost=192.0.2.200\n\n[live]\nhost = 127.0.0.1\nport=5433\ndbname=live_db\ndbname=ignored\n[later]\nport=1\n",
        )
        .expect("write");
        let env = env().with_var("PGSERVICEFILE", &file.display().to_string());
        let live = postgres("postgres://localhost:5433/live_db", &env);
        for spelling in [
            "service=live",
            "postgres:///?service=live",
            "port=5433 service=live",
        ] {
            assert!(postgres(spelling, &env).overlaps(&live), "{spelling}");
        }
        assert!(postgres("", &env.clone().with_var("PGSERVICE", "live")).overlaps(&live));
        assert!(!postgres("service=live dbname=other", &env).overlaps(&live));
        assert!(!postgres("service=live port=5432", &env).overlaps(&live));
        assert!(!postgres("service=other dbname=live_db", &env).overlaps(&live));
        let error = Postgres::of("service=missing", &env).expect_err("missing");
        assert!(
            error.contains("the service `missing` is not defined"),
            "{error}"
        );
        // The system file, when the user's does not define it; ~/.pg_service.conf by default.
        let system = dir.path().join("pg_service.conf");
        std::fs::write(
            &system,
            "[sys]\nhost=localhost\nport=5433\ndbname=live_db\n",
        )
        .expect("write");
        let env = env
            .with_var("PGSYSCONFDIR", &dir.path().display().to_string())
            .with_var("PGSERVICEFILE", "/nonexistent");
        assert!(postgres("service=sys", &env).overlaps(&live));
        let home = Env::new("/", "alice").with_home(dir.path());
        std::fs::write(
            dir.path().join(".pg_service.conf"),
            "[h]\nhost=127.0.0.1\nport=5433\n",
        )
        .expect("write");
        assert!(postgres("service=h dbname=live_db", &home).overlaps(&live));
        std::fs::write(&file, "[bad]\nservice=other\n").expect("write");
        let nested = env.with_var("PGSERVICEFILE", &file.display().to_string());
        assert!(
            Postgres::of("service=bad", &nested)
                .expect_err("nested")
                .contains("nests")
        );
    }

    #[test]
    fn bad_values_say_what_is_wrong_without_the_password() {
        for (value, problem) in [
            ("postgres://u:secret@h:99999/db", "the port `99999`"),
            ("postgres://u:secret@h:0/db", "the port `0`"),
            ("postgres://u:secret@h:abc/db", "a port is not a number"),
            ("host=a,b,c port=1,2", "2 ports for 3 hosts"),
            ("host=a,b hostaddr=127.0.0.1", "2 host names for 1 hostaddr"),
            ("hostaddr=db.example", "not a numeric IP address"),
            ("password='secret", "is not closed"),
            ("password=sec ret host=h", "setting 2 has no `=`"),
            (
                "postgres://u:secret@h/db%zz",
                "bad %-escape in the database name",
            ),
            ("postgres://h/db%00", "holds %00"),
            ("postgres://[::1/db", "no closing `]`"),
            ("postgres://[::1]x/db", "unexpected text"),
            ("postgres://u:p@secret@h/db", "holds `@`"),
            ("postgres://h/db?secret", "has no `=`"),
            ("redis://h/0", "not a PostgreSQL one"),
        ] {
            let error = Postgres::of(value, &env()).expect_err(value);
            assert!(error.contains(problem), "{value}: {error}");
            assert!(
                !error.contains("secret") && !error.contains("sec ret"),
                "{error}"
            );
        }
    }

    #[test]
    fn it_is_shown_without_credentials() {
        let shown = postgres(LIVE, &env()).to_string();
        assert_eq!(
            shown,
            "PostgreSQL database live_db on 127.0.0.1:5432 (this host)"
        );
        assert_eq!(
            postgres(LIVE, &env()).server().to_string(),
            "PostgreSQL server on 127.0.0.1:5432 (this host)"
        );
    }

    #[test]
    fn settings_are_told_from_paths() {
        assert!(is_settings("host=x"));
        assert!(is_settings("sslmode=require dbname = x"));
        assert!(is_settings("service=x"));
        assert!(!is_settings("/srv/host=x"));
        assert!(!is_settings("backups/prod"));
        assert!(!is_settings("hostname=x"));
    }
}
