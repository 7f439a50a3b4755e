//! `assess` with `engine: pgbackrest`: the newest backup pgBackRest's `info` lists (or `key`,
//! a label, or the newest that ended before `before`), and the RPO from the last commit its
//! archive holds — read with `pg_waldump` from the newest segments `archive-get` gives, since
//! `info` knows no commit time.

use jiff::Timestamp;

use super::{Assess, Chosen, archived};
use crate::connect::pg_tools;
use crate::connect::pgbackrest::PgBackRest;
use crate::duration::human_bytes;
use crate::steps::{Done, StepContext, StepFailure};
use crate::wal::last_commit::newest_commit;
use crate::wal::lsn::Segment;

/// pgBackRest's `info` gives no segment size: the default one is assumed.
const SEGMENT_SIZE: u64 = 16 << 20;

pub(super) async fn assess(
    step: &Assess,
    ctx: &StepContext<'_>,
    repository: &PgBackRest,
    wanted: Option<String>,
    before: Option<Timestamp>,
) -> Result<Done, StepFailure> {
    let info = repository.info().await.map_err(StepFailure::new)?;
    let chosen = info
        .backups
        .iter()
        .rev()
        .filter(|b| wanted.as_ref().is_none_or(|label| &b.label == label))
        .find(|b| before.is_none_or(|before| b.stopped_at < before))
        .ok_or_else(|| {
            StepFailure::new(format!(
                "no pgBackRest backup of stanza `{}`{}",
                repository.stanza,
                match (&wanted, before) {
                    (Some(label), _) => format!(" labelled {label}"),
                    (None, Some(before)) => format!(" that ended before {before}"),
                    (None, None) => String::new(),
                }
            ))
        })?;
    let evidence = vec![format!(
        "chose {} ({}): ended {}, {} in the repository ({} of data); needs the WAL from {}",
        chosen.label,
        chosen.kind,
        chosen.stopped_at,
        human_bytes(chosen.repository_size),
        human_bytes(chosen.size),
        chosen.archive_start
    )];

    // The segments back to the backup's first, newest first (`newest_commit` reads the
    // newest few).
    let mut names = Vec::new();
    if let (Some(max), Some(floor)) = (
        info.archive_max
            .as_deref()
            .and_then(|m| Segment::parse(m, SEGMENT_SIZE)),
        Segment::parse(&chosen.archive_start, SEGMENT_SIZE),
    ) {
        let mut segment = max;
        while segment >= floor {
            names.push(segment.name(SEGMENT_SIZE));
            if segment.number == 0 {
                break;
            }
            segment.number -= 1;
        }
    }
    let pg_waldump = pg_tools::find("pg_waldump", info.major).map_err(StepFailure::of)?;
    let archive_id = info.archive_id.clone().unwrap_or_default();
    let found = super::with_scratch(ctx, |scratch| async move {
        newest_commit(names, &pg_waldump.path, &scratch, |name, path| {
            let archive_id = archive_id.clone();
            async move { repository.fetch_segment(&archive_id, &name, &path).await }
        })
        .await
    })
    .await?
    .map_err(StepFailure::new)?;
    archived(
        step,
        ctx,
        found,
        Chosen {
            backup: &chosen.label,
            ended: chosen.stopped_at,
            bytes: chosen.repository_size,
            // pgBackRest checks its own files; it publishes no checksum of the whole backup.
            sha256: "",
        },
        evidence,
    )
}
