//! `backup` with `format: base`: `pg_basebackup` (tar on its standard output, `-X none`)
//! streamed into the WAL archive's store, compressed with zstd and hashed on the way, with no
//! temporary file; its `backup_label` and `backup_manifest` are read as they pass, so the
//! manifest written last says which WAL the backup needs (`wal::base`).

use jiff::Timestamp;

use super::{DumpStream, last_lines, stored_as_sent};
use crate::compress::{DEFAULT_LEVEL, ZstdEncoder};
use crate::connect::postgres::{self, Target};
use crate::connect::store::Store;
use crate::connect::{child, pg_tools};
use crate::duration::{Duration, human_bytes};
use crate::steps::command::capture;
use crate::steps::pending::Pending;
use crate::steps::{Done, Progress, StepContext, StepFailure, Unit, output_file};
use crate::wal::base::{BaseManifest, base_candidates, base_key, base_manifest_key};
use crate::wal::label::LabelReader;
use crate::wal::lsn::{Lsn, Segment};
use crate::wal::retention;

/// What the server says about itself before the backup.
struct Server {
    version: String,
    major: u32,
    system_identifier: Option<String>,
    segment_size: u64,
}

async fn server(target: &Target, client: &tokio_postgres::Client) -> Result<Server, StepFailure> {
    let version = postgres::server_version(target, client)
        .await
        .map_err(StepFailure::of)?;
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_setting('archive_mode'),
                    (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size')",
            &[],
        )
        .await
        .map_err(|e| StepFailure::of(target.error(&e)))?;
    let archive_mode: String = row.get(1);
    if archive_mode == "off" {
        return Err(StepFailure::permanent(format!(
            "archive_mode is off on {target}: a base backup (taken with -X none) can only be \
             restored with the WAL archived after it. Set archive_mode = on and \
             archive_command = 'drillbook wal push %p' (docs/backups.md, \"WAL archive\")"
        )));
    }
    let segment_size: String = row.get(2);
    let segment_size = segment_size
        .parse::<u64>()
        .ok()
        .filter(|size| size.is_power_of_two())
        .ok_or_else(|| StepFailure::new(format!("{target}: wal_segment_size is {segment_size}")))?;
    // pg_control_system() is the superuser's by default: a replication role may not read it.
    let system_identifier = client
        .query_one(
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
        )
        .await
        .ok()
        .map(|row| row.get(0));
    Ok(Server {
        version: row.get(0),
        major: version.major,
        system_identifier,
        segment_size,
    })
}

/// Takes a base backup of `target` into `store` (which is meant to hold its WAL archive too).
pub(super) async fn take(
    ctx: &StepContext<'_>,
    store: &Store,
    target: &Target,
    client: &tokio_postgres::Client,
    prune_older_than: Option<Duration>,
    mut evidence: Vec<String>,
) -> Result<Done, StepFailure> {
    let server = server(target, client).await?;
    let pg_basebackup =
        pg_tools::find("pg_basebackup", Some(server.major)).map_err(StepFailure::of)?;
    let started_at = Timestamp::now();
    let key = base_key(started_at);
    let manifest_key = base_manifest_key(&key);
    let label = format!("drillbook {key}");
    let pending = Pending::record(ctx, store, &key, &manifest_key).await?;

    let mut command = tokio::process::Command::new(&pg_basebackup.path);
    command
        // A fast checkpoint: the backup starts now, not after a spread checkpoint's minutes.
        .args([
            "--pgdata=-",
            "--format=tar",
            "--wal-method=none",
            "--checkpoint=fast",
        ])
        .arg(format!("--label={label}"))
        .arg("--no-password")
        .envs(target.program_env())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = child::spawn(&mut command).map_err(|e| {
        StepFailure::new(format!(
            "cannot start {}: {e}",
            pg_basebackup.path.display()
        ))
    })?;
    let stderr = capture(
        child.stderr.take(),
        output_file(ctx, "pg_basebackup.stderr").await?,
        ctx.masker,
        8 * 1024,
    );
    let Some(stdout) = child.stdout.take() else {
        return Err(StepFailure::new("pg_basebackup's output could not be read"));
    };
    let compressed = ZstdEncoder::new(LabelReader::new(stdout), DEFAULT_LEVEL)
        .map_err(|e| StepFailure::new(format!("zstd: {e}")))?;
    let mut stream = DumpStream::new("pg_basebackup", compressed, child);
    let report = |bytes| {
        (ctx.progress)(Progress {
            done: bytes,
            total: None,
            unit: Unit::Bytes,
            objects: None,
        })
    };
    let (uploaded, stderr) = tokio::join!(store.put_stream(&key, &mut stream, &report), stderr);
    let stderr = stderr.unwrap_or_default();
    if let Err(error) = uploaded {
        return Err(stream.upload_failed(error, &key, &stderr));
    }
    let read = stream.reader().get_ref().label().clone();
    let (size, sha256) = stream.finish();

    let vouched = async {
        if let Some(why) = read.incomplete() {
            return Err(StepFailure::new(format!(
                "pg_basebackup ended, but {why}: not a base backup that can be restored"
            )));
        }
        evidence.push(stored_as_sent(store, &key, size, &sha256).await?);
        let missing = |what: &str| StepFailure::new(format!("backup_label: no {what}"));
        let start_lsn = read.start_lsn.clone().ok_or_else(|| missing("start LSN"))?;
        let start_segment = read
            .start_segment
            .clone()
            .ok_or_else(|| missing("start segment"))?;
        let timeline = read.start_timeline.ok_or_else(|| missing("timeline"))?;
        let end_lsn = read.end_lsn().unwrap_or_default().to_owned();
        let end_timeline = read.wal_ranges.last().map_or(timeline, |r| r.timeline);
        let end_segment = Lsn::parse(&end_lsn)
            .map(|lsn| Segment::ending_at(lsn, end_timeline, server.segment_size))
            .map(|segment| segment.name(server.segment_size))
            .ok_or_else(|| {
                StepFailure::new(format!(
                    "backup_manifest: an end LSN `{end_lsn}` that does not read"
                ))
            })?;
        let manifest = BaseManifest {
            manifest_version: 1,
            format: "base".into(),
            key: key.clone(),
            size,
            sha256: sha256.clone(),
            compression: "zstd".into(),
            tar_size: read.tar_size,
            files: read.files,
            server: format!("{}:{}", target.host(), target.port()),
            server_version: server.version.clone(),
            system_identifier: server.system_identifier.clone(),
            pg_basebackup_version: pg_basebackup.version.to_string(),
            wal_segment_size: server.segment_size,
            timeline,
            start_lsn,
            start_segment,
            end_lsn,
            end_segment,
            wal_ranges: read.wal_ranges.clone(),
            backup_manifest_checksum: read.manifest_checksum.clone().unwrap_or_default(),
            label: label.clone(),
            started_at,
            finished_at: Timestamp::now(),
            created_by: format!("drillbook {}", env!("CARGO_PKG_VERSION")),
        };
        store
            .put_bytes(&manifest_key, manifest.to_bytes())
            .await
            .map_err(StepFailure::of)?;
        Ok(manifest)
    }
    .await;
    let manifest = pending
        .settle(store, vouched)
        .await
        .map_err(|mut failure| {
            failure.evidence.extend(last_lines(&stderr));
            failure
        })?;

    evidence.push(format!(
        "{key}: {} stored ({size} bytes, {:.1}x smaller than its {} tar of {} files), sha256 {sha256}",
        human_bytes(size),
        manifest.tar_size as f64 / size.max(1) as f64,
        human_bytes(manifest.tar_size),
        manifest.files
    ));
    evidence.push(format!(
        "needs the WAL from {} ({}) to {} ({}) on timeline {}",
        manifest.start_segment,
        manifest.start_lsn,
        manifest.end_segment,
        manifest.end_lsn,
        manifest.timeline
    ));
    evidence.push(format!(
        "pg_basebackup {} against PostgreSQL {} at {target}, {:.1} s",
        pg_basebackup.version,
        server.version,
        manifest
            .finished_at
            .duration_since(started_at)
            .as_secs_f64()
    ));
    if let Some(age) = prune_older_than {
        evidence.push(prune(store, age).await?);
    }
    let mut done = Done::default();
    done.outputs.insert("key".into(), key.into());
    done.outputs.insert("manifest".into(), manifest_key.into());
    done.outputs.insert("size".into(), size.into());
    done.outputs.insert("sha256".into(), sha256.into());
    // Restorable to no earlier moment than its end.
    done.outputs
        .insert("taken_at".into(), manifest.finished_at.to_string().into());
    done.evidence = evidence;
    Ok(done)
}

/// Removes base backups started more than `age` ago (never the newest complete one) and the
/// WAL before the oldest kept backup's start segment (`wal::retention`). A manifest that
/// cannot be read stops the pruning: what it vouches for might be needed.
async fn prune(store: &Store, age: Duration) -> Result<String, StepFailure> {
    let cutoff = Timestamp::now()
        .checked_sub(age.as_std())
        .map_err(|e| StepFailure::new(format!("prune_older_than {age}: {e}")))?;
    let listing = store.list("").await.map_err(StepFailure::of)?;
    let mut complete = Vec::new();
    for candidate in base_candidates(&listing) {
        if !candidate.has_manifest {
            continue;
        }
        let bytes = store
            .get_bytes(&base_manifest_key(&candidate.key))
            .await
            .map_err(StepFailure::of)?;
        if let Ok(manifest) = BaseManifest::parse(&bytes)
            && manifest.size == candidate.size
        {
            complete.push(manifest);
        }
    }
    let pruning = retention::prune(&listing, &complete, cutoff);
    for key in pruning.keys() {
        store.delete(&key).await.map_err(StepFailure::of)?;
    }
    Ok(format!(
        "pruned {} base backup(s) started before {cutoff} and {} WAL file(s){}",
        pruning.backups.len(),
        pruning.wal.len(),
        match &pruning.kept_from {
            Some(first) => format!(" before {first}, the first the oldest kept backup needs"),
            None => String::new(),
        }
    ))
}
