//! Databases the tests create on this machine's PostgreSQL (127.0.0.1:5432, trust), each with
//! a unique name, dropped when the guard goes.

use std::process::Command;

pub const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// A database of our own, dropped (with its connections) on drop.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub fn create(prefix: &str) -> TestDb {
        let name = format!("{prefix}_{}_{}", std::process::id(), fastrand_suffix());
        psql("postgres", &format!("CREATE DATABASE {name}"));
        TestDb { name }
    }

    pub fn url(&self) -> String {
        format!("{SERVER}/{}", self.name)
    }

    pub fn psql(&self, sql: &str) -> String {
        psql(&self.name, sql)
    }

    /// Every user table's exact row count, `schema.table rows` per line, sorted: counted
    /// here with psql, independently of drillbook.
    pub fn row_counts(&self) -> Vec<(String, u64)> {
        let tables =
            self.psql("SELECT schemaname || '.' || relname FROM pg_stat_user_tables ORDER BY 1");
        tables
            .lines()
            .filter(|l| !l.is_empty())
            .map(|table| {
                let count = self.psql(&format!("SELECT count(*) FROM {table}"));
                (table.to_string(), count.trim().parse().expect("a count"))
            })
            .collect()
    }
}

impl TestDb {
    /// Every user table's row count and an MD5 of its rows (as text, sorted): what a restore
    /// must reproduce, read with psql.
    pub fn content_hashes(&self) -> Vec<(String, u64, String)> {
        self.row_counts()
            .into_iter()
            .map(|(table, rows)| {
                let hash = self.psql(&format!(
                    "SELECT coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') FROM {table} t"
                ));
                (table, rows, hash)
            })
            .collect()
    }
}

impl Drop for TestDb {
    /// Drops it, and what a restore into it made beside it (`<name>_restore_…`,
    /// `<name>_before_…`, a rollback's `<name>_restored_…`): the names start with the whole of
    /// this one while it is at most 36 bytes, as every test's is.
    fn drop(&mut self) {
        let psql = |sql: &str| {
            Command::new("psql")
                .args(["-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-U", "postgres"])
                .args(["-d", "postgres", "-c", sql])
                .output()
                .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
                .unwrap_or_default()
        };
        let made = psql(&format!(
            "SELECT datname FROM pg_database WHERE starts_with(datname, '{}_')",
            self.name
        ));
        for name in made.lines().filter(|l| !l.is_empty()) {
            psql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
        }
        psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// Runs SQL with psql and returns its unaligned, tuples-only output; panics on error.
pub fn psql(database: &str, sql: &str) -> String {
    psql_with(&["-h", "127.0.0.1", "-U", "postgres", "-d", database], sql)
}

/// The same against a connection URL (a cluster of the test's own).
pub fn psql_url(url: &str, sql: &str) -> String {
    psql_with(&["-d", url], sql)
}

fn psql_with(connection: &[&str], sql: &str) -> String {
    let output = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(connection)
        .arg("-c")
        .arg(sql)
        .output()
        .expect("psql");
    assert!(
        output.status.success(),
        "psql failed on {sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn fastrand_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{nanos:08x}")
}

/// The fixture the issue asks for: several schemas, serial and identity sequences, a large
/// object, the citext extension, a GRANT to `role` when given, and `rows` rows in all.
pub fn fixture(db: &TestDb, rows: u64, role: Option<&str>) {
    let orders = rows.saturating_sub(1_500);
    db.psql(&format!(
        "CREATE EXTENSION IF NOT EXISTS citext;
         CREATE SCHEMA shop; CREATE SCHEMA audit;
         CREATE TABLE shop.customers (id serial PRIMARY KEY, email citext UNIQUE NOT NULL);
         CREATE TABLE shop.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             customer_id int REFERENCES shop.customers (id), note text);
         CREATE TABLE audit.events (id bigserial PRIMARY KEY, what text);
         INSERT INTO shop.customers (email)
             SELECT 'Customer' || i || '@Example.com' FROM generate_series(1, 1000) i;
         INSERT INTO shop.orders (customer_id, note)
             SELECT 1 + i % 1000, md5(i::text) FROM generate_series(1, {orders}) i;
         INSERT INTO audit.events (what) SELECT 'event ' || i FROM generate_series(1, 500) i;
         SELECT lo_from_bytea(0, convert_to('a large object', 'UTF8'));
         SELECT lo_from_bytea(0, convert_to('another one', 'UTF8'));"
    ));
    if let Some(role) = role {
        db.psql(&format!("GRANT SELECT ON shop.orders TO {role}"));
    }
}
