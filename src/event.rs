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

    /// The mark a step's line starts with in the terminal summary and the console.
    pub fn symbol(self) -> &'static str {
        match self {
            Status::Succeeded => "✓",
            Status::Failed | Status::TimedOut | Status::Rejected | Status::Cancelled => "✗",
            Status::Skipped => "-",
            Status::Pending => "·",
            Status::WaitingApproval => "?",
            Status::Running => "▶",
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

/// Whether trying a failed attempt again can help: `permanent` (a 4xx, bad credentials, an
/// invalid parameter, a checksum mismatch) fails the step at once, `transient` (a 5xx,
/// throttling, a reset connection, a timeout) is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Permanent,
    Transient,
}

impl ErrorClass {
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Permanent => "permanent",
            ErrorClass::Transient => "transient",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A rehearsal: `targets.drill`, never a live system; live-only steps are skipped.
    Drill,
    /// A live recovery: `targets.live`; at a terminal each step is announced and confirmed,
    /// and the end asks for the post-mortem.
    Incident,
    /// Routine work on live systems, usually unattended (the nightly backup, the mirror):
    /// `targets.live`, without an incident's announcements and questions.
    Live,
}

impl Mode {
    /// The word on disk, in reports and in templates (`run.mode`).
    pub fn name(self) -> &'static str {
        match self {
            Mode::Drill => "drill",
            Mode::Incident => "incident",
            Mode::Live => "live",
        }
    }

    /// Whether the run acts on `targets.live`.
    pub fn is_live(self) -> bool {
        match self {
            Mode::Drill => false,
            Mode::Incident | Mode::Live => true,
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a human is asked about a step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ask {
    /// May the step run? (`approval:` or `kind: approval`)
    #[default]
    Gate,
    /// Was the manual step done? ("yes" attests it)
    Attest,
    /// The step was running when the run stopped and is not safe to repeat blindly: run it again?
    Rerun,
}

impl Ask {
    pub fn name(self) -> &'static str {
        match self {
            Ask::Gate => "gate",
            Ask::Attest => "attest",
            Ask::Rerun => "rerun",
        }
    }
}

/// A step as planned, recorded at the start of the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedStep {
    pub id: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// What the step will do, in one line.
    pub summary: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cleanup: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clock_stop: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub live_only: bool,
}

fn default_parallel() -> usize {
    4
}

fn one() -> u32 {
    1
}

/// Who a decision came from as the operating system knows them: the account's name (`uid N`
/// for one without a name), its uid, and the host. Four eyes count accounts, not names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsAccount {
    pub user: String,
    pub uid: u32,
    pub host: String,
    /// Set for a person signed in to `drillbook serve` (`web`): `user` is the name they signed
    /// in with, `uid` the server's, `host` the server's host. Absent for an OS account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

impl OsAccount {
    /// Whether two decisions came from the same person: the same OS account (uid), or the same
    /// name signed in to the web view. An OS account and a web sign-in are never the same.
    pub fn same_person(&self, other: &OsAccount) -> bool {
        self.person() == other.person()
    }

    /// What tells people apart: the uid of an OS account, the name of a web sign-in.
    pub fn person(&self) -> (Option<String>, u32) {
        match &self.via {
            Some(via) => (Some(format!("{via}:{}", self.user.to_lowercase())), 0),
            None => (None, self.uid),
        }
    }
}

impl std::fmt::Display for OsAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.via {
            Some(via) => write!(f, "{} signed in to {via} on {}", self.user, self.host),
            None => write!(f, "{}@{}", self.user, self.host),
        }
    }
}

/// One line of a journal: a sequence number, when, and what.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub at: Timestamp,
    /// SHA-256 (hex) of the journal line before this one, exactly as written: the chain that
    /// makes an edited, removed, inserted or moved record show (`drillbook verify`). Absent on
    /// the first record, and in journals older than the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
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
        /// Where secrets were read from besides the environment (a path, never a value).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secrets_file: Option<String>,
        #[serde(default = "default_parallel")]
        max_parallel: usize,
        /// The plan as it was at the start, so reports never need the playbook file.
        #[serde(default)]
        steps: Vec<PlannedStep>,
    },
    RunResumed {
        operator: String,
        pid: u32,
        playbook_hash: String,
        /// The plan again when the playbook changed (`--accept-changed-playbook`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        steps: Option<Vec<PlannedStep>>,
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
        /// A failed or timed-out attempt's class; absent otherwise (and in older journals).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_class: Option<ErrorClass>,
    },
    StepSkipped {
        step: String,
        reason: String,
        /// Skipped because of something upstream (a failure, an interruption), not because
        /// of the step itself: `resume` considers it again.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        blocked: bool,
    },
    RetryScheduled {
        step: String,
        attempt: u32,
        delay_ms: u64,
    },
    ApprovalRequested {
        step: String,
        #[serde(default)]
        ask: Ask,
        prompt: String,
        /// Distinct people whose "yes" is needed.
        #[serde(default = "one")]
        approvers: u32,
        /// When the gate rejects by itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<Timestamp>,
        /// Who may decide (declared names); empty: anyone.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        allowed: Vec<String>,
        /// The deciders' SSH keys on record (the playbook's `signers`): a decision by one of
        /// them must be signed with their key.
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        keys: std::collections::BTreeMap<String, String>,
        /// Every decision must be signed.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        signed: bool,
    },
    ApprovalDecided {
        step: String,
        #[serde(default)]
        ask: Ask,
        approved: bool,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Given ahead of time (`--approve`, `--approve-all`), not at the gate.
        #[serde(default)]
        pre_approved: bool,
        /// The OS account and host the decision came from, beside the declared name `by`
        /// (absent for an expiry, and in journals older than it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account: Option<OsAccount>,
        /// The decider's SSH signature (`sshsig`, armored) over the decision and the question
        /// it answers (`drillbook approve --sign-with KEY`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// The operator of an incident is asked "Proceed?" before a step, at the run's terminal.
    Confirming {
        step: String,
        by: String,
    },
    /// The operator of an incident answered "Proceed?" before a step (`proceed`, `skip` or
    /// `abort`) after `waited_ms`: time a human took, which no recovery time may count.
    Confirmed {
        step: String,
        answer: String,
        waited_ms: u64,
    },
    Interrupted {
        reason: String,
    },
    /// The incident operator stopped the run before `step`, giving `reason`: no main step
    /// starts after it; cleanup still runs.
    Aborted {
        step: String,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account: Option<OsAccount>,
    },
    /// A repeated notification (`every:`) was sent, or failed to be.
    NotificationRepeated {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// Where it went, as the notify step's `to` output names it ("webhook <host>",
        /// "POST <host>/<path>"). Absent in journals written before it was recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        /// What was sent (masked, cut to 2,000 characters), as the `message` output.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// What the incident operator wrote for the post-mortem when the run ended: only people
    /// know the root cause and what must change, and the end of an incident is when they know
    /// it best.
    PostMortemNotes {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        root_cause: String,
        /// One item per line the operator typed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        remediation: Vec<String>,
        by: String,
    },
    RunFinished {
        exit_code: u8,
    },
    /// The drillbook process now driving the run (after `run_started` or `run_resumed`): with
    /// its start time and boot, another `run` can tell it is alive even without its lock file.
    RunProcess {
        pid: u32,
        /// `starttime` of `/proc/PID/stat`.
        start_time: u64,
        boot_id: String,
    },
    /// `--approve` and `--approve-all` as given to `run`: `resume` honours them too.
    PreApproved {
        by: String,
        /// The OS account that gave them (absent in journals older than it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account: Option<OsAccount>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        all: bool,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        steps: Vec<String>,
    },
    /// A program a step started: enough for `resume` to recognise it (and nothing else) if it
    /// survived drillbook. The program's file name only, never its arguments.
    ChildStarted {
        step: String,
        attempt: u32,
        pid: u32,
        pgid: u32,
        start_time: u64,
        boot_id: String,
        program: String,
    },
    /// `resume` found a journalled child (or its process group) still running and stopped it
    /// before running anything.
    ChildStopped {
        step: String,
        attempt: u32,
        pid: u32,
        program: String,
        /// Processes found running (the child and what it left in its group).
        processes: u32,
        /// SIGTERM was not enough within the grace period: SIGKILL.
        killed: bool,
        /// Still running after SIGKILL (cannot be stopped from here).
        #[serde(default, skip_serializing_if = "is_zero")]
        remaining: u32,
    },
}

fn is_zero(n: &u32) -> bool {
    *n == 0
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
            | Event::ApprovalDecided { step, .. }
            | Event::Confirmed { step, .. }
            | Event::Confirming { step, .. }
            | Event::Aborted { step, .. }
            | Event::NotificationRepeated { step, .. }
            | Event::ChildStarted { step, .. }
            | Event::ChildStopped { step, .. } => Some(step),
            Event::RunProcess { .. } | Event::PreApproved { .. } => None,
            Event::RunStarted { .. }
            | Event::RunResumed { .. }
            | Event::Interrupted { .. }
            | Event::PostMortemNotes { .. }
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
    fn a_repeat_journalled_before_its_message_was_recorded_still_reads() {
        let line = r#"{"seq":9,"at":"2026-11-24T10:00:00Z","event":"notification_repeated","step":"updates"}"#;
        let record: Record = serde_json::from_str(line).expect("parse");
        assert_eq!(
            record.event,
            Event::NotificationRepeated {
                step: "updates".into(),
                error: None,
                to: None,
                message: None,
            }
        );
    }

    #[test]
    fn a_record_is_one_flat_json_object() {
        let record = Record {
            seq: 3,
            prev: None,
            at: "2026-11-24T10:00:00Z".parse().expect("timestamp"),
            event: Event::StepSkipped {
                step: "promote".into(),
                reason: "live only".into(),
                blocked: false,
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
