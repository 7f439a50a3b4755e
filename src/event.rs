//! What happens during a run, as typed events. The runner emits them; the journal persists
//! them (one JSON object per line); reports and `resume` fold them back into a state. The
//! names on disk are a contract: statuses and event names are never renamed or renumbered.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// A step's status, as stored in journals and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    WaitingApproval,
    Running,
    Succeeded,
    Failed,
    Skipped,
    Rejected,
    Cancelled,
    TimedOut,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::WaitingApproval => "waiting_approval",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Rejected => "rejected",
            Status::Cancelled => "cancelled",
            Status::TimedOut => "timed_out",
        }
    }

    /// Whether the step is done, one way or another.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            Status::Pending | Status::WaitingApproval | Status::Running
        )
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Drill,
    Incident,
}

/// One line of a journal: a sequence number, when, and what.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub at: Timestamp,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: String,
        playbook: String,
        file: String,
        /// SHA-256 of the playbook text: resume refuses a changed playbook.
        playbook_hash: String,
        mode: Mode,
        dry_run: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        declared_at: Option<Timestamp>,
        operator: String,
        pid: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rto: Option<Duration>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rpo: Option<Duration>,
        /// Resolved variables (never secrets).
        vars: BTreeMap<String, String>,
    },
    RunResumed {
        operator: String,
        pid: u32,
        playbook_hash: String,
    },
    StepStarted {
        step: String,
        attempt: u32,
        /// Rendered parameters, secrets masked.
        #[serde(default)]
        params: serde_json::Value,
    },
    StepFinished {
        step: String,
        attempt: u32,
        status: Status,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        outputs: BTreeMap<String, serde_json::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// What the step measured or produced, for the report.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        evidence: Vec<String>,
    },
    StepSkipped {
        step: String,
        reason: String,
    },
    RetryScheduled {
        step: String,
        attempt: u32,
        delay_ms: u64,
    },
    ApprovalRequested {
        step: String,
        prompt: String,
    },
    ApprovalDecided {
        step: String,
        approved: bool,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Given ahead of time (`--approve`, `--approve-all`), not at the gate.
        #[serde(default)]
        pre_approved: bool,
    },
    Interrupted {
        reason: String,
    },
    RunFinished {
        exit_code: u8,
    },
}

impl Event {
    /// The step an event is about, if any.
    pub fn step(&self) -> Option<&str> {
        match self {
            Event::StepStarted { step, .. }
            | Event::StepFinished { step, .. }
            | Event::StepSkipped { step, .. }
            | Event::RetryScheduled { step, .. }
            | Event::ApprovalRequested { step, .. }
            | Event::ApprovalDecided { step, .. } => Some(step),
            Event::RunStarted { .. }
            | Event::RunResumed { .. }
            | Event::Interrupted { .. }
            | Event::RunFinished { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_keep_their_names_on_disk() {
        let all = [
            Status::Pending,
            Status::WaitingApproval,
            Status::Running,
            Status::Succeeded,
            Status::Failed,
            Status::Skipped,
            Status::Rejected,
            Status::Cancelled,
            Status::TimedOut,
        ];
        let names: Vec<String> = all
            .iter()
            .map(|s| serde_json::to_string(s).unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            [
                "\"pending\"",
                "\"waiting_approval\"",
                "\"running\"",
                "\"succeeded\"",
                "\"failed\"",
                "\"skipped\"",
                "\"rejected\"",
                "\"cancelled\"",
                "\"timed_out\""
            ]
        );
        for status in all {
            assert_eq!(
                format!("\"{status}\""),
                serde_json::to_string(&status).unwrap_or_default()
            );
        }
    }

    #[test]
    fn a_record_is_one_flat_json_object() {
        let record = Record {
            seq: 3,
            at: "2026-11-24T10:00:00Z".parse().expect("timestamp"),
            event: Event::StepSkipped {
                step: "promote".into(),
                reason: "live only".into(),
            },
        };
        let line = serde_json::to_string(&record).expect("json");
        assert_eq!(
            line,
            r#"{"seq":3,"at":"2026-11-24T10:00:00Z","event":"step_skipped","step":"promote","reason":"live only"}"#
        );
        let back: Record = serde_json::from_str(&line).expect("parse");
        assert_eq!(back, record);
    }
}
