//! `restore` with `engine: pgbackrest`: pgBackRest restores backup `backup` (a label) into an
//! empty throwaway cluster, which recovers through pgBackRest's `archive-get` to the target
//! and promotes — with drillbook's overrides, archive_mode off first (`point_in_time`).

use super::point_in_time::{fresh_cluster, recover};
use super::{EPHEMERAL, Restore};
use crate::connect::cluster::Recovery;
use crate::connect::pgbackrest::PgBackRest;
use crate::steps::{Done, StepContext, StepFailure};
use crate::wal::recovery_target::{Target, parse_target};

pub(super) async fn restore(
    step: &Restore,
    ctx: &StepContext<'_>,
    repository: &PgBackRest,
    label: &str,
    target_text: &str,
) -> Result<Done, StepFailure> {
    let render = |text: &str| (ctx.render)(text).map_err(StepFailure::new);
    if target_text.trim() != EPHEMERAL {
        return Err(StepFailure::permanent(format!(
            "a pgBackRest backup restores into a throwaway cluster (`target: {EPHEMERAL}`), never over a server's data"
        )));
    }
    let target = parse_target(
        &render(step.recovery_target.as_deref().unwrap_or("latest"))?,
        ctx.clock_start,
    )
    .map_err(StepFailure::permanent)?;
    let info = repository.info().await.map_err(StepFailure::new)?;
    let backup = info
        .backups
        .iter()
        .find(|b| b.label == label)
        .ok_or_else(|| {
            StepFailure::permanent(format!(
                "pgBackRest has no backup {label} in stanza `{}`",
                repository.stanza
            ))
        })?;
    if let Target::Time(at) = target
        && at < backup.stopped_at
    {
        return Err(StepFailure::permanent(format!(
            "{label} ended at {}: it restores to no moment before, and {at} is earlier. Choose an older backup",
            backup.stopped_at
        )));
    }
    let major = info.major.ok_or_else(|| {
        StepFailure::permanent(format!(
            "pgbackrest info names no PostgreSQL version for stanza `{}`",
            repository.stanza
        ))
    })?;
    let mut evidence = Vec::new();
    let restoring = fresh_cluster(ctx, major, &mut evidence).await?;
    let started = std::time::Instant::now();
    repository
        .restore(label, &restoring.data())
        .await
        .map_err(StepFailure::new)?;
    evidence.push(format!(
        "pgbackrest restored {label} ({}) in {:.1} s, checking every file against its repository",
        backup.kind,
        started.elapsed().as_secs_f64()
    ));
    let recovery = Recovery {
        restore_command: repository.restore_command(&restoring.data()),
        target: target.settings(),
    };
    let newest = info.archive_max.clone().unwrap_or_default();
    recover(
        step, ctx, restoring, &recovery, &target, &newest, label, evidence,
    )
    .await
}
