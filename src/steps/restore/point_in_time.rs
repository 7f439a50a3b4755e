//! `restore` of a base backup (`backup: base/….tar.zst`): unpacked into a throwaway cluster
//! and recovered from the WAL archive in the same store to a moment — the end of the archive,
//! a time, a time before the incident, an LSN or a named restore point — then promoted.
//!
//! Before the cluster starts: the manifest is read (no manifest, no restore), the archive is
//! checked for holes from the backup's start segment on (PostgreSQL would take a hole for the
//! archive's end and stop short without a word), the object is hashed on its way into
//! `tar` and its `backup_manifest` checksum compared with the manifest's, and
//! `pg_verifybackup` checks every file. The restored cluster runs with `archive_mode = off`
//! (`connect::cluster::recover`): a drill never pushes its new timeline into the archive.

use tokio::io::AsyncReadExt;

use super::{EPHEMERAL, Restore};
use crate::compress::ZstdDecoder;
use crate::connect::cluster::{Cluster, Recovery, Restoring};
use crate::connect::store::Store;
use crate::connect::{child, pg_tools};
use crate::duration::human_bytes;
use crate::steps::backup::CLUSTERS;
use crate::steps::{Done, StepContext, StepFailure};
use crate::wal::base::{BaseManifest, base_manifest_key};
use crate::wal::continuity::Holdings;
use crate::wal::label::LabelReader;
use crate::wal::recovery_target::{Target, parse_target};
use crate::wal::verified::Verified;

/// A single-quoted word for the shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

pub(super) async fn restore(
    step: &Restore,
    ctx: &StepContext<'_>,
    store: &Store,
    key: &str,
    target_text: &str,
) -> Result<Done, StepFailure> {
    let render = |text: &str| (ctx.render)(text).map_err(StepFailure::new);
    if target_text.trim() != EPHEMERAL {
        return Err(StepFailure::permanent(format!(
            "{key} is a base backup: it restores into a throwaway cluster (`target: {EPHEMERAL}`), never over a server's data"
        )));
    }
    let target = parse_target(
        &render(step.recovery_target.as_deref().unwrap_or("latest"))?,
        ctx.clock_start,
    )
    .map_err(StepFailure::permanent)?;
    let manifest_bytes = store
        .get_bytes(&base_manifest_key(key))
        .await
        .map_err(|e| {
            if e.is_not_found() {
                StepFailure::permanent(format!(
                    "{key} has no manifest in {}: an incomplete backup is never restored",
                    store.url()
                ))
            } else {
                StepFailure::of(e)
            }
        })?;
    let manifest = BaseManifest::parse(&manifest_bytes).map_err(StepFailure::permanent)?;
    if let Target::Time(at) = target
        && at < manifest.finished_at
    {
        return Err(StepFailure::permanent(format!(
            "{key} ended at {}: it restores to no moment before, and {at} is earlier. Choose an older base backup",
            manifest.finished_at
        )));
    }
    let mut evidence = Vec::new();

    // Every segment recovery will ask for, before anything starts.
    let start = manifest.first_segment().ok_or_else(|| {
        StepFailure::permanent(format!(
            "{key}'s manifest names no start segment it can read"
        ))
    })?;
    let listing = store.list("wal/").await.map_err(StepFailure::of)?;
    let holdings = Holdings::of(
        listing.iter().map(|o| o.key.as_str()),
        manifest.wal_segment_size,
    );
    if let Some((missing, after)) = holdings.first_gap(start) {
        let size = manifest.wal_segment_size;
        return Err(StepFailure::permanent(if missing == after {
            format!(
                "the archive in {} lacks {}, the first WAL segment {key} needs: nothing was restored",
                store.url(),
                start.name(size)
            )
        } else {
            format!(
                "the archive in {} lacks {} (the next archived is {}): recovery would stop there, short of the target, so nothing was restored",
                store.url(),
                missing.name(size),
                after.name(size)
            )
        }));
    }
    let newest = holdings
        .newest(start.timeline)
        .map(|s| s.name(manifest.wal_segment_size))
        .unwrap_or_default();
    evidence.push(format!(
        "the archive runs unbroken from {} to {newest}",
        manifest.start_segment
    ));

    let major = manifest.server_major().ok_or_else(|| {
        StepFailure::permanent(format!(
            "{key}'s manifest gives the server version `{}`",
            manifest.server_version
        ))
    })?;
    let restoring = fresh_cluster(ctx, major, &mut evidence).await?;

    // The object, hashed on its way; unpacked by tar as the server's user.
    let started = std::time::Instant::now();
    let mut tar = restoring.command_in_data("tar").map_err(StepFailure::of)?;
    tar.args(["-xf", "-", "--no-same-owner"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut tar = tokio::process::Command::from(tar);
    let mut tar =
        child::spawn(&mut tar).map_err(|e| StepFailure::new(format!("cannot start tar: {e}")))?;
    let mut stdin = tar
        .stdin
        .take()
        .ok_or_else(|| StepFailure::new("tar's input could not be written"))?;
    let object = store.get(key, None).await.map_err(StepFailure::of)?;
    let verified = Verified::new(
        object,
        &manifest.sha256,
        format!("{key} is not the base backup its manifest describes: nothing was restored"),
    );
    let decoder = ZstdDecoder::new(verified).map_err(|e| StepFailure::new(format!("zstd: {e}")))?;
    let mut unpacking = LabelReader::new(decoder);
    let stderr = tar.stderr.take();
    let (copied, said) = tokio::join!(
        async {
            let copied = tokio::io::copy(&mut unpacking, &mut stdin).await;
            drop(stdin);
            copied
        },
        async {
            let mut said = String::new();
            if let Some(stderr) = stderr {
                let _ = stderr.take(64 << 10).read_to_string(&mut said).await;
            }
            said
        }
    );
    let unpacked = tar.wait().await;
    if let Err(error) = copied {
        return Err(StepFailure::permanent(format!("{key}: {error}")));
    }
    match unpacked {
        Ok(status) if status.success() => {}
        Ok(status) => {
            return Err(StepFailure::new(format!(
                "tar could not unpack {key} ({status}): {}",
                said.trim()
            )));
        }
        Err(error) => return Err(StepFailure::new(format!("tar: {error}"))),
    }
    let label = unpacking.label();
    if label.manifest_checksum.as_deref() != Some(manifest.backup_manifest_checksum.as_str()) {
        return Err(StepFailure::permanent(format!(
            "{key}'s backup_manifest has the checksum {}, its manifest records {}: nothing was restored",
            label.manifest_checksum.as_deref().unwrap_or("(none)"),
            manifest.backup_manifest_checksum
        )));
    }
    evidence.push(format!(
        "{key}: {} and sha256 {} match the manifest; {} files unpacked in {:.1} s",
        human_bytes(manifest.size),
        manifest.sha256,
        label.files,
        started.elapsed().as_secs_f64()
    ));
    let verifier = pg_tools::find("pg_verifybackup", Some(major)).map_err(StepFailure::of)?;
    let mut verify = tokio::process::Command::new(&verifier.path);
    verify
        .args(["--no-parse-wal", "--quiet"])
        .arg(restoring.data());
    let verified = child::output(&mut verify)
        .await
        .map_err(|e| StepFailure::new(format!("cannot run pg_verifybackup: {e}")))?;
    if !verified.status.success() {
        return Err(StepFailure::permanent(format!(
            "pg_verifybackup found the restored files do not match {key}'s backup_manifest: {}",
            String::from_utf8_lossy(&verified.stderr).trim()
        )));
    }
    evidence.push("pg_verifybackup: every file matches the backup's backup_manifest".into());

    let drillbook = std::env::current_exe()
        .map_err(|e| StepFailure::new(format!("cannot find drillbook's own path: {e}")))?;
    let recovery = Recovery {
        restore_command: format!(
            "{} wal fetch --store {} %f %p",
            shell_quote(&drillbook.to_string_lossy()),
            shell_quote(store.url())
        ),
        target: target.settings(),
    };
    recover(
        step, ctx, restoring, &recovery, &target, &newest, key, evidence,
    )
    .await
}

/// An empty cluster for this step to restore into; the one an interrupted attempt left goes
/// first (it is this step's own).
pub(super) async fn fresh_cluster(
    ctx: &StepContext<'_>,
    major: u32,
    evidence: &mut Vec<String>,
) -> Result<Restoring, StepFailure> {
    let base = ctx.run_dir.join(CLUSTERS);
    let name = format!("restore-{}", ctx.id);
    for old in Cluster::found(&base) {
        if old.dir.file_name() == Some(std::ffi::OsStr::new(&name)) {
            old.destroy().await.map_err(StepFailure::of)?;
            evidence.push("removed the cluster an interrupted attempt left".into());
        }
    }
    let _ = std::fs::remove_dir_all(base.join(&name));
    Cluster::for_restore(&base, &name, major).map_err(StepFailure::of)
}

/// Recovers the filled cluster to `target`, fails when recovery to `latest` ended before the
/// archive's newest segment (`newest`), and says where it ended.
#[allow(clippy::too_many_arguments)]
pub(super) async fn recover(
    step: &Restore,
    ctx: &StepContext<'_>,
    restoring: Restoring,
    recovery: &Recovery,
    target: &Target,
    newest: &str,
    key: &str,
    mut evidence: Vec<String>,
) -> Result<Done, StepFailure> {
    let recovering = std::time::Instant::now();
    let (cluster, recovered) = restoring.recover(recovery).await.map_err(|e| {
        let mut failure = StepFailure::new(format!(
            "recovery to {} did not finish: {e}",
            target.describe()
        ));
        failure.evidence = evidence.clone();
        failure
    })?;
    // PostgreSQL takes a segment restore_command cannot give (a damaged one, refused by
    // `wal fetch`) for the end of the archive, and promotes there: short of the end is a
    // failure, whatever the target.
    let short = match (&target, &recovered.last_restored) {
        (Target::Latest, last) => last.as_deref() < Some(newest),
        _ => false,
    };
    if short {
        let mut failure = StepFailure::permanent(format!(
            "recovery ended at {}, but the archive holds segments up to {newest}: a segment could not be read{}",
            recovered
                .last_restored
                .as_deref()
                .unwrap_or("(none restored)"),
            if recovered.complaints.is_empty() {
                String::new()
            } else {
                format!(" ({})", recovered.complaints.join(" | "))
            }
        ));
        failure.evidence = evidence;
        return Err(failure);
    }
    let reached = match target {
        Target::Latest => true,
        _ => recovered.stopped.is_some(),
    };
    evidence.push(format!(
        "recovered to {} in {:.1} s: {} WAL files from the archive, consistent at {}, {}",
        target.describe(),
        recovering.elapsed().as_secs_f64(),
        recovered.restored_files,
        recovered.consistent_at.as_deref().unwrap_or("?"),
        recovered
            .stopped
            .clone()
            .unwrap_or_else(|| "replayed to the end of the archive".into())
    ));
    if let Some(last) = &recovered.last_transaction {
        evidence.push(format!("the last transaction replayed committed at {last}"));
    }
    evidence.push(format!(
        "promoted onto timeline {} with archive_mode off; {} (removed when the run ends)",
        recovered
            .timeline
            .map_or_else(|| "?".to_string(), |t| t.to_string()),
        cluster.describe()
    ));

    let render = |text: &str| (ctx.render)(text).map_err(StepFailure::new);
    let database = match &step.database {
        Some(database) => render(database)?,
        None => "postgres".to_owned(),
    };
    let mut done = Done::default();
    done.outputs
        .insert("target".into(), cluster.url(&database).into());
    done.outputs.insert("database".into(), database.into());
    done.outputs.insert("backup".into(), key.into());
    done.outputs.insert(
        "recovered_to".into(),
        recovered
            .last_transaction
            .clone()
            .unwrap_or_default()
            .into(),
    );
    done.outputs.insert(
        "timeline".into(),
        recovered
            .timeline
            .map_or(serde_json::Value::Null, Into::into),
    );
    done.outputs.insert("target_reached".into(), reached.into());
    done.evidence = evidence;
    Ok(done)
}
