//! How a run (or a command) ends: one word and one exit code for each way, as DESIGN.md
//! defines them. Schedulers and CI read the code; journals, reports and `runs` show the word.

use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Every step ended well and every objective was met (exit 0).
    Succeeded,
    /// A step failed (exit 1).
    Failed,
    /// The playbook is invalid, or the command was used wrongly (exit 2).
    Invalid,
    /// The recovery succeeded but missed an objective (exit 3).
    ObjectiveMissed,
    /// The run waits for a human decision (exit 4): `drillbook approve`, then `resume`.
    WaitingApproval,
    /// Stopped by Ctrl-C or a signal (exit 130); `resume` continues it.
    Interrupted,
}

impl Outcome {
    pub const fn code(self) -> u8 {
        match self {
            Outcome::Succeeded => 0,
            Outcome::Failed => 1,
            Outcome::Invalid => 2,
            Outcome::ObjectiveMissed => 3,
            Outcome::WaitingApproval => 4,
            Outcome::Interrupted => 130,
        }
    }

    /// The outcome a recorded exit code stands for. A code the engine does not document
    /// reads as a failure rather than a success.
    pub fn from_code(code: u8) -> Outcome {
        match code {
            0 => Outcome::Succeeded,
            2 => Outcome::Invalid,
            3 => Outcome::ObjectiveMissed,
            4 => Outcome::WaitingApproval,
            130 => Outcome::Interrupted,
            _ => Outcome::Failed,
        }
    }

    /// The word on disk and in reports (`objective_missed`); never renamed.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Invalid => "invalid",
            Outcome::ObjectiveMissed => "objective_missed",
            Outcome::WaitingApproval => "waiting_approval",
            Outcome::Interrupted => "interrupted",
        }
    }

    /// Whether the run is over for good: a run waiting for approval or interrupted can still
    /// be resumed.
    pub fn is_over(self) -> bool {
        !matches!(self, Outcome::WaitingApproval | Outcome::Interrupted)
    }

    /// Whether the recovery itself succeeded (objectives met or not): such a run has nothing
    /// left to resume.
    pub fn recovered(self) -> bool {
        matches!(self, Outcome::Succeeded | Outcome::ObjectiveMissed)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> ExitCode {
        ExitCode::from(outcome.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_keeps_its_code_and_word() {
        let all = [
            (Outcome::Succeeded, 0, "succeeded"),
            (Outcome::Failed, 1, "failed"),
            (Outcome::Invalid, 2, "invalid"),
            (Outcome::ObjectiveMissed, 3, "objective_missed"),
            (Outcome::WaitingApproval, 4, "waiting_approval"),
            (Outcome::Interrupted, 130, "interrupted"),
        ];
        for (outcome, code, name) in all {
            assert_eq!(outcome.code(), code);
            assert_eq!(outcome.name(), name);
            assert_eq!(Outcome::from_code(code), outcome);
        }
        assert_eq!(Outcome::from_code(7), Outcome::Failed);
    }
}
