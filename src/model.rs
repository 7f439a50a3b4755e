//! The validated playbook: every name resolved, every duration typed, each step its kind's
//! struct. Only a `Playbook` can become a plan, and only validation makes one.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::duration::Duration;
use crate::steps::{Kind, StepConfig};

#[derive(Clone, Debug, Serialize)]
pub struct Playbook {
    pub version: u32,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub objectives: Objectives,
    /// How often it must pass (`schedule: { every: 92d }`), for `due` and `run --if-due`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every: Option<Duration>,
    pub vars: BTreeMap<String, String>,
    pub secrets: Vec<String>,
    /// AWS Secrets Manager as a source of `secrets`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets_manager: Option<crate::secrets::ManagerConfig>,
    /// SSH public keys by decider's name: their decisions must be signed with them.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub signers: BTreeMap<String, String>,
    /// What the steps act on, per mode (`{{ target.NAME }}`).
    #[serde(skip_serializing_if = "Targets::is_empty")]
    pub targets: Targets,
    /// After a failure, start no further main steps (`true`), or only none that need the
    /// failed step (`false`).
    #[serde(skip_serializing_if = "is_true")]
    pub fail_fast: bool,
    /// Main steps first, in file order, then cleanup steps.
    pub steps: Vec<Step>,
}

fn is_true(value: &bool) -> bool {
    *value
}

impl Playbook {
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|step| step.id == id)
    }

    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|step| step.id == id)
    }

    /// The step whose success stops the RTO clock, if one is marked.
    pub fn clock_stop(&self) -> Option<&Step> {
        self.steps.iter().find(|step| step.clock_stop)
    }
}

/// Targets declared apart for drills and live incidents: the same names in both.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Targets {
    pub drill: BTreeMap<String, String>,
    pub live: BTreeMap<String, String>,
    /// Live targets named without their credentials (`targets.identity`), for a drill that
    /// does not have production's secrets.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub identity: BTreeMap<String, String>,
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.drill.is_empty() && self.live.is_empty()
    }

    /// The targets a run in `mode` acts on.
    pub fn of(&self, mode: crate::event::Mode) -> &BTreeMap<String, String> {
        match mode {
            crate::event::Mode::Drill => &self.drill,
            crate::event::Mode::Incident | crate::event::Mode::Live => &self.live,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Objectives {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rto: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpo: Option<Duration>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub id: String,
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Ids of the steps this one waits for.
    pub needs: Vec<String>,
    /// A condition (a template expression); the step is skipped when it is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    pub retry: Retry,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<Gate>,
    pub live_only: bool,
    pub clock_stop: bool,
    pub continue_on_failure: bool,
    /// Declared under `cleanup:`: runs at the end whatever happened before.
    pub cleanup: bool,
    pub params: StepConfig,
    /// Line in the playbook, for messages at run time.
    pub line: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Retry {
    /// Total attempts, the first included (1 = no retry).
    pub attempts: u32,
    /// Delay before the second attempt; doubled each time, with jitter.
    pub backoff: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_backoff: Option<Duration>,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 1,
            backoff: Duration(std::time::Duration::from_secs(1)),
            max_backoff: None,
        }
    }
}

/// A human gate before a step runs.
#[derive(Clone, Debug, Serialize)]
pub struct Gate {
    pub prompt: String,
    pub approvers: u32,
    /// Who may decide (declared names); empty: anyone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<String>,
    /// Every decision signed with the decider's key in `signers`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub signed: bool,
    /// When it expires the gate rejects; it never approves by itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}
