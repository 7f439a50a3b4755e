//! The quickstart's demo database: a small but honest one (two schemas, serial and identity
//! sequences, a foreign key, a large object) in a throwaway cluster of its own, so that the
//! first drill needs nothing configured — not even a running PostgreSQL server.

use std::path::Path;
use std::time::Duration;

use super::cluster::Cluster;
use super::postgres::Target;

const NAME: &str = "demo";

const SEED: &str = "
CREATE SCHEMA shop;
CREATE SCHEMA audit;
CREATE TABLE shop.customers (
    id serial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE shop.orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id int NOT NULL REFERENCES shop.customers (id),
    total_cents int NOT NULL,
    placed_at timestamptz NOT NULL
);
CREATE TABLE audit.events (id bigserial PRIMARY KEY, what text NOT NULL);
INSERT INTO shop.customers (email)
    SELECT 'customer' || i || '@example.com' FROM generate_series(1, 2000) AS i;
INSERT INTO shop.orders (customer_id, total_cents, placed_at)
    SELECT 1 + i % 2000, (i * 37) % 50000, now() - make_interval(mins => i)
      FROM generate_series(1, 20000) AS i;
INSERT INTO audit.events (what) SELECT 'event ' || i FROM generate_series(1, 500) AS i;
SELECT lo_from_bytea(0, convert_to('the demo''s large object', 'UTF8'));
";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot create the demo database: {0}")]
    Cluster(#[from] super::cluster::ClusterError),
    #[error("cannot create the demo database: {0}")]
    Sql(#[from] super::postgres::PgError),
}

/// Creates (or, on a re-run, finds) the demo cluster under `base` and returns its database.
pub async fn create(base: &Path) -> Result<Target, DemoError> {
    if let Some(cluster) = Cluster::found(base)
        .into_iter()
        .find(|c| c.dir.ends_with(NAME))
    {
        // A previous attempt made it: the data is already there or being replaced below.
        cluster.ensure_running().await?;
        cluster.destroy().await?;
    }
    let cluster = Cluster::create(base, NAME, None).await?;
    let admin = Target::parse(&cluster.url("postgres"))?;
    let client = admin.connect(Duration::from_secs(15)).await?;
    client
        .batch_execute(&format!("CREATE DATABASE {NAME}"))
        .await
        .map_err(|e| admin.error(&e))?;
    let target = Target::parse(&cluster.url(NAME))?;
    let client = target.connect(Duration::from_secs(15)).await?;
    client
        .batch_execute(SEED)
        .await
        .map_err(|e| target.error(&e))?;
    Ok(target)
}
