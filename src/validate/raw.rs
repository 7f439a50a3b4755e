//! The playbook as written: serde types read from the positioned YAML tree. Nothing here
//! leaves the validator; it turns these into the model.

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::duration::Duration;
use crate::loader::Spanned;
use crate::steps::Kind;

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
    /// How often the playbook must pass: `drillbook due` and `run --if-due` judge it by this
    /// cadence (`schedule: { every: 92d }`); without it, by `--every` (default 92d).
    #[serde(default)]
    pub schedule: Option<ScheduleRaw>,
    /// Variables, readable in templates as `{{ vars.NAME }}`, overridable with `--var`.
    #[serde(default)]
    pub vars: Option<BTreeMap<String, Spanned<String>>>,
    /// Secret names, resolved at run time from the environment or `--secrets-file`, readable as
    /// `{{ secrets.NAME }}`, and never written anywhere.
    #[serde(default)]
    pub secrets: Option<Vec<Spanned<String>>>,
    /// AWS Secrets Manager as a source of the declared secrets (region, endpoint and
    /// credentials from the usual AWS environment).
    #[serde(default)]
    pub secrets_manager: Option<SecretsManagerRaw>,
    /// The team's SSH public keys by the names people decide under (`bob: "ssh-ed25519
    /// AAAA…"`): a decision by a name listed here must be signed with that key
    /// (`drillbook approve --sign-with`).
    #[serde(default)]
    pub signers: Option<BTreeMap<String, Spanned<String>>>,
    /// What the steps act on, declared apart for drills and for live incidents: the same
    /// names under `drill:` and `live:`, readable as `{{ target.NAME }}` (a template of vars
    /// and secrets). A drill reads `drill:`; it refuses to start when one of its targets is
    /// the same host and database (bucket, file) as a live one.
    #[serde(default)]
    pub targets: Option<TargetsRaw>,
    /// After a step fails, start no further steps (`true`, the default), or go on starting
    /// those that do not need the failed one (`false`: independent branches each give their
    /// verdict). Steps that need a failed step are skipped either way.
    #[serde(default)]
    pub fail_fast: Option<bool>,
    /// The steps. Without `needs`, a step depends on the one listed before it.
    pub steps: StepList,
    /// Steps that always run at the end, after success, failure or interruption.
    #[serde(default)]
    pub cleanup: Option<StepList>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretsManagerRaw {
    /// A declared secret set neither in `--secrets-file` nor in the environment is read from
    /// Secrets Manager as `<prefix><NAME>` (e.g. `production/` reads `production/REDIS_URL`).
    #[serde(default)]
    pub prefix: Option<Spanned<String>>,
    /// Secrets always read from Secrets Manager (unless `--secrets-file` sets them), not from
    /// the environment: `NAME: secret-id` (its name or ARN), `#field` for a field of a JSON
    /// secret (`DATABASE_URL: "production/app#DATABASE_URL"`).
    #[serde(default)]
    pub ids: Option<BTreeMap<String, Spanned<String>>>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScheduleRaw {
    /// The longest a pass may be old before the playbook is due again (`1d`, `7d`, `92d`).
    pub every: Spanned<Duration>,
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
    /// The targets a live run acts on (production).
    pub live: BTreeMap<String, Spanned<String>>,
    /// What a drill compares a live target with when the live value does not render here (its
    /// secret is not set): the same thing named without credentials, e.g.
    /// `postgres://db.internal:5432/app`. Templates of `vars`; never a secret.
    #[serde(default)]
    pub identity: BTreeMap<String, Spanned<String>>,
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
    /// Only these people may decide (the names they give with `--as`); absent: anyone.
    #[serde(default)]
    pub allowed: Vec<String>,
    /// Every decision must be signed with the decider's key in `signers`.
    #[serde(default)]
    pub signed: bool,
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
        steps_schema(generator)
    }
}

/// A step is one object with the common keys, `kind` naming one of the kinds, and that kind's
/// parameters: `oneOf` the kinds, each closed to unknown keys.
fn steps_schema(generator: &mut SchemaGenerator) -> Schema {
    let common = generator.root_schema_for::<CommonRaw>();
    let mut variants = Vec::new();
    for &kind in Kind::ALL {
        let params = kind.parameter_schema(generator);
        let mut properties = Map::new();
        let mut required: Vec<Value> = Vec::new();
        for part in [&common, &params] {
            if let Some(Value::Object(props)) = part.get("properties") {
                properties.extend(props.clone());
            }
            if let Some(Value::Array(names)) = part.get("required") {
                required.extend(names.iter().cloned());
            }
        }
        properties.insert(
            "kind".into(),
            json_schema!({ "const": kind.name() }).to_value(),
        );
        let mut variant = Map::new();
        variant.insert("type".into(), "object".into());
        variant.insert("title".into(), kind.name().into());
        if let Some(description) = params.get("description") {
            variant.insert("description".into(), description.clone());
        }
        variant.insert("properties".into(), Value::Object(properties));
        variant.insert("required".into(), Value::Array(required));
        variant.insert("additionalProperties".into(), false.into());
        variants.push(Value::Object(variant));
        // Definitions a kind refers to ($defs) are hoisted into the generator's own.
        if let Some(Value::Object(defs)) = params.get("$defs") {
            for (name, schema) in defs {
                if let Ok(schema) = Schema::try_from(schema.clone()) {
                    generator
                        .definitions_mut()
                        .insert(name.clone(), schema.to_value());
                }
            }
        }
    }
    if let Some(Value::Object(defs)) = common.get("$defs") {
        for (name, schema) in defs {
            generator
                .definitions_mut()
                .insert(name.clone(), schema.clone());
        }
    }
    json_schema!({
        "type": "array",
        "items": { "oneOf": variants }
    })
}
