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
