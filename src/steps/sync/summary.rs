//! What a sync says when it is done: its evidence and outputs and, when something failed,
//! the failure (permanent when only objects damaged at the source failed).

use std::collections::{BTreeMap, BTreeSet};

use super::mirror::Mirror;
use super::plan::Plan;
use super::transfer::TIME_GRAIN;
use super::transfer::{Copied, MAX_FAILURES};
use crate::checksums::REPORT_KEY;
use crate::duration::human_bytes;
use crate::steps::{Done, StepFailure};

/// Keys listed one by one in the evidence; the counts cover all of them.
const SHOWN: usize = 10;

/// Keys counted, the first [`SHOWN`] of them (in key order) kept to be named.
#[derive(Debug, Default)]
pub(super) struct Sample {
    count: usize,
    first: BTreeSet<String>,
}

impl Sample {
    pub(super) fn add(&mut self, key: &str) {
        self.count += 1;
        if self.first.len() < SHOWN || self.first.last().is_some_and(|last| key < last.as_str()) {
            self.first.insert(key.to_owned());
            if self.first.len() > SHOWN {
                self.first.pop_last();
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.count
    }

    pub(super) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// "(2): a, b", or "(first 10 of 12): a, …".
    pub(super) fn describe(&self) -> String {
        let shown = self.first.iter().cloned().collect::<Vec<_>>().join(", ");
        if self.count > self.first.len() {
            format!("(first {} of {}): {shown}", self.first.len(), self.count)
        } else {
            format!("({}): {shown}", self.count)
        }
    }
}

/// What the phases of a sync did.
pub(super) struct Summary {
    pub(super) plan: Plan,
    pub(super) copied: Copied,
    pub(super) deleted: Sample,
    /// The copies' failures, then the deletions'.
    pub(super) failures: Vec<(String, String)>,
    /// What became of the final checksum report.
    pub(super) report_line: String,
    pub(super) report_error: Option<String>,
}

impl Mirror<'_, '_> {
    pub(super) fn finish(mut self, summary: Summary) -> Result<Done, StepFailure> {
        let Summary {
            plan,
            copied,
            deleted,
            failures,
            report_line,
            report_error,
        } = summary;
        let confirmed = copied.confirmed;
        let mut evidence = std::mem::take(&mut self.evidence);
        let seconds = copied.elapsed.as_secs_f64().max(0.001);
        let objects_per_second = copied.keys.len() as f64 / seconds;
        evidence.push(format!(
            "copied {} objects ({}) in {:.1} s: {:.1} MiB/s, {:.*} objects/s",
            copied.keys.len(),
            human_bytes(copied.bytes),
            copied.elapsed.as_secs_f64(),
            copied.bytes as f64 / f64::from(1 << 20) / seconds,
            if objects_per_second < 10.0 { 1 } else { 0 },
            objects_per_second
        ));
        if copied.server_side > 0 {
            evidence.push(format!(
                "{} of the copies were made by the server (CopyObject: both stores are on it), each read back to hash it unless the server gave its SHA-256 (small objects are read through unless it does)",
                copied.server_side
            ));
        }
        evidence.push(format!(
            "unchanged: {} objects (same size, and the same modification time as when the report recorded them{})",
            plan.unchanged + confirmed,
            if confirmed > 0 {
                format!(
                    "; {confirmed} of them re-hashed in the destination and found to be the bytes the source's report records"
                )
            } else {
                String::new()
            }
        ));
        evidence.push(format!("deleted: {} objects", deleted.len()));
        if !copied.keys.is_empty() {
            evidence.push(format!("copied {}", copied.keys.describe()));
        }
        if !deleted.is_empty() {
            evidence.push(format!("deleted {}", deleted.describe()));
        }
        if !copied.vanished.is_empty() {
            evidence.push(format!(
                "{} objects disappeared from the source between listing and copying: {}",
                copied.vanished.len(),
                copied.vanished.describe()
            ));
        }
        let untried = copied.untried;
        if untried > 0 {
            evidence.push(format!(
                "after {MAX_FAILURES} failures no new transfer was started: {untried} objects were not tried"
            ));
        }
        if copied.fresh > 0 {
            evidence.push(format!(
                "{} objects were modified less than {} s before they were copied: the next sync compares them again (a later change in the same second could keep their time and size)",
                copied.fresh,
                TIME_GRAIN.as_secs()
            ));
        }
        evidence.push(report_line);

        let mut outputs = BTreeMap::new();
        outputs.insert("copied".into(), copied.keys.len().into());
        outputs.insert("deleted".into(), deleted.len().into());
        outputs.insert("unchanged".into(), (plan.unchanged + confirmed).into());
        outputs.insert("bytes".into(), copied.bytes.into());
        outputs.insert("objects".into(), plan.source_objects.into());
        outputs.insert("report".into(), REPORT_KEY.into());
        let message = match (failures.first(), report_error) {
            (None, None) => return Ok(Done { outputs, evidence }),
            (Some((key, error)), _) => format!(
                "{} of {} objects could not be synced{} (a re-run copies only what is missing); the first, {key}: {error}",
                failures.len(),
                plan.copy_count + plan.extra.len(),
                if untried > 0 {
                    format!(", {untried} were not tried")
                } else {
                    String::new()
                },
            ),
            (None, Some(report_error)) => report_error,
        };
        let mut failure = StepFailure::new(message);
        // Only damaged objects failed: another attempt would read the same bytes; or only
        // refused ones: the store would refuse them again.
        failure.permanent = copied.damaged + copied.refused > 0
            && copied.damaged + copied.refused == copied.failures.len()
            && copied.failures.len() == failures.len();
        if failure.permanent && copied.damaged > 0 {
            evidence.push(format!(
                "not tried again: the {} damaged object(s) would read the same; repair them in {} (or remove them from its checksum report) first",
                copied.damaged,
                self.source.url()
            ));
        }
        evidence.extend(
            failures
                .iter()
                .take(SHOWN)
                .map(|(key, error)| format!("failed: {key}: {error}")),
        );
        failure.evidence = evidence;
        failure.outputs = outputs;
        Err(failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_first_keys_in_order() {
        let mut sample = Sample::default();
        sample.add("k01");
        sample.add("k00");
        assert_eq!(sample.describe(), "(2): k00, k01");
        for i in (2..12).rev() {
            sample.add(&format!("k{i:02}"));
        }
        assert!(
            sample
                .describe()
                .starts_with("(first 10 of 12): k00, k01, k02")
        );
        assert!(sample.describe().ends_with("k09"));
    }
}
