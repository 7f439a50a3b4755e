//! The playbook as written: serde types read from the positioned YAML tree. Nothing here
//! leaves the validator; it turns these into the model.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::duration::Duration;
use crate::loader::Spanned;

// The validator reads each top-level key on its own (so one error does not hide the next);
// this struct is the list of those keys and the source of the schema.
/// A drillbook playbook: a recovery procedure as a DAG of typed steps.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "drillbook playbook")]
#[allow(dead_code)]
pub(crate) struct PlaybookRaw {
    /// Language version; `1`.
    pub version: Spanned<u32>,
    /// The playbook's name, used in reports and history.
    pub name: Spanned<String>,
    /// What the playbook does, when it is run and what it needs.
    #[serde(default)]
    pub description: Option<String>,
    /// Recovery objectives the report measures against.
    #[serde(default)]
    pub objectives: Option<ObjectivesRaw>,
    /// Variables, readable in templates as `{{ vars.NAME }}`, overridable with `--var`.
    #[serde(default)]
    pub vars: Option<BTreeMap<String, Spanned<String>>>,
    /// Secret names, resolved at run time from the environment or `--secrets-file`, readable as
    /// `{{ secrets.NAME }}`, and never written anywhere.
    #[serde(default)]
    pub secrets: Option<Vec<Spanned<String>>>,
    /// What the steps act on, declared apart for drills and for live incidents: the same
    /// names under `drill:` and `live:`, readable as `{{ target.NAME }}` (a template of vars
    /// and secrets). A drill reads `drill:`; it refuses to start when one of its targets is
    /// the same host and database (bucket, file) as a live one.
    #[serde(default)]
    pub targets: Option<TargetsRaw>,
    /// The steps. Without `needs`, a step depends on the one listed before it.
    pub steps: StepList,
    /// Steps that always run at the end, after success, failure or interruption.
    #[serde(default)]
    pub cleanup: Option<StepList>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ObjectivesRaw {
    /// Recovery time objective: from the run's start (or `--declared-at`) to the `clock: stop`
    /// step.
    #[serde(default)]
    pub rto: Option<Duration>,
    /// Recovery point objective: the most data, in time, the recovery may lose.
    #[serde(default)]
    pub rpo: Option<Duration>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TargetsRaw {
    /// The targets a drill acts on (staging, the failover lab).
    pub drill: BTreeMap<String, Spanned<String>>,
    /// The targets a live incident acts on (production).
    pub live: BTreeMap<String, Spanned<String>>,
}

/// The keys every step has, whatever its kind.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommonRaw {
    /// Unique step id: letters, digits and underscores (templates read `steps.ID`).
    pub id: Spanned<String>,
    /// The step kind.
    #[allow(dead_code)] // read before the common keys, to know which parameters to expect
    pub kind: Spanned<String>,
    /// What this step is for, in the operator's words.
    #[serde(default)]
    pub description: Option<String>,
    /// Steps this one waits for. Absent: the step listed before it. `[]`: none.
    #[serde(default)]
    pub needs: Option<Vec<Spanned<String>>>,
    /// A condition (template expression); the step is skipped when false,
    /// e.g. `run.mode == "incident"`.
    #[serde(default)]
    pub when: Option<Spanned<String>>,
    /// Longest the step may run; it ends as `timed_out`.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Retries with exponential backoff and jitter.
    #[serde(default)]
    pub retry: Option<RetryRaw>,
    /// A human gate before the step runs.
    #[serde(default)]
    pub approval: Option<GateRaw>,
    /// Refused (skipped with a reason) in drill mode.
    #[serde(default)]
    pub live_only: Option<bool>,
    /// `stop`: the RTO clock stops when this step succeeds (one step at most).
    #[serde(default)]
    pub clock: Option<Spanned<Clock>>,
    /// A failure of this step does not stop the run.
    #[serde(default)]
    pub continue_on_failure: Option<bool>,
}

#[derive(Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Clock {
    Stop,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetryRaw {
    /// Total attempts, the first included.
    pub attempts: Spanned<u32>,
    /// Delay before the second attempt, doubled each time (default 1s).
    #[serde(default)]
    pub backoff: Option<Duration>,
    /// Longest delay between attempts.
    #[serde(default)]
    pub max_backoff: Option<Duration>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GateRaw {
    /// The question shown to the approver (a template).
    pub prompt: String,
    /// Distinct people who must approve (2 for four-eyes).
    #[serde(default)]
    pub approvers: Option<Spanned<u32>>,
    /// When the gate expires it rejects.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

/// Stands for a list of steps: each step is read on its own, so that errors in one do not
/// hide errors in the next. The schema describes it fully.
pub(crate) struct StepList;

impl<'de> Deserialize<'de> for StepList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| StepList)
    }
}

impl JsonSchema for StepList {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Steps".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        crate::schema::steps_schema(generator)
    }
}
