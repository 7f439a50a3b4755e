//! The last commit the archive holds: what a restore to `latest` recovers to, and so what the
//! RPO is measured from. Not the newest segment's upload time — an idle primary switches
//! segments (`archive_timeout`) without committing anything, and that time would overstate
//! what was kept. `pg_waldump` reads the newest segments, newest first, until one holds a
//! commit record.

use std::path::Path;

use jiff::Timestamp;

use super::continuity::Holdings;
use super::lsn::Segment;
use super::{Archive, WalError, fetch};
use crate::compress::Compression;
use crate::connect::store::Store;

/// How many segments back to look for a commit before giving up.
const LOOK_BACK: usize = 16;

/// The last commit found: its time and the segment holding it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastCommit {
    pub at: Timestamp,
    pub segment: String,
}

/// Reads the newest segments of `holdings` on `timeline` or later, newest first, no further
/// back than `floor`, into `scratch` (a directory removed by the caller), with `pg_waldump`.
pub async fn last_commit(
    store: &Store,
    holdings: &Holdings,
    floor: Segment,
    segment_size: u64,
    pg_waldump: &Path,
    scratch: &Path,
) -> Result<Option<LastCommit>, String> {
    let archive = Archive {
        store: store.clone(),
        compression: Compression::None,
    };
    let mut names = Vec::new();
    'timelines: for (&timeline, numbers) in holdings.segments.range(floor.timeline..).rev() {
        for &number in numbers.iter().rev() {
            let segment = Segment { timeline, number };
            if segment < floor {
                break 'timelines;
            }
            names.push(segment.name(segment_size));
        }
    }
    newest_commit(names, pg_waldump, scratch, |name, path| {
        let archive = archive.clone();
        async move {
            match fetch(&archive, &name, &path).await {
                Ok(_) => Ok(true),
                Err(WalError::NotArchived { .. }) => Ok(false),
                Err(error) => Err(error.to_string()),
            }
        }
    })
    .await
}

/// The last commit in `names` (segment names, newest first), each fetched by `fetch(name,
/// path)` into `scratch` and read with `pg_waldump` until one holds a commit: drillbook's own
/// archive above, pgBackRest's (`archive-get`) for `engine: pgbackrest`.
pub async fn newest_commit<F, Fut>(
    names: Vec<String>,
    pg_waldump: &Path,
    scratch: &Path,
    mut fetch: F,
) -> Result<Option<LastCommit>, String>
where
    F: FnMut(String, std::path::PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<bool, String>>,
{
    for name in names.into_iter().take(LOOK_BACK) {
        let path = scratch.join(&name);
        if !fetch(name.clone(), path.clone()).await? {
            continue;
        }
        let mut command = tokio::process::Command::new(pg_waldump);
        // Commit times in UTC, whatever this machine's zone.
        command
            .arg("--rmgr=Transaction")
            .arg(&path)
            .env("TZ", "UTC");
        let output = crate::connect::child::output(&mut command)
            .await
            .map_err(|e| format!("cannot run {}: {e}", pg_waldump.display()))?;
        let _ = tokio::fs::remove_file(&path).await;
        // pg_waldump complains at the segment's end (the next one is not beside it): its
        // output up to there is what counts.
        let text = String::from_utf8_lossy(&output.stdout);
        if let Some(at) = text.lines().rev().find_map(commit_time) {
            return Ok(Some(LastCommit { at, segment: name }));
        }
    }
    Ok(None)
}

/// The time of a `pg_waldump` commit record's line:
/// `rmgr: Transaction len (rec/tot): 34/34, tx: 735, lsn: 0/030000A0, prev 0/03000068, desc: COMMIT 2026-12-05 23:25:21.082384 UTC`
fn commit_time(line: &str) -> Option<Timestamp> {
    let rest = line.split("desc: COMMIT ").nth(1)?;
    let text = rest.get(..rest.find(" UTC")?)?;
    let civil = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S%.f", text).ok()?;
    jiff::tz::TimeZone::UTC.to_timestamp(civil).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_lines_give_their_time_and_others_nothing() {
        let line = "rmgr: Transaction len (rec/tot):     34/    34, tx:        735, lsn: 0/030000A0, prev 0/03000068, desc: COMMIT 2026-12-05 23:25:21.082384 UTC";
        assert_eq!(
            commit_time(line),
            Some("2026-12-05T23:25:21.082384Z".parse().unwrap())
        );
        let with_items = "rmgr: Transaction len (rec/tot): 418/418, tx: 736, lsn: 0/03000100, prev 0/030000A0, desc: COMMIT 2026-12-05 23:25:22.5 UTC; inval msgs: catcache 7";
        assert_eq!(
            commit_time(with_items),
            Some("2026-12-05T23:25:22.5Z".parse().unwrap())
        );
        assert_eq!(
            commit_time(
                "rmgr: Transaction len (rec/tot): 34/34, tx: 737, lsn: 0/03000200, prev 0/03000100, desc: ABORT 2026-12-05 23:25:23.0 UTC"
            ),
            None
        );
    }
}
