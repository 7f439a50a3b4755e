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
    }

    /// The gate has been passed by the time this runs: report who let it through.
    async fn run(&self, ctx: &super::StepContext<'_>) -> Result<super::Done, super::StepFailure> {
        Ok(super::decision_outputs(ctx, "approved_by", "decided_at"))
    }
}
