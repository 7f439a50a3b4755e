//! `approval`: a gate on its own.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Waits for a human yes or no. With no terminal the run stops (exit 4) until
/// `drillbook approve` records a decision. A timeout rejects, never approves.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The question (a template).
    pub prompt: String,
    /// Distinct people who must approve (2 for four-eyes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<u32>,
    /// Only these people may decide (the names they give with `--as`); absent: anyone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<String>,
    /// Every decision must be signed with the decider's key in `signers`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub signed: bool,
}

/// Whether a decision by `by` is admitted by the playbook's `signers` (`keys`) and the gate's
/// `signed`: the key on record for `by` when there is one, and the signature (if any) checked
/// against it — or against the key it carries when nobody's key is on record. The key's
/// fingerprint when it is signed.
pub fn admit(
    keys: &std::collections::BTreeMap<String, String>,
    signed: bool,
    decision: &crate::signing::Decision,
    signature: Option<&str>,
) -> Result<Option<String>, String> {
    let by = decision.by;
    let key = keys
        .iter()
        .find(|(name, _)| name.trim().eq_ignore_ascii_case(by.trim()))
        .map(|(_, key)| key.as_str());
    match (key, signature) {
        (Some(key), Some(signature)) => crate::signing::verify(key, decision, signature).map(Some),
        (Some(_), None) => Err(format!(
            "{by} has a key in the playbook's signers: their decisions must be signed with it (`drillbook approve … --sign-with KEY`)"
        )),
        (None, _) if signed => Err(format!(
            "`{}` takes signed decisions only, and {by} has no key in the playbook's signers",
            decision.step
        )),
        (None, Some(signature)) => crate::signing::verify_embedded(decision, signature).map(Some),
        (None, None) => Ok(None),
    }
}

/// What is wrong with an `allowed` list for a gate needing `approvers` people, if anything.
pub(crate) fn allowed_problem(allowed: &[String], approvers: u32) -> Option<String> {
    if allowed.iter().any(|name| name.trim().is_empty()) {
        return Some("`allowed` names an empty name".into());
    }
    let mut names: Vec<String> = allowed.iter().map(|n| n.trim().to_lowercase()).collect();
    names.sort_unstable();
    names.dedup();
    if names.len() < allowed.len() {
        return Some("`allowed` names someone twice".into());
    }
    (!allowed.is_empty() && names.len() < approvers as usize).then(|| {
        format!(
            "`approvers: {approvers}` needs {approvers} different people, but `allowed` names {}",
            names.len()
        )
    })
}

/// Whether `name` may decide a gate that allows `allowed` (anyone when empty).
pub fn may_decide(allowed: &[String], name: &str) -> bool {
    allowed.is_empty()
        || allowed
            .iter()
            .any(|allowed| allowed.trim().eq_ignore_ascii_case(name.trim()))
}

impl super::StepKind for Approval {
    const NAME: &'static str = "approval";
    const OUTPUTS: &'static [&'static str] = &["approved_by", "decided_at"];
    const IDEMPOTENT: bool = true;

    fn summary(&self) -> String {
        format!("ask: {}", self.prompt)
    }

    fn check(
        &self,
        node: &crate::loader::node::Node,
        out: &mut Vec<crate::diagnostic::Diagnostic>,
    ) {
        if self.approvers == Some(0) {
            out.push(super::at_key(
                node,
                "approvers",
                "`approvers` must be at least 1",
            ));
        }
        if let Some(problem) = allowed_problem(&self.allowed, self.approvers.unwrap_or(1)) {
            out.push(super::at_key(node, "allowed", problem));
        }
    }

    /// The gate has been passed by the time this runs: report who let it through.
    async fn run(&self, ctx: &super::StepContext<'_>) -> Result<super::Done, super::StepFailure> {
        Ok(super::decision_outputs(ctx, "approved_by", "decided_at"))
    }
}
