//! `backup`: `pg_dump` streamed into an object store with a checksum manifest.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use jiff::Timestamp;

use super::command::capture;
use super::pending::Pending;
use super::{Done, Progress, StepContext, StepFailure, Unit, output_file};
use crate::connect::postgres::{self, Target};
use crate::connect::store::Store;
use crate::connect::{child, pg_tools};
use crate::duration::{Duration, human_bytes};
use crate::manifest::{self, Manifest, TableRows};
use stream::DumpStream;

mod base;
mod compression;
mod stream;

pub use compression::DumpCompression;

/// Dumps `database` with `pg_dump` in a consistent snapshot, streams it into `store` under
/// `<prefix>/<date-time>.dump` with its SHA-256 computed on the fly, then writes
/// `<key>.manifest.json` last (a backup without a manifest is incomplete by definition).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    /// PostgreSQL URL of the database to dump, usually `{{ secrets.DATABASE_URL }}`.
    pub database: String,
    /// Where to put the dump: `s3://bucket/prefix`, `file:///path` or a plain directory.
    pub store: String,
    /// `custom` (one file, the default), `directory` (parallel dump, uploaded as a tar), or
    /// `base`: a physical base backup (`pg_basebackup`, zstd) for point-in-time recovery
    /// with the WAL archive in the same store.
    #[serde(default)]
    pub format: DumpFormat,
    /// `zstd` (the default: pg_dump writes uncompressed, drillbook compresses on the way on
    /// another core), `gzip` (pg_dump's own, level 1), `none`, or a pg_dump gzip level 0–9.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<DumpCompression>,
    /// Parallel jobs for the directory format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<u32>,
    /// Remove backups older than this from the store (for stores without lifecycle rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_older_than: Option<Duration>,
    /// Extra arguments for pg_dump, e.g. `[--exclude-table, audit_log]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pg_dump_args: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DumpFormat {
    #[default]
    Custom,
    Directory,
    /// `pg_basebackup -X none` into `<store>/base/`, beside the WAL archive.
    Base,
}

impl super::StepKind for Backup {
    const NAME: &'static str = "backup";
    const OUTPUTS: &'static [&'static str] = &["key", "manifest", "size", "sha256", "taken_at"];
    /// A second run writes a second backup under a new key: harmless.
    const IDEMPOTENT: bool = true;
    const SCALES_WITH_SIZE: bool = true;
    const ARGUMENTS: &'static [super::Arguments] = &[super::Arguments {
        path: "pg_dump_args",
        program: Some("pg_dump"),
        instead: "leave credentials to `database:` (pg_dump gets them through its environment)",
    }];

    /// Lists (pruning, leftovers), reads back what it wrote, writes, deletes (pruning, an
    /// upload a crashed attempt left unvouched) and cleans up its own interrupted uploads.
    fn access(&self) -> Vec<crate::steps::Access<'_>> {
        use crate::steps::{Access, Need};
        vec![Access::of(
            "store",
            &self.store,
            &[
                Need::List,
                Need::Read,
                Need::Write,
                Need::Delete,
                Need::CleanUp,
                Need::ListUploads,
            ],
        )]
    }

    fn summary(&self) -> String {
        match self.format {
            DumpFormat::Base => format!("pg_basebackup into {}", self.store),
            _ => format!("pg_dump into {}", self.store),
        }
    }

    fn writes(&self) -> Vec<crate::steps::Write<'_>> {
        vec![crate::steps::Write::of(
            "store",
            &self.store,
            crate::target::Expect::Store,
        )]
    }

    fn check(
        &self,
        node: &crate::loader::node::Node,
        out: &mut Vec<crate::diagnostic::Diagnostic>,
    ) {
        if self.format == DumpFormat::Base {
            for (key, given) in [
                ("compression", self.compression.is_some()),
                ("jobs", self.jobs.is_some()),
                ("pg_dump_args", !self.pg_dump_args.is_empty()),
            ] {
                if given {
                    out.push(super::at_key(
                        node,
                        key,
                        format!(
                            "`{key}` is for dumps: a base backup (`format: base`) is pg_basebackup's tar, compressed with zstd"
                        ),
                    ));
                }
            }
        }
        if self.jobs.is_some() && self.format == DumpFormat::Custom {
            out.push(super::at_key(
                node,
                "jobs",
                "`jobs` needs `format: directory` (pg_dump -j cannot write the custom format)",
            ));
        }
    }

    async fn run(&self, ctx: &StepContext<'_>) -> Result<Done, StepFailure> {
        let render = |text: &str| (ctx.render)(text).map_err(StepFailure::new);
        let database = render(&self.database)?;
        // In-flight uploads carry the run's id: a concurrent backup's cleanup leaves them be.
        let run_id = ctx
            .run_dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let store = Store::open(&render(&self.store)?)
            .await
            .map_err(StepFailure::of)?
            .owned_by(&run_id);
        let mut evidence = Vec::new();
        let target = if database.trim() == DEMO {
            let demo = crate::connect::demo::create(&ctx.run_dir.join(CLUSTERS))
                .await
                .map_err(StepFailure::of)?;
            evidence.push(format!("created the demo database {demo}"));
            demo
        } else {
            Target::parse(&database).map_err(StepFailure::of)?
        };

        let work = async {
            let client = target
                .connect(CONNECT_TIMEOUT)
                .await
                .map_err(StepFailure::of)?;
            let server = postgres::server_version(&target, &client)
                .await
                .map_err(StepFailure::of)?;
            let pg_dump = pg_tools::find("pg_dump", Some(server.major)).map_err(StepFailure::of)?;
            for removed in store.remove_incomplete("").await.map_err(StepFailure::of)? {
                evidence.push(format!(
                    "removed what an interrupted upload left: {removed}"
                ));
            }
            evidence.extend(Pending::clear(ctx, &store).await?);
            if self.format == DumpFormat::Base {
                return base::take(
                    ctx,
                    &store,
                    &target,
                    &client,
                    self.prune_older_than,
                    std::mem::take(&mut evidence),
                )
                .await;
            }

            // One snapshot for the dump and the row counts: the manifest describes exactly
            // what the dump holds.
            let started_at = Timestamp::now();
            client
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await
                .map_err(|e| StepFailure::of(target.error(&e)))?;
            let snapshot: String = client
                .query_one("SELECT pg_export_snapshot()", &[])
                .await
                .map_err(|e| StepFailure::of(target.error(&e)))?
                .get(0);
            let snapshot_at = Timestamp::now();
            let key = manifest::dump_key(snapshot_at);
            let manifest_key = manifest::manifest_key(&key);
            let pending = Pending::record(ctx, &store, &key, &manifest_key).await?;
            let compression = self.compression.unwrap_or_default();

            let directory = self.format == DumpFormat::Directory;
            // The directory format is written to disk by parallel workers, then streamed into
            // the store as one tar: the scratch copy goes when the step ends.
            let scratch = ScratchDir(
                ctx.run_dir
                    .join("tmp")
                    .join(format!("{}.{}.dir", ctx.id, ctx.attempt)),
            );
            let mut command = tokio::process::Command::new(&pg_dump.path);
            command
                .arg(format!("--compress={}", compression.pg_dump_level()))
                .arg(format!("--snapshot={snapshot}"))
                .arg("--no-password")
                .args(
                    self.pg_dump_args
                        .iter()
                        .map(|a| render(a))
                        .collect::<Result<Vec<_>, _>>()?,
                )
                .envs(target.program_env())
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped());
            if directory {
                let _ = std::fs::remove_dir_all(&scratch.0);
                if let Some(parent) = scratch.0.parent() {
                    tokio::fs::create_dir_all(parent)
                        .await
                        .map_err(|e| StepFailure::new(format!("{}: {e}", parent.display())))?;
                }
                command
                    .arg("--format=directory")
                    .arg(format!("--jobs={}", self.jobs.unwrap_or(1).max(1)))
                    .arg("--file")
                    .arg(&scratch.0)
                    .stdout(std::process::Stdio::null());
            } else {
                command
                    .arg("--format=custom")
                    .stdout(std::process::Stdio::piped());
            }
            let mut child = child::spawn(&mut command).map_err(|e| {
                StepFailure::new(format!("cannot start {}: {e}", pg_dump.path.display()))
            })?;
            let stderr = capture(
                child.stderr.take(),
                output_file(ctx, "pg_dump.stderr").await?,
                ctx.masker,
                8 * 1024,
            );
            let report = |bytes| {
                (ctx.progress)(Progress {
                    done: bytes,
                    total: None,
                    unit: Unit::Bytes,
                    objects: None,
                })
            };
            // The counts run in the same snapshot on drillbook's own connection while
            // pg_dump reads. They cost the server a second scan: about a third more CPU
            // than the dump's own reading (measured on pgbench data), which shows as wall time
            // only where the server has no idle core. One worker: parallel workers would
            // only add CPU the dump needs.
            let (uploaded, counts, stderr, stream) = if directory {
                let (status, counts, stderr) =
                    tokio::join!(child.wait(), count_rows(&target, &client), stderr);
                let stderr = stderr.unwrap_or_default();
                match status {
                    Ok(status) if status.success() => {}
                    other => {
                        let mut failure = StepFailure::new(format!(
                            "pg_dump failed ({}); nothing was stored",
                            match other {
                                Ok(status) => status.to_string(),
                                Err(e) => e.to_string(),
                            }
                        ));
                        failure.evidence = last_lines(&stderr);
                        return Err(failure);
                    }
                }
                let mut tar = child::spawn(
                    tokio::process::Command::new("tar")
                        .arg("-C")
                        .arg(&scratch.0)
                        .args(["-cf", "-", "."])
                        .stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::piped()),
                )
                .map_err(|e| StepFailure::new(format!("cannot start tar: {e}")))?;
                let Some(stdout) = tar.stdout.take() else {
                    return Err(StepFailure::new("tar's output could not be read"));
                };
                let mut stream = DumpStream::new("tar", compressed(stdout, compression)?, tar);
                let uploaded = store.put_stream(&key, &mut stream, &report).await;
                (uploaded, counts, stderr, stream)
            } else {
                let Some(stdout) = child.stdout.take() else {
                    return Err(StepFailure::new("pg_dump's output could not be read"));
                };
                let mut stream =
                    DumpStream::new("pg_dump", compressed(stdout, compression)?, child);
                let (uploaded, counts, stderr) = tokio::join!(
                    store.put_stream(&key, &mut stream, &report),
                    count_rows(&target, &client),
                    stderr
                );
                (uploaded, counts, stderr.unwrap_or_default(), stream)
            };
            if let Err(error) = uploaded {
                return Err(stream.upload_failed(error, &key, &stderr));
            }
            // From here the store holds the dump: a failure removes it, and a kill leaves it
            // to the next attempt's `Pending::clear`.
            let vouched = async {
                let (tables, large_objects) = counts.map_err(StepFailure::of)?;
                let _ = client.batch_execute("COMMIT").await;
                let (size, sha256) = stream.finish();
                // What the store holds, before a manifest vouches for it: a retried request
                // that sent less than it read would otherwise leave a short object behind a
                // good manifest.
                evidence.push(stored_as_sent(&store, &key, size, &sha256).await?);
                let finished_at = Timestamp::now();
                let manifest = Manifest {
                    manifest_version: 1,
                    key: key.clone(),
                    size,
                    sha256: sha256.clone(),
                    format: if directory { "directory" } else { "custom" }.into(),
                    compression: compression.pg_dump_level(),
                    compressed_with: (compression == DumpCompression::Zstd)
                        .then(|| "zstd".to_owned()),
                    database: target.database().to_string(),
                    server_version: server.to_string(),
                    pg_dump_version: pg_dump.version.to_string(),
                    started_at,
                    snapshot_at,
                    finished_at,
                    tables,
                    large_objects,
                    created_by: format!("drillbook {}", env!("CARGO_PKG_VERSION")),
                };
                store
                    .put_bytes(&manifest_key, manifest.to_bytes())
                    .await
                    .map_err(StepFailure::of)?;
                Ok::<_, StepFailure>(manifest)
            }
            .await;
            let manifest = pending.settle(&store, vouched).await?;
            let (size, sha256, finished_at) =
                (manifest.size, manifest.sha256.clone(), manifest.finished_at);
            evidence.push(format!(
                "{key}: {} ({size} bytes), sha256 {sha256}",
                human_bytes(size)
            ));
            evidence.push(format!(
                "{} tables, {} rows, {} large objects, in the snapshot of {}",
                manifest.tables.len(),
                manifest.total_rows(),
                manifest.large_objects,
                snapshot_at
            ));
            evidence.push(format!(
                "pg_dump {} against PostgreSQL {server} at {target}, compression {compression}, {:.1} s",
                pg_dump.version,
                finished_at.duration_since(started_at).as_secs_f64()
            ));
            if let Some(age) = self.prune_older_than {
                evidence.extend(prune(&store, age, &key).await?);
            }
            let mut done = Done::default();
            done.outputs.insert("key".into(), key.into());
            done.outputs.insert("manifest".into(), manifest_key.into());
            done.outputs.insert("size".into(), size.into());
            done.outputs.insert("sha256".into(), sha256.into());
            done.outputs
                .insert("taken_at".into(), snapshot_at.to_string().into());
            done.evidence = std::mem::take(&mut evidence);
            Ok(done)
        };
        tokio::select! {
            result = work => result,
            _ = ctx.cancel.cancelled() => Err(StepFailure::cancelled()),
        }
    }
}

/// How long a connection to the database may take before the step says so.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// `database: demo` makes a small database in a throwaway cluster to back up.
pub const DEMO: &str = "demo";
/// Where a run's throwaway clusters live, under its directory.
pub const CLUSTERS: &str = "clusters";
/// A program's output as it goes into the store: compressed with zstd on the way, or as the
/// program wrote it (pg_dump's own gzip).
fn compressed(
    output: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    compression: DumpCompression,
) -> Result<Box<dyn tokio::io::AsyncRead + Unpin + Send>, StepFailure> {
    Ok(match compression {
        DumpCompression::Zstd => Box::new(
            crate::compress::ZstdEncoder::new(output, crate::compress::DEFAULT_LEVEL)
                .map_err(|e| StepFailure::new(format!("zstd: {e}")))?,
        ),
        DumpCompression::Gzip(_) => Box::new(output),
    })
}

/// Checks that the store holds `size` bytes under `key`, and where it records a SHA-256 of
/// the whole object, that it is `sha256` (S3-compatible servers record none for multipart
/// uploads, so the size is what every store can compare): the evidence line, or a permanent
/// failure — no manifest is written for it.
async fn stored_as_sent(
    store: &Store,
    key: &str,
    size: u64,
    sha256: &str,
) -> Result<String, StepFailure> {
    let held = store.head(key).await.map_err(StepFailure::of)?;
    match held {
        Some(info) if info.size == size => {
            match store.stored_sha256(key).await.map_err(StepFailure::of)? {
                Some(stored) if stored != sha256 => Err(StepFailure::permanent(format!(
                    "the store's SHA-256 of {key} is {stored}, but what was sent hashes to \
                     {sha256}: no manifest was written, so the backup counts as incomplete"
                ))),
                Some(_) => Ok(format!(
                    "the store holds {key} as sent: {size} bytes, the same SHA-256"
                )),
                None => Ok(format!("the store holds {key} as sent: {size} bytes")),
            }
        }
        Some(info) => Err(StepFailure::permanent(format!(
            "the store holds {} bytes under {key}, but {size} were sent: no manifest was written, \
             so the backup counts as incomplete",
            info.size
        ))),
        None => Err(StepFailure::permanent(format!(
            "{key} is not in the store after its upload: no manifest was written"
        ))),
    }
}

fn last_lines(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..]
        .iter()
        .map(|line| format!("pg_dump: {}", line.trim_start_matches("pg_dump: ")))
        .collect()
}

/// Every table's exact row count and the large-object count, in the transaction's snapshot.
/// Leaf tables only (a partitioned parent would count its partitions twice); tables that
/// belong to extensions are not dumped, so they are not counted.
async fn count_rows(
    target: &Target,
    client: &tokio_postgres::Client,
) -> Result<(Vec<TableRows>, u64), postgres::PgError> {
    client
        .batch_execute("SET LOCAL max_parallel_workers_per_gather = 0")
        .await
        .map_err(|e| target.error(&e))?;
    let tables = client
        .query(
            "SELECT n.nspname, c.relname FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind = 'r' AND c.relpersistence <> 't'
                AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
                AND NOT EXISTS (SELECT 1 FROM pg_depend d
                                 WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                   AND d.deptype = 'e')
              ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(|e| target.error(&e))?;
    let mut counted = Vec::with_capacity(tables.len());
    for row in tables {
        let (schema, table): (String, String) = (row.get(0), row.get(1));
        let sql = format!(
            "SELECT count(*) FROM {}.{}",
            postgres::quote_ident(&schema),
            postgres::quote_ident(&table)
        );
        let rows: i64 = client
            .query_one(&sql, &[])
            .await
            .map_err(|e| target.error(&e))?
            .get(0);
        counted.push(TableRows {
            schema,
            table,
            rows: rows.max(0) as u64,
        });
    }
    let large_objects: i64 = client
        .query_one("SELECT count(*) FROM pg_largeobject_metadata", &[])
        .await
        .map_err(|e| target.error(&e))?
        .get(0);
    Ok((counted, large_objects.max(0) as u64))
}

/// Removes backups older than `age`, manifest first (so a half-pruned backup is incomplete,
/// never mistaken for a good one). The newest complete backup is always kept.
async fn prune(store: &Store, age: Duration, keep: &str) -> Result<Vec<String>, StepFailure> {
    let listing = store.list("").await.map_err(StepFailure::of)?;
    let cutoff = Timestamp::now()
        .checked_sub(jiff::SignedDuration::try_from(age.0).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(Timestamp::MIN);
    let mut removed = 0;
    for candidate in manifest::candidates(&listing) {
        let Some(taken) = manifest::time_of(&candidate.key) else {
            continue;
        };
        if candidate.key == keep || taken >= cutoff {
            continue;
        }
        store
            .delete(&manifest::manifest_key(&candidate.key))
            .await
            .map_err(StepFailure::of)?;
        store
            .delete(&candidate.key)
            .await
            .map_err(StepFailure::of)?;
        removed += 1;
    }
    Ok(vec![format!(
        "pruned {removed} backup(s) older than {age} (taken before {cutoff})"
    )])
}

/// A scratch directory removed when the step is over, whatever happened.
struct ScratchDir(std::path::PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_object_shorter_than_what_was_sent_is_a_permanent_failure() {
        let directory = tempfile::tempdir().unwrap();
        let store = Store::open(&directory.path().display().to_string())
            .await
            .unwrap();
        store.put_bytes("x.dump", b"12345".to_vec()).await.unwrap();
        assert!(stored_as_sent(&store, "x.dump", 5, "").await.is_ok());
        let short = stored_as_sent(&store, "x.dump", 6, "").await.unwrap_err();
        assert!(short.permanent);
        assert!(
            short
                .message
                .contains("holds 5 bytes under x.dump, but 6 were sent"),
            "{}",
            short.message
        );
        let missing = stored_as_sent(&store, "y.dump", 6, "").await.unwrap_err();
        assert!(missing.permanent);
    }
}
