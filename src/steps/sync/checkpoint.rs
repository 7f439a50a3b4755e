//! The checksum report saved into the destination while the copy goes on, so that a sync
//! killed halfway and run again copies only what it had not finished.

use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::checksums::{ChecksumReport, REPORT_KEY};
use crate::connect::store::Store;

/// The report is written after this many copies, or this long, whichever comes first...
const CHECKPOINT_OBJECTS: usize = 500;
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);
/// ... but not more often than this many times the last write took, so a huge report costs
/// the copy at most a tenth of its time.
const CHECKPOINT_SPACING: u32 = 10;

/// Writes `report` to the destination; returns how long that took.
pub(super) async fn write_report(
    destination: &Store,
    report: &mut ChecksumReport,
) -> Result<Duration, crate::connect::store::StoreError> {
    let started = Instant::now();
    report.updated_at = Some(Timestamp::now());
    destination.put_bytes(REPORT_KEY, report.to_bytes()).await?;
    Ok(started.elapsed())
}

/// When to save the report during the copy.
pub(super) struct Checkpoint {
    pub(super) copied: usize,
    last: Instant,
    /// How long the last write took.
    took: Duration,
    pub(super) failed: bool,
}

impl Checkpoint {
    pub(super) fn new() -> Checkpoint {
        Checkpoint {
            copied: 0,
            last: Instant::now(),
            took: Duration::ZERO,
            failed: false,
        }
    }

    pub(super) fn due(&self) -> bool {
        let since = self.last.elapsed();
        self.copied > 0
            && (self.copied >= CHECKPOINT_OBJECTS || since >= CHECKPOINT_INTERVAL)
            && since >= self.took * CHECKPOINT_SPACING
    }

    pub(super) fn written(&mut self, took: Duration) {
        self.copied = 0;
        self.last = Instant::now();
        self.took = took;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_by_count_or_time_spaced_by_their_cost() {
        let mut checkpoint = Checkpoint::new();
        assert!(!checkpoint.due());
        checkpoint.copied = CHECKPOINT_OBJECTS;
        assert!(checkpoint.due());
        checkpoint.written(Duration::from_secs(3600));
        checkpoint.copied = CHECKPOINT_OBJECTS;
        assert!(!checkpoint.due(), "a slow write spaces the next one");
        checkpoint.took = Duration::ZERO;
        checkpoint.last = Instant::now() - CHECKPOINT_INTERVAL;
        checkpoint.copied = 1;
        assert!(checkpoint.due());
    }
}
