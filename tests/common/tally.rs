//! The outcomes of a fault test's runs, printed as one `FAULTS` line that `bench/faults.sh`
//! collects, then asserted: every run either succeeded with correct data or failed cleanly.

use super::Output;
use super::faults::Counts;

/// How many seeds a fault test tries: `DRILLBOOK_FAULT_SEEDS` (the full form, run by
/// `bench/faults.sh`), else `bounded` (what `cargo test` runs).
pub fn seeds(bounded: u64) -> Vec<u64> {
    let n = std::env::var("DRILLBOOK_FAULT_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(bounded);
    (1..=n).collect()
}

/// The fault rates every fault test runs at.
pub const RATES: [f64; 2] = [0.05, 0.15];

#[derive(Default)]
pub struct Tally {
    name: String,
    pub runs: usize,
    pub succeeded: usize,
    pub failed_cleanly: usize,
    /// What was wrong, one line per problem, with the run it was seen in.
    pub wrong: Vec<String>,
    pub counts: Counts,
}

impl Tally {
    pub fn new(name: &str) -> Tally {
        Tally {
            name: name.to_owned(),
            ..Tally::default()
        }
    }

    /// Counts a run of drillbook: whether it succeeded (exit 0), or else failed cleanly
    /// (exit 1 with a message saying what failed, no panic). Returns whether it succeeded.
    pub fn run(&mut self, label: &str, output: &Output) -> bool {
        self.runs += 1;
        let text = format!("{}\n{}", output.stdout, output.stderr);
        if text.contains("panicked") {
            self.wrong.push(format!("{label}: a panic\n{text}"));
            return false;
        }
        match output.status {
            0 => {
                self.succeeded += 1;
                true
            }
            1 if text.to_lowercase().contains("fail") => {
                self.failed_cleanly += 1;
                false
            }
            status => {
                self.wrong.push(format!(
                    "{label}: exit {status} without a clear failure\n{text}"
                ));
                false
            }
        }
    }

    /// Records the problems a check found after a run.
    pub fn check(&mut self, label: &str, problems: Vec<String>) {
        for problem in problems {
            self.wrong.push(format!("{label}: {problem}"));
        }
    }

    /// Prints the figures and fails if anything was wrong.
    pub fn finish(self) {
        eprintln!(
            "FAULTS {}: runs={} succeeded={} failed_cleanly={} wrong={} | {}",
            self.name,
            self.runs,
            self.succeeded,
            self.failed_cleanly,
            self.wrong.len(),
            self.counts
        );
        assert!(
            self.wrong.is_empty(),
            "{}: {} problems:\n{}",
            self.name,
            self.wrong.len(),
            self.wrong.join("\n")
        );
    }
}
