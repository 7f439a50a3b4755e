//! The checksum report saved into the destination while the copy goes on, so that a sync
//! killed halfway and run again copies only what it had not finished.
//!
//! Each save writes what changed since the last one (a segment, see `checksums::stored`), and
//! a report is read by merging all its segments: so the saves are spaced out as the copy goes
//! on, every 500 copies or 10 s at first, then every eighth of what was copied (or of the
//! time spent) so far, up to 50,000 copies. A mirror of a million objects then saves about 60
//! times, its segments together about the size of the final report, and a kill loses at most
//! an eighth of the work done.

use std::time::{Duration, Instant};

use crate::checksums::{Changes, Writer};
use crate::connect::store::Store;

/// The report is saved after this many copies, or this long, whichever comes first...
const CHECKPOINT_OBJECTS: usize = 500;
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);
/// ... or this share of what was copied (or of the time spent) so far, when that is more
/// (up to `CHECKPOINT_MOST` copies: what a save holds is in memory until then)...
const CHECKPOINT_SHARE: u32 = 8;
const CHECKPOINT_MOST: usize = 50_000;
/// ... but not more often than this many times the last write took, so a slow store costs
/// the copy at most a tenth of its time.
const CHECKPOINT_SPACING: u32 = 10;

/// Saves `changes` made for `source` (a segment of the report); returns how long that took.
pub(super) async fn save(
    writer: &mut Writer,
    destination: &Store,
    source: &str,
    changes: &mut Changes,
) -> Result<Duration, crate::connect::store::StoreError> {
    let started = Instant::now();
    writer.checkpoint(destination, source, changes).await?;
    Ok(started.elapsed())
}

/// When to save the report during the copy.
pub(super) struct Checkpoint {
    /// Objects copied since the last save.
    pub(super) copied: usize,
    /// Objects copied before it.
    saved: usize,
    started: Instant,
    last: Instant,
    /// How long the last write took.
    took: Duration,
    pub(super) failed: bool,
}

impl Checkpoint {
    pub(super) fn new() -> Checkpoint {
        Checkpoint {
            copied: 0,
            saved: 0,
            started: Instant::now(),
            last: Instant::now(),
            took: Duration::ZERO,
            failed: false,
        }
    }

    pub(super) fn due(&self) -> bool {
        let since = self.last.elapsed();
        let objects =
            (self.saved / CHECKPOINT_SHARE as usize).clamp(CHECKPOINT_OBJECTS, CHECKPOINT_MOST);
        let interval = CHECKPOINT_INTERVAL.max(self.started.elapsed() / CHECKPOINT_SHARE);
        self.copied > 0
            && (self.copied >= objects || since >= interval)
            && since >= self.took * CHECKPOINT_SPACING
    }

    pub(super) fn written(&mut self, took: Duration) {
        self.saved += self.copied;
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

    #[test]
    fn saves_grow_with_what_was_copied() {
        let mut checkpoint = Checkpoint::new();
        checkpoint.saved = 80_000;
        checkpoint.copied = 9_999;
        assert!(!checkpoint.due(), "an eighth of 80,000 is 10,000");
        checkpoint.copied = 10_000;
        assert!(checkpoint.due());
        // A mirror of a million objects copied at an even pace saves about 60 times.
        let mut checkpoint = Checkpoint::new();
        let mut saves = 0;
        for _ in 0..1_000_000 {
            checkpoint.copied += 1;
            if checkpoint.due() {
                checkpoint.written(Duration::ZERO);
                saves += 1;
            }
        }
        assert!((40..80).contains(&saves), "{saves} saves");
    }
}
